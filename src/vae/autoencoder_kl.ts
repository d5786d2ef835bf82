// AutoencoderKL (diffusers semantics, float32 as force_upcast asks) built from a vae/config.json.
//
//   const vae = new AutoencoderKL(gpu, JSON.parse(configJson));            // { parts: 'decoder' } for inference only
//   await vae.loadWeights(await fileSource('vae/diffusion_pytorch_model.safetensors'));
//   const image = await vae.decodeLatents(latents);                        // latents / scaling_factor → decode
//   const rgb = await toImage(image);                                      // Uint8 [H, W, 3]
//   const dist = await vae.encode(imageTensor);  const z = vae.scaleLatents(dist.sample(noise));
//
// decode / encode tile automatically (diffusers' tiled_decode / tiled_encode blending) when one activation of the
// full pass would not fit a storage binding; decodeForward / encodeForward are the synchronous untiled passes.
import type { Gpu } from '../../runtime/device.js';
import { LimitError, ShapeError } from '../../runtime/errors.js';
import { Var, tidy } from '../autograd/tape.js';
import { add, div, mul, sub } from '../kernels/elementwise.js';
import { Conv2d } from '../nn/conv2d.js';
import { type ActivationProbe, ModelContext, Module, type Param } from '../nn/module.js';
import { type RandomInitOptions, type RandomInitSummary, initRandomParameters } from '../nn/init.js';
import { Tensor, shapeStr } from '../tensor.js';
import { type LoadWeightsOptions, type WeightSource, loadStateDict } from '../unet/weights.js';
import type { VaeAttentionImpl, VaeAttentionOptions } from './blocks.js';
import { type ResolvedVaeConfig, type VaeConfigJson, resolveVaeConfig } from './config.js';
import { VaeDecoder } from './decoder.js';
import { DiagonalGaussian } from './distribution.js';
import { VaeEncoder } from './encoder.js';
import { type HostTensor, type TileGeometry, decodeTileGeometry, encodeTileGeometry, tileOrigins, tiledApply } from './tiling.js';
import { type VaeParts, vaeWeightSource } from './weights.js';

export interface AutoencoderKLOptions {
  /** Build only the decoder (image generation) or only the encoder (latents for training); default both. */
  parts?: VaeParts;
  /** Mid-block attention implementation (see VaeAttentionImpl); default 'auto'. */
  attention?: VaeAttentionImpl;
  /** Largest score chunk of the matmul attention, bytes (default 256 MiB; also capped by the binding limit). */
  attentionChunkBytes?: number;
}

export interface TilingOptions {
  /**
   * 'auto' (default): one pass when every activation fits a binding of `maxBindingBytes`; else one sample at a time
   * (exact); else tiles of the largest tileSampleSize (config sample_size halved as needed) that fit.
   * true: diffusers' enable_tiling(): tiles of tileSampleSize (default sample_size) whenever the input is larger
   * than one tile, the whole batch per tile. false: one pass (LimitError when it cannot fit).
   */
  tiling?: 'auto' | boolean;
  /** Tile edge in image pixels (diffusers' tile_sample_min_size); a multiple of the downscale factor. */
  tileSampleSize?: number;
  /** diffusers' tile_overlap_factor (default 0.25). */
  tileOverlapFactor?: number;
  /** Binding budget for the plan (default min(maxStorageBufferBindingSize, maxBufferSize) of the device). */
  maxBindingBytes?: number;
  /** Module outputs of an untiled pass (names: 'decoder.up_blocks.0', 'post_quant_conv', …). */
  probe?: ActivationProbe;
  /** Progress of a sliced or tiled pass: passes done of total. */
  onProgress?: (done: number, total: number) => void;
}

export interface VaePlan {
  mode: 'full' | 'sliced' | 'tiled';
  /** Largest binding of one full pass over the whole input, bytes. */
  fullPeakBytes: number;
  limit: number;
  /** Tiled: tile edge in image pixels, tiles per sample (or per batch when !perSample). */
  tileSampleSize?: number;
  tiles?: number;
  perSample: boolean;
}

const DEFAULT_CHUNK = 256 * 2 ** 20;

export class AutoencoderKL extends Module {
  readonly config: ResolvedVaeConfig;
  readonly parts: VaeParts;
  readonly encoder?: VaeEncoder;
  readonly quantConv?: Conv2d;
  readonly decoder?: VaeDecoder;
  readonly postQuantConv?: Conv2d;
  /** Shared by both mid-block attentions; change impl / chunkBytes at any time. */
  readonly attention: VaeAttentionOptions;

