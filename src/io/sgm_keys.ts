// Original SGM / LDM single-file names (sd_xl_base_1.0.safetensors) ↔ diffusers names, by the rules of
// diffusers' single_file_utils.py (spec sdxl.md §4): UNet (model.diffusion_model.), VAE (first_stage_model.),
// CLIP-L (conditioner.embedders.0.transformer.) and OpenCLIP bigG (conditioner.embedders.1.model.).
// Pure string functions; checkpoint.ts applies them to a file header.

export const SGM_PREFIX = {
  unet: 'model.diffusion_model.',
  vae: 'first_stage_model.',
  /** Some single files store the VAE under `vae.` (diffusers' LDM_VAE_KEYS). */
  vaeAlt: 'vae.',
  textEncoder: 'conditioner.embedders.0.transformer.',
  textEncoder2: 'conditioner.embedders.1.model.',
} as const;

/** SDXL (and SD1.x) have layers_per_block = 2, so every UNet level owns 3 input_blocks / output_blocks slots. */
export interface UnetLayout {
  layersPerBlock: number;
}
const SDXL_LAYOUT: UnetLayout = { layersPerBlock: 2 };

const RESNET_SGM_TO_DIFFUSERS: [string, string][] = [
  ['in_layers.0.', 'norm1.'],
  ['in_layers.2.', 'conv1.'],
  ['emb_layers.1.', 'time_emb_proj.'],
  ['out_layers.0.', 'norm2.'],
  ['out_layers.3.', 'conv2.'],
  ['skip_connection.', 'conv_shortcut.'],
];

function renameResnet(rest: string, table: [string, string][], from: 0 | 1): string | null {
  for (const pair of table) if (rest.startsWith(pair[from])) return pair[1 - from] + rest.slice(pair[from].length);
  return null;
}

/**
 * One UNet parameter name without `model.diffusion_model.` → its diffusers name, or null when no rule applies
 * (the caller reports such keys as ignored).
 */
export function sgmUnetToDiffusers(key: string, layout: UnetLayout = SDXL_LAYOUT): string | null {
  const S = layout.layersPerBlock + 1;
  const fixed: [string, string][] = [
    ['time_embed.0.', 'time_embedding.linear_1.'],
    ['time_embed.2.', 'time_embedding.linear_2.'],
    ['label_emb.0.0.', 'add_embedding.linear_1.'],
    ['label_emb.0.2.', 'add_embedding.linear_2.'],
    ['input_blocks.0.0.', 'conv_in.'],
    ['out.0.', 'conv_norm_out.'],
    ['out.2.', 'conv_out.'],
  ];
  for (const [a, b] of fixed) if (key.startsWith(a)) return b + key.slice(a.length);

  let m = /^input_blocks\.(\d+)\.([01])\.(.+)$/.exec(key);
  if (m) {
    const i = Number(m[1]);
    if (i < 1) return null;
    const block = Math.floor((i - 1) / S);
    const j = (i - 1) % S;
    const rest = m[3];
    if (m[2] === '0') {
      if (rest.startsWith('op.')) return `down_blocks.${block}.downsamplers.0.conv.${rest.slice(3)}`;
      const r = renameResnet(rest, RESNET_SGM_TO_DIFFUSERS, 0);
      return r === null ? null : `down_blocks.${block}.resnets.${j}.${r}`;
    }
    return `down_blocks.${block}.attentions.${j}.${rest}`;
  }
  m = /^middle_block\.([012])\.(.+)$/.exec(key);
  if (m) {
    if (m[1] === '1') return `mid_block.attentions.0.${m[2]}`;
    const r = renameResnet(m[2], RESNET_SGM_TO_DIFFUSERS, 0);
    return r === null ? null : `mid_block.resnets.${m[1] === '0' ? 0 : 1}.${r}`;
  }
  m = /^output_blocks\.(\d+)\.([012])\.(.+)$/.exec(key);
  if (m) {
    const i = Number(m[1]);
    const block = Math.floor(i / S);
    const j = i % S;
    const rest = m[3];
    if (m[2] === '0') {
      const r = renameResnet(rest, RESNET_SGM_TO_DIFFUSERS, 0);
      return r === null ? null : `up_blocks.${block}.resnets.${j}.${r}`;
    }
    // The upsampler sits in slot 1 of a block without attention and in slot 2 of one with attention.
    if (rest.startsWith('conv.')) return `up_blocks.${block}.upsamplers.0.conv.${rest.slice(5)}`;
    if (m[2] === '1') return `up_blocks.${block}.attentions.${j}.${rest}`;
    return null;
  }
  return null;
}

