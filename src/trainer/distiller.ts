// TcdDistiller: the TCD LoRA distillation loop (tcd.md §5; Algorithm 2 of the paper) for engine authors; `tcd
// distill` is a thin shell over it.
//
//   const d = await TcdDistiller.create(gpu, { model: 'sdxl-folder', data: 'images/', output: 'run/', maxSteps: 1000 });
//   await d.train({ onStep: (r) => console.log(r.loss) });   // checkpoints, JSONL log, sample grids
//   d.dispose();
//
// Each optimizer update draws batchSize × gradAccum samples from the data stream; sample k of the stream (k counts
// from the start of the run) is dataset item perm_e[k mod N] of epoch e = ⌊k / N⌋, with a permutation seeded by
// (seed, e), and all its randomness — crop / flip, the VAE's latent sample, n, m, w and the noise — is keyed by
// (seed, k). So the step count and the seed are the whole RNG state, and a resumed run repeats the uninterrupted one
// bit for bit.
import type { Gpu } from '../../runtime/device.js';
import type { LoraWeights } from '../autograd/lora_ops.js';
import { LossScaler, type LossScalerOptions } from '../autograd/loss_scaler.js';
import { Var } from '../autograd/tape.js';
import type { DType } from '../dtype.js';
import { type DTypeChoice, resolveDType } from '../kernels/f16_support.js';
import { openCheckpoint } from '../io/checkpoint.js';
import type { LoraToSave } from '../io/lora_format.js';
import { LORA_WEIGHT_NAME, encodeLoraTensors } from '../io/lora_format.js';
import { encodeSafetensors, writeFileAtomic } from '../io/safetensors.js';
import { add, scale } from '../kernels/elementwise.js';
import { resolveLayout } from '../pipeline/model_folder.js';
import { TcdSdxlPipeline } from '../pipeline/tcd_sdxl_pipeline.js';
import { encodePng } from '../pipeline/png.js';
import { fromDiffusersConfig } from '../schedulers/diffusers_config.js';
import { type NoiseScheduleConfig, alphasCumprod } from '../schedulers/noise_schedule.js';
import { ClipTextModel } from '../text/clip_text_model.js';
import type { ClipTextConfigJson } from '../text/clip_config.js';
import { ClipTokenizer } from '../text/clip_tokenizer.js';
import type { UNetConfigJson } from '../unet/config.js';
import { UNet2DConditionModel } from '../unet/unet.js';
import { AutoencoderKL } from '../vae/autoencoder_kl.js';
import type { VaeConfigJson } from '../vae/config.js';
import type { RgbImage } from '../vae/image.js';
import { type LoadedCheckpoint, type TrainingState, assertWritableFolder, listCheckpoints, loadCheckpoint, pruneCheckpoints, saveCheckpoint } from './checkpoint.js';
import { LatentCache, LatentCacheSource, SeededRng, deriveSeed, listCaptionedImages, modelFingerprint, nextFloat, nextInt, shuffledIndices } from './data/index.js';
import { dirSource } from '../io/model_source.js';
import { DdimSolver } from './ddim_solver.js';
import { EncodingSource, type ExampleSource, type TrainingExample, normalArray } from './examples.js';
import { LoraAdamW } from './lora_optimizer.js';
import { type LrScheduleName, learningRate } from './lr_schedule.js';
import { type LossType, TEACHER_BATCHINGS, type TcdBatch, type TeacherBatching, tcdDistillStep } from './tcd_distill_step.js';

/** diffusers' LCM-LoRA SDXL target modules (tcd.md §5.3). */
export const SDXL_LORA_TARGET_MODULES = [
  'to_q',
  'to_k',
  'to_v',
  'to_out.0',
  'proj_in',
  'proj_out',
  'ff.net.0.proj',
  'ff.net.2',
  'conv1',
  'conv2',
  'conv_shortcut',
  'downsamplers.0.conv',
  'upsamplers.0.conv',
  'time_emb_proj',
] as const;

export class DistillError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DistillError';
  }
}

