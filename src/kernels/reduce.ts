// Reductions (kernels/reduce.wgsl): sum / mean over one axis and their backward, sumTo (un-broadcasting), and the
// global L2 norm of one or several tensors. Every reduction is a view of x as [O, N, I] reduced over N.
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { type Shape, Tensor, numel, shapeStr } from '../tensor.js';
import { requireDType, requireSameGpu } from './checks.js';
import { clampWorkgroup, grid1d } from './grid.js';
import { cast } from './cast.js';
import { Kernel } from './kernel.js';

export interface ReduceVariant {
  [k: string]: number;
}

const PRE = { none: 0, square: 1 } as const;
const POST = { none: 0, sqrt: 1 } as const;

export const reduceKernel = new Kernel<ReduceVariant>({
  name: 'reduce',
  entryPoints: ['reduce_axis', 'broadcast_axis'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'x', kind: 'read' },
    { name: 'y', kind: 'read_write' },
  ],
  uniforms: [
    ['Q', 'u32'],
    ['N', 'u32'],
    ['I', 'u32'],
    ['tiles', 'u32'],
    ['chunks', 'u32'],
    ['rowsPerChunk', 'u32'],
    ['outOffset', 'u32'],
    ['scale', 'f32'],
    ['wgX', 'u32'],
    ['wgY', 'u32'],
  ],
  constants: (v) => ({ WG: v.wg ?? 256, PRE: v.pre ?? 0, POST: v.post ?? 0 }),
});

// Enough workgroups to fill a large GPU (H100: 132 SMs × 8 resident 256-wide groups), and enough loads per thread
// (≥ MIN_ITEMS) that splitting N is worth its second pass. Tuned on the H100 with the bench cases: more groups made
// the bias gradient slower (a longer second pass), fewer made the 2^26-element L2 norm slower.
const TARGET_GROUPS = 1024;
const MIN_ITEMS = 8;
// Loads per reducing thread before the tree: 16 beat 4 by 25% on row sums of 1280 (a shorter tree per output).
const ITEMS = 16;

const pow2Ceil = (n: number) => (n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n)));
const pow2Floor = (n: number) => 2 ** Math.floor(Math.log2(n));

/** Geometry of one reduce_axis dispatch over x viewed as [O, N, I] (Q = O·I outputs). */
export interface ReducePlan {
  /** Workgroup size = wgX · wgY. */
  wg: number;
  Q: number;
  N: number;
  I: number;
  wgX: number;
  wgY: number;
  tiles: number;
  chunks: number;
  rowsPerChunk: number;
}

export function planReduce(gpu: Gpu, Q: number, N: number, I: number): ReducePlan {
  const wg = pow2Floor(clampWorkgroup(gpu, 256));
  // Threads along I read neighbouring addresses when I > 1; along N when I = 1 (rows are contiguous).
  const wantX = I > 1 ? Math.min(64, wg, pow2Ceil(Q)) : 1;
  let wgY = Math.min(wg / wantX, pow2Ceil(Math.ceil(N / ITEMS)));
  // Few outputs: give the spare threads to N.
  const wgX = Math.min(wg / wgY, pow2Ceil(Q));
  wgY = wg / wgX;
  const tiles = Math.ceil(Q / wgX);
  const maxChunks = Math.max(1, Math.floor(N / (wgY * MIN_ITEMS)));
  let chunks = Math.min(maxChunks, Math.ceil(TARGET_GROUPS / tiles));
  const rowsPerChunk = Math.ceil(N / chunks);
  chunks = rowsPerChunk > 0 ? Math.ceil(N / rowsPerChunk) : 1;
  return { wg, Q, N, I, wgX, wgY, tiles, chunks, rowsPerChunk };
}

interface Epilogue {
  pre?: number;
  post?: number;
  scale?: number;
}

/** One reduce_axis dispatch: writes plan.chunks·Q values (partial sums when chunks > 1) into y from outOffset. */
function dispatchReduce(p: ReducePlan, x: Tensor, y: Tensor, outOffset: number, e: Epilogue, label: string): void {
  const gpu = x.gpu;
  reduceKernel.run(gpu, {
    entry: 'reduce_axis',
    variant: { wg: p.wg, pre: e.pre ?? PRE.none, post: e.post ?? POST.none },
    params: {
      Q: p.Q,
      N: p.N,
      I: p.I,
      tiles: p.tiles,
      chunks: p.chunks,
      rowsPerChunk: p.rowsPerChunk,
      outOffset,
      scale: e.scale ?? 1,
      wgX: p.wgX,
      wgY: p.wgY,
    },
    buffers: { x, y },
    workgroups: grid1d(gpu, p.tiles * p.chunks, 1),
    label,
  });
}

