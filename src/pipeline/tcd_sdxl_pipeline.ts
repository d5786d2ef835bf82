// Prompt → images with SDXL and a TCD LoRA (or the baseline samplers), diffusers' StableDiffusionXLPipeline semantics
// (tcd.md §6, sdxl.md §7.3):
//
//   const pipe = await TcdSdxlPipeline.fromPretrained(gpu, 'sdxl-base/', { loras: [{ path: 'tcd.safetensors' }] });
//   const { images, timings } = await pipe.generate({ prompt: 'a photo of a cat', seed: 7 });   // 4 steps, γ 0.3
//   // browsers: TcdSdxlPipeline.fromSources(gpu, await fetchSource('/models/sdxl/'))  (or fileListSource(input.files))
//
// Prompt encoding with both CLIP encoders (CFG negatives: zeros under force_zeros_for_empty_prompt), micro-conditioning
// add_time_ids = [h, w, 0, 0, h, w], initial latents N(0, 1)·init_noise_sigma of [B, 4, h/8, w/8] from the counter-based
// GPU generator, the denoising loop (src/pipeline/denoise.ts), then the VAE decode (tiled when needed) to 8-bit RGB.
// Randomness: image b uses seed + b; its initial latents are stream 0 and the noise of step i stream i + 1, so an image
// of a batch equals the single-image run with its seed, and every run is reproducible.
import type { Gpu } from '../../runtime/device.js';
import type { DType } from '../dtype.js';
import { type DTypeChoice, resolveDType } from '../kernels/f16_support.js';
import { type ByteSource, fileSource } from '../io/byte_source.js';
import { type Checkpoint, openCheckpoint } from '../io/checkpoint.js';
import { type LoraSet, parseLora } from '../io/lora_format.js';
import { type ModelSource, openSourceCheckpoint, sourcePath } from '../io/model_source.js';
import { scale as scaleTensor } from '../kernels/elementwise.js';
import { randomNormal } from '../kernels/random.js';
import { concat } from '../kernels/resample.js';
import type { Scheduler } from '../schedulers/index.js';
import { Tensor } from '../tensor.js';
import { ClipTextModel } from '../text/clip_text_model.js';
import type { ClipTextConfigJson } from '../text/clip_config.js';
import { ClipTokenizer } from '../text/clip_tokenizer.js';
import { encodePrompt } from '../text/encode_prompt.js';
import type { UNetConfigJson } from '../unet/config.js';
import { UNet2DConditionModel } from '../unet/unet.js';
import { AutoencoderKL } from '../vae/autoencoder_kl.js';
import type { VaeConfigJson } from '../vae/config.js';
import { type RgbImage, toImage } from '../vae/image.js';
import { type Conditioning, denoise, usesGuidance } from './denoise.js';
import { PipelineError } from './errors.js';
import { stackLoras } from './lora_stack.js';
import { MODEL_COMPONENTS, type ModelComponent, TOKENIZER_DIRS, checkLayout, readTokenizerFiles, resolveLayout } from './model_folder.js';
import { type SchedulerName, SCHEDULER_NAMES, defaultEta, isSchedulerName, makeScheduler, setSchedule } from './scheduler_choice.js';

export type Stage = 'load' | 'text' | 'denoise' | 'decode';

export interface ProgressEvent {
  stage: Stage;
  /** Units done of total in this stage (load: components, denoise: steps, decode: VAE passes). */
  done: number;
  total: number;
  /** What was just done (a component name, a timestep). */
  detail?: string;
}

export type ProgressFn = (e: ProgressEvent) => void;

export interface LoraSpec {
  path: string;
  /** Multiplier of the file's alpha / rank scale (diffusers adapter weight / lora_scale); default 1. */
  scale?: number;
}

interface LoadOptions {
  /** 'fp16' loads *.fp16.safetensors (converted to f32); default: the plain file, else whatever is there. */
  variant?: 'fp16' | 'default';
  /**
   * The UNet's storage type (see UNetModelOptions.dtype). Default 'auto': f16 where the device has shader-f16 and
   * passes the f16 probe (resolveDType), else f32 with the reason logged (console.warn). The text encoders and the
   * VAE stay f32: the UNet's output is cast to f32, so the decode is upcast as diffusers does for SDXL's VAE, which
   * overflows in f16.
   */
  dtype?: DTypeChoice;
  scheduler?: SchedulerName;
  onProgress?: ProgressFn;
}

