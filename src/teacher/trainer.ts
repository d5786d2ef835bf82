// Training the emoji teacher from scratch, in two stages that resume from checkpoints (src/teacher/folder.ts):
//   1. 'vae':       AutoencoderKL, every weight trained on vaeLoss (reconstruction MSE + a small KL);
//                   at its end scaling_factor = 1 / std of the training set's posterior means (diffusers' convention)
//   2. 'diffusion': both CLIP text encoders and the UNet trained jointly on the ε-prediction loss with the VAE frozen,
//                   on latents sampled from the stored posteriors, captions dropped (zeroed) with probability cfgDropout
// Every random choice (batch indices, timesteps, ε, dropout) comes from a host generator keyed by (seed, stage, step),
// so a resumed run draws exactly what an uninterrupted one would have.
import type { Gpu } from '../../runtime/device.js';
import { Tape, Var, noGrad, tidy } from '../autograd/tape.js';
import type { Param } from '../nn/module.js';
import { type NoiseScheduleConfig, alphasCumprod } from '../schedulers/noise_schedule.js';
import { Tensor } from '../tensor.js';
import { TrainableClipTextModel } from '../text/clip_text_train.js';
import type { ClipTextConfigJson } from '../text/clip_config.js';
import type { ClipTokenizer } from '../text/clip_tokenizer.js';
import type { UNetConfigJson } from '../unet/config.js';
import { UNet2DConditionModel } from '../unet/unet.js';
import { AutoencoderKL } from '../vae/autoencoder_kl.js';
import type { VaeConfigJson } from '../vae/config.js';
import { type FolderPart, type StaticFiles, type TeacherState, findCheckpoint, readState, readTensors, weightFile, writeCheckpoint } from './folder.js';
import { type DiffusionModels, diffusionLoss, vaeLoss } from './losses.js';
import { FullAdamW, type NamedParam } from './optimizer.js';

export interface TeacherConfigs {
  vae: VaeConfigJson;
  textEncoder: ClipTextConfigJson;
  textEncoder2: ClipTextConfigJson;
  unet: UNetConfigJson;
  /** scheduler/scheduler_config.json as written into the folder. */
  scheduler: Record<string, unknown>;
  /** The training noise schedule (the same betas as `scheduler`). */
  noise: NoiseScheduleConfig;
  modelIndex: object;
  /** SDXL's 6 added time ids used for every sample. */
  timeIds: readonly number[];
}

export interface TeacherData {
  /** [N, 3, H, W] in [-1, 1]. */
  images: Float32Array;
  imageShape: [number, number, number, number];
  captions: readonly string[];
}

export interface StageOptions {
  steps: number;
  batch: number;
  lr: number;
  /** Linear learning-rate warm-up steps (default 0). */
  warmupSteps?: number;
}

export interface LogRecord {
  stage: 'vae' | 'diffusion';
  step: number;
  loss: number;
  lr: number;
  /** Seconds since this run (process) started. */
  seconds: number;
  /** Training images per second over the last log interval. */
  imagesPerSecond: number;
  reconstruction?: number;
  kl?: number;
  /** Set on the record written right after a checkpoint. */
  checkpoint?: string;
  scalingFactor?: number;
}

export interface TeacherTrainOptions {
  runDir: string;
  seed?: number;
  configs: TeacherConfigs;
  /** tokenizer (pads with <|endoftext|>) and tokenizer_2 (pads with '!'), as SDXL's. */
  tokenizers: readonly [ClipTokenizer, ClipTokenizer];
  /** Files written into every checkpoint besides the models: tokenizer/…, tokenizer_2/…. */
  tokenizerFiles: StaticFiles;
  vae: StageOptions & { klWeight: number };
  diffusion: StageOptions & { cfgDropout: number };
  checkpointEvery: number;
  logEvery: number;
  /** Stop (after a checkpoint) once this many seconds have passed in this process. */
  maxSeconds?: number;
  /** Stop after the VAE stage. */
  vaeOnly?: boolean;
  onLog?: (r: LogRecord) => void;
}

