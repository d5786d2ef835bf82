// AdamW update and global gradient-norm clipping on the GPU (kernels/adamw.wgsl), with torch.optim.AdamW and
// torch.nn.utils.clip_grad_norm_ semantics. Parameters, moments and gradients stay on the GPU; nothing is read back.
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { Tensor, shapeStr } from '../tensor.js';
import { requireDType, requireSameGpu } from './checks.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';
import { globalL2Norm } from './reduce.js';

export const adamwKernel = new Kernel<Record<string, number>>({
  name: 'adamw',
  entryPoints: ['adamw', 'adamw_pair', 'adamw_clipped', 'clip_coef', 'clip_scale'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'p', kind: 'read_write' },
    { name: 'g', kind: 'read' },
    { name: 'm', kind: 'read_write' },
    { name: 'v', kind: 'read_write' },
    { name: 'norm', kind: 'read' },
    { name: 'coef_out', kind: 'read_write' },
    { name: 'coef', kind: 'read' },
    { name: 'grad', kind: 'read_write' },
    { name: 'p2', kind: 'read_write' },
    { name: 'g2', kind: 'read' },
    { name: 'm2', kind: 'read_write' },
    { name: 'v2', kind: 'read_write' },
  ],
  uniforms: [
    ['n', 'u32'],
    ['decay', 'f32'],
    ['lerpW', 'f32'],
    ['beta2', 'f32'],
    ['omb2', 'f32'],
    ['stepSize', 'f32'],
    ['bc2Sqrt', 'f32'],
    ['eps', 'f32'],
    ['maxNorm', 'f32'],
    ['n2', 'u32'],
  ],
});

/** torch.optim.AdamW hyperparameters; the defaults are torch's. */
export interface AdamWOptions {
  /** default 1e-3 */
  lr?: number;
  /** default 0.9 */
  beta1?: number;
  /** default 0.999 */
  beta2?: number;
  /** default 1e-8 */
  eps?: number;
  /** Decoupled weight decay, default 1e-2. */
  weightDecay?: number;
}

/** One optimised tensor: the parameter, its gradient and its first / second moments (zeros before step 1). */
export interface AdamWSlot {
  param: Tensor;
  grad: Tensor;
  m: Tensor;
  v: Tensor;
}

/** Clipping fused into the update: grads are scaled by min(1, maxNorm / (norm + 1e-6)) as they are read. */
export interface FusedClip {
  /** The total gradient norm, shape [] or [1] (e.g. globalL2Norm of all grads). */
  norm: Tensor;
  maxNorm: number;
}

/** The uniforms of one AdamW step t (1-based), computed in float64 as torch computes its Python scalars. */
export function adamwScalars(step: number, opts: AdamWOptions = {}) {
  const lr = opts.lr ?? 1e-3;
  const beta1 = opts.beta1 ?? 0.9;
  const beta2 = opts.beta2 ?? 0.999;
  const eps = opts.eps ?? 1e-8;
  const wd = opts.weightDecay ?? 1e-2;
  if (!Number.isInteger(step) || step < 1) throw new RangeError(`adamw: step must be an integer >= 1, got ${step}`);
  if (!(lr >= 0)) throw new RangeError(`adamw: invalid learning rate ${lr}`);
  if (!(eps >= 0)) throw new RangeError(`adamw: invalid eps ${eps}`);
  if (!(beta1 >= 0 && beta1 < 1)) throw new RangeError(`adamw: invalid beta1 ${beta1} (expected [0, 1))`);
  if (!(beta2 >= 0 && beta2 < 1)) throw new RangeError(`adamw: invalid beta2 ${beta2} (expected [0, 1))`);
  if (!(wd >= 0)) throw new RangeError(`adamw: invalid weight decay ${wd}`);
  return {
    decay: 1 - lr * wd,
    lerpW: 1 - beta1,
    beta2,
    omb2: 1 - beta2,
    stepSize: lr / (1 - beta1 ** step),
    bc2Sqrt: Math.sqrt(1 - beta2 ** step),
    eps,
  };
}

function checkSlot(s: AdamWSlot, i: number): void {
  const op = `adamw slot ${i}`;
  requireDType(op, 'f32', s.param, s.grad, s.m, s.v);
  requireSameGpu(op, s.param, s.grad, s.m, s.v);
  for (const [name, t] of [['grad', s.grad], ['m', s.m], ['v', s.v]] as const)
    if (t.size !== s.param.size)
      throw new ShapeError(
        `${op}: ${name} '${t.label}' has shape ${shapeStr(t.shape)}, expected ${s.param.size} elements like param ${shapeStr(s.param.shape)}`,
      );
  // Written buffers may not alias anything else bound in the same dispatch.
  const bufs = [s.param.buffer, s.grad.buffer, s.m.buffer, s.v.buffer];
  if (new Set(bufs).size !== 4) throw new Error(`${op}: param, grad, m and v must be four distinct buffers`);
}

