// AutoencoderKL configuration: diffusers' vae/config.json (autoencoder_kl.py __init__ defaults apply to absent keys),
// validated and resolved into the shapes the encoder and decoder need.

/** diffusers `vae/config.json` (snake_case, as saved). */
export interface VaeConfigJson {
  _class_name?: string;
  in_channels?: number;
  out_channels?: number;
  down_block_types?: readonly string[];
  up_block_types?: readonly string[];
  block_out_channels?: readonly number[];
  layers_per_block?: number;
  act_fn?: string;
  latent_channels?: number;
  norm_num_groups?: number;
  sample_size?: number | readonly number[];
  scaling_factor?: number;
  shift_factor?: number | null;
  latents_mean?: readonly number[] | null;
  latents_std?: readonly number[] | null;
  force_upcast?: boolean;
  use_quant_conv?: boolean;
  use_post_quant_conv?: boolean;
  mid_block_add_attention?: boolean;
  [key: string]: unknown;
}

export interface ResolvedVaeConfig {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  latentChannels: number;
  groups: number;
  /** Every GroupNorm of the VAE (resnets, mid-block attention, conv_norm_out). */
  eps: number;
  /** Square tile edge in pixels for tiled decoding (diffusers' tile_sample_min_size = sample_size). */
  sampleSize: number;
  scalingFactor: number;
  /** Per-channel latent statistics (SDXL: none); decodeLatents uses them as the SDXL pipeline does. */
  latentsMean?: number[];
  latentsStd?: number[];
  useQuantConv: boolean;
  usePostQuantConv: boolean;
  midBlockAddAttention: boolean;
  /** Pixels per latent along each axis: 2^(levels − 1). */
  downscale: number;
}

export class VaeConfigError extends Error {
  constructor(message: string) {
    super(`vae config: ${message}`);
    this.name = 'VaeConfigError';
  }
}

const posInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0;

function int(cfg: VaeConfigJson, key: string, dflt: number): number {
  const v = cfg[key] ?? dflt;
  if (!posInt(v)) throw new VaeConfigError(`${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v as number;
}

function stats(cfg: VaeConfigJson, key: 'latents_mean' | 'latents_std', C: number): number[] | undefined {
  const v = cfg[key];
  if (v === null || v === undefined) return undefined;
  if (!Array.isArray(v) || v.length !== C || !v.every((x) => typeof x === 'number' && Number.isFinite(x)))
    throw new VaeConfigError(`${key} must be null or ${C} finite numbers (latent_channels), got ${JSON.stringify(v)}`);
  return [...v];
}

export function resolveVaeConfig(cfg: VaeConfigJson): ResolvedVaeConfig {
  if (cfg._class_name !== undefined && cfg._class_name !== 'AutoencoderKL')
    throw new VaeConfigError(`_class_name is '${cfg._class_name}', expected 'AutoencoderKL'`);
  const act = cfg.act_fn ?? 'silu';
  if (act !== 'silu') throw new VaeConfigError(`act_fn '${act}' is not supported (expected 'silu')`);
  const blockOutChannels = [...(cfg.block_out_channels ?? [64])];
  if (!blockOutChannels.length || !blockOutChannels.every(posInt))
    throw new VaeConfigError(`block_out_channels must be positive integers, got ${JSON.stringify(cfg.block_out_channels)}`);
  const n = blockOutChannels.length;
  const down = cfg.down_block_types ?? new Array(n).fill('DownEncoderBlock2D');
  const up = cfg.up_block_types ?? new Array(n).fill('UpDecoderBlock2D');
  if (down.length !== n || up.length !== n)
    throw new VaeConfigError(`down_block_types (${down.length}) and up_block_types (${up.length}) must have one entry per block_out_channels (${n})`);
  for (const t of down) if (t !== 'DownEncoderBlock2D') throw new VaeConfigError(`down block type '${t}' is not supported (expected DownEncoderBlock2D)`);
  for (const t of up) if (t !== 'UpDecoderBlock2D') throw new VaeConfigError(`up block type '${t}' is not supported (expected UpDecoderBlock2D)`);
  const groups = int(cfg, 'norm_num_groups', 32);
  for (const c of blockOutChannels)
    if (c % groups) throw new VaeConfigError(`block_out_channels ${JSON.stringify(blockOutChannels)}: ${c} does not split into ${groups} norm groups`);
  const latentChannels = int(cfg, 'latent_channels', 4);
  const rawSample = cfg.sample_size ?? 32;
  const sampleSize = Array.isArray(rawSample) ? rawSample[0] : rawSample;
  if (!posInt(sampleSize)) throw new VaeConfigError(`sample_size must be a positive integer, got ${JSON.stringify(rawSample)}`);
  const scalingFactor = cfg.scaling_factor ?? 0.18215;
  if (typeof scalingFactor !== 'number' || !(scalingFactor > 0)) throw new VaeConfigError(`scaling_factor must be > 0, got ${scalingFactor}`);
  const latentsMean = stats(cfg, 'latents_mean', latentChannels);
  const latentsStd = stats(cfg, 'latents_std', latentChannels);
  if (!latentsMean !== !latentsStd) throw new VaeConfigError('latents_mean and latents_std must both be set or both be null');
  return {
    inChannels: int(cfg, 'in_channels', 3),
    outChannels: int(cfg, 'out_channels', 3),
    blockOutChannels,
    layersPerBlock: int(cfg, 'layers_per_block', 1),
    latentChannels,
    groups,
    eps: 1e-6,
    sampleSize: sampleSize as number,
    scalingFactor,
    latentsMean,
    latentsStd,
    useQuantConv: cfg.use_quant_conv ?? true,
    usePostQuantConv: cfg.use_post_quant_conv ?? true,
    midBlockAddAttention: cfg.mid_block_add_attention ?? true,
    downscale: 2 ** (n - 1),
  };
}