/**
 * diffusers UNet parameter (or module) name → SGM name without `model.diffusion_model.`, or null.
 * `upHasAttentions(b)` says whether up_blocks.b has attentions (then its upsampler is slot 2, else slot 1).
 * Module paths work too (e.g. 'down_blocks.1.resnets.0.conv1' → 'input_blocks.4.0.in_layers.2').
 */
export function diffusersUnetToSgm(
  name: string,
  upHasAttentions: (upBlock: number) => boolean,
  layout: UnetLayout = SDXL_LAYOUT,
): string | null {
  const S = layout.layersPerBlock + 1;
  // Accept module paths by working on `name + '.'` and stripping the dot again.
  const key = name + '.';
  const strip = (s: string) => s.slice(0, -1);
  const fixed: [string, string][] = [
    ['time_embedding.linear_1.', 'time_embed.0.'],
    ['time_embedding.linear_2.', 'time_embed.2.'],
    ['add_embedding.linear_1.', 'label_emb.0.0.'],
    ['add_embedding.linear_2.', 'label_emb.0.2.'],
    ['conv_in.', 'input_blocks.0.0.'],
    ['conv_norm_out.', 'out.0.'],
    ['conv_out.', 'out.2.'],
  ];
  for (const [a, b] of fixed) if (key.startsWith(a)) return strip(b + key.slice(a.length));
  let m = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    const i = Number(m[1]) * S + Number(m[3]) + 1;
    if (m[2] === 'attentions') return strip(`input_blocks.${i}.1.${m[4]}`);
    const r = renameResnet(m[4], RESNET_SGM_TO_DIFFUSERS, 1);
    return r === null ? null : strip(`input_blocks.${i}.0.${r}`);
  }
  m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/.exec(key);
  if (m) return strip(`input_blocks.${(Number(m[1]) + 1) * S}.0.op.${m[2]}`);
  m = /^mid_block\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    if (m[1] === 'attentions') return m[2] === '0' ? strip(`middle_block.1.${m[3]}`) : null;
    const r = renameResnet(m[3], RESNET_SGM_TO_DIFFUSERS, 1);
    if (r === null || Number(m[2]) > 1) return null;
    return strip(`middle_block.${m[2] === '0' ? 0 : 2}.${r}`);
  }
  m = /^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    const i = Number(m[1]) * S + Number(m[3]);
    if (m[2] === 'attentions') return strip(`output_blocks.${i}.1.${m[4]}`);
    const r = renameResnet(m[4], RESNET_SGM_TO_DIFFUSERS, 1);
    return r === null ? null : strip(`output_blocks.${i}.0.${r}`);
  }
  m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/.exec(key);
  if (m) {
    const b = Number(m[1]);
    return strip(`output_blocks.${b * S + S - 1}.${upHasAttentions(b) ? 2 : 1}.conv.${m[2]}`);
  }
  return null;
}

export interface MappedName {
  name: string;
  /** Shape the diffusers model expects when it differs from the file's (VAE attention 1×1 convs → Linear). */
  squeeze?: boolean;
}

/**
 * One VAE key without `first_stage_model.` → diffusers. `numUp` is the number of decoder levels (SDXL: 4), needed
 * because SGM counts decoder.up.* from the bottom while diffusers counts up_blocks from the top.
 */