  constructor(
    readonly gpu: Gpu,
    config: VaeConfigJson,
    opts: AutoencoderKLOptions = {},
  ) {
    super(new ModelContext(gpu), '');
    const cfg = (this.config = resolveVaeConfig(config));
    this.parts = opts.parts ?? 'both';
    if (!['both', 'decoder', 'encoder'].includes(this.parts)) throw new Error(`vae: parts must be 'both', 'decoder' or 'encoder', got '${this.parts}'`);
    this.attention = { impl: opts.attention ?? 'auto', chunkBytes: opts.attentionChunkBytes ?? DEFAULT_CHUNK };
    const ctx = this.ctx;
    const L = cfg.latentChannels;
    if (this.parts !== 'decoder') {
      this.encoder = new VaeEncoder(ctx, 'encoder', cfg, this.attention);
      if (cfg.useQuantConv) this.quantConv = new Conv2d(ctx, 'quant_conv', 2 * L, 2 * L, { kernel: 1 });
    }
    if (this.parts !== 'encoder') {
      if (cfg.usePostQuantConv) this.postQuantConv = new Conv2d(ctx, 'post_quant_conv', L, L, { kernel: 1 });
      this.decoder = new VaeDecoder(ctx, 'decoder', cfg, this.attention);
    }
  }

  /** Every parameter by state-dict name, with the shape the config implies. */
  get parameters(): ReadonlyMap<string, Param> {
    return this.ctx.params;
  }

  /**
   * Loads the parameters (tensor by tensor) from a safetensors source (diffusers, legacy attention names or SGM VAE
   * names), a Checkpoint (src/io/checkpoint.ts) or a name → {data, shape} map. Keys of a part this model was built
   * without are ignored; missing / unexpected / mis-shaped keys otherwise raise one StateDictError listing them all.
   */
  async loadWeights(source: WeightSource, opts: LoadWeightsOptions = {}): Promise<void> {
    await loadStateDict(this.ctx, await vaeWeightSource(source, this.parts), opts);
    this.encoder?.release();
  }

  /** Random weights on the GPU (N(0, 1/fan_in), norms 1, biases 0), for benchmarks and tests without a checkpoint. */
  initRandom(opts: RandomInitOptions = {}): RandomInitSummary {
    this.ctx.clearDerived();
    return initRandomParameters(this.gpu, this.parameters, opts);
  }

  /** Frees every parameter and the weight caches derived from them (packed conv weights). */
  dispose(): void {
    this.encoder?.release();
    this.ctx.clearDerived();
    for (const p of this.ctx.params.values()) {
      p.var?.dispose();
      p.var = undefined;
    }
  }

  // ---- synchronous passes -------------------------------------------------------------------------------------

  /** z [B, latent, h, w] (already divided by scaling_factor) → image [B, out, 8h, 8w] (SDXL), one untiled pass. */
  decodeForward(z: Var, probe?: ActivationProbe): Var {
    const decoder = this.need('decoder');
    this.checkInput('decode', z.shape, this.config.latentChannels);
    return this.withProbe(probe, () =>
      tidy(() => {
        let h = z;
        if (this.postQuantConv) {
          h = this.postQuantConv.forward(z);
          this.ctx.emit('post_quant_conv', h);
        }
        const y = decoder.forward(h);
        if (h !== z) h.dispose();
        return y;
      }),
    );
  }

  /** image [B, in, H, W] in [-1, 1] → moments [B, 2·latent, H/8, W/8] (after quant_conv), one untiled pass. */
  encodeForward(x: Var, probe?: ActivationProbe): Var {
    const encoder = this.need('encoder');
    this.checkInput('encode', x.shape, this.config.inChannels);
    return this.withProbe(probe, () =>
      tidy(() => {
        const h = encoder.forward(x);
        if (!this.quantConv) return h;
        const m = this.quantConv.forward(h);
        h.dispose();
        this.ctx.emit('quant_conv', m);
        return m;
      }),
    );
  }

  // ---- planned (sliced / tiled) passes ------------------------------------------------------------------------

  /** Image [B, out, H, W] in about [-1, 1] from latents z [B, latent, h, w] (not scaled: see decodeLatents). */
  async decode(z: Tensor, opts: TilingOptions = {}): Promise<Tensor> {
    this.need('decoder');
    const plan = this.planDecode(z.shape, opts);
    const run = (t: Tensor) => onView(t, (v) => this.decodeForward(v, plan.mode === 'full' ? opts.probe : undefined));
    if (plan.mode === 'full') return run(z);
    if (opts.probe) throw new Error('vae decode: activation probes need an untiled pass (tiling: false)');
    const g = decodeTileGeometry(plan.tileSampleSize ?? this.config.sampleSize, this.config.downscale, opts.tileOverlapFactor ?? 0.25);
    const out = await this.planned(z, plan, g, run, opts.onProgress);
    return Tensor.fromArray(this.gpu, out.data, out.shape, { label: 'decoded' });
  }

