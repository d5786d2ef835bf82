// Layer normalization over the last dim with optional affine weight / bias, and its backward
// (kernels/layer_norm.wgsl). x [..., D] is viewed as [M, D].
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { Tensor, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';
import { commonDType, requireDType, requireSameGpu, requireShape } from './checks.js';
import { clampWorkgroup, grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export interface LayerNormVariant {
  [k: string]: number | string;
  /** Storage type of x, y, weight, bias and their gradients; mean / rstd / partial sums and the math are f32. */
  dtype: DType;
  wg: number;
  hasW: number;
  hasB: number;
}

export const layerNormKernel = new Kernel<LayerNormVariant>({
  name: 'layer_norm',
  entryPoints: ['forward', 'bwd_dx', 'bwd_params', 'bwd_params_sum'],
  dtypes: ['f32', 'f16'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'x', kind: 'read' },
    { name: 'weight', kind: 'read' },
    { name: 'bias', kind: 'read' },
    { name: 'dy', kind: 'read' },
    { name: 'y', kind: 'read_write' },
    { name: 'mean', kind: 'read_write' },
    { name: 'rstd', kind: 'read_write' },
    { name: 'dx', kind: 'read_write' },
    { name: 'partial', kind: 'read_write' },
    { name: 'dweight', kind: 'read_write' },
    { name: 'dbias', kind: 'read_write' },
  ],
  uniforms: [
    ['M', 'u32'],
    ['D', 'u32'],
    ['T', 'u32'],
    ['R', 'u32'],
    ['eps', 'f32'],
    ['wgX', 'u32'],
    ['chunks', 'u32'],
    ['chunkRows', 'u32'],
  ],
  constants: (v) => ({ WG: v.wg, HAS_W: v.hasW, HAS_B: v.hasB }),
});

// Workgroups to aim for in bwd_params (about one wave on an H100: 132 SMs × 8 resident 256-wide groups).
const TARGET_GROUPS = 1024;
// Elements per thread a row segment aims for: enough to amortize its two tree reductions.
const ITEMS_PER_THREAD = 8;
// bwd_params: at least this many rows per lane before splitting the rows pays for its partials.
const MIN_ROWS = 4;

const pow2Ceil = (n: number) => (n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n)));
const pow2Floor = (n: number) => 2 ** Math.floor(Math.log2(n));

/** Geometry of the layer-norm dispatches for x [M, D]. */
export interface LayerNormPlan {
  wg: number;
  /** Threads per row (power of two) and rows per workgroup (wg / T) of forward / bwd_dx. */
  T: number;
  R: number;
  /** bwd_params: columns per workgroup, and the split of the M rows into chunks of chunkRows. */
  wgX: number;
  chunks: number;
  chunkRows: number;
}

export function planLayerNorm(gpu: Gpu, M: number, D: number, override: { T?: number; chunkRows?: number } = {}): LayerNormPlan {
  const wg = pow2Floor(clampWorkgroup(gpu, 256));
  const T = override.T ?? Math.min(wg, pow2Ceil(Math.ceil(D / ITEMS_PER_THREAD)));
  if (!(Number.isInteger(Math.log2(T)) && T >= 1 && T <= wg))
    throw new ShapeError(`layer_norm plan: T must be a power of two in [1, ${wg}], got ${T}`);
  const wgX = Math.min(64, wg, pow2Ceil(D));
  const wgY = wg / wgX;
  const tiles = Math.max(1, Math.ceil(D / wgX));
  let chunkRows = override.chunkRows;
  if (chunkRows === undefined) {
    const chunks = Math.max(1, Math.min(Math.ceil(TARGET_GROUPS / tiles), Math.floor(M / (wgY * MIN_ROWS))));
    chunkRows = Math.max(1, Math.ceil(M / chunks));
  }
  if (!(Number.isInteger(chunkRows) && chunkRows >= 1)) throw new ShapeError(`layer_norm plan: chunkRows must be a positive integer, got ${chunkRows}`);
  return { wg, T, R: wg / T, wgX, chunks: Math.max(1, Math.ceil(M / chunkRows)), chunkRows };
}

export interface LayerNormOptions {
  /** Affine scale w [D] (optional). */
  weight?: Tensor;
  /** Affine shift b [D] (optional). */
  bias?: Tensor;
  /** Added to the variance (default 1e-5; SDXL transformer blocks use 1e-5, CLIP 1e-5). */
  eps?: number;
  /** Geometry overrides (tests, tuning). */
  plan?: { T?: number; chunkRows?: number };
}

export interface LayerNormResult {
  /** Output, shape of x. */
  y: Tensor;
  /** Per-row mean and 1/sqrt(var + eps), saved for the backward; shape x.shape[:-1]. */
  mean: Tensor;
  rstd: Tensor;
}

function dims(op: string, x: Tensor, weight?: Tensor, bias?: Tensor): { M: number; D: number; dtype: DType } {
  const ts = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  const dtype = commonDType(op, ...ts);
  requireSameGpu(op, ...ts);
  if (x.rank < 1) throw new ShapeError(`${op}: x must have at least one dim [..., D], got ${shapeStr(x.shape)}`);
  const D = x.shape[x.rank - 1];
  if (weight) requireShape(op, weight, [D]);
  if (bias) requireShape(op, bias, [D]);
  return { M: D === 0 ? 0 : x.size / D, D, dtype };
}