export interface TcdDistillerOptions {
  /** A diffusers SDXL folder (unet/, vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/). */
  model: string;
  /** A captioned image folder (x.png|jpg + x.txt, or metadata.jsonl), encoded on the fly. */
  data?: string;
  /** A manifest to use instead of looking for one in `data`. */
  manifest?: string;
  /** A latent cache made by precomputeDataset (`tcd precompute`); its model must be `model`. */
  cache?: string;
  /** Already-encoded examples instead of `data` / `cache` (an engine's own data path). */
  examples?: ExampleSource;
  /** Where checkpoints, the final LoRA, the log and sample grids go. */
  output: string;
  /** Optimizer updates to run in total (a resumed run continues up to this). */
  maxSteps: number;
  /** Training resolution in pixels (default 1024; with a cache, the cache's). */
  resolution?: number;
  centerCrop?: boolean;
  randomFlip?: boolean;
  /** LoRA rank / alpha (default 64 / 64) and target modules (default SDXL_LORA_TARGET_MODULES). */
  rank?: number;
  alpha?: number;
  targetModules?: readonly string[];
  /** N of the DDIM grid (default 50: skipping interval k = 20). */
  numDdimTimesteps?: number;
  /** Guidance w ~ U[wMin, wMax] (LCM's formulation; default 3 / 15 as diffusers). */
  wMin?: number;
  wMax?: number;
  loss?: LossType;
  huberC?: number;
  /** Learning rate (default 1e-6 as diffusers; the TCD paper used 4.5e-6) and its schedule. */
  lr?: number;
  lrSchedule?: LrScheduleName;
  warmupSteps?: number;
  beta1?: number;
  beta2?: number;
  weightDecay?: number;
  adamEps?: number;
  /** Global gradient-norm clipping (default 1; 0 turns it off). */
  maxGradNorm?: number;
  /** Samples per micro-batch (default 1) and micro-batches per update (default 1). */
  batchSize?: number;
  gradAccum?: number;
  /** Recompute resnets and transformer blocks in the backward (default true). */
  gradientCheckpointing?: boolean;
  /**
   * The teacher's guidance passes as one forward over 2B samples ('batched': half the teacher's dispatches, twice the
   * GEMM rows; worth it without gradient checkpointing, where it adds no peak) or two forwards over B ('separate',
   * default: the lowest peak with checkpointing). See TeacherBatching.
   */
  teacherBatching?: TeacherBatching;
  /**
   * The base UNet's storage type (default 'f32'; 'auto': f16 where the device passes the f16 probe). f16: LoRA
   * master weights, gradients and AdamW state stay f32 and the backward is loss-scaled (LossScaler). With `models`
   * given, their UNet's dtype is used and an explicit f32 / f16 must agree with it.
   */
  dtype?: DTypeChoice;
  /** Dynamic loss scaling of an f16 run (default: torch GradScaler's: 2^16, ×2 after 2000 finite updates, ×0.5). */
  lossScale?: LossScalerOptions;
  /** Where notes go (a dtype request that cannot be honoured); default console.warn. */
  log?: (line: string) => void;
  seed?: number;
  /** Save a checkpoint every N updates (default 500; 0: only at the end). */
  checkpointEvery?: number;
  /** Keep only the newest N checkpoints (default: all). */
  maxCheckpoints?: number;
  /** A checkpoint folder, or an output folder whose newest checkpoint is taken. */
  resume?: string;
  /** Keep an EMA copy of the LoRA as the target network with this decay (default: none, the recipe's choice). */
  emaDecay?: number;
  /** Sample grids with the TCD sampler every N updates (default 0: none), for these prompts. */
  sampleEvery?: number;
  samplePrompts?: readonly string[];
  sampleSteps?: number;
  sampleEta?: number;
  sampleSeed?: number;
  /** JSONL log (default <output>/train_log.jsonl). */
  logFile?: string;
}

export interface StepReport {
  step: number;
  maxSteps: number;
  loss: number;
  lossL2: number;
  lossHuber: number;
  lr: number;
  gradNorm: number;
  clipCoef: number;
  imagesPerSecond: number;
  stepMs: number;
  gpuBytes: number;
  gpuPeakBytes: number;
  /** f16 runs: the loss scale this update's backward used, and whether the update was skipped for overflow. */
  lossScale?: number;
  skipped?: boolean;
  /** Checkpoint or sample grid written after this step. */
  checkpoint?: string;
  samples?: string;
}

export interface TrainOptions {
  onStep?: (r: StepReport) => void;
  /** Stop after this many updates of this call (tests: simulate an interrupted run). */
  stopAfter?: number;
  /** When aborted (e.g. on SIGINT), finish the current update, save a checkpoint and return. */
  signal?: AbortSignal;
}

interface Resolved {
  resolution: number;
  rank: number;
  alpha: number;
  targetModules: readonly string[];
  numDdimTimesteps: number;
  wMin: number;
  wMax: number;
  loss: LossType;
  huberC: number;
  teacherBatching?: TeacherBatching;
  lr: number;
  lrSchedule: LrScheduleName;
  warmupSteps: number;
  batchSize: number;
  gradAccum: number;
  seed: number;
  checkpointEvery: number;
  maxCheckpoints?: number;
  emaDecay?: number;
  sampleEvery: number;
}