export interface PretrainedOptions extends LoadOptions {
  /** UNet LoRAs, applied unfused (several are stacked exactly, see lora_stack.ts). */
  loras?: readonly LoraSpec[];
  /** With a single .safetensors checkpoint: the diffusers folder that supplies configs and tokenizers. */
  configFolder?: string;
}

export interface SourceLoraSpec {
  /** The LoRA file (blobSource of a File, urlSource, bytesSource); closed once parsed. */
  source: ByteSource;
  /** Multiplier of the file's alpha / rank scale; default 1. */
  scale?: number;
}

export interface SourceOptions extends LoadOptions {
  /** UNet LoRAs, applied unfused. */
  loras?: readonly SourceLoraSpec[];
}

interface LoraToLoad {
  name: string;
  scale?: number;
  open(): Promise<ByteSource>;
}

/** What the loader needs, whatever the host: checked configs, tokenizers, each model's weights, the LoRAs. */
interface LoadPlan {
  configs: Record<ModelComponent, Record<string, unknown>>;
  schedulerConfig: Record<string, unknown>;
  modelIndex: Record<string, unknown>;
  tokenizers(): Promise<[ClipTokenizer, ClipTokenizer]>;
  open(component: ModelComponent): Promise<Checkpoint>;
  loras: readonly LoraToLoad[];
}

export interface PipelineParts {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  textEncoders: [ClipTextModel, ClipTextModel];
  tokenizers: [ClipTokenizer, ClipTokenizer];
  /** scheduler/scheduler_config.json. */
  schedulerConfig: Record<string, unknown>;
  scheduler?: SchedulerName;
  /** model_index.json force_zeros_for_empty_prompt (SDXL: true). */
  forceZerosForEmptyPrompt?: boolean;
}

/** Noise to use instead of the generator (tests): arrays or tensors shaped like the latents. */
export interface InjectedNoise {
  initial?: Float32Array | Tensor;
  /** Step index → noise (only asked for on steps that re-noise). */
  step?: (index: number) => Float32Array | Tensor;
}

export interface GenerateOptions {
  prompt: string | readonly string[];
  /** Used only with guidance (guidanceScale > 1); absent → zero embeddings (force_zeros_for_empty_prompt). */
  negativePrompt?: string | readonly string[];
  /** Default 4. */
  steps?: number;
  /** TCD gamma (default 0.3) / DDIM eta (default 0); other samplers ignore it. */
  eta?: number;
  /** Classifier-free guidance when > 1; default 0 (TCD is used without guidance). */
  guidanceScale?: number;
  /** Default 0. Image b of the batch uses seed + b. */
  seed?: number;
  /** Default: the UNet config's sample_size × the VAE's scale factor, as diffusers (SDXL: 1024); multiples of 8. */
  width?: number;
  height?: number;
  /** Images per prompt (default 1). */
  batch?: number;
  /** TCD / LCM: distillation grid size (default the config's 50; an explicit value switches TCD to the dense grid). */
  originalInferenceSteps?: number;
  /** TCD / LCM set_timesteps strength in (0, 1] (default 1). */
  strength?: number;
  /** Overrides the pipeline's sampler for this run. */
  scheduler?: SchedulerName;
  noise?: InjectedNoise;
  onProgress?: ProgressFn;
  /** Also time each step's UNet evaluation and scheduler step apart (one more GPU sync per step). */
  stageTimings?: boolean;
}

export interface GeneratedImage extends RgbImage {
  seed: number;
  prompt: string;
}