/** y (Q elements, from outOffset) = post(scale · Σ_N pre(x)) for x viewed as [O, N, I]; splits N when it pays. */
function reduceInto(x: Tensor, Q: number, N: number, I: number, y: Tensor, outOffset: number, e: Epilogue, label: string): void {
  if (Q === 0) return;
  const p = planReduce(x.gpu, Q, N, I);
  if (p.chunks === 1) return dispatchReduce(p, x, y, outOffset, e, label);
  // Partial sums [chunks, Q], then a second reduction over the chunks (which carries pre-applied values).
  const partial = Tensor.empty(x.gpu, [p.chunks, Q], 'f32', `${label}.partial`);
  dispatchReduce(p, x, partial, 0, { pre: e.pre }, `${label}.partial`);
  reduceInto(partial, Q, p.chunks, Q, y, outOffset, { post: e.post, scale: e.scale }, label);
  partial.release();
}

function normAxis(op: string, shape: Shape, axis: number): number {
  const r = shape.length;
  if (!Number.isInteger(axis) || axis < -r || axis >= r)
    throw new ShapeError(`${op}: axis ${axis} is out of range for shape ${shapeStr(shape)} (expected an integer in [${-r}, ${r - 1}])`);
  return axis < 0 ? axis + r : axis;
}

/** [O, N, I] of `shape` around `axis`. */
function split(shape: Shape, axis: number): [number, number, number] {
  return [numel(shape.slice(0, axis)), shape[axis], numel(shape.slice(axis + 1))];
}

export interface AxisOptions {
  /** Keep the reduced axis as size 1 (default false). */
  keepdim?: boolean;
}

function reduceAxis(op: 'sum' | 'mean', x: Tensor, axis: number, opts: AxisOptions): Tensor {
  requireDType(op, 'f32', x);
  const a = normAxis(op, x.shape, axis);
  const [O, N, I] = split(x.shape, a);
  const shape = opts.keepdim ? x.shape.map((d, i) => (i === a ? 1 : d)) : x.shape.filter((_, i) => i !== a);
  const y = Tensor.empty(x.gpu, shape, 'f32', `${op}(${x.label}, ${a})`);
  reduceInto(x, O * I, N, I, y, 0, { scale: op === 'mean' ? 1 / N : 1 }, op);
  return y;
}

/** Σ of x over `axis` (negative counts from the end). */
export function sum(x: Tensor, axis: number, opts: AxisOptions = {}): Tensor {
  return reduceAxis('sum', x, axis, opts);
}

/** Mean of x over `axis`; an empty axis gives NaN (0/0), as in PyTorch. */
export function mean(x: Tensor, axis: number, opts: AxisOptions = {}): Tensor {
  return reduceAxis('mean', x, axis, opts);
}

/** Σ of all elements of x, shape [] (a scalar tensor). */
export function sumAll(x: Tensor): Tensor {
  requireDType('sumAll', 'f32', x);
  const y = Tensor.empty(x.gpu, [], 'f32', `sumAll(${x.label})`);
  reduceInto(x, 1, x.size, 1, y, 0, {}, 'sumAll');
  return y;
}

/** Mean of all elements of x, shape []. */
export function meanAll(x: Tensor): Tensor {
  requireDType('meanAll', 'f32', x);
  const y = Tensor.empty(x.gpu, [], 'f32', `meanAll(${x.label})`);
  reduceInto(x, 1, x.size, 1, y, 0, { scale: 1 / x.size }, 'meanAll');
  return y;
}

function broadcastBack(op: string, dy: Tensor, xShape: Shape, axis: number, mean: boolean): Tensor {
  requireDType(`${op} backward`, 'f32', dy);
  const a = normAxis(`${op} backward`, xShape, axis);
  const [O, N, I] = split(xShape, a);
  if (dy.size !== O * I)
    throw new ShapeError(
      `${op} backward: dy ${shapeStr(dy.shape)} has ${dy.size} elements, expected ${O * I} (x ${shapeStr(xShape)} reduced over axis ${a})`,
    );
  const gpu = dy.gpu;
  const dx = Tensor.empty(gpu, xShape, 'f32', `d${op}(${dy.label})`);
  reduceKernel.run(gpu, {
    entry: 'broadcast_axis',
    variant: {},
    params: { Q: O * I, N, I, tiles: 0, chunks: 0, rowsPerChunk: 0, outOffset: 0, scale: mean ? 1 / N : 1, wgX: 0, wgY: 0 },
    buffers: { x: dy, y: dx },
    workgroups: grid1d(gpu, dx.size),
    label: `${op}_backward`,
  });
  return dx;
}