function resolve(o: TcdDistillerOptions): Resolved {
  const problems: string[] = [];
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) problems.push(`${name} must be an integer ≥ ${min}, got ${v}`);
    return v;
  };
  const r: Resolved = {
    resolution: int('resolution', o.resolution ?? 1024, 8),
    rank: int('rank', o.rank ?? 64, 1),
    alpha: o.alpha ?? o.rank ?? 64,
    targetModules: o.targetModules ?? SDXL_LORA_TARGET_MODULES,
    numDdimTimesteps: int('numDdimTimesteps', o.numDdimTimesteps ?? 50, 1),
    wMin: o.wMin ?? 3,
    wMax: o.wMax ?? 15,
    loss: o.loss ?? 'l2',
    huberC: o.huberC ?? 0.001,
    teacherBatching: o.teacherBatching,
    lr: o.lr ?? 1e-6,
    lrSchedule: o.lrSchedule ?? 'constant',
    warmupSteps: int('warmupSteps', o.warmupSteps ?? 0, 0),
    batchSize: int('batchSize', o.batchSize ?? 1, 1),
    gradAccum: int('gradAccum', o.gradAccum ?? 1, 1),
    seed: int('seed', o.seed ?? 0, 0),
    checkpointEvery: int('checkpointEvery', o.checkpointEvery ?? 500, 0),
    maxCheckpoints: o.maxCheckpoints === undefined ? undefined : int('maxCheckpoints', o.maxCheckpoints, 1),
    emaDecay: o.emaDecay,
    sampleEvery: int('sampleEvery', o.sampleEvery ?? 0, 0),
  };
  int('maxSteps', o.maxSteps, 1);
  if (r.resolution % 8) problems.push(`resolution must be a multiple of 8, got ${r.resolution}`);
  if (!(r.alpha > 0)) problems.push(`alpha must be > 0, got ${r.alpha}`);
  if (!(r.wMin <= r.wMax) || !Number.isFinite(r.wMin) || !Number.isFinite(r.wMax)) problems.push(`need finite wMin ≤ wMax, got ${r.wMin} / ${r.wMax}`);
  if (r.loss !== 'l2' && r.loss !== 'huber') problems.push(`loss must be 'l2' or 'huber', got '${r.loss as string}'`);
  if (!(r.huberC > 0)) problems.push(`huberC must be > 0, got ${r.huberC}`);
  if (r.teacherBatching !== undefined && !TEACHER_BATCHINGS.includes(r.teacherBatching))
    problems.push(`teacherBatching must be ${TEACHER_BATCHINGS.map((x) => `'${x}'`).join(' or ')}, got ${JSON.stringify(r.teacherBatching)}`);
  if (!(r.lr >= 0)) problems.push(`lr must be ≥ 0, got ${r.lr}`);
  if (r.emaDecay !== undefined && !(r.emaDecay >= 0 && r.emaDecay < 1)) problems.push(`emaDecay must be in [0, 1), got ${r.emaDecay}`);
  const given = [o.data && 'data', o.cache && 'cache', o.examples && 'examples'].filter(Boolean);
  if (given.length !== 1) problems.push(`give exactly one of data (an image folder), cache (a latent cache) or examples; got ${given.length ? given.join(', ') : 'none'}`);
  if (r.sampleEvery && !(o.samplePrompts ?? []).length) problems.push('sampleEvery needs samplePrompts');
  if (r.seed > 0xffffffff) problems.push(`seed must be below 2^32, got ${r.seed}`);
  if (problems.length) throw new DistillError(`distill options:\n  ${problems.join('\n  ')}`);
  return r;
}

/** The noise schedule of a diffusers scheduler_config.json. */
export function noiseScheduleOf(schedulerConfig: Record<string, unknown>): NoiseScheduleConfig {
  const c = fromDiffusersConfig(schedulerConfig) as Partial<NoiseScheduleConfig> & { predictionType?: string };
  if (c.predictionType && c.predictionType !== 'epsilon')
    throw new DistillError(`scheduler config: prediction_type '${c.predictionType}'; TCD distillation is implemented for 'epsilon' only`);
  return {
    numTrainTimesteps: c.numTrainTimesteps ?? 1000,
    betaStart: c.betaStart ?? 0.0001,
    betaEnd: c.betaEnd ?? 0.02,
    betaSchedule: c.betaSchedule ?? 'linear',
    trainedBetas: c.trainedBetas,
  };
}

/**
 * Models a distillation run uses: the UNet (teacher, and student with the LoRA); the VAE and text encoders only to
 * encode an image folder on the fly (VAE encoder) and for sample grids (VAE decoder). Runs from a cache without
 * sample grids load neither (SDXL: 3.3 GB of f32 text-encoder weights saved).
 */
export interface DistillModels {
  unet: UNet2DConditionModel;
  vae?: AutoencoderKL;
  textEncoders?: [ClipTextModel, ClipTextModel];
  tokenizers?: [ClipTokenizer, ClipTokenizer];
  schedulerConfig: Record<string, unknown>;
  forceZerosForEmptyPrompt: boolean;
  /** Frees every model's weights. */
  dispose(): void;
}

export interface LoadDistillModelsOptions {
  /** Which VAE parts to load (default 'both'). */
  vae?: 'both' | 'encoder' | 'decoder' | 'none';
  /** Load the tokenizers and text encoders (default true). */
  textEncoders?: boolean;
  /** The UNet's storage type (default 'f32'); the VAE and text encoders stay f32. */
  dtype?: DType;
}