export interface Timings {
  /** fromPretrained (0 for a pipeline built from parts). */
  loadMs: number;
  textEncodeMs: number;
  /** One entry per denoising step (UNet + scheduler, synchronised). */
  stepMs: number[];
  /** With stageTimings: each step's UNet evaluation (input scaling, UNet, guidance) and scheduler step. */
  unetMs?: number[];
  schedulerMs?: number[];
  /** VAE decode + readback to 8-bit RGB. */
  decodeMs: number;
  /** Of decodeMs: the VAE decode (tiled when needed) until the image is on the GPU, and its readback to bytes. */
  vaeDecodeMs: number;
  readbackMs: number;
  /** This generate() call. */
  totalMs: number;
}

export interface GenerateResult {
  images: GeneratedImage[];
  timesteps: number[];
  scheduler: SchedulerName;
  eta: number;
  guidanceScale: number;
  timings: Timings;
}

const MAX_U32 = 0xffffffff;

export class TcdSdxlPipeline {
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  readonly textEncoders: [ClipTextModel, ClipTextModel];
  readonly tokenizers: [ClipTokenizer, ClipTokenizer];
  readonly schedulerConfig: Record<string, unknown>;
  scheduler: SchedulerName;
  readonly forceZerosForEmptyPrompt: boolean;
  /** Time fromPretrained took, ms. */
  loadMs = 0;
  onProgress?: ProgressFn;

  constructor(
    readonly gpu: Gpu,
    parts: PipelineParts,
  ) {
    this.unet = parts.unet;
    this.vae = parts.vae;
    this.textEncoders = parts.textEncoders;
    this.tokenizers = parts.tokenizers;
    this.schedulerConfig = parts.schedulerConfig;
    this.scheduler = parts.scheduler ?? 'tcd';
    this.forceZerosForEmptyPrompt = parts.forceZerosForEmptyPrompt ?? true;
    checkSchedulerName(this.scheduler);
    checkFit(this.unet, this.vae, this.textEncoders);
    makeScheduler(this.scheduler, this.schedulerConfig);
  }

  /**
   * Node: loads a diffusers SDXL folder (or a single .safetensors checkpoint with opts.configFolder). The layout and
   * every LoRA are checked before weights are read; a missing part is named in the error.
   */
  static async fromPretrained(gpu: Gpu, path: string, opts: PretrainedOptions = {}): Promise<TcdSdxlPipeline> {
    const t0 = performance.now();
    checkSchedulerName(opts.scheduler ?? 'tcd');
    const layout = await resolveLayout(path, { configFolder: opts.configFolder });
    return TcdSdxlPipeline.load(gpu, t0, opts, {
      ...layout,
      tokenizers: async () => [await ClipTokenizer.fromFolder(layout.tokenizerDirs[0]), await ClipTokenizer.fromFolder(layout.tokenizerDirs[1])],
      open: (c) => openCheckpoint(layout.weights[c], { component: c, variant: opts.variant }),
      loras: (opts.loras ?? []).map((l) => ({
        name: l.path,
        scale: l.scale,
        open: () =>
          fileSource(l.path).catch((e: NodeJS.ErrnoException) => {
            throw new PipelineError(e.code === 'ENOENT' ? `LoRA ${l.path}: no such file` : `LoRA ${l.path}: ${e.message}`);
          }),
      })),
    });
  }

  /**
   * Any host: loads a diffusers SDXL folder given as a ModelSource (src/io/model_source.ts: dirSource in Node,
   * fetchSource from a web server, fileListSource for files picked in a browser). Same checks as fromPretrained.
   */
  static async fromSources(gpu: Gpu, source: ModelSource, opts: SourceOptions = {}): Promise<TcdSdxlPipeline> {
    const t0 = performance.now();
    checkSchedulerName(opts.scheduler ?? 'tcd');
    const layout = await checkLayout(source, { variant: opts.variant });
    const tokenizer = async (dir: string) => new ClipTokenizer(await readTokenizerFiles(source, dir), { name: sourcePath(source, dir) });
    return TcdSdxlPipeline.load(gpu, t0, opts, {
      ...layout,
      tokenizers: async () => [await tokenizer(TOKENIZER_DIRS[0]), await tokenizer(TOKENIZER_DIRS[1])],
      open: (c) => openSourceCheckpoint(source, c, { component: c, variant: opts.variant }),
      loras: (opts.loras ?? []).map((l) => ({ name: l.source.name, scale: l.scale, open: async () => l.source })),
    });
  }