export function sgmVaeToDiffusers(key: string, numUp: number): MappedName | null {
  for (const same of ['encoder.conv_in.', 'encoder.conv_out.', 'decoder.conv_in.', 'decoder.conv_out.', 'quant_conv.', 'post_quant_conv.'])
    if (key.startsWith(same)) return { name: key };
  let m = /^(encoder|decoder)\.norm_out\.(.+)$/.exec(key);
  if (m) return { name: `${m[1]}.conv_norm_out.${m[2]}` };
  const resnet = (rest: string) => (rest.startsWith('nin_shortcut.') ? 'conv_shortcut.' + rest.slice(13) : rest);
  m = /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(key);
  if (m) return { name: `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${resnet(m[3])}` };
  m = /^encoder\.down\.(\d+)\.downsample\.conv\.(.+)$/.exec(key);
  if (m) return { name: `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}` };
  m = /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/.exec(key);
  if (m) return { name: `${m[1]}.mid_block.resnets.${Number(m[2]) - 1}.${resnet(m[3])}` };
  m = /^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/.exec(key);
  if (m) {
    const to = { norm: 'group_norm', q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0' }[m[2]];
    return { name: `${m[1]}.mid_block.attentions.0.${to}.${m[3]}`, squeeze: m[2] !== 'norm' && m[3] === 'weight' };
  }
  m = /^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/.exec(key);
  if (m) return { name: `decoder.up_blocks.${numUp - 1 - Number(m[1])}.resnets.${m[2]}.${resnet(m[3])}` };
  m = /^decoder\.up\.(\d+)\.upsample\.conv\.(.+)$/.exec(key);
  if (m) return { name: `decoder.up_blocks.${numUp - 1 - Number(m[1])}.upsamplers.0.conv.${m[2]}` };
  return null;
}

/** How one diffusers tensor is produced from an OpenCLIP tensor. */
export interface OpenClipPart extends MappedName {
  /** Take rows [index·n/3, (index+1)·n/3) of the packed in_proj tensor. */
  third?: 0 | 1 | 2;
  /** text_projection is stored as P (used as x @ P); diffusers' Linear wants Pᵀ. */
  transpose?: boolean;
}

/** One OpenCLIP text-tower key without `conditioner.embedders.1.model.` → HF CLIPTextModelWithProjection tensor(s). */
export function openClipToDiffusers(key: string): OpenClipPart[] | null {
  if (key === 'token_embedding.weight') return [{ name: 'text_model.embeddings.token_embedding.weight' }];
  if (key === 'positional_embedding') return [{ name: 'text_model.embeddings.position_embedding.weight' }];
  if (key === 'text_projection') return [{ name: 'text_projection.weight', transpose: true }];
  let m = /^ln_final\.(weight|bias)$/.exec(key);
  if (m) return [{ name: `text_model.final_layer_norm.${m[1]}` }];
  m = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(key);
  if (!m) return null;
  const L = `text_model.encoder.layers.${m[1]}.`;
  const rest = m[2];
  m = /^attn\.in_proj_(weight|bias)$/.exec(rest);
  if (m) {
    const kind = m[1];
    return (['q', 'k', 'v'] as const).map((p, i) => ({ name: `${L}self_attn.${p}_proj.${kind}`, third: i as 0 | 1 | 2 }));
  }
  const table: [string, string][] = [
    ['ln_1.', 'layer_norm1.'],
    ['ln_2.', 'layer_norm2.'],
    ['attn.out_proj.', 'self_attn.out_proj.'],
    ['mlp.c_fc.', 'mlp.fc1.'],
    ['mlp.c_proj.', 'mlp.fc2.'],
  ];
  for (const [a, b] of table) if (rest.startsWith(a)) return [{ name: L + b + rest.slice(a.length) }];
  return null;
}

/** Older diffusers VAE files name the mid-block attention query/key/value/proj_attn (diffusers renames on load). */
export function renameLegacyVaeAttention(name: string): string {
  const m = /^(.*\.attentions\.\d+\.)(query|key|value|proj_attn)\.(weight|bias)$/.exec(name);
  if (!m) return name;
  const to = { query: 'to_q', key: 'to_k', value: 'to_v', proj_attn: 'to_out.0' }[m[2]];
  return `${m[1]}${to}.${m[3]}`;
}