/** mulberry32 seeded by a hash of (seed, stage, step, stream): independent, reproducible draws per step. */
export class StepRng {
  private s: number;
  constructor(seed: number, ...key: (string | number)[]) {
    let h = 0x811c9dc5 ^ seed;
    for (const ch of `${seed}/${key.join('/')}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
    this.s = h >>> 0;
  }
  uniform(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.min(n - 1, Math.floor(this.uniform() * n));
  }
  normals(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const u = Math.max(this.uniform(), 1e-12);
      const v = this.uniform();
      const r = Math.sqrt(-2 * Math.log(u));
      out[i] = r * Math.cos(2 * Math.PI * v);
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
    }
    return out;
  }
}

const lrAt = (o: StageOptions, step: number) => (o.warmupSteps && step < o.warmupSteps ? (o.lr * (step + 1)) / o.warmupSteps : o.lr);

/**
 * What both stages do after a batch's loss is recorded: backward, one AdamW update at the scheduled lr, the step
 * counted, and whether to log (every `logEvery` steps, the last step, or out of time); plus images/s since the last
 * log line.
 */
class StepMeter {
  private since: number;
  private seen = 0;

  constructor(
    private readonly elapsed: () => number,
    private readonly opts: Pick<TeacherTrainOptions, 'logEvery' | 'maxSeconds'>,
  ) {
    this.since = elapsed();
  }

  step(tape: Tape, loss: Var, seed: Tensor, optimizer: FullAdamW, state: TeacherState, o: StageOptions, warmFrom: number) {
    tape.backward(loss, seed);
    const lr = lrAt(o, state.step - warmFrom);
    optimizer.update(lr);
    state.step++;
    this.seen += o.batch;
    const last = state.step === o.steps;
    const timeUp = this.opts.maxSeconds !== undefined && this.elapsed() > this.opts.maxSeconds;
    return { lr, last, timeUp, logNow: state.step % this.opts.logEvery === 0 || last || timeUp };
  }

  /** Images per second since the last call (or the start), restarting the window. */
  imagesPerSecond(): number {
    const rate = this.seen / (this.elapsed() - this.since);
    this.since = this.elapsed();
    this.seen = 0;
    return rate;
  }
}

function named(prefix: string, params: ReadonlyMap<string, Param>): NamedParam[] {
  return [...params].map(([name, p]) => ({ name: `${prefix}.${name}`, var: p.v }));
}

/** Rows `indices` of an [N, ...] array. */
function gather(src: Float32Array, rowSize: number, indices: readonly number[]): Float32Array {
  const out = new Float32Array(indices.length * rowSize);
  indices.forEach((n, b) => out.set(src.subarray(n * rowSize, (n + 1) * rowSize), b * rowSize));
  return out;
}

/** The models of a teacher run, built from the configs and (when resuming) the checkpoint's weights. */
export class TeacherModels {
  readonly vae: AutoencoderKL;
  readonly unet: UNet2DConditionModel;
  readonly textEncoder: TrainableClipTextModel;
  readonly textEncoder2: TrainableClipTextModel;

  constructor(
    readonly gpu: Gpu,
    readonly configs: TeacherConfigs,
  ) {
    this.vae = new AutoencoderKL(gpu, configs.vae);
    this.unet = new UNet2DConditionModel(gpu, configs.unet);
    this.textEncoder = new TrainableClipTextModel(gpu, configs.textEncoder, { withProjection: false });
    this.textEncoder2 = new TrainableClipTextModel(gpu, configs.textEncoder2, { withProjection: true });
  }

  parts(): FolderPart[] {
    return [
      { folder: 'vae', config: this.configs.vae, params: this.vae.parameters },
      { folder: 'unet', config: this.configs.unet, params: this.unet.parameters },
      { folder: 'text_encoder', config: this.configs.textEncoder, params: this.textEncoder.parameters },
      { folder: 'text_encoder_2', config: this.configs.textEncoder2, params: this.textEncoder2.parameters },
    ];
  }

  dispose(): void {
    this.vae.dispose();
    this.unet.dispose();
    this.textEncoder.dispose();
    this.textEncoder2.dispose();
  }
}

/** Posterior means (scaled) and std of the training set's images under the VAE, in chunks, without a tape. */
export async function encodeDataset(vae: AutoencoderKL, data: TeacherData, chunk = 64): Promise<{ mean: Float32Array; std: Float32Array; latentShape: [number, number, number, number] }> {
  const [N, C, H, W] = data.imageShape;
  const L = vae.config.latentChannels;
  const f = vae.config.downscale;
  const h = Math.floor(H / f);
  const w = Math.floor(W / f);
  const per = L * h * w;
  const mean = new Float32Array(N * per);
  const std = new Float32Array(N * per);
  for (let n0 = 0; n0 < N; n0 += chunk) {
    const n = Math.min(chunk, N - n0);
    const x = Tensor.fromArray(vae.gpu, data.images.subarray(n0 * C * H * W, (n0 + n) * C * H * W), [n, C, H, W], { label: 'images' });
    const m = noGrad(() => tidy(() => vae.encodeForward(new Var(x))));
    const moments = await m.value.toArray();
    m.dispose();
    x.release();
    for (let b = 0; b < n; b++)
      for (let i = 0; i < per; i++) {
        const mu = moments[b * 2 * per + i];
        const logvar = Math.min(20, Math.max(-30, moments[b * 2 * per + per + i]));
        mean[(n0 + b) * per + i] = mu;
        std[(n0 + b) * per + i] = Math.exp(0.5 * logvar);
      }
  }
  return { mean, std, latentShape: [N, L, h, w] };
}

/** 1 / std of all posterior-mean values (diffusers' scaling_factor convention). */
export function scalingFactorOf(mean: Float32Array): number {
  let s = 0;
  let s2 = 0;
  for (const v of mean) {
    s += v;
    s2 += v * v;
  }
  const m = s / mean.length;
  return 1 / Math.sqrt(Math.max(1e-12, s2 / mean.length - m * m));
}

/**
 * Runs (or resumes) the two stages until done, the time budget ends or vaeOnly stops it; returns the state of the
 * last checkpoint.
 */
export async function trainTeacher(gpu: Gpu, data: TeacherData, opts: TeacherTrainOptions): Promise<TeacherState> {
  const { mkdir, appendFile } = await import('node:fs/promises');
  await mkdir(opts.runDir, { recursive: true });
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  const seed = opts.seed ?? 0;
  const configs: TeacherConfigs = { ...opts.configs, vae: { ...opts.configs.vae } };
  const [N, C, H, W] = data.imageShape;
  if (data.captions.length !== N) throw new Error(`trainTeacher: ${data.captions.length} captions for ${N} images`);

  const resumeDir = await findCheckpoint(opts.runDir);
  let state: TeacherState = resumeDir ? await readState(resumeDir) : { stage: 'vae', step: 0, vaeSteps: 0, seed, seconds: 0 };
  // A finished run given more diffusion steps continues.
  if (state.stage === 'done' && state.step < opts.diffusion.steps) state = { ...state, stage: 'diffusion' };
  if (resumeDir) {
    const { readFile } = await import('node:fs/promises');
    const saved = JSON.parse(await readFile(`${resumeDir}/vae/config.json`, 'utf8')) as VaeConfigJson;
    configs.vae.scaling_factor = saved.scaling_factor;
  }
  const models = new TeacherModels(gpu, configs);
  const files: StaticFiles = {
    'model_index.json': JSON.stringify(configs.modelIndex, null, 2) + '\n',
    'scheduler/scheduler_config.json': JSON.stringify(configs.scheduler, null, 2) + '\n',
    ...opts.tokenizerFiles,
  };
  const log = async (r: LogRecord) => {
    await appendFile(`${opts.runDir}/log.jsonl`, JSON.stringify(r) + '\n');
    opts.onLog?.(r);
  };
  const secondsBefore = state.seconds;
  const save = async (optimizer?: FullAdamW) => {
    state.seconds = secondsBefore + elapsed();
    return writeCheckpoint(opts.runDir, files, models.parts(), await optimizer?.state(), state);
  };
  const load = async (folder: string, into: { loadWeights(s: Map<string, { data: Float32Array; shape: readonly number[] }>, o: { trainable: () => boolean }): Promise<void> }, trainable: boolean) => {
    const dict = resumeDir && (await readTensors(`${resumeDir}/${weightFile(folder)}`));
    if (!dict) return false;
    await into.loadWeights(dict, { trainable: () => trainable });
    return true;
  };

  try {
    // ---- stage 1: VAE -------------------------------------------------------------------------------------------
    if (state.stage === 'vae') {
      if (!(await load('vae', models.vae, true))) models.vae.initRandom({ seed, trainable: () => true });
      const o = opts.vae;
      const optimizer = new FullAdamW(gpu, named('vae', models.vae.parameters), { weightDecay: 0 });
      const moments = resumeDir && (await readTensors(`${resumeDir}/train/optimizer.safetensors`));
      if (moments && state.step > 0) optimizer.loadState(moments, state.step);
      // Resumed without moments (a packed checkpoint, src/teacher/transport.ts): warm the learning rate up again.
      const warmFrom = moments ? 0 : state.step;
      const one = Tensor.fromArray(gpu, [1], [1], { label: 'dloss' });
      const meter = new StepMeter(elapsed, opts);
      const f = models.vae.config.downscale;
      while (state.step < o.steps) {
        const rng = new StepRng(seed, 'vae', state.step);
        const idx = Array.from({ length: o.batch }, () => rng.int(N));
        const noise = rng.normals(o.batch * models.vae.config.latentChannels * (H / f) * (W / f));
        const tape = new Tape();
        const parts = tape.record(() =>
          tidy(() =>
            vaeLoss(
              models.vae,
              new Var(Tensor.fromArray(gpu, gather(data.images, C * H * W, idx), [o.batch, C, H, W], { label: 'images' })),
              new Var(Tensor.fromArray(gpu, noise, [o.batch, models.vae.config.latentChannels, H / f, W / f], { label: 'vae_noise' })),
              o.klWeight,
            ),
          ),
        );
        const { lr, last, timeUp, logNow } = meter.step(tape, parts.loss, one, optimizer, state, o, warmFrom);
        if (logNow) {
          const [loss, rec, kl] = await Promise.all([parts.loss, parts.reconstruction, parts.klWithoutConstant].map(async (v) => (await v.value.toArray())[0]));
          await log({ stage: 'vae', step: state.step, loss, lr, seconds: elapsed(), imagesPerSecond: meter.imagesPerSecond(), reconstruction: rec, kl: kl - 0.5 });
        }
        for (const v of [parts.loss, parts.reconstruction, parts.klWithoutConstant, parts.reconstructionImage]) v.dispose();
        if (last) {
          const { mean } = await encodeDataset(models.vae, data);
          configs.vae.scaling_factor = scalingFactorOf(mean);
          state = { ...state, stage: 'diffusion', step: 0, vaeSteps: o.steps };
          const where = await save();
          await log({ stage: 'vae', step: o.steps, loss: NaN, lr, seconds: elapsed(), imagesPerSecond: 0, checkpoint: where, scalingFactor: configs.vae.scaling_factor });
          break;
        } else if (state.step % opts.checkpointEvery === 0 || timeUp) {
          const where = await save(optimizer);
          await log({ stage: 'vae', step: state.step, loss: NaN, lr, seconds: elapsed(), imagesPerSecond: 0, checkpoint: where });
        }
        if (timeUp && !last) {
          one.release();
          optimizer.release();
          return state;
        }
      }
      one.release();
      optimizer.release();
      if (opts.vaeOnly) return state;
      // The diffusion stage needs the VAE frozen: reload its weights without gradients.
      const frozen = new Map([...models.vae.parameters].map(([n, p]) => [n, p.v.value]));
      const dict = new Map<string, { data: Float32Array; shape: readonly number[] }>();
      for (const [n, t] of frozen) dict.set(n, { data: await t.toArray(), shape: t.shape });
      await models.vae.loadWeights(dict, { trainable: () => false });
    } else if (!(await load('vae', models.vae, false))) {
      throw new Error(`${resumeDir}: stage '${state.stage}' but no trained VAE in ${weightFile('vae')}`);
    }
    if (state.stage === 'done' || opts.vaeOnly) return state;

    // ---- stage 2: text encoders + UNet --------------------------------------------------------------------------
    const o = opts.diffusion;
    const m: DiffusionModels = { unet: models.unet, textEncoder: models.textEncoder, textEncoder2: models.textEncoder2 };
    if (!(await load('unet', models.unet, true))) models.unet.initRandom({ seed: seed + 1, trainable: () => true });
    if (!(await load('text_encoder', models.textEncoder, true))) models.textEncoder.initRandom({ seed: seed + 2 });
    if (!(await load('text_encoder_2', models.textEncoder2, true))) models.textEncoder2.initRandom({ seed: seed + 3 });
    const params = [...named('unet', models.unet.parameters), ...named('text_encoder', models.textEncoder.parameters), ...named('text_encoder_2', models.textEncoder2.parameters)];
    const optimizer = new FullAdamW(gpu, params, { weightDecay: 1e-2 });
    const moments = resumeDir && state.stage === 'diffusion' && state.step > 0 && (await readTensors(`${resumeDir}/train/optimizer.safetensors`));
    if (moments) optimizer.loadState(moments, state.step);
    const warmFrom = moments ? 0 : state.step;

    const latents = await encodeDataset(models.vae, data);
    const sf = configs.vae.scaling_factor ?? 1;
    const [, L, h, w] = latents.latentShape;
    const per = L * h * w;
    const ids1 = opts.tokenizers[0].encodeBatch(data.captions as string[]);
    const ids2 = opts.tokenizers[1].encodeBatch(data.captions as string[]);
    const ac = alphasCumprod(configs.noise, 'float64');
    const T = ac.length;
    const one = Tensor.fromArray(gpu, [1], [1], { label: 'dloss' });
    const meter = new StepMeter(elapsed, opts);
    try {
      while (state.step < o.steps) {
        const rng = new StepRng(seed, 'diffusion', state.step);
        const idx = Array.from({ length: o.batch }, () => rng.int(N));
        const eps0 = rng.normals(o.batch * per);
        const z = new Float32Array(o.batch * per);
        idx.forEach((n, b) => {
          for (let i = 0; i < per; i++) z[b * per + i] = sf * (latents.mean[n * per + i] + latents.std[n * per + i] * eps0[b * per + i]);
        });
        const batch = {
          latents: z,
          latentShape: [o.batch, L, h, w] as [number, number, number, number],
          timesteps: idx.map(() => rng.int(T)),
          noise: rng.normals(o.batch * per),
          dropText: idx.map(() => rng.uniform() < o.cfgDropout),
          ids1: idx.map((n) => ids1[n]),
          ids2: idx.map((n) => ids2[n]),
          timeIds: configs.timeIds,
        };
        const tape = new Tape();
        const loss = tape.record(() => tidy(() => diffusionLoss(m, batch, ac)));
        const { lr, last, timeUp, logNow } = meter.step(tape, loss, one, optimizer, state, o, warmFrom);
        if (logNow) {
          const lossValue = (await loss.value.toArray())[0];
          await log({ stage: 'diffusion', step: state.step, loss: lossValue, lr, seconds: elapsed(), imagesPerSecond: meter.imagesPerSecond() });
        }
        loss.dispose();
        if (last) state = { ...state, stage: 'done' };
        if (last || state.step % opts.checkpointEvery === 0 || timeUp) {
          const where = await save(last ? undefined : optimizer);
          await log({ stage: 'diffusion', step: state.step, loss: NaN, lr, seconds: elapsed(), imagesPerSecond: 0, checkpoint: where });
        }
        if (timeUp) break;
      }
    } finally {
      one.release();
      optimizer.release();
    }
    return state;
  } finally {
    models.dispose();
  }
}