  /** Builds the models from a checked layout: tokenizers, configs → LoRAs checked → weights, each step reported. */
  private static async load(gpu: Gpu, t0: number, opts: LoadOptions, plan: LoadPlan): Promise<TcdSdxlPipeline> {
    const scheduler = opts.scheduler ?? 'tcd';
    const loras = plan.loras;
    for (const l of loras)
      if (l.scale !== undefined && !Number.isFinite(l.scale)) throw new PipelineError(`LoRA ${l.name}: scale must be a finite number, got ${l.scale}`);
    const total = 2 + MODEL_COMPONENTS.length + loras.length;
    let done = 0;
    const progress = (detail: string) => opts.onProgress?.({ stage: 'load', done: ++done, total, detail });

    const tokenizers = await plan.tokenizers();
    progress('tokenizers');
    // Model shapes come from the configs alone: LoRAs are parsed and checked against them before any weights load.
    const dtype = await resolveDType(gpu, opts.dtype ?? 'auto');
    const unet = new UNet2DConditionModel(gpu, plan.configs.unet as UNetConfigJson, { dtype });
    const vae = new AutoencoderKL(gpu, plan.configs.vae as VaeConfigJson, { parts: 'decoder' });
    const loraSets: { set: LoraSet; weight: number }[] = [];
    for (const l of loras) {
      loraSets.push({ set: await readLora(l, unet), weight: l.scale ?? 1 });
      progress(`LoRA ${l.name}`);
    }
    const owned: { dispose(): void }[] = [unet, vae];
    try {
      const loadInto = async (c: ModelComponent, load: (src: Checkpoint) => Promise<unknown>) => {
        const ckpt = await plan.open(c);
        try {
          await load(ckpt);
        } finally {
          await ckpt.close();
        }
        progress(c);
      };
      const encoders: ClipTextModel[] = [];
      await loadInto('text_encoder', async (src) => {
        encoders.push(await ClipTextModel.load(gpu, plan.configs.text_encoder as ClipTextConfigJson, src, { withProjection: false }));
        owned.push(encoders[0]);
      });
      await loadInto('text_encoder_2', async (src) => {
        encoders.push(await ClipTextModel.load(gpu, plan.configs.text_encoder_2 as ClipTextConfigJson, src, { withProjection: true }));
        owned.push(encoders[1]);
      });
      await loadInto('unet', (src) => unet.loadWeights(src));
      if (loraSets.length) unet.attachLora(stackLoras(loraSets), { trainable: false });
      await loadInto('vae', (src) => vae.loadWeights(src));
      const pipe = new TcdSdxlPipeline(gpu, {
        unet,
        vae,
        textEncoders: encoders as [ClipTextModel, ClipTextModel],
        tokenizers,
        schedulerConfig: plan.schedulerConfig,
        scheduler,
        forceZerosForEmptyPrompt: plan.modelIndex.force_zeros_for_empty_prompt !== false,
      });
      progress('ready');
      await gpu.sync();
      pipe.loadMs = performance.now() - t0;
      pipe.onProgress = opts.onProgress;
      return pipe;
    } catch (e) {
      owned.forEach((m) => m.dispose());
      throw e;
    }
  }

  /** Frees every model's weights. */
  dispose(): void {
    this.unet.dispose();
    this.vae.dispose();
    this.textEncoders.forEach((m) => m.dispose());
  }