export async function loadDistillModels(gpu: Gpu, model: string, opts: LoadDistillModelsOptions = {}): Promise<DistillModels> {
  const layout = await resolveLayout(model);
  const owned: { dispose(): void }[] = [];
  const dispose = () => owned.forEach((m) => m.dispose());
  try {
    const load = async <T>(c: 'unet' | 'vae' | 'text_encoder' | 'text_encoder_2', f: (src: Awaited<ReturnType<typeof openCheckpoint>>) => Promise<T>) => {
      const ckpt = await openCheckpoint(layout.weights[c], { component: c });
      try {
        return await f(ckpt);
      } finally {
        await ckpt.close();
      }
    };
    const unet = new UNet2DConditionModel(gpu, layout.configs.unet as UNetConfigJson, { dtype: opts.dtype ?? 'f32' });
    owned.push(unet);
    await load('unet', (s) => unet.loadWeights(s));
    const m: DistillModels = {
      unet,
      schedulerConfig: layout.schedulerConfig,
      forceZerosForEmptyPrompt: layout.modelIndex.force_zeros_for_empty_prompt !== false,
      dispose,
    };
    const parts = opts.vae ?? 'both';
    if (parts !== 'none') {
      const vae = new AutoencoderKL(gpu, layout.configs.vae as VaeConfigJson, { parts });
      owned.push(vae);
      await load('vae', (s) => vae.loadWeights(s));
      m.vae = vae;
    }
    if (opts.textEncoders ?? true) {
      const te1 = await load('text_encoder', (s) => ClipTextModel.load(gpu, layout.configs.text_encoder as ClipTextConfigJson, s, { withProjection: false }));
      owned.push(te1);
      const te2 = await load('text_encoder_2', (s) => ClipTextModel.load(gpu, layout.configs.text_encoder_2 as ClipTextConfigJson, s, { withProjection: true }));
      owned.push(te2);
      m.textEncoders = [te1, te2];
      m.tokenizers = [await ClipTokenizer.fromFolder(layout.tokenizerDirs[0]), await ClipTokenizer.fromFolder(layout.tokenizerDirs[1])];
    }
    return m;
  } catch (e) {
    dispose();
    throw e;
  }
}

/** The VAE and text side, or an error saying what needed them. */
function encoders(m: DistillModels, what: string): { vae: AutoencoderKL; textEncoders: [ClipTextModel, ClipTextModel]; tokenizers: [ClipTokenizer, ClipTokenizer] } {
  if (!m.vae || !m.textEncoders || !m.tokenizers) throw new DistillError(`${what} need the VAE and both text encoders, which were not loaded (loadDistillModels options)`);
  return { vae: m.vae, textEncoders: m.textEncoders, tokenizers: m.tokenizers };
}

// Stream salts: independent generators for the data order, an example's augmentation and its step randomness.
const SALT_ORDER = 0x0de7;
const SALT_DATA = 0xda7a;
const SALT_STEP = 0x57e9;

export class TcdDistiller {
  readonly solver: DdimSolver;
  readonly optimizer: LoraAdamW;
  /** Completed optimizer updates. */
  step = 0;
  /** Samples drawn from the data stream. */
  samplesSeen = 0;
  private ema?: Map<string, LoraWeights>;
  /** Whether dispose() frees the models (true when create() loaded them). */
  ownsModels = true;
  private permCache?: { epoch: number; perm: number[] };
  private readonly cfg: Resolved;
  /** Dynamic loss scaling of an f16 UNet's backward (undefined in f32). */
  readonly scaler?: LossScaler;

  private constructor(
    readonly gpu: Gpu,
    readonly models: DistillModels,
    readonly source: ExampleSource,
    readonly opts: TcdDistillerOptions,
    cfg: Resolved,
  ) {
    this.cfg = cfg;
    if (models.unet.dtype === 'f16') this.scaler = new LossScaler(opts.lossScale);
    this.solver = new DdimSolver(alphasCumprod(noiseScheduleOf(models.schedulerConfig), 'float32'), cfg.numDdimTimesteps);
    this.optimizer = new LoraAdamW(models.unet.loraParameters(), {
      beta1: opts.beta1,
      beta2: opts.beta2,
      eps: opts.adamEps,
      weightDecay: opts.weightDecay,
      maxGradNorm: opts.maxGradNorm,
    });
  }

