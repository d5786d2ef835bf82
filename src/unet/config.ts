// UNet2DConditionModel config (diffusers config.json) → the resolved per-level geometry the model is built from.
// Supported: the block types SDXL and SD 1.x use (CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn,
// CrossAttnUpBlock2D, UpBlock2D), positional timestep embedding, addition_embed_type text_time or none. Anything
// else is refused up front, naming the key, rather than silently computing something different.

export interface UNetConfigJson {
  /** Latent size the model was trained at (int, or [height, width]); pipelines default the image size to it. */
  sample_size?: number | readonly number[] | null;
  in_channels?: number;
  out_channels?: number;
  block_out_channels: number[];
  down_block_types: string[];
  up_block_types: string[];
  mid_block_type?: string | null;
  layers_per_block?: number | number[];
  transformer_layers_per_block?: number | (number | number[])[];
  reverse_transformer_layers_per_block?: (number | number[])[] | null;
  attention_head_dim?: number | number[];
  num_attention_heads?: number | number[] | null;
  cross_attention_dim?: number | number[];
  norm_num_groups?: number;
  norm_eps?: number;
  use_linear_projection?: boolean;
  flip_sin_to_cos?: boolean;
  freq_shift?: number;
  conv_in_kernel?: number;
  conv_out_kernel?: number;
  downsample_padding?: number;
  time_embedding_dim?: number | null;
  addition_embed_type?: string | null;
  addition_time_embed_dim?: number | null;
  projection_class_embeddings_input_dim?: number | null;
  [key: string]: unknown;
}

export interface TransformerLevel {
  heads: number;
  headDim: number;
  /** BasicTransformerBlocks per Transformer2DModel, per resnet layer of the block. */
  layers: number[];
  crossAttentionDim: number;
}

export interface DownBlockSpec {
  type: 'CrossAttnDownBlock2D' | 'DownBlock2D';
  inChannels: number;
  outChannels: number;
  numLayers: number;
  addDownsample: boolean;
  attention?: TransformerLevel;
}

export interface UpBlockSpec {
  type: 'CrossAttnUpBlock2D' | 'UpBlock2D';
  /** Channels of the matching down level's input (the last skip this block consumes). */
  inChannels: number;
  outChannels: number;
  prevOutputChannels: number;
  numLayers: number;
  addUpsample: boolean;
  attention?: TransformerLevel;
}

export interface MidBlockSpec {
  channels: number;
  attention: TransformerLevel;
}

export interface ResolvedUNetConfig {
  /** sample_size as [height, width] latents; undefined where the config has none. */
  sampleSize?: readonly [number, number];
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  groups: number;
  eps: number;
  useLinearProjection: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  convInKernel: number;
  convOutKernel: number;
  downsamplePadding: number;
  timeEmbedDim: number;
  /** text_time add embedding (SDXL): Timesteps(addTimeDim) of the 6 time ids, concatenated after text_embeds. */
  textTime?: { addTimeDim: number; projectionInputDim: number };
  down: DownBlockSpec[];
  mid?: MidBlockSpec;
  up: UpBlockSpec[];
}

/** Config values this implementation computes with only at their defaults. */
const FIXED: Record<string, unknown[]> = {
  act_fn: ['silu', undefined],
  center_input_sample: [false, undefined],
  class_embed_type: [null, undefined],
  num_class_embeds: [null, undefined],
  class_embeddings_concat: [false, undefined],
  time_embedding_type: ['positional', undefined],
  time_embedding_act_fn: [null, undefined],
  timestep_post_act: [null, undefined],
  time_cond_proj_dim: [null, undefined],
  encoder_hid_dim: [null, undefined],
  encoder_hid_dim_type: [null, undefined],
  resnet_time_scale_shift: ['default', undefined],
  resnet_skip_time_act: [false, undefined],
  resnet_out_scale_factor: [1, 1.0, undefined],
  mid_block_scale_factor: [1, 1.0, undefined],
  only_cross_attention: [false, undefined],
  dual_cross_attention: [false, undefined],
  cross_attention_norm: [null, undefined],
  attention_type: ['default', undefined],
  mid_block_only_cross_attention: [null, false, undefined],
  dropout: [0, 0.0, undefined],
};

function perLevel<T>(v: T | T[], n: number, key: string): T[] {
  if (Array.isArray(v)) {
    if (v.length !== n) throw new Error(`unet config: ${key} has ${v.length} entries, expected one per block (${n})`);
    return v;
  }
  return new Array<T>(n).fill(v);
}

function layersList(v: number | number[], numLayers: number, key: string): number[] {
  return typeof v === 'number' ? new Array<number>(numLayers).fill(v) : perLevel(v, numLayers, key);
}