  async generate(opts: GenerateOptions): Promise<GenerateResult> {
    const t0 = performance.now();
    const o = this.resolve(opts);
    const gpu = this.gpu;
    const progress = opts.onProgress ?? this.onProgress;
    const timings: Timings = { loadMs: this.loadMs, textEncodeMs: 0, stepMs: [], decodeMs: 0, vaeDecodeMs: 0, readbackMs: 0, totalMs: 0 };
    if (opts.stageTimings) [timings.unetMs, timings.schedulerMs] = [[], []];
    const scheduler = makeScheduler(o.scheduler, this.schedulerConfig);
    setSchedule(scheduler, o.steps, { originalInferenceSteps: o.originalInferenceSteps, strength: o.strength });

    // 1. Text.
    let t = performance.now();
    progress?.({ stage: 'text', done: 0, total: 1 });
    const cond = this.encode(o.prompts, o.negatives, o.cfg, o.height, o.width);
    await gpu.sync();
    timings.textEncodeMs = performance.now() - t;
    progress?.({ stage: 'text', done: 1, total: 1 });

    let latents: Tensor | undefined;
    let final: Tensor | undefined;
    let image: Tensor | undefined;
    try {
      // 2. Initial latents and the loop.
      const L = this.unet.config.inChannels;
      const factor = this.vae.config.downscale;
      const shape = [o.prompts.length, L, o.height / factor, o.width / factor];
      latents = this.initialLatents(shape, o.seeds, scheduler, opts.noise?.initial);
      const steps = scheduler.timesteps.length;
      progress?.({ stage: 'denoise', done: 0, total: steps });
      t = performance.now();
      let tModel = t;
      final = await denoise({
        unet: this.unet,
        scheduler,
        latents,
        cond,
        guidanceScale: o.guidanceScale,
        eta: o.eta,
        noise: (i) => this.stepNoise(shape, o.seeds, i, opts.noise?.step),
        afterModel: opts.stageTimings
          ? async () => {
              await gpu.sync();
              tModel = performance.now();
              timings.unetMs!.push(tModel - t);
            }
          : undefined,
        onStep: async ({ index, timestep }) => {
          await gpu.sync();
          const now = performance.now();
          timings.stepMs.push(now - t);
          timings.schedulerMs?.push(now - tModel);
          t = now;
          progress?.({ stage: 'denoise', done: index + 1, total: steps, detail: `t=${timestep}` });
        },
      });

      // 3. Decode.
      t = performance.now();
      progress?.({ stage: 'decode', done: 0, total: 1 });
      // Sliced / tiled decodes report each pass.
      image = await this.vae.decodeLatents(final, { onProgress: (done, total) => progress?.({ stage: 'decode', done, total, detail: 'VAE pass' }) });
      await gpu.sync();
      timings.vaeDecodeMs = performance.now() - t;
      const images: GeneratedImage[] = [];
      for (let b = 0; b < o.prompts.length; b++) images.push({ ...(await toImage(image, b)), seed: o.seeds[b], prompt: o.prompts[b] });
      timings.decodeMs = performance.now() - t;
      timings.readbackMs = timings.decodeMs - timings.vaeDecodeMs;
      progress?.({ stage: 'decode', done: 1, total: 1 });
      timings.totalMs = performance.now() - t0;
      return { images, timesteps: [...scheduler.timesteps], scheduler: o.scheduler, eta: o.eta, guidanceScale: o.guidanceScale, timings };
    } finally {
      for (const x of [cond.promptEmbeds, cond.textEmbeds, cond.timeIds, latents, final, image]) x?.release();
    }
  }