const NO_ADAM = { decay: 0, lerpW: 0, beta2: 0, omb2: 0, stepSize: 0, bc2Sqrt: 0, eps: 0 };

/**
 * The clip coefficient min(1, maxNorm / (norm + 1e-6)) as a one-element tensor, computed on the GPU from a total norm
 * (shape [] or [1]) exactly as torch rounds it. Release it after use.
 */
export function clipCoefficient(norm: Tensor, maxNorm: number): Tensor {
  requireDType('clip', 'f32', norm);
  if (norm.size !== 1) throw new ShapeError(`clip: norm '${norm.label}' has shape ${shapeStr(norm.shape)}, expected one element`);
  if (!(maxNorm >= 0)) throw new RangeError(`clip: invalid maxNorm ${maxNorm}`);
  const coef = Tensor.empty(norm.gpu, [], 'f32', 'clip_coef');
  adamwKernel.run(norm.gpu, {
    entry: 'clip_coef',
    variant: {},
    params: { n: 1, ...NO_ADAM, maxNorm, n2: 0 },
    buffers: { norm, coef_out: coef },
    workgroups: [1],
  });
  return coef;
}

/**
 * One AdamW step t (1-based; t = 1 at the first update) for every slot, in place. With `clip`, the gradients are
 * scaled by the clip coefficient as they are read: the same numbers as clipGradNorm followed by an unclipped step,
 * without the pass over the gradients (which stay unscaled).
 */
export function adamwStep(slots: readonly AdamWSlot[], step: number, opts: AdamWOptions = {}, clip?: FusedClip): void {
  const s = adamwScalars(step, opts);
  slots.forEach(checkSlot);
  if (clip) for (const slot of slots) requireSameGpu('adamw', slot.param, clip.norm);
  const coef = clip && clipCoefficient(clip.norm, clip.maxNorm);
  for (let k = 0; k < slots.length; k++) {
    const slot = slots[k];
    const gpu = slot.param.gpu;
    const n = slot.param.size;
    const next = slots[k + 1];
    if (!coef && next && next.param.gpu === gpu) {
      // Two tensors per dispatch (same math; half the dispatches for a LoRA's many small tensors).
      adamwKernel.run(gpu, {
        entry: 'adamw_pair',
        variant: {},
        params: { n, ...s, maxNorm: 0, n2: next.param.size },
        buffers: { p: slot.param, g: slot.grad, m: slot.m, v: slot.v, p2: next.param, g2: next.grad, m2: next.m, v2: next.v },
        workgroups: grid1d(gpu, n + next.param.size),
      });
      k++;
      continue;
    }
    adamwKernel.run(gpu, {
      entry: coef ? 'adamw_clipped' : 'adamw',
      variant: {},
      params: { n, ...s, maxNorm: 0, n2: 0 },
      buffers: { p: slot.param, g: slot.grad, m: slot.m, v: slot.v, ...(coef ? { coef } : {}) },
      workgroups: grid1d(gpu, n),
    });
  }
  coef?.release();
}

/** grad ← grad · min(1, maxNorm / (norm + 1e-6)) in place for every grad (torch's rounding), norm read on the GPU. */
export function scaleByClipCoef(grads: readonly Tensor[], norm: Tensor, maxNorm: number): void {
  requireDType('clip', 'f32', ...grads);
  for (const g of grads) requireSameGpu('clip', g, norm);
  const coef = clipCoefficient(norm, maxNorm);
  for (const g of grads) {
    adamwKernel.run(g.gpu, {
      entry: 'clip_scale',
      variant: {},
      params: { n: g.size, ...NO_ADAM, maxNorm, n2: 0 },
      buffers: { coef, grad: g },
      workgroups: grid1d(g.gpu, g.size),
    });
  }
  coef.release();
}

/**
 * torch.nn.utils.clip_grad_norm_(grads, maxNorm) (L2): scales the grads in place by min(1, maxNorm / (‖g‖ + 1e-6))
 * and returns the total norm before clipping, shape [] (release it). No readback.
 */
export function clipGradNorm(grads: readonly Tensor[], maxNorm: number, gpu?: Gpu): Tensor {
  const norm = globalL2Norm(grads, gpu);
  scaleByClipCoef(grads, norm, maxNorm);
  return norm;
}