  /** Loads the model folder, attaches a fresh LoRA (or the one of `resume`), lists the data. */
  static async create(gpu: Gpu, opts: TcdDistillerOptions, models?: DistillModels): Promise<TcdDistiller> {
    const cfg = resolve(opts);
    // An unwritable output folder fails here, before models load or a single update is spent.
    await assertWritableFolder(opts.output);
    const resumed = opts.resume ? await loadCheckpoint(opts.resume) : undefined;
    const sampling = cfg.sampleEvery > 0;
    const requested = opts.dtype ?? 'f32';
    if (requested !== 'f32' && requested !== 'f16' && requested !== 'auto') throw new DistillError(`dtype must be f32, f16 or auto, got '${requested as string}'`);
    if (models && requested !== 'auto' && opts.dtype !== undefined && models.unet.dtype !== requested)
      throw new DistillError(`dtype ${requested} asked, but the given models' UNet is ${models.unet.dtype}`);
    const m =
      models ??
      (await loadDistillModels(gpu, opts.model, {
        vae: opts.data ? (sampling ? 'both' : 'encoder') : sampling ? 'decoder' : 'none',
        textEncoders: !!opts.data || sampling,
        dtype: await resolveDType(gpu, requested, opts.log),
      }));
    let d: TcdDistiller | undefined;
    try {
      const unet = m.unet;
      unet.clearLora();
      const adapted = unet.initLora({ rank: cfg.rank, alpha: cfg.alpha, targetModules: cfg.targetModules, seed: cfg.seed });
      if (!adapted.length) throw new DistillError(`no UNet layer matches the LoRA target modules ${cfg.targetModules.join(', ')}`);
      unet.gradientCheckpointing = opts.gradientCheckpointing === false ? {} : { resnets: true, transformerBlocks: true };
      let source: ExampleSource;
      if (opts.examples) source = opts.examples;
      else if (opts.cache) {
        const cache = await LatentCache.open(opts.cache, {
          modelId: opts.model ? await modelFingerprint(dirSource(opts.model)) : undefined,
          resolution: opts.resolution,
        });
        cfg.resolution = cache.config.resolution;
        source = new LatentCacheSource(cache);
      } else
        source = new EncodingSource(gpu, await listCaptionedImages(opts.data!, { manifest: opts.manifest }), encoders(m, 'an image folder (data)'), {
          resolution: cfg.resolution,
          centerCrop: opts.centerCrop,
          randomFlip: opts.randomFlip,
        });
      d = new TcdDistiller(gpu, m, source, opts, cfg);
      d.ownsModels = !models;
      if (cfg.emaDecay !== undefined) d.ema = d.copyAdapters();
      if (resumed) await d.restore(resumed);
      return d;
    } catch (e) {
      if (d) d.dispose(); // frees the optimizer's moments, the EMA and (when loaded here) the models
      else if (!models) m.dispose();
      throw e;
    }
  }

  /** The values a checkpoint must agree on to be resumed by this run. */
  private runConfig(): Record<string, unknown> {
    const c = this.cfg;
    return {
      rank: c.rank,
      alpha: c.alpha,
      targetModules: [...c.targetModules],
      numDdimTimesteps: c.numDdimTimesteps,
      wMin: c.wMin,
      wMax: c.wMax,
      loss: c.loss,
      huberC: c.huberC,
      batchSize: c.batchSize,
      gradAccum: c.gradAccum,
      resolution: c.resolution,
      ema: c.emaDecay ?? null,
    };
  }

  private async restore(ck: LoadedCheckpoint): Promise<void> {
    const want = this.runConfig();
    const diffs = Object.keys(want).filter((k) => JSON.stringify(want[k]) !== JSON.stringify(ck.state.config[k]));
    if (diffs.length)
      throw new DistillError(
        `cannot resume ${ck.path}: it was trained with different settings:\n  ${diffs.map((k) => `${k}: checkpoint ${JSON.stringify(ck.state.config[k])}, now ${JSON.stringify(want[k])}`).join('\n  ')}`,
      );
    const ckDtype = ck.state.dtype ?? 'f32';
    if (ckDtype !== this.models.unet.dtype)
      throw new DistillError(`cannot resume ${ck.path}: it was trained with the UNet in ${ckDtype}, this run's UNet is ${this.models.unet.dtype}`);
    if (this.scaler) {
      const ls = ck.state.lossScaler;
      if (!ls || !(ls.scale > 0) || !Number.isInteger(ls.goodSteps) || !Number.isInteger(ls.skipped))
        throw new DistillError(`cannot resume ${ck.path}: an f16 checkpoint needs lossScaler { scale > 0, goodSteps, skipped } in training_state.json, got ${JSON.stringify(ls)}`);
      this.scaler.scale = ls.scale;
      this.scaler.goodSteps = ls.goodSteps;
      this.scaler.skipped = ls.skipped;
    }
    if (ck.state.seed !== this.cfg.seed) throw new DistillError(`cannot resume ${ck.path}: seed ${ck.state.seed}, this run's seed is ${this.cfg.seed}`);
    if (ck.state.datasetSize !== this.source.length)
      throw new DistillError(`cannot resume ${ck.path}: it saw a dataset of ${ck.state.datasetSize} examples, this one has ${this.source.length}`);
    const params = this.models.unet.loraParameters();
    const missing = params.filter((p) => !ck.lora.has(p.name)).map((p) => p.name);
    if (missing.length || ck.lora.size !== params.length)
      throw new DistillError(`cannot resume ${ck.path}: its LoRA has ${ck.lora.size} tensors, the model ${params.length} (missing ${missing.slice(0, 3).join(', ')}…)`);
    for (const p of params) p.var.value.write(ck.lora.get(p.name)!.data);
    this.optimizer.loadState(ck.optimizer);
    if (this.ema) {
      if (!ck.ema) throw new DistillError(`cannot resume ${ck.path}: it has no EMA LoRA (ema_lora.safetensors)`);
      for (const [module, w] of this.ema) {
        const a = ck.ema.get(`${module}.lora_A.weight`);
        const b = ck.ema.get(`${module}.lora_B.weight`);
        if (!a || !b) throw new DistillError(`cannot resume ${ck.path}: its EMA LoRA has no ${module}`);
        w.a.value.write(a.data);
        w.b.value.write(b.data);
      }
    }
    this.step = ck.state.step;
    this.samplesSeen = ck.state.samplesSeen;
  }

