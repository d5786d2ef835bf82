// One guided Trajectory Consistency Distillation step on a batch (tcd.md §5.2 with the [TCD] changes and the
// corrections of §11): the UNet passes run on the GPU, the per-element scheduler math on the host in float32
// (src/trainer/ddim_solver.ts), and the loss gradient is seeded into the student's UNet output, so the LoRA
// gradients accumulate in the adapters' Vars (call it again before the optimizer step to accumulate).
//
//   x_start    = sqrt(ᾱ_{t_start})·latents + sqrt(1 − ᾱ_{t_start})·noise
//   model_pred = TCF1(x_start, unet_lora(x_start, t_start); t_start → t_m)                    (gradient on)
//   eps_c/u    = unet_base(x_start, t_start, prompt | zeros)                                    (adapters off)
//   x_prev     = DDIM(x0_c + w(x0_c − x0_u), eps_c + w(eps_c − eps_u); index)                  (lands on t_n)
//   target     = TCF1(x_prev, unet_target(x_prev, t_n); t_n → t_m)                             (no gradient)
//   loss       = mean((model_pred − target)²) | mean(sqrt((model_pred − target)² + c²) − c)
import type { LoraWeights } from '../autograd/lora_ops.js';
import { Tape, Var, noGrad, tidy } from '../autograd/tape.js';
import { Tensor } from '../tensor.js';
import type { UNet2DConditionModel } from '../unet/unet.js';
import { DdimSolver, DdimSolverError, guide } from './ddim_solver.js';

export type LossType = 'l2' | 'huber';

/**
 * How the teacher's two guidance passes run: 'batched' = one forward over 2B samples (prompt ‖ zeros), half the
 * teacher's dispatches and twice the GEMM rows; 'separate' = two forwards over B. Default 'separate': under gradient
 * checkpointing (the trainer's default) the 2B teacher forward becomes the step's peak (SDXL 1024², batch 1, dry
 * run: +0.52 GiB f32, +0.27 GiB f16); without checkpointing the student's kept activations set the peak and
 * 'batched' costs none. The default is one fixed mode, not chosen by the checkpointing setting, because the two
 * modes may round differently and a checkpointed step must stay bit-identical to an unchecked one.
 */
export type TeacherBatching = 'batched' | 'separate';
export const TEACHER_BATCHINGS: readonly TeacherBatching[] = ['batched', 'separate'];
export const DEFAULT_TEACHER_BATCHING: TeacherBatching = 'separate';

/** A batch of B samples, host arrays in the UNet's layouts. */
export interface TcdBatch {
  /** VAE latents × scaling factor, [B, C, h, w]. */
  latents: Float32Array;
  latentShape: readonly [number, number, number, number];
  /** N(0, 1) noise, same shape as latents. */
  noise: Float32Array;
  /** Prompt embeddings [B, tokens, dim] (both CLIP encoders' penultimate states, concatenated). */
  encoderHiddenStates: Float32Array;
  tokens: number;
  /** Pooled text embeddings [B, pooledDim] (text_encoder_2 projection). */
  textEmbeds: Float32Array;
  /** SDXL micro-conditioning [B, 6]: original size, crop top-left, target size. */
  timeIds: Float32Array;
  /** Per sample: start index n on the grid, end index m ≤ n, guidance w. */
  index: readonly number[];
  endIndex: readonly number[];
  w: readonly number[];
}

export interface TcdStepOptions {
  loss: LossType;
  /** Pseudo-Huber c (default 0.001). */
  huberC?: number;
  /** Multiplies the back-propagated gradient (1 / accumulation steps). Default 1. */
  gradScale?: number;
  /**
   * Adapters for the target pass by module (an EMA copy of the LoRA); default: the student's own adapters under no
   * gradient (the recipe's "no separate target network").
   */
  targetAdapters?: ReadonlyMap<string, LoraWeights>;
  /** The teacher's conditional / unconditional passes as one 2B forward or two B forwards (default DEFAULT_TEACHER_BATCHING, 'separate'). */
  teacherBatching?: TeacherBatching;
  /** Return the intermediate tensors (tests, debugging). */
  keepTensors?: boolean;
}

export interface TcdStepTensors {
  xStart: Float32Array;
  epsStudent: Float32Array;
  modelPred: Float32Array;
  epsCond: Float32Array;
  epsUncond: Float32Array;
  predX0: Float32Array;
  predNoise: Float32Array;
  xPrev: Float32Array;
  /** x_prev before its float32 rounding. */
  xPrevF64: Float64Array;
  epsTarget: Float32Array;
  target: Float32Array;
  /** d loss / d eps_student seeded into the backward (before gradScale). */
  epsGrad: Float32Array;
}