  /** The SDXL pipeline's decode: latents / scaling_factor (or ·std / scaling_factor + mean) → decode. */
  async decodeLatents(latents: Tensor, opts: TilingOptions = {}): Promise<Tensor> {
    const z = this.unscaleLatents(latents);
    try {
      return await this.decode(z, opts);
    } finally {
      z.release();
    }
  }

  /** Latent distribution of images [B, in, H, W] in [-1, 1] (tiled like decode). */
  async encode(image: Tensor, opts: TilingOptions = {}): Promise<DiagonalGaussian> {
    this.need('encoder');
    const plan = this.planEncode(image.shape, opts);
    const run = (t: Tensor) => onView(t, (v) => this.encodeForward(v, plan.mode === 'full' ? opts.probe : undefined));
    if (plan.mode !== 'full' && opts.probe) throw new Error('vae encode: activation probes need an untiled pass (tiling: false)');
    const g = encodeTileGeometry(plan.tileSampleSize ?? this.config.sampleSize, this.config.downscale, opts.tileOverlapFactor ?? 0.25);
    const moments = plan.mode === 'full' ? await readHost(run(image)) : await this.planned(image, plan, g, run, opts.onProgress);
    return DiagonalGaussian.fromMoments(this.gpu, moments);
  }

  /** z → model latents: z·scaling_factor, or (z − mean)·scaling_factor / std when the config has latent stats. */
  scaleLatents(z: Tensor): Tensor {
    const c = this.config;
    const s = this.scalar([c.scalingFactor], [1]);
    try {
      if (!c.latentsMean) return mul(z, s);
      const m = this.scalar(c.latentsMean, [1, c.latentChannels, 1, 1]);
      const sd = this.scalar(c.latentsStd!, [1, c.latentChannels, 1, 1]);
      const a = sub(z, m);
      const b = mul(a, s);
      const out = div(b, sd);
      for (const t of [m, sd, a, b]) t.release();
      return out;
    } finally {
      s.release();
    }
  }

  /** Model latents → z: latents / scaling_factor, or latents·std / scaling_factor + mean (the SDXL pipeline). */
  unscaleLatents(latents: Tensor): Tensor {
    const c = this.config;
    const s = this.scalar([c.scalingFactor], [1]);
    try {
      if (!c.latentsMean) return div(latents, s);
      const m = this.scalar(c.latentsMean, [1, c.latentChannels, 1, 1]);
      const sd = this.scalar(c.latentsStd!, [1, c.latentChannels, 1, 1]);
      const a = mul(latents, sd);
      const b = div(a, s);
      const out = add(b, m);
      for (const t of [m, sd, a, b]) t.release();
      return out;
    } finally {
      s.release();
    }
  }

  /** How decode would run latents of this shape (pure: no GPU work). */
  planDecode(latentShape: readonly number[], opts: TilingOptions = {}): VaePlan {
    this.checkInput('decode', latentShape, this.config.latentChannels);
    const { latentChannels: L, downscale: d } = this.config;
    return this.plan('decode', latentShape, opts, {
      peakOf: (b, h, w) => this.decoderPeakBytes([b, L, h, w]),
      tileIn: (ts) => Math.floor(ts / d),
    });
  }

  /** How encode would run images of this shape (pure: no GPU work). */
  planEncode(imageShape: readonly number[], opts: TilingOptions = {}): VaePlan {
    this.checkInput('encode', imageShape, this.config.inChannels);
    const C = this.config.inChannels;
    return this.plan('encode', imageShape, opts, { peakOf: (b, h, w) => this.encoderPeakBytes([b, C, h, w]), tileIn: (ts) => ts });
  }

  /** Largest tensor one decoder pass binds (activations, attention operands, packed conv weights), bytes. */
  decoderPeakBytes(latentShape: readonly number[]): number {
    const [B, L, h, w] = latentShape;
    const C = this.config.blockOutChannels;
    const rev = [...C].reverse();
    let r = h * w;
    let peak = Math.max(L, rev[0]) * r;
    rev.forEach((out, i) => {
      const inC = i === 0 ? rev[0] : rev[i - 1];
      peak = Math.max(peak, inC * r, out * r);
      if (i < rev.length - 1) {
        r *= 4;
        peak = Math.max(peak, out * r);
      }
    });
    peak = Math.max(peak, C[0] * r, this.config.outChannels * r);
    return Math.max(4 * B * peak, this.largestWeightBytes(), this.attentionScoreBytes(B, h * w));
  }