  private copyAdapters(): Map<string, LoraWeights> {
    const out = new Map<string, LoraWeights>();
    for (const [name, t] of this.models.unet.ctx.loraTargets) {
      if (!t.lora) continue;
      out.set(name, { a: new Var(scale(t.lora.a.value, 1), false, `ema.${name}.lora_A`), b: new Var(scale(t.lora.b.value, 1), false, `ema.${name}.lora_B`), scale: t.lora.scale });
    }
    return out;
  }

  /** ema ← d·ema + (1 − d)·lora, on the GPU. */
  private updateEma(): void {
    if (!this.ema) return;
    const d = this.cfg.emaDecay!;
    for (const [name, t] of this.models.unet.ctx.loraTargets) {
      const e = this.ema.get(name);
      if (!t.lora || !e) continue;
      for (const k of ['a', 'b'] as const) {
        const x = scale(e[k].value, d);
        const y = scale(t.lora[k].value, 1 - d);
        const next = add(x, y);
        x.release();
        y.release();
        e[k].value.release();
        e[k].value = next;
      }
    }
  }

  private datasetIndex(k: number): number {
    const N = this.source.length;
    const epoch = Math.floor(k / N);
    if (this.permCache?.epoch !== epoch) this.permCache = { epoch, perm: shuffledIndices(N, new SeededRng(deriveSeed(deriveSeed(this.cfg.seed, SALT_ORDER), epoch))) };
    return this.permCache.perm[k % N];
  }

  /** Sample k of the stream: the example and its per-step draws (n, m, w, noise). */
  private async sample(k: number): Promise<{ ex: TrainingExample; index: number; endIndex: number; w: number; noise: Float32Array }> {
    const item = this.datasetIndex(k);
    let ex: TrainingExample;
    try {
      ex = await this.source.get(item, new SeededRng(deriveSeed(deriveSeed(this.cfg.seed, SALT_DATA), k)));
    } catch (e) {
      // A bad file found mid-run (images are decoded when drawn): its own message names it; say where the run stands.
      const last = (await listCheckpoints(this.opts.output)).at(-1);
      throw new DistillError(
        `update ${this.step + 1}, dataset item ${item}: ${(e as Error).message}\n` +
          (last ? `the last checkpoint ${last.path} (update ${last.step}) is intact: fix or remove the file and continue with resume` : 'no checkpoint was written yet'),
      );
    }
    const rng = new SeededRng(deriveSeed(deriveSeed(this.cfg.seed, SALT_STEP), k));
    const N = this.cfg.numDdimTimesteps;
    const index = nextInt(rng, 0, N - 1);
    const endIndex = nextInt(rng, 0, index);
    const w = this.cfg.wMin + (this.cfg.wMax - this.cfg.wMin) * nextFloat(rng);
    return { ex, index, endIndex, w, noise: normalArray(rng, ex.latents.length) };
  }

  /** A micro-batch from samples k0 .. k0 + B − 1. */
  async batch(k0: number): Promise<TcdBatch> {
    const B = this.cfg.batchSize;
    const samples: Awaited<ReturnType<TcdDistiller['sample']>>[] = [];
    for (let b = 0; b < B; b++) samples.push(await this.sample(k0 + b));
    const first = samples[0].ex;
    const [C, h, w] = first.latentShape;
    for (const s of samples)
      if (s.ex.latentShape.join() !== first.latentShape.join())
        throw new DistillError(`examples of one batch differ in latent shape: [${s.ex.latentShape.join(', ')}] vs [${first.latentShape.join(', ')}]`);
    const cat = (get: (e: TrainingExample) => ArrayLike<number>, what: string) => {
      const n = get(first).length;
      const out = new Float32Array(B * n);
      samples.forEach((s, b) => {
        const v = get(s.ex);
        if (v.length !== n) throw new DistillError(`examples differ in ${what}: ${v.length} vs ${n} values`);
        out.set(v, b * n);
      });
      return out;
    };
    const promptEmbeds = cat((e) => e.promptEmbeds, 'prompt embeddings');
    return {
      latents: cat((e) => e.latents, 'latents'),
      latentShape: [B, C, h, w],
      noise: concatNoise(samples.map((s) => s.noise)),
      encoderHiddenStates: promptEmbeds,
      tokens: first.promptShape[0],
      textEmbeds: cat((e) => e.pooled, 'pooled embeddings'),
      timeIds: cat((e) => e.timeIds, 'time ids'),
      index: samples.map((s) => s.index),
      endIndex: samples.map((s) => s.endIndex),
      w: samples.map((s) => s.w),
    };
  }