  /** Checks and fills in the options; every problem is a PipelineError naming the option. */
  private resolve(opts: GenerateOptions) {
    const scheduler = opts.scheduler ?? this.scheduler;
    checkSchedulerName(scheduler);
    const int = (name: string, v: number | undefined, dflt: number, min: number) => {
      const x = v ?? dflt;
      if (!Number.isInteger(x) || x < min) throw new PipelineError(`${name} must be an integer ≥ ${min}, got ${x}`);
      return x;
    };
    // As diffusers: the UNet's sample_size × the VAE's scale factor (SDXL: 128 × 8 = 1024).
    const ss = this.unet.config.sampleSize;
    if ((opts.width === undefined || opts.height === undefined) && !ss)
      throw new PipelineError('width / height not given and the UNet config has no sample_size to default them from: pass width and height');
    const width = int('width', opts.width, (ss?.[1] ?? 0) * this.vae.config.downscale, 8);
    const height = int('height', opts.height, (ss?.[0] ?? 0) * this.vae.config.downscale, 8);
    const factor = Math.max(8, this.vae.config.downscale);
    for (const [name, v] of [['width', width], ['height', height]] as const)
      if (v % factor !== 0)
        throw new PipelineError(`${name} ${v} is not a multiple of ${factor} (latents are 1/${this.vae.config.downscale} of the image size); try ${Math.round(v / factor) * factor || factor}`);
    const steps = int('steps', opts.steps, 4, 1);
    const batch = int('batch', opts.batch, 1, 1);
    const seed = int('seed', opts.seed, 0, 0);
    const guidanceScale = opts.guidanceScale ?? 0;
    if (!Number.isFinite(guidanceScale) || guidanceScale < 0) throw new PipelineError(`guidanceScale must be a finite number ≥ 0, got ${guidanceScale}`);
    const eta = opts.eta ?? defaultEta(scheduler);
    if (!Number.isFinite(eta) || eta < 0) throw new PipelineError(`eta must be a finite number ≥ 0, got ${eta}`);
    const basePrompts = typeof opts.prompt === 'string' ? [opts.prompt] : [...opts.prompt];
    if (basePrompts.length === 0 || basePrompts.some((p) => typeof p !== 'string')) throw new PipelineError('prompt must be a string or a non-empty list of strings');
    // Images per prompt, prompt-major (diffusers' num_images_per_prompt order).
    const prompts = basePrompts.flatMap((p) => new Array<string>(batch).fill(p));
    if (seed + prompts.length - 1 > MAX_U32) throw new PipelineError(`seed ${seed} + ${prompts.length - 1} images exceeds 2^32 − 1`);
    const seeds = prompts.map((_, b) => seed + b);
    const cfg = usesGuidance(guidanceScale);
    let negatives: string[] | undefined;
    if (cfg && opts.negativePrompt !== undefined) {
      const neg = typeof opts.negativePrompt === 'string' ? [opts.negativePrompt] : [...opts.negativePrompt];
      if (neg.length !== 1 && neg.length !== basePrompts.length)
        throw new PipelineError(`negativePrompt has ${neg.length} entries; expected 1 or one per prompt (${basePrompts.length})`);
      negatives = basePrompts.flatMap((_, i) => new Array<string>(batch).fill(neg.length === 1 ? neg[0] : neg[i]));
    }
    return { scheduler, width, height, steps, seeds, guidanceScale, eta, prompts, negatives, cfg, originalInferenceSteps: opts.originalInferenceSteps, strength: opts.strength };
  }

  /** Prompt embeddings, pooled embeddings and add_time_ids for the UNet ([uncond; cond] with guidance). */
  private encode(prompts: string[], negatives: string[] | undefined, cfg: boolean, h: number, w: number): Conditioning {
    const enc = encodePrompt(this.tokenizers, this.textEncoders, prompts, negatives, {
      classifierFreeGuidance: cfg,
      forceZerosForEmptyPrompt: this.forceZerosForEmptyPrompt,
    });
    const rows = cfg ? 2 * prompts.length : prompts.length;
    const timeIds = Tensor.fromArray(this.gpu, new Array(rows).fill(addTimeIds(h, w)).flat(), [rows, 6], { label: 'add_time_ids' });
    if (!cfg) return { promptEmbeds: enc.promptEmbeds, textEmbeds: enc.pooledPromptEmbeds, timeIds };
    const cond: Conditioning = {
      promptEmbeds: concat(enc.negativePromptEmbeds!, enc.promptEmbeds, 0),
      textEmbeds: concat(enc.negativePooledPromptEmbeds!, enc.pooledPromptEmbeds, 0),
      timeIds,
    };
    enc.release();
    return cond;
  }

  private initialLatents(shape: number[], seeds: number[], scheduler: Scheduler, injected?: Float32Array | Tensor): Tensor {
    const x = injected !== undefined ? this.injected(injected, shape, 'initial latents') : perImageNormal(this.gpu, shape, seeds, 0, 'latents');
    const sigma = scheduler.initNoiseSigma;
    if (sigma === 1) return x;
    const scaled = scaleTensor(x, sigma);
    x.release();
    return scaled;
  }

  private stepNoise(shape: number[], seeds: number[], index: number, injected?: (i: number) => Float32Array | Tensor): Tensor {
    if (injected) return this.injected(injected(index), shape, `noise of step ${index}`);
    return perImageNormal(this.gpu, shape, seeds, index + 1, `noise${index}`);
  }