function uniforms(M: number, D: number, p: LayerNormPlan, eps: number) {
  return { M, D, T: p.T, R: p.R, eps, wgX: p.wgX, chunks: p.chunks, chunkRows: p.chunkRows };
}

/** y = (x − μ)/sqrt(var + eps)·w + b over the last dim of x; w and b optional. Returns y and mean / rstd. */
export function layerNorm(x: Tensor, opts: LayerNormOptions = {}): LayerNormResult {
  const op = 'layer_norm';
  const { weight, bias } = opts;
  const { M, D, dtype } = dims(op, x, weight, bias);
  const eps = opts.eps ?? 1e-5;
  if (!(Number.isFinite(eps) && eps >= 0)) throw new ShapeError(`${op}: eps must be a finite number >= 0, got ${eps}`);
  const gpu = x.gpu;
  const y = Tensor.empty(gpu, x.shape, dtype, `layer_norm(${x.label})`);
  const statShape = x.shape.slice(0, -1);
  const mean = Tensor.empty(gpu, statShape, 'f32', 'layer_norm.mean');
  const rstd = Tensor.empty(gpu, statShape, 'f32', 'layer_norm.rstd');
  if (M === 0) return { y, mean, rstd };
  const p = planLayerNorm(gpu, M, D, opts.plan);
  layerNormKernel.run(gpu, {
    entry: 'forward',
    variant: { wg: p.wg, hasW: weight ? 1 : 0, hasB: bias ? 1 : 0, dtype },
    params: uniforms(M, D, p, eps),
    // A missing weight / bias is never read (HAS_W / HAS_B = 0); x stands in for its binding.
    buffers: { x, weight: weight ?? x, bias: bias ?? x, y, mean, rstd },
    workgroups: grid1d(gpu, Math.ceil(M / p.R), 1),
    label: 'layer_norm',
  });
  return { y, mean, rstd };
}

export interface LayerNormGrads {
  dx: Tensor;
  /** Present when a weight was given. */
  dweight?: Tensor;
  /** Present when a bias was given. */
  dbias?: Tensor;
}

/**
 * Gradients of layerNorm given dy, the forward's x and saved mean / rstd. Pass the same weight / bias as the
 * forward: dweight / dbias are returned for those given.
 */
export function layerNormBackward(
  dy: Tensor,
  x: Tensor,
  saved: { mean: Tensor; rstd: Tensor },
  opts: Omit<LayerNormOptions, 'eps'> & { /** Also dweight / dbias (default true; frozen params: false). */ needParams?: boolean } = {},
): LayerNormGrads {
  const op = 'layer_norm backward';
  const { weight, bias } = opts;
  const { M, D, dtype } = dims(op, x, weight, bias);
  const { mean, rstd } = saved;
  requireDType(op, dtype, dy);
  requireDType(op, 'f32', mean, rstd);
  requireSameGpu(op, x, dy, mean, rstd);
  requireShape(op, dy, x.shape);
  requireShape(op, mean, x.shape.slice(0, -1));
  requireShape(op, rstd, x.shape.slice(0, -1));
  const gpu = x.gpu;
  const dx = Tensor.empty(gpu, x.shape, dtype, `d_layer_norm(${x.label})`);
  const out: LayerNormGrads = { dx };
  const needParams = opts.needParams !== false;
  if (weight && needParams) out.dweight = Tensor.zeros(gpu, [D], dtype, 'layer_norm.dweight');
  if (bias && needParams) out.dbias = Tensor.zeros(gpu, [D], dtype, 'layer_norm.dbias');
  if (M === 0) return out;
  const p = planLayerNorm(gpu, M, D, opts.plan);
  const variant = { wg: p.wg, hasW: weight ? 1 : 0, hasB: bias ? 1 : 0, dtype };
  const params = uniforms(M, D, p, 0);
  layerNormKernel.run(gpu, {
    entry: 'bwd_dx',
    variant,
    params,
    buffers: { x, weight: weight ?? x, dy, mean, rstd, dx },
    workgroups: grid1d(gpu, Math.ceil(M / p.R), 1),
    label: 'layer_norm.bwd_dx',
  });
  if ((!weight && !bias) || !needParams) return out;
  const partial = Tensor.empty(gpu, [p.chunks, 2, D], 'f32', 'layer_norm.partial');
  const tiles = Math.ceil(D / p.wgX);
  layerNormKernel.run(gpu, {
    entry: 'bwd_params',
    variant,
    params,
    buffers: { x, dy, mean, rstd, partial },
    workgroups: grid1d(gpu, tiles * p.chunks, 1),
    label: 'layer_norm.bwd_params',
  });
  // A missing output is never written (HAS_W / HAS_B = 0); a scratch tensor stands in for its binding.
  const scratch = !out.dweight || !out.dbias ? Tensor.empty(gpu, [1], dtype, 'layer_norm.unused') : undefined;
  layerNormKernel.run(gpu, {
    entry: 'bwd_params_sum',
    variant,
    params,
    buffers: { partial, dweight: out.dweight ?? scratch!, dbias: out.dbias ?? scratch! },
    workgroups: grid1d(gpu, D, p.wg),
    label: 'layer_norm.bwd_params_sum',
  });
  scratch?.release();
  partial.release();
  return out;
}