export interface TcdStepResult {
  /** The optimised loss (lossL2 or lossHuber). */
  loss: number;
  lossL2: number;
  lossHuber: number;
  /** Per sample: t_start, t_n, t_m. */
  tStart: number[];
  tN: number[];
  tM: number[];
  tensors?: TcdStepTensors;
}

/**
 * Runs fn with the UNet's adapters replaced: `adapters` undefined turns LoRA off (the teacher, peft's
 * disable_adapters), a map swaps in other weights (an EMA target). The forward records its work synchronously, so
 * restoring right after fn returns is safe.
 */
export function withAdapters<T>(unet: UNet2DConditionModel, adapters: ReadonlyMap<string, LoraWeights> | undefined, fn: () => T): T {
  const saved: [{ lora?: LoraWeights }, LoraWeights | undefined][] = [];
  for (const [name, target] of unet.ctx.loraTargets) {
    if (!target.lora && !adapters?.has(name)) continue;
    saved.push([target, target.lora]);
    target.lora = adapters?.get(name);
  }
  try {
    return fn();
  } finally {
    for (const [target, lora] of saved) target.lora = lora;
  }
}

function checkBatch(b: TcdBatch, solver: DdimSolver): number {
  const [B, C, h, w] = b.latentShape;
  const n = B * C * h * w;
  const problems: string[] = [];
  const len = (name: string, got: number, want: number) => {
    if (got !== want) problems.push(`${name}: ${got} values, expected ${want}`);
  };
  len('latents', b.latents.length, n);
  len('noise', b.noise.length, n);
  if (b.encoderHiddenStates.length % (B * b.tokens) !== 0)
    problems.push(`encoderHiddenStates: ${b.encoderHiddenStates.length} values, not a multiple of B·tokens = ${B * b.tokens}`);
  if (b.textEmbeds.length % B !== 0) problems.push(`textEmbeds: ${b.textEmbeds.length} values, not a multiple of B = ${B}`);
  len('timeIds', b.timeIds.length, 6 * B);
  len('index', b.index.length, B);
  len('endIndex', b.endIndex.length, B);
  len('w', b.w.length, B);
  for (let i = 0; i < Math.min(B, b.index.length, b.endIndex.length); i++) {
    const n_ = b.index[i];
    const m = b.endIndex[i];
    if (!Number.isInteger(n_) || n_ < 0 || n_ >= solver.numDdimTimesteps) problems.push(`index[${i}] = ${n_}, expected an integer in [0, ${solver.numDdimTimesteps - 1}]`);
    else if (!Number.isInteger(m) || m < 0 || m > n_) problems.push(`endIndex[${i}] = ${m}, expected an integer in [0, index = ${n_}]`);
  }
  if (problems.length) throw new DdimSolverError(`TCD batch does not fit [${b.latentShape.join(', ')}]:\n  ${problems.join('\n  ')}`);
  return n;
}

/** Reads a UNet output back and frees it. */
async function readOut(v: Var): Promise<Float32Array> {
  try {
    return await v.value.toArray();
  } finally {
    v.dispose();
  }
}

function checkTeacherBatching(b: TeacherBatching | undefined): void {
  if (b !== undefined && !TEACHER_BATCHINGS.includes(b))
    throw new DdimSolverError(`teacherBatching must be ${TEACHER_BATCHINGS.map((x) => `'${x}'`).join(' or ')}, got ${JSON.stringify(b)}`);
}

/** [a ‖ b] as one host array. */
function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * The teacher's guidance pair: the frozen base (adapters off) on x_start at t_start, with the prompt (ε_c) and with
 * zeroed prompt / pooled embeddings (ε_u). `cond` are the batch's uploaded conditional inputs ('separate' reuses
 * them); 'batched' uploads [x_start ‖ x_start], [prompt ‖ 0], [pooled ‖ 0], [time_ids ‖ time_ids] and frees them
 * once ε is read back. Per sample the two modes compute the same sums; the GEMM tiling over 2B rows may order them
 * differently.
 */