  /** An injected array / tensor as a tensor the caller may release (tensors are viewed, not taken). */
  private injected(v: Float32Array | Tensor, shape: number[], what: string): Tensor {
    const n = shape.reduce((p, d) => p * d, 1);
    if (v instanceof Tensor) {
      if (v.size !== n) throw new PipelineError(`${what}: ${v.size} values for latents of shape [${shape}]`);
      return v.reshape(shape);
    }
    if (v.length !== n) throw new PipelineError(`${what}: ${v.length} values for latents of shape [${shape}]`);
    return Tensor.fromArray(this.gpu, v, shape, { label: what });
  }
}

/** SDXL micro-conditioning [original_h, original_w, crop_top, crop_left, target_h, target_w] at the defaults. */
export function addTimeIds(height: number, width: number): number[] {
  return [height, width, 0, 0, height, width];
}

/** N(0, 1) of shape [B, ...]: row b from (seeds[b], stream), so each image's noise is independent of the batch. */
export function perImageNormal(gpu: Gpu, shape: readonly number[], seeds: readonly number[], stream: number, label: string): Tensor {
  const row = [1, ...shape.slice(1)];
  let out = randomNormal(gpu, row, { seed: seeds[0], stream }, 0, 1, label);
  for (let b = 1; b < seeds.length; b++) {
    const next = randomNormal(gpu, row, { seed: seeds[b], stream }, 0, 1, label);
    const joined = concat(out, next, 0);
    out.release();
    next.release();
    out = joined;
  }
  return out;
}

function checkSchedulerName(name: string): asserts name is SchedulerName {
  if (!isSchedulerName(name)) throw new PipelineError(`unknown scheduler '${name}'; expected one of ${SCHEDULER_NAMES.join(', ')}`);
}

/** The models must fit each other: text widths vs the UNet's cross attention and added embedding, latent channels. */
function checkFit(unet: UNet2DConditionModel, vae: AutoencoderKL, enc: readonly [ClipTextModel, ClipTextModel]): void {
  const problems: string[] = [];
  const c = unet.config;
  const levels = [...c.down, ...c.up, ...(c.mid ? [c.mid] : [])].flatMap((b) => (b.attention ? [b.attention.crossAttentionDim] : []));
  const hidden = enc[0].config.hiddenSize + enc[1].config.hiddenSize;
  const cross = [...new Set(levels)].filter((d) => d !== hidden);
  if (cross.length)
    problems.push(`unet cross_attention_dim ${cross.join(', ')} ≠ text_encoder hidden_size ${enc[0].config.hiddenSize} + text_encoder_2 hidden_size ${enc[1].config.hiddenSize}`);
  const tt = unet.config.textTime;
  if (!tt) problems.push('unet has no text_time added embedding (addition_embed_type "text_time"): not an SDXL UNet');
  else if (enc[1].config.projectionDim + 6 * tt.addTimeDim !== tt.projectionInputDim)
    problems.push(
      `unet projection_class_embeddings_input_dim ${tt.projectionInputDim} ≠ text_encoder_2 projection_dim ${enc[1].config.projectionDim} + 6 × addition_time_embed_dim ${tt.addTimeDim}`,
    );
  if (!enc[1].config.withProjection) problems.push('text_encoder_2 has no text_projection (SDXL: CLIPTextModelWithProjection)');
  if (vae.config.latentChannels !== unet.config.inChannels || vae.config.latentChannels !== unet.config.outChannels)
    problems.push(`vae latent_channels ${vae.config.latentChannels} ≠ unet in/out channels ${unet.config.inChannels}/${unet.config.outChannels}`);
  if (problems.length) throw new PipelineError(`the pipeline's models do not fit together:\n  ${problems.join('\n  ')}`);
}

/** Parses a UNet LoRA against the model's layers (its source is closed after). */
async function readLora(l: LoraToLoad, unet: UNet2DConditionModel): Promise<LoraSet> {
  const src = await l.open();
  try {
    return await parseLora(src, { component: 'unet', modules: unet.loraModules() });
  } finally {
    await src.close();
  }
}