export function resolveUNetConfig(cfg: UNetConfigJson): ResolvedUNetConfig {
  const problems: string[] = [];
  for (const [key, allowed] of Object.entries(FIXED))
    if (!allowed.includes(cfg[key] as never)) problems.push(`${key} = ${JSON.stringify(cfg[key])} (supported: ${JSON.stringify(allowed.filter((a) => a !== undefined))})`);
  const addType = cfg.addition_embed_type ?? null;
  if (addType !== null && addType !== 'text_time') problems.push(`addition_embed_type = ${JSON.stringify(addType)} (supported: "text_time", null)`);
  const midType = cfg.mid_block_type === undefined ? 'UNetMidBlock2DCrossAttn' : cfg.mid_block_type;
  if (midType !== 'UNetMidBlock2DCrossAttn' && midType !== null) problems.push(`mid_block_type = ${JSON.stringify(midType)}`);
  const downTypes = ['CrossAttnDownBlock2D', 'DownBlock2D'];
  const upTypes = ['CrossAttnUpBlock2D', 'UpBlock2D'];
  cfg.down_block_types.forEach((t, i) => downTypes.includes(t) || problems.push(`down_block_types[${i}] = ${JSON.stringify(t)}`));
  cfg.up_block_types.forEach((t, i) => upTypes.includes(t) || problems.push(`up_block_types[${i}] = ${JSON.stringify(t)}`));
  if (problems.length) throw new Error(`unet config: unsupported settings:\n  ${problems.join('\n  ')}`);

  const channels = cfg.block_out_channels;
  const n = channels.length;
  if (cfg.down_block_types.length !== n || cfg.up_block_types.length !== n)
    throw new Error(`unet config: block_out_channels, down_block_types and up_block_types must have the same length (${n}, ${cfg.down_block_types.length}, ${cfg.up_block_types.length})`);
  const layersPerBlock = perLevel(cfg.layers_per_block ?? 2, n, 'layers_per_block');
  // diffusers' historical naming: attention_head_dim is the number of heads unless num_attention_heads is given;
  // the head dim is then channels / heads.
  const heads = perLevel(cfg.num_attention_heads ?? cfg.attention_head_dim ?? 8, n, 'num_attention_heads / attention_head_dim');
  const crossDims = perLevel(cfg.cross_attention_dim ?? 1280, n, 'cross_attention_dim');
  const tlpb = perLevel<number | number[]>(cfg.transformer_layers_per_block ?? 1, n, 'transformer_layers_per_block');
  const useLinearProjection = cfg.use_linear_projection ?? false;
  const level = (i: number, C: number, layers: number[], h = heads[i], cross = crossDims[i]): TransformerLevel => {
    if (C % h) throw new Error(`unet config: ${C} channels do not split into ${h} heads (level ${i})`);
    return { heads: h, headDim: C / h, layers, crossAttentionDim: cross };
  };

  const down: DownBlockSpec[] = [];
  let out = channels[0];
  for (let i = 0; i < n; i++) {
    const inC = out;
    out = channels[i];
    const type = cfg.down_block_types[i] as DownBlockSpec['type'];
    const numLayers = layersPerBlock[i];
    down.push({
      type,
      inChannels: inC,
      outChannels: out,
      numLayers,
      addDownsample: i < n - 1,
      attention: type === 'CrossAttnDownBlock2D' ? level(i, out, layersList(tlpb[i], numLayers, `transformer_layers_per_block[${i}]`)) : undefined,
    });
  }

  const last = channels[n - 1];
  const midLayers = tlpb[n - 1];
  const mid: MidBlockSpec | undefined =
    midType === null
      ? undefined
      : { channels: last, attention: level(n - 1, last, [typeof midLayers === 'number' ? midLayers : midLayers[0]]) };

  const rev = [...channels].reverse();
  const revHeads = [...heads].reverse();
  const revCross = [...crossDims].reverse();
  const revLayers = [...layersPerBlock].reverse();
  const revTlpb = cfg.reverse_transformer_layers_per_block ?? [...tlpb].reverse();
  const up: UpBlockSpec[] = [];
  let prev = rev[0];
  for (let i = 0; i < n; i++) {
    const outC = rev[i];
    const inC = rev[Math.min(i + 1, n - 1)];
    const type = cfg.up_block_types[i] as UpBlockSpec['type'];
    const numLayers = revLayers[i] + 1;
    up.push({
      type,
      inChannels: inC,
      outChannels: outC,
      prevOutputChannels: prev,
      numLayers,
      addUpsample: i < n - 1,
      attention:
        type === 'CrossAttnUpBlock2D'
          ? level(n - 1 - i, outC, layersList(revTlpb[i], numLayers, `transformer layers of up_blocks.${i}`), revHeads[i], revCross[i])
          : undefined,
    });
    prev = outC;
  }

  const textTime =
    addType === 'text_time'
      ? { addTimeDim: req(cfg.addition_time_embed_dim, 'addition_time_embed_dim'), projectionInputDim: req(cfg.projection_class_embeddings_input_dim, 'projection_class_embeddings_input_dim') }
      : undefined;
  const convInKernel = cfg.conv_in_kernel ?? 3;
  const convOutKernel = cfg.conv_out_kernel ?? 3;
  const ss = cfg.sample_size;
  return {
    sampleSize: typeof ss === 'number' ? [ss, ss] : Array.isArray(ss) && ss.length === 2 ? [ss[0], ss[1]] : undefined,
    inChannels: cfg.in_channels ?? 4,
    outChannels: cfg.out_channels ?? 4,
    blockOutChannels: channels,
    groups: cfg.norm_num_groups ?? 32,
    eps: cfg.norm_eps ?? 1e-5,
    useLinearProjection,
    flipSinToCos: cfg.flip_sin_to_cos ?? true,
    freqShift: cfg.freq_shift ?? 0,
    convInKernel,
    convOutKernel,
    downsamplePadding: cfg.downsample_padding ?? 1,
    timeEmbedDim: cfg.time_embedding_dim ?? channels[0] * 4,
    textTime,
    down,
    mid,
    up,
  };
}

function req(v: number | null | undefined, key: string): number {
  if (typeof v !== 'number') throw new Error(`unet config: addition_embed_type "text_time" needs ${key}`);
  return v;
}
