// The fused TCD sampler step (kernels/tcd_step.wgsl): diffusers TCDScheduler.step for epsilon prediction, one dispatch
// per sampler step, with the per-step scalars computed here on the host in float32 exactly as diffusers/torch does.
import { ShapeError } from '../../runtime/errors.js';
import { Tensor, shapeStr } from '../tensor.js';
import { requireDType, requireSameGpu } from './checks.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export const tcdStepKernel = new Kernel<Record<string, number>>({
  name: 'tcd_step',
  entryPoints: ['tcd_step', 'tcd_step_noise'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'sample', kind: 'read' },
    { name: 'model_output', kind: 'read' },
    { name: 'noise', kind: 'read' },
    { name: 'prev', kind: 'read_write' },
    { name: 'denoised', kind: 'read_write' },
    { name: 'x0', kind: 'read_write' },
  ],
  uniforms: [
    ['n', 'u32'],
    ['sqrtBetaT', 'f32'],
    ['sqrtAlphaT', 'f32'],
    ['sqrtAlphaS', 'f32'],
    ['sqrtBetaS', 'f32'],
    ['cPrev', 'f32'],
    ['cNoise', 'f32'],
    ['one', 'f32'],
  ],
});

/** The scalars of one TCD step; every float is a float32 value, computed as torch computes it. */
export interface TcdStepScalars {
  timestep: number;
  /** The next (less noisy) timestep; 0 on the last step. */
  prevTimestep: number;
  /** The intermediate TCF(1) target s = floor(f32(f32(1 − eta)·prev)). */
  s: number;
  /** eta > 0 and not the last step: the step re-noises with an injected noise tensor. */
  addNoise: boolean;
  alphaT: number;
  alphaPrev: number;
  alphaS: number;
  sqrtAlphaT: number;
  sqrtBetaT: number;
  sqrtAlphaS: number;
  sqrtBetaS: number;
  /** sqrt(ᾱ_prev / ᾱ_s) */
  cPrev: number;
  /** sqrt(1 − ᾱ_prev / ᾱ_s) */
  cNoise: number;
}

function tableIndex(what: string, t: number, len: number): number {
  if (!Number.isInteger(t) || t < 0 || t >= len) throw new RangeError(`tcdStepScalars: ${what} ${t} is not an integer timestep in [0, ${len - 1}]`);
  return t;
}

/**
 * Scalars of TCDScheduler.step(model_output, timestep, sample, eta) (diffusers scheduling_tcd.py, step 1–4).
 * alphasCumprod is diffusers' float32 ᾱ table indexed by timestep (values are used as float32). prevTimestep is the
 * next entry of the timestep list, or undefined on the last step (diffusers then uses prev = 0 and draws no noise).
 * JS doubles emulate float32 + − × ÷ sqrt exactly when each result is rounded with Math.fround.
 */
export function tcdStepScalars(alphasCumprod: ArrayLike<number>, timestep: number, prevTimestep: number | undefined, eta: number): TcdStepScalars {
  const f = Math.fround;
  if (!(eta >= 0 && eta <= 1)) throw new RangeError(`tcdStepScalars: eta (gamma) must be in [0, 1], got ${eta}`);
  const len = alphasCumprod.length;
  const t = tableIndex('timestep', timestep, len);
  const last = prevTimestep === undefined;
  const prev = last ? 0 : tableIndex('prevTimestep', prevTimestep, len);
  // torch: python float (1 − eta) times a 0-dim int64 tensor is a float32 multiply, then floor.
  const s = Math.floor(f(f(1 - eta) * prev));
  const alphaT = f(alphasCumprod[t]);
  const alphaPrev = f(alphasCumprod[prev]);
  const alphaS = f(alphasCumprod[s]);
  const sqrtAlphaT = f(Math.sqrt(alphaT));
  const ratio = f(alphaPrev / alphaS);
  return {
    timestep: t,
    prevTimestep: prev,
    s,
    addNoise: eta > 0 && !last,
    alphaT,
    alphaPrev,
    alphaS,
    sqrtAlphaT,
    sqrtBetaT: f(Math.sqrt(f(1 - alphaT))),
    sqrtAlphaS: f(Math.sqrt(alphaS)),
    sqrtBetaS: f(Math.sqrt(f(1 - alphaS))),
    cPrev: f(Math.sqrt(ratio)),
    cNoise: f(Math.sqrt(f(1 - ratio))),
  };
}

export interface TcdStepOutput {
  /** The next sample x_prev (diffusers prev_sample). */
  prevSample: Tensor;
  /** x_s = sqrt(ᾱ_s)·x0 + sqrt(1 − ᾱ_s)·ε̂ (diffusers pred_noised_sample: the step's "denoised" output). */
  predNoisedSample: Tensor;
  /** x0 = (x_t − sqrt(1 − ᾱ_t)·ε̂) / sqrt(ᾱ_t) (pred_original_sample). */
  predOriginalSample: Tensor;
}

/**
 * One TCD step from sample x_t and the epsilon prediction model_output, with the scalars of tcdStepScalars. `noise`
 * (same shape) is required when scalars.addNoise and ignored otherwise (diffusers draws none then).
 */
export function tcdStep(sample: Tensor, modelOutput: Tensor, scalars: TcdStepScalars, noise?: Tensor): TcdStepOutput {
  const op = 'tcdStep';
  requireDType(op, 'f32', sample, modelOutput);
  requireSameGpu(op, sample, modelOutput);
  const same = (t: Tensor) => t.rank === sample.rank && t.shape.every((d, i) => d === sample.shape[i]);
  if (!same(modelOutput))
    throw new ShapeError(`${op}: model_output has shape ${shapeStr(modelOutput.shape)}, expected the sample's ${shapeStr(sample.shape)}`);
  if (scalars.addNoise) {
    if (!noise)
      throw new ShapeError(`${op}: this step re-noises (eta > 0, not the last step) and needs a noise tensor of shape ${shapeStr(sample.shape)}`);
    requireDType(op, 'f32', noise);
    requireSameGpu(op, sample, noise);
    if (!same(noise)) throw new ShapeError(`${op}: noise has shape ${shapeStr(noise.shape)}, expected ${shapeStr(sample.shape)}`);
  }
  const gpu = sample.gpu;
  const out: TcdStepOutput = {
    prevSample: Tensor.empty(gpu, sample.shape, 'f32', 'tcd.prev_sample'),
    predNoisedSample: Tensor.empty(gpu, sample.shape, 'f32', 'tcd.pred_noised_sample'),
    predOriginalSample: Tensor.empty(gpu, sample.shape, 'f32', 'tcd.pred_original_sample'),
  };
  const { sqrtBetaT, sqrtAlphaT, sqrtAlphaS, sqrtBetaS, cPrev, cNoise } = scalars;
  tcdStepKernel.run(gpu, {
    entry: scalars.addNoise ? 'tcd_step_noise' : 'tcd_step',
    variant: {},
    params: { n: sample.size, sqrtBetaT, sqrtAlphaT, sqrtAlphaS, sqrtBetaS, cPrev, cNoise, one: 1 },
    buffers: {
      sample,
      model_output: modelOutput,
      ...(scalars.addNoise ? { noise: noise! } : {}),
      prev: out.prevSample,
      denoised: out.predNoisedSample,
      x0: out.predOriginalSample,
    },
    workgroups: grid1d(gpu, sample.size),
    label: scalars.addNoise ? 'tcd_step_noise' : 'tcd_step',
  });
  return out;
}