/** dx of y = sum(x, axis): dy broadcast along `axis` (dy may have the keepdim shape or not). */
export function sumBackward(dy: Tensor, xShape: Shape, axis: number): Tensor {
  return broadcastBack('sum', dy, xShape, axis, false);
}

/** dx of y = mean(x, axis): dy / N broadcast along `axis`. */
export function meanBackward(dy: Tensor, xShape: Shape, axis: number): Tensor {
  return broadcastBack('mean', dy, xShape, axis, true);
}

/**
 * Sums x over its broadcast dims so the result has `shape` (the inverse of broadcasting `shape` to x.shape).
 * Adjacent reduced dims are merged, and each run of them is one axis reduction (largest first), so a bias gradient
 * [B, T, C] → [C] is a single [1, B·T, C] reduction.
 */
export function sumTo(x: Tensor, shape: Shape): Tensor {
  if (x.dtype === 'f16') {
    // f16: summed in f32 (an f32 copy of x), rounded to f16 once.
    const x32 = cast(x, 'f32');
    const s32 = sumTo(x32, shape);
    x32.release();
    const s = cast(s32, 'f16');
    s32.release();
    return s;
  }
  requireDType('sumTo', 'f32', x);
  const rank = x.rank;
  if (shape.length > rank) throw new ShapeError(`sumTo: cannot reduce ${shapeStr(x.shape)} to ${shapeStr(shape)} (higher rank)`);
  const target = [...new Array(rank - shape.length).fill(1), ...shape];
  // Runs of kept / reduced dims, size-1 dims dropped.
  const runs: { size: number; reduced: boolean }[] = [];
  x.shape.forEach((d, i) => {
    if (target[i] !== d && target[i] !== 1)
      throw new ShapeError(`sumTo: cannot reduce ${shapeStr(x.shape)} to ${shapeStr(shape)} (dim ${i}: ${d} vs ${target[i]})`);
    if (d === 1) return;
    const reduced = target[i] !== d;
    const last = runs[runs.length - 1];
    if (last && last.reduced === reduced) last.size *= d;
    else runs.push({ size: d, reduced });
  });
  let cur = x.reshape(x.shape);
  for (;;) {
    let g = -1;
    runs.forEach((r, i) => {
      if (r.reduced && (g < 0 || r.size > runs[g].size)) g = i;
    });
    if (g < 0) break;
    const O = numel(runs.slice(0, g).map((r) => r.size));
    const I = numel(runs.slice(g + 1).map((r) => r.size));
    const next = Tensor.empty(x.gpu, [O * I], 'f32', `sumTo(${x.label})`);
    reduceInto(cur, O * I, runs[g].size, I, next, 0, {}, 'sumTo');
    cur.release();
    cur = next;
    // Drop the reduced run and merge the kept runs that now touch.
    runs.splice(g, 1);
    if (g > 0 && g < runs.length && runs[g - 1].reduced === runs[g].reduced) {
      runs[g - 1].size *= runs[g].size;
      runs.splice(g, 1);
    }
  }
  const y = cur.reshape(shape);
  cur.release();
  return y;
}

/**
 * ‖x‖₂ over all elements of every tensor in xs: sqrt(Σ_t Σ x_t²), shape [] on the GPU (no readback). Each tensor's
 * squares are summed into per-workgroup partials of one buffer, then one reduction of the partials takes the sqrt.
 * Squares overflow f32 above ~1.8e19 per element.
 */
export function globalL2Norm(xs: readonly Tensor[], gpu?: Gpu): Tensor {
  const g = gpu ?? xs[0]?.gpu;
  if (!g) throw new ShapeError('globalL2Norm: needs at least one tensor (or a gpu for the empty list)');
  requireDType('globalL2Norm', 'f32', ...xs);
  if (xs.length) requireSameGpu('globalL2Norm', ...xs);
  const plans = xs.map((t) => planReduce(g, 1, t.size, 1));
  const P = plans.reduce((s, p, i) => s + (xs[i].size ? p.chunks : 0), 0);
  const partial = Tensor.empty(g, [P], 'f32', 'l2norm.partial');
  let offset = 0;
  xs.forEach((t, i) => {
    if (!t.size) return;
    dispatchReduce(plans[i], t, partial, offset, { pre: PRE.square }, 'l2norm.partial');
    offset += plans[i].chunks;
  });
  const y = Tensor.empty(g, [], 'f32', 'l2norm');
  reduceInto(partial, 1, P, 1, y, 0, { post: POST.sqrt }, 'l2norm');
  partial.release();
  return y;
}

/** ‖x‖₂ over all elements, shape []. */
export function l2Norm(x: Tensor): Tensor {
  return globalL2Norm([x]);
}