  /** Largest tensor one encoder pass binds, bytes. */
  encoderPeakBytes(imageShape: readonly number[]): number {
    const [B, Cin, H, W] = imageShape;
    const C = this.config.blockOutChannels;
    let [h, w] = [H, W];
    let peak = Math.max(Cin, C[0]) * h * w;
    C.forEach((out, i) => {
      const inC = i === 0 ? C[0] : C[i - 1];
      peak = Math.max(peak, inC * h * w, out * h * w);
      // Downsample with padding (0, 1, 0, 1): ⌊(H − 2)/2⌋ + 1 rows.
      if (i < C.length - 1) [h, w] = [Math.floor((h - 2) / 2) + 1, Math.floor((w - 2) / 2) + 1];
    });
    peak = Math.max(peak, 2 * this.config.latentChannels * h * w);
    return Math.max(4 * B * peak, this.largestWeightBytes(), this.attentionScoreBytes(B, h * w));
  }

  // ---- internals ----------------------------------------------------------------------------------------------

  /**
   * peakOf(B, h, w): largest binding of one pass over an input of that size; tileIn(ts): input pixels of a tile
   * of ts image pixels.
   */
  private plan(
    what: 'decode' | 'encode',
    shape: readonly number[],
    opts: TilingOptions,
    { peakOf, tileIn }: { peakOf: (B: number, h: number, w: number) => number; tileIn: (tileSampleSize: number) => number },
  ): VaePlan {
    const [B, , h, w] = shape;
    const gpu = this.gpu;
    const limit = opts.maxBindingBytes ?? Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
    const fullPeakBytes = peakOf(B, h, w);
    const mode = opts.tiling ?? 'auto';
    const f = opts.tileOverlapFactor ?? 0.25;
    const tiles = (ts: number) => {
      const stride = Math.floor(tileIn(ts) * (1 - f));
      return tileOrigins(h, stride).length * tileOrigins(w, stride).length;
    };
    const full: VaePlan = { mode: 'full', fullPeakBytes, limit, perSample: false };
    if (mode === false) {
      if (fullPeakBytes > limit)
        throw new LimitError(
          'maxStorageBufferBindingSize',
          fullPeakBytes,
          limit,
          `vae ${what} of ${shapeStr(shape)} in one pass (use tiling: 'auto' or true)`,
        );
      return full;
    }
    if (mode === true) {
      const ts = this.checkTileSize(opts.tileSampleSize ?? this.config.sampleSize);
      const t = tileIn(ts);
      if (h <= t && w <= t) return full;
      return { mode: 'tiled', fullPeakBytes, limit, tileSampleSize: ts, tiles: tiles(ts), perSample: false };
    }
    if (fullPeakBytes <= limit) return full;
    if (B > 1 && peakOf(1, h, w) <= limit) return { mode: 'sliced', fullPeakBytes, limit, perSample: true };
    // The largest tile (sample_size, halved while it does not fit, down to 4 latents) unless one is given.
    const d = this.config.downscale;
    const tilePeakOf = (ts: number) => peakOf(1, Math.min(h, tileIn(ts)), Math.min(w, tileIn(ts)));
    let ts = opts.tileSampleSize ?? this.config.sampleSize;
    if (opts.tileSampleSize === undefined) while (tilePeakOf(ts) > limit && ts / 2 >= 4 * d && (ts / 2) % d === 0) ts /= 2;
    this.checkTileSize(ts);
    const tilePeak = tilePeakOf(ts);
    if (tilePeak > limit)
      throw new LimitError('maxStorageBufferBindingSize', tilePeak, limit, `vae ${what} of ${shapeStr(shape)} in tiles of ${ts} pixels`);
    return { mode: 'tiled', fullPeakBytes, limit, tileSampleSize: ts, tiles: tiles(ts), perSample: true };
  }

  private checkTileSize(ts: number): number {
    const d = this.config.downscale;
    if (!Number.isInteger(ts) || ts < d || ts % d) throw new RangeError(`vae: tileSampleSize ${ts} must be a positive multiple of ${d} (pixels per latent)`);
    return ts;
  }