  /**
   * One optimizer update: gradAccum micro-batches from the data stream (or the given micro-batches, which leave the
   * stream's position alone), clipping, AdamW, EMA. An f16 UNet's backward is loss-scaled: gradients with an
   * Infinity / NaN skip AdamW (the update still counts, as torch's GradScaler.step in the diffusers loop) and the
   * scale backs off.
   */
  async trainStep(batches?: readonly TcdBatch[]): Promise<StepReport> {
    const t0 = performance.now();
    const { batchSize: B } = this.cfg;
    const A = batches ? batches.length : this.cfg.gradAccum;
    if (!(A >= 1)) throw new DistillError('trainStep: no micro-batches given');
    const lossScale = this.scaler?.scale;
    let loss = 0;
    let lossL2 = 0;
    let lossHuber = 0;
    for (let a = 0; a < A; a++) {
      const batch = batches ? batches[a] : await this.batch(this.samplesSeen);
      const r = await tcdDistillStep(this.models.unet, this.solver, batch, {
        loss: this.cfg.loss,
        huberC: this.cfg.huberC,
        teacherBatching: this.cfg.teacherBatching,
        gradScale: (lossScale ?? 1) / A,
        targetAdapters: this.ema,
      });
      if (!batches) this.samplesSeen += B;
      loss += r.loss / A;
      lossL2 += r.lossL2 / A;
      lossHuber += r.lossHuber / A;
    }
    const lr = learningRate({ name: this.cfg.lrSchedule, lr: this.cfg.lr, warmupSteps: this.cfg.warmupSteps, totalSteps: this.opts.maxSteps }, this.step);
    let rep: { gradNorm: number; clipCoef: number };
    let skipped: boolean | undefined;
    if (this.scaler) {
      // Unscale into f32 (one read-back: the global norm); non-finite → skip AdamW, the scale has backed off.
      const params = this.optimizer.parameters.filter((p) => p.var.grad);
      const u = await this.scaler.unscale(params.map((p) => p.var.grad!));
      skipped = !u.finite;
      if (u.grads) {
        params.forEach((p, i) => {
          p.var.grad!.release();
          p.var.grad = u.grads![i];
        });
        rep = await this.optimizer.update(lr);
      } else {
        this.optimizer.zeroGrad();
        rep = { gradNorm: u.norm, clipCoef: 1 };
      }
    } else rep = await this.optimizer.update(lr);
    this.updateEma();
    this.step++;
    const stepMs = performance.now() - t0;
    const pool = this.gpu.pool.report();
    return {
      step: this.step,
      maxSteps: this.opts.maxSteps,
      loss,
      lossL2,
      lossHuber,
      lr,
      gradNorm: rep.gradNorm,
      clipCoef: rep.clipCoef,
      imagesPerSecond: (B * A * 1000) / stepMs,
      stepMs,
      gpuBytes: pool.currentBytes,
      gpuPeakBytes: pool.peakBytes,
      ...(lossScale !== undefined ? { lossScale, skipped } : {}),
    };
  }

  /** The LoRA in peft naming (float32 copies read back from the GPU). */
  async loraTensors(adapters?: ReadonlyMap<string, LoraWeights>): Promise<LoraToSave[]> {
    const out: LoraToSave[] = [];
    const src = adapters ?? new Map([...this.models.unet.ctx.loraTargets].filter(([, t]) => t.lora).map(([n, t]) => [n, t.lora!]));
    for (const [module, w] of [...src].sort(([a], [b]) => (a < b ? -1 : 1)))
      out.push({
        module,
        A: { shape: w.a.shape, data: await w.a.value.toArray() },
        B: { shape: w.b.shape, data: await w.b.value.toArray() },
        alpha: this.cfg.alpha,
      });
    return out;
  }

  private state(): TrainingState {
    const s: TrainingState = { step: this.step, seed: this.cfg.seed, samplesSeen: this.samplesSeen, datasetSize: this.source.length, config: this.runConfig() };
    if (this.models.unet.dtype !== 'f32') s.dtype = this.models.unet.dtype;
    if (this.scaler) s.lossScaler = { scale: this.scaler.scale, goodSteps: this.scaler.goodSteps, skipped: this.scaler.skipped };
    return s;
  }

