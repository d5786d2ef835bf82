// Softmax over the last axis and its backward (kernels/softmax.wgsl).
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { Tensor, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';
import { commonDType, requireSameGpu } from './checks.js';
import { clampWorkgroup, grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export interface SoftmaxVariant {
  [k: string]: number | string;
  /** Storage element type (f32 math either way). */
  dtype: DType;
  /** Workgroup size. */
  wg: number;
  /** Row elements each thread keeps in registers. */
  vpt: number;
}

export const softmaxKernel = new Kernel<SoftmaxVariant>({
  name: 'softmax',
  entryPoints: ['softmax', 'softmax_backward'],
  dtypes: ['f32', 'f16'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'x', kind: 'read' },
    { name: 'y', kind: 'read' },
    { name: 'dy', kind: 'read' },
    { name: 'out', kind: 'read_write' },
  ],
  uniforms: [
    ['R', 'u32'],
    ['C', 'u32'],
    ['tpr', 'u32'],
    ['_pad', 'u32'],
  ],
  constants: (v) => ({ WG: v.wg }),
  // Private arrays need a const length, which an override cannot give.
  prelude: (v) => `const VPT: u32 = ${v.vpt ?? 4}u;`,
});

const pow2Ceil = (n: number) => (n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n)));
const pow2Floor = (n: number) => 2 ** Math.floor(Math.log2(n));
/** Row elements a thread keeps in registers (the backward keeps two such slices). */
const MAX_VPT = 32;
/**
 * CPU adapters (lavapipe, SwiftShader) compile each unrolled register slot slowly (seconds per pipeline at 16–32)
 * and gain nothing from it (nor from wider workgroups), so they cache at most 4 per thread and re-read the rest.
 */
const MAX_VPT_CPU = 4;

const maxVptOf = new WeakMap<Gpu, number>();
function maxVpt(gpu: Gpu): number {
  let v = maxVptOf.get(gpu);
  if (v === undefined) {
    const cpu = (gpu.adapterInfo as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
    maxVptOf.set(gpu, (v = cpu ? MAX_VPT_CPU : MAX_VPT));
  }
  return v;
}

/** Threads per row, workgroup size and cached elements per thread for rows of C. */
export function planSoftmax(gpu: Gpu, C: number): { tpr: number; wg: number; vpt: number } {
  const base = pow2Floor(clampWorkgroup(gpu, 256));
  const cap = maxVpt(gpu);
  // Rows too long to cache with 256 threads may use the device's larger workgroups (not on CPUs, see above).
  const maxTpr = Math.ceil(C / base) > cap && cap === MAX_VPT ? pow2Floor(clampWorkgroup(gpu, 1024)) : base;
  // About 8 elements per thread (H100: 8 beat 4 and 16 on rows of 77 and 1000): short rows share a workgroup,
  // long rows get all of one.
  const tpr = Math.min(maxTpr, pow2Ceil(Math.ceil(C / 8)));
  const vpt = Math.min(cap, pow2Ceil(Math.ceil(C / tpr)));
  return { tpr, wg: Math.max(base, tpr), vpt };
}

function rowsOf(op: string, t: Tensor): [number, number] {
  if (t.rank === 0) throw new ShapeError(`${op}: '${t.label}' has shape ${shapeStr(t.shape)}, expected rank ≥ 1 (softmax is over the last axis)`);
  const C = t.shape[t.rank - 1];
  return [C ? t.size / C : 0, C];
}

function run(entry: 'softmax' | 'softmax_backward', R: number, C: number, buffers: Record<string, Tensor>, out: Tensor): void {
  const gpu = out.gpu;
  const p = planSoftmax(gpu, C);
  softmaxKernel.run(gpu, {
    entry,
    variant: { wg: p.wg, vpt: p.vpt, dtype: out.dtype },
    params: { R, C, tpr: p.tpr, _pad: 0 },
    buffers: { ...buffers, out },
    workgroups: grid1d(gpu, R, p.wg / p.tpr),
  });
}

/** Softmax over the last axis of x (any rank ≥ 1). */
export function softmax(x: Tensor): Tensor {
  const dtype = commonDType('softmax', x);
  const [R, C] = rowsOf('softmax', x);
  const y = Tensor.empty(x.gpu, x.shape, dtype, `softmax(${x.label})`);
  run('softmax', R, C, { x }, y);
  return y;
}

/** dx of y = softmax(x) from the forward output y: dx = y ⊙ (dy − Σ_row y ⊙ dy). */
export function softmaxBackward(y: Tensor, dy: Tensor): Tensor {
  const dtype = commonDType('softmax backward', y, dy);
  requireSameGpu('softmax backward', y, dy);
  if (dy.rank !== y.rank || dy.shape.some((d, i) => d !== y.shape[i]))
    throw new ShapeError(`softmax backward: dy has shape ${shapeStr(dy.shape)}, expected y's shape ${shapeStr(y.shape)}`);
  const [R, C] = rowsOf('softmax backward', y);
  const dx = Tensor.empty(y.gpu, y.shape, dtype, `dsoftmax(${y.label})`);
  run('softmax_backward', R, C, { y, dy }, dx);
  return dx;
}