export async function teacherEps(
  unet: UNet2DConditionModel,
  batch: TcdBatch,
  xStart: Float32Array,
  tStart: readonly number[],
  cond: { sample: Var; ehs: Var; pooled: Var; timeIds: Var },
  batching: TeacherBatching = DEFAULT_TEACHER_BATCHING,
): Promise<{ epsCond: Float32Array; epsUncond: Float32Array }> {
  checkTeacherBatching(batching);
  const gpu = unet.gpu;
  const [B] = batch.latentShape;
  const n = xStart.length;
  if (batching === 'separate') {
    const zeroEhs = new Var(Tensor.zeros(gpu, cond.ehs.shape, 'f32', 'prompt_embeds.zeros'));
    const zeroPooled = new Var(Tensor.zeros(gpu, cond.pooled.shape, 'f32', 'pooled_prompt_embeds.zeros'));
    try {
      const [epsCondVar, epsUncondVar] = noGrad(() =>
        withAdapters(unet, undefined, () => [
          unet.forward({ sample: cond.sample, timestep: tStart, encoderHiddenStates: cond.ehs, textEmbeds: cond.pooled, timeIds: cond.timeIds }),
          unet.forward({ sample: cond.sample, timestep: tStart, encoderHiddenStates: zeroEhs, textEmbeds: zeroPooled, timeIds: cond.timeIds }),
        ]),
      );
      const epsCond = await readOut(epsCondVar);
      const epsUncond = await readOut(epsUncondVar);
      return { epsCond, epsUncond };
    } finally {
      zeroEhs.dispose();
      zeroPooled.dispose();
    }
  }
  const up = (data: Float32Array, shape: readonly number[], label: string) => new Var(Tensor.fromArray(gpu, data, shape, { label }), false, label);
  const [, C, h, w] = batch.latentShape;
  const inputs = [
    up(concat(xStart, xStart), [2 * B, C, h, w], 'x_start.cfg'),
    up(concat(batch.encoderHiddenStates, new Float32Array(batch.encoderHiddenStates.length)), [2 * B, ...cond.ehs.shape.slice(1)], 'prompt_embeds.cfg'),
    up(concat(batch.textEmbeds, new Float32Array(batch.textEmbeds.length)), [2 * B, ...cond.pooled.shape.slice(1)], 'pooled_prompt_embeds.cfg'),
    up(concat(batch.timeIds, batch.timeIds), [2 * B, 6], 'time_ids.cfg'),
  ];
  try {
    const [sample, ehs, pooled, timeIds] = inputs;
    const eps = await readOut(
      noGrad(() =>
        withAdapters(unet, undefined, () =>
          unet.forward({ sample, timestep: [...tStart, ...tStart], encoderHiddenStates: ehs, textEmbeds: pooled, timeIds }),
        ),
      ),
    );
    return { epsCond: eps.slice(0, n), epsUncond: eps.slice(n, 2 * n) };
  } finally {
    for (const v of inputs) v.dispose();
  }
}