  /** Writes checkpoint-<step>/ (atomically) and prunes old ones; returns its path. */
  async saveCheckpoint(): Promise<string> {
    const path = await saveCheckpoint(this.opts.output, {
      state: this.state(),
      lora: await this.loraTensors(),
      optimizer: await this.optimizer.state(),
      ema: this.ema ? await this.loraTensors(this.ema) : undefined,
      metadata: { tcd_distill_step: String(this.step) },
    });
    if (this.cfg.maxCheckpoints !== undefined) await pruneCheckpoints(this.opts.output, this.cfg.maxCheckpoints);
    return path;
  }

  /** Writes the trained LoRA (the student, not its EMA copy) to `path` atomically, peft / diffusers naming. */
  async saveLora(path: string): Promise<void> {
    const { tensors, metadata } = encodeLoraTensors(await this.loraTensors(), { metadata: { tcd_distill_step: String(this.step) } });
    await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
  }

  /** A row of images, one per sample prompt, made with the TCD sampler and the current LoRA. */
  async sampleGrid(): Promise<RgbImage> {
    const m = this.models;
    const { vae, textEncoders, tokenizers } = encoders(m, 'sample grids');
    const pipe = new TcdSdxlPipeline(this.gpu, {
      unet: m.unet,
      vae,
      textEncoders,
      tokenizers,
      schedulerConfig: m.schedulerConfig,
      forceZerosForEmptyPrompt: m.forceZerosForEmptyPrompt,
    });
    const prompts = this.opts.samplePrompts ?? [];
    const size = this.cfg.resolution;
    const images: RgbImage[] = [];
    for (const prompt of prompts) {
      const r = await pipe.generate({ prompt, steps: this.opts.sampleSteps ?? 4, eta: this.opts.sampleEta ?? 0.3, seed: this.opts.sampleSeed ?? 0, width: size, height: size });
      images.push(r.images[0]);
    }
    return hconcat(images);
  }

  /** Runs updates until maxSteps: JSONL log, checkpoints every checkpointEvery, sample grids, the final LoRA. */
  async train(t: TrainOptions = {}): Promise<{ lora?: string; steps: number; interrupted?: string }> {
    const { mkdir, appendFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const out = this.opts.output;
    await mkdir(out, { recursive: true });
    const log = this.opts.logFile ?? join(out, 'train_log.jsonl');
    await this.trimLog(log);
    let done = 0;
    while (this.step < this.opts.maxSteps) {
      if (t.stopAfter !== undefined && done >= t.stopAfter) return { steps: done };
      if (t.signal?.aborted) {
        const last = await listCheckpoints(out);
        const saved = last.at(-1)?.step === this.step ? last.at(-1)!.path : await this.saveCheckpoint();
        return { steps: done, interrupted: saved };
      }
      const r = await this.trainStep();
      done++;
      const last = this.step === this.opts.maxSteps;
      if ((this.cfg.checkpointEvery && this.step % this.cfg.checkpointEvery === 0) || last) r.checkpoint = await this.saveCheckpoint();
      if (this.cfg.sampleEvery && (this.step % this.cfg.sampleEvery === 0 || last)) {
        await mkdir(join(out, 'samples'), { recursive: true });
        r.samples = join(out, 'samples', `step-${String(this.step).padStart(6, '0')}.png`);
        await writeFileAtomic(r.samples, encodePng(await this.sampleGrid()));
      }
      await appendFile(log, `${JSON.stringify({ ...r, time: new Date().toISOString() })}\n`);
      t.onStep?.(r);
    }
    const lora = join(out, LORA_WEIGHT_NAME);
    await this.saveLora(lora);
    return { lora, steps: done };
  }

  /** A resumed run drops the log lines of steps after its checkpoint (the killed run's lost steps). */
  private async trimLog(path: string): Promise<void> {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) return;
    const keep = text.split('\n').filter((line) => {
      if (!line.trim()) return false;
      try {
        return (JSON.parse(line) as { step?: number }).step! <= this.step;
      } catch {
        return true;
      }
    });
    const next = keep.length ? `${keep.join('\n')}\n` : '';
    if (next !== text) await writeFileAtomic(path, new TextEncoder().encode(next));
  }

  dispose(): void {
    this.optimizer.dispose();
    for (const w of this.ema?.values() ?? []) {
      w.a.dispose();
      w.b.dispose();
    }
    this.source.dispose?.();
    const m = this.models;
    if (this.ownsModels) m.dispose();
    else m.unet.clearLora();
  }
}

function concatNoise(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Images side by side (same height), RGB. */
export function hconcat(images: readonly RgbImage[]): RgbImage {
  if (!images.length) throw new DistillError('no images to put in a grid');
  const h = images[0].height;
  const width = images.reduce((s, i) => s + i.width, 0);
  const data = new Uint8Array(width * h * 3);
  let x0 = 0;
  for (const img of images) {
    if (img.height !== h || img.channels !== 3) throw new DistillError('grid images must be RGB of one height');
    for (let y = 0; y < h; y++) data.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), (y * width + x0) * 3);
    x0 += img.width;
  }
  return { data, width, height: h, channels: 3 };
}