  /** Runs a sliced or tiled plan on a host-side copy of `input`; returns the joined output on the host. */
  private async planned(
    input: Tensor,
    plan: VaePlan,
    g: TileGeometry,
    run: (t: Tensor) => Tensor,
    onProgress?: TilingOptions['onProgress'],
  ): Promise<HostTensor> {
    const host: HostTensor = { data: await input.toArray(), shape: input.shape as HostTensor['shape'] };
    const pass = (x: HostTensor): Promise<HostTensor> => {
      const t = Tensor.fromArray(this.gpu, x.data, x.shape, { label: 'vae.tile' });
      try {
        return readHost(run(t));
      } finally {
        t.release();
      }
    };
    const samples = plan.perSample ? splitBatch(host) : [host];
    const perSample = plan.mode === 'tiled' ? plan.tiles! : 1;
    const total = samples.length * perSample;
    const outs: HostTensor[] = [];
    for (const [k, s] of samples.entries()) {
      if (plan.mode === 'sliced') {
        outs.push(await pass(s));
        onProgress?.(k + 1, total);
      } else outs.push(await tiledApply(s, g, pass, (done) => onProgress?.(k * perSample + done, total)));
    }
    return joinBatch(outs);
  }

  private need<K extends 'encoder' | 'decoder'>(part: K): NonNullable<this[K]> {
    const m = this[part];
    if (!m) throw new Error(`vae: this model was built with parts: '${this.parts}' and has no ${part}`);
    return m as NonNullable<this[K]>;
  }

  private checkInput(what: string, shape: readonly number[], channels: number): void {
    if (shape.length !== 4 || shape[1] !== channels || shape.some((d) => !Number.isInteger(d) || d < 1))
      throw new ShapeError(`vae ${what}: input ${shapeStr(shape)} must be [B, ${channels}, H, W]`);
  }

  private withProbe<T>(probe: ActivationProbe | undefined, fn: () => T): T {
    this.ctx.probe = probe;
    try {
      return fn();
    } finally {
      this.ctx.probe = undefined;
    }
  }

  private scalar(values: readonly number[], shape: number[]): Tensor {
    return Tensor.fromArray(this.gpu, values, shape, { label: 'vae.latent_scale' });
  }

  private largestWeightBytes(): number {
    let max = 0;
    for (const p of this.ctx.params.values()) {
      const n = p.shape.reduce((a, b) => a * b, 1);
      // The encoder's downsample convs run with a padded 4×4 kernel.
      max = Math.max(max, p.name.includes('downsamplers') && p.shape.length === 4 ? (n * 16) / 9 : n);
    }
    return 4 * max;
  }

  /** Score chunk of the matmul attention (flash keeps none), as VaeAttention sizes it. */
  private attentionScoreBytes(B: number, tokens: number): number {
    if (!this.config.midBlockAddAttention) return 0;
    const C = this.config.blockOutChannels.at(-1)!;
    const impl = this.attention.impl === 'auto' ? this.resolvedAttention(C) : this.attention.impl;
    if (impl === 'flash') return 0;
    const lim = this.gpu.limits;
    const chunk = Math.min(this.attention.chunkBytes, lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    const rowBytes = B * tokens * 4;
    const rows = Math.max(1, Math.floor(chunk / rowBytes));
    return Math.min(rows, tokens) * rowBytes;
  }

  private resolvedAttention(C: number): 'flash' | 'matmul' {
    const attn = this.decoder?.midBlock.attention ?? this.encoder?.midBlock.attention;
    return attn && attn.channels === C ? attn.resolvedImpl() : 'flash';
  }
}

/**
 * Runs fn on a Var over a view of t and returns its result as a tensor no tidy scope owns (the caller's tensor and
 * the result are both independent of the Vars made here).
 */
function onView(t: Tensor, fn: (v: Var) => Var): Tensor {
  const v = new Var(t.reshape(t.shape));
  try {
    const y = fn(v);
    const out = y.value.reshape(y.shape);
    y.dispose();
    return out;
  } finally {
    v.dispose();
  }
}

/** Reads a tensor to the host and releases it. */
async function readHost(t: Tensor): Promise<HostTensor> {
  try {
    return { data: await t.toArray(), shape: t.shape as HostTensor['shape'] };
  } finally {
    t.release();
  }
}

function splitBatch(t: HostTensor): HostTensor[] {
  const [B, C, H, W] = t.shape;
  const n = C * H * W;
  return Array.from({ length: B }, (_, b) => ({ data: t.data.slice(b * n, (b + 1) * n), shape: [1, C, H, W] as HostTensor['shape'] }));
}

function joinBatch(parts: HostTensor[]): HostTensor {
  if (parts.length === 1) return parts[0];
  const [, C, H, W] = parts[0].shape;
  const B = parts.reduce((s, p) => s + p.shape[0], 0);
  const data = new Float32Array(B * C * H * W);
  let off = 0;
  for (const p of parts) {
    data.set(p.data, off);
    off += p.data.length;
  }
  return { data, shape: [B, C, H, W] };
}