/** One TCD step: forward passes, losses, and the backward into the LoRA Vars' .grad (accumulating). */
export async function tcdDistillStep(unet: UNet2DConditionModel, solver: DdimSolver, batch: TcdBatch, opts: TcdStepOptions): Promise<TcdStepResult> {
  const n = checkBatch(batch, solver);
  const [B] = batch.latentShape;
  const per = n / B;
  const huberC = opts.huberC ?? 0.001;
  if (!(huberC > 0)) throw new DdimSolverError(`huberC must be > 0, got ${huberC}`);
  checkTeacherBatching(opts.teacherBatching);
  const gpu = unet.gpu;
  const tStart = batch.index.map((i) => solver.startTimestep(i));
  const tN = batch.index.map((i) => solver.teacherTimestep(i));
  const tM = batch.endIndex.map((m, i) => solver.endTimestep(m, batch.index[i]));

  const xStart = new Float32Array(n);
  for (let b = 0; b < B; b++) solver.addNoise(batch.latents, batch.noise, tStart[b], xStart, b * per, per);

  const dims = batch.encoderHiddenStates.length / (B * batch.tokens);
  const ehsShape = [B, batch.tokens, dims];
  const pooledShape = [B, batch.textEmbeds.length / B];
  const up = (data: Float32Array, shape: readonly number[], label: string) => new Var(Tensor.fromArray(gpu, data, shape, { label }), false, label);
  const ehs = up(batch.encoderHiddenStates, ehsShape, 'prompt_embeds');
  const pooled = up(batch.textEmbeds, pooledShape, 'pooled_prompt_embeds');
  const timeIds = up(batch.timeIds, [B, 6], 'time_ids');
  const sampleStart = up(xStart, batch.latentShape, 'x_start');
  const toFree: Var[] = [ehs, pooled, timeIds, sampleStart];
  try {
    const { epsCond, epsUncond } = await teacherEps(unet, batch, xStart, tStart, { sample: sampleStart, ehs, pooled, timeIds }, opts.teacherBatching);

    const x0c = new Float32Array(n);
    const x0u = new Float32Array(n);
    const predX0 = new Float32Array(n);
    const predNoise = new Float32Array(n);
    const xPrev = new Float32Array(n);
    const xPrevF64 = new Float64Array(n);
    for (let b = 0; b < B; b++) {
      const o = b * per;
      solver.predictX0(xStart, epsCond, tStart[b], x0c, o, per);
      solver.predictX0(xStart, epsUncond, tStart[b], x0u, o, per);
      guide(x0c, x0u, batch.w[b], predX0, o, per);
      guide(epsCond, epsUncond, batch.w[b], predNoise, o, per);
      xPrevF64.set(solver.ddimStep(predX0, predNoise, batch.index[b], xPrev, o, per), o);
    }

    // Target: the LoRA (or its EMA copy) without gradient, from x_prev at t_n, jumped to t_m.
    const samplePrev = up(xPrev, batch.latentShape, 'x_prev');
    toFree.push(samplePrev);
    const epsTarget = await readOut(
      noGrad(() =>
        withAdapters(unet, opts.targetAdapters ?? currentAdapters(unet), () =>
          unet.forward({ sample: samplePrev, timestep: tN, encoderHiddenStates: ehs, textEmbeds: pooled, timeIds }),
        ),
      ),
    );
    const target = new Float32Array(n);
    for (let b = 0; b < B; b++) solver.tcf1(xPrev, epsTarget, tN[b], tM[b], target, b * per, per);

    // Student: recorded on a tape; the loss gradient w.r.t. its ε output is formed here and seeded into backward.
    const tape = new Tape();
    const epsStudentVar = tape.record(() =>
      tidy(() => unet.forward({ sample: sampleStart, timestep: tStart, encoderHiddenStates: ehs, textEmbeds: pooled, timeIds })),
    );
    let epsStudent: Float32Array;
    try {
      epsStudent = await epsStudentVar.value.toArray();
    } catch (e) {
      tape.discard();
      epsStudentVar.dispose();
      throw e;
    }
    const modelPred = new Float32Array(n);
    for (let b = 0; b < B; b++) solver.tcf1(xStart, epsStudent, tStart[b], tM[b], modelPred, b * per, per);

    // Losses (float64 sums of float32 terms) and d loss / d model_pred in torch's float32 order.
    let sumSq = 0;
    let sumHuber = 0;
    const c = Math.fround(huberC);
    const c2 = Math.fround(huberC * huberC);
    const dPred = new Float32Array(n);
    const norm = Math.fround(2 / n);
    const invN = Math.fround(1 / n);
    for (let i = 0; i < n; i++) {
      const d = Math.fround(modelPred[i] - target[i]);
      const sq = Math.fround(d * d);
      const root = Math.fround(Math.sqrt(Math.fround(sq + c2)));
      sumSq += sq;
      sumHuber += Math.fround(root - c);
      dPred[i] = opts.loss === 'l2' ? Math.fround(d * norm) : Math.fround(Math.fround(d / root) * invN);
    }
    const epsGrad = new Float32Array(n);
    for (let b = 0; b < B; b++) solver.tcf1EpsGrad(dPred, tStart[b], tM[b], epsGrad, b * per, per);
    const scale = opts.gradScale ?? 1;
    const seedData = scale === 1 ? epsGrad : Float32Array.from(epsGrad, (g) => g * scale);
    const seed = Tensor.fromArray(gpu, seedData, batch.latentShape, { label: 'd_loss/d_eps_student' });
    try {
      tape.backward(epsStudentVar, seed);
    } finally {
      seed.release();
      epsStudentVar.dispose();
    }
    const lossL2 = sumSq / n;
    const lossHuber = sumHuber / n;
    return {
      loss: opts.loss === 'l2' ? lossL2 : lossHuber,
      lossL2,
      lossHuber,
      tStart,
      tN,
      tM,
      tensors: opts.keepTensors
        ? { xStart, epsStudent, modelPred, epsCond, epsUncond, predX0, predNoise, xPrev, xPrevF64, epsTarget, target, epsGrad }
        : undefined,
    };
  } finally {
    for (const v of toFree) v.dispose();
  }
}

/** The UNet's current adapters by module (the student's own weights, used as the target without gradient). */
function currentAdapters(unet: UNet2DConditionModel): Map<string, LoraWeights> {
  const out = new Map<string, LoraWeights>();
  for (const [name, t] of unet.ctx.loraTargets) if (t.lora) out.set(name, t.lora);
  return out;
}

