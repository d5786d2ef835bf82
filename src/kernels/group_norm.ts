// Group normalization over [B, C, *spatial] (PyTorch semantics) with an optional fused SiLU, and its backward
// (kernels/group_norm.wgsl). Forward: a split stats pass (many workgroups per group) and an apply pass; backward:
// per-channel partial sums, the γ/β gradients from them, and dx.
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { Tensor, numel, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';
import { commonDType, requireDType, requireSameGpu, requireShape } from './checks.js';
import { clampWorkgroup, grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export interface GroupNormVariant {
  [k: string]: number | string;
  /** Storage type of x, y, gamma, beta and their gradients; statistics, partial sums and the math are f32. */
  dtype: DType;
  wg: number;
  silu: number;
}

export const groupNormKernel = new Kernel<GroupNormVariant>({
  name: 'group_norm',
  entryPoints: ['stats', 'apply', 'bwd_reduce', 'bwd_params', 'bwd_apply'],
  dtypes: ['f32', 'f16'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'x', kind: 'read' },
    { name: 'gamma', kind: 'read' },
    { name: 'beta', kind: 'read' },
    { name: 'dy', kind: 'read' },
    { name: 'y', kind: 'read_write' },
    { name: 'partial', kind: 'read_write' },
    { name: 'mean', kind: 'read_write' },
    { name: 'rstd', kind: 'read_write' },
    { name: 'dx', kind: 'read_write' },
    { name: 'dgamma', kind: 'read_write' },
    { name: 'dbeta', kind: 'read_write' },
  ],
  uniforms: [
    ['B', 'u32'],
    ['C', 'u32'],
    ['HW', 'u32'],
    ['G', 'u32'],
    ['Cg', 'u32'],
    ['N', 'u32'],
    ['chunks', 'u32'],
    ['chunkLen', 'u32'],
    ['rowChunks', 'u32'],
    ['rowChunkLen', 'u32'],
    ['stepC', 'u32'],
    ['stepR', 'u32'],
    ['eps', 'f32'],
    ['treeTop', 'u32'],
    ['mergeTop', 'u32'],
    ['sumTop', 'u32'],
  ],
  constants: (v) => ({ WG: v.wg, SILU: v.silu }),
});

// Workgroups to aim for per pass: fills an H100 (132 SMs × 8 resident 256-wide groups) in about one wave; small
// groups get fewer, as each thread should make at least one 4-load step.
const TARGET_GROUPS = 1024;

const pow2Floor = (n: number) => 2 ** Math.floor(Math.log2(n));
const pow2Ceil = (n: number) => (n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n)));
const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** Geometry of the group-norm dispatches. */
export interface GroupNormPlan {
  /** Workgroup size (power of two). */
  wg: number;
  /** Workgroups per group in stats / apply / bwd_apply, each covering chunkLen elements of the group. */
  chunks: number;
  chunkLen: number;
  /** Workgroups per (b, c) channel row in bwd_reduce, each covering rowChunkLen of its HW elements. */
  rowChunks: number;
  rowChunkLen: number;
}

/** Split of n elements into chunks of a multiple of `step` (or `len` when given), aiming for `want` chunks. */
function chunking(n: number, want: number, step: number, len?: number): [number, number] {
  if (n === 0) return [1, 1];
  if (len === undefined) {
    const chunks = Math.max(1, Math.min(want, Math.floor(n / step)));
    len = Math.min(n, roundUp(Math.ceil(n / chunks), step));
  }
  return [Math.ceil(n / len), len];
}

/**
 * Chunking for x [B, C, HW] in G groups. `override` fixes chunkLen / rowChunkLen (tests use tiny chunks to
 * exercise the many-partials paths; tuning).
 */
export function planGroupNorm(
  gpu: Gpu,
  B: number,
  C: number,
  HW: number,
  G: number,
  override: { chunkLen?: number; rowChunkLen?: number } = {},
): GroupNormPlan {
  const wg = pow2Floor(clampWorkgroup(gpu, 256));
  for (const [k, v] of Object.entries(override))
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new ShapeError(`group_norm plan: ${k} must be a positive integer, got ${v}`);
  const N = (C / G) * HW;
  const [chunks, chunkLen] = chunking(N, Math.ceil(TARGET_GROUPS / Math.max(1, B * G)), 4 * wg, override.chunkLen);
  const [rowChunks, rowChunkLen] = chunking(HW, Math.ceil(TARGET_GROUPS / Math.max(1, B * C)), 4 * wg, override.rowChunkLen);
  return { wg, chunks, chunkLen, rowChunks, rowChunkLen };
}

export interface GroupNormOptions {
  /** G: channels are split into G groups of C/G contiguous channels. */
  groups: number;
  /** Added to the variance (default 1e-5; SDXL resnets 1e-5, transformers and the VAE 1e-6). */
  eps?: number;
  /** Fuse y = silu(group_norm(x)) (default false). */
  silu?: boolean;
  /** Chunk-size overrides (tests, tuning). */
  plan?: { chunkLen?: number; rowChunkLen?: number };
}

export interface GroupNormResult {
  /** Output, shape of x. */
  y: Tensor;
  /** Per (B, G) mean and 1/sqrt(var + eps), saved for the backward; shape [B, G]. */
  mean: Tensor;
  rstd: Tensor;
}

interface Dims {
  B: number;
  C: number;
  HW: number;
  G: number;
  dtype: DType;
}

function checkOperands(op: string, x: Tensor, gamma: Tensor, beta: Tensor, groups: number): Dims {
  const dtype = commonDType(op, x, gamma, beta);
  requireSameGpu(op, x, gamma, beta);
  if (x.rank < 2) throw new ShapeError(`${op}: x must be [B, C, *spatial] (rank >= 2), got ${shapeStr(x.shape)}`);
  const [B, C] = x.shape;
  const G = groups;
  if (!Number.isInteger(G) || G < 1 || C % G !== 0)
    throw new ShapeError(`${op}: C = ${C} channels of x ${shapeStr(x.shape)} must split into groups = ${G} equal groups (expected a divisor of ${C})`);
  requireShape(op, gamma, [C]);
  requireShape(op, beta, [C]);
  return { B, C, HW: numel(x.shape.slice(2)), G, dtype };
}

function uniforms(d: Dims, p: GroupNormPlan, eps: number) {
  const HW = Math.max(1, d.HW);
  return {
    B: d.B,
    C: d.C,
    HW,
    G: d.G,
    Cg: d.C / d.G,
    N: (d.C / d.G) * d.HW,
    chunks: p.chunks,
    chunkLen: p.chunkLen,
    rowChunks: p.rowChunks,
    rowChunkLen: p.rowChunkLen,
    stepC: Math.floor(p.wg / HW),
    stepR: p.wg % HW,
    eps,
    treeTop: p.wg / 2,
    mergeTop: Math.floor(pow2Ceil(Math.min(p.chunks, p.wg)) / 2),
    sumTop: Math.floor(pow2Ceil(Math.min((d.C / d.G) * p.rowChunks, p.wg)) / 2),
  };
}

function checkEps(op: string, eps: number): void {
  if (!(Number.isFinite(eps) && eps >= 0)) throw new ShapeError(`${op}: eps must be a finite number >= 0, got ${eps}`);
}

/**
 * y = act((x − μ)/sqrt(var + eps)·γ_c + β_c) per (batch, group), x [B, C, *spatial], γ and β [C];
 * act = SiLU when opts.silu, else identity. Returns y and the saved mean / rstd [B, G].
 */
export function groupNorm(x: Tensor, gamma: Tensor, beta: Tensor, opts: GroupNormOptions): GroupNormResult {
  const op = 'group_norm';
  const d = checkOperands(op, x, gamma, beta, opts.groups);
  const eps = opts.eps ?? 1e-5;
  checkEps(op, eps);
  const gpu = x.gpu;
  const y = Tensor.empty(gpu, x.shape, d.dtype, `group_norm(${x.label})`);
  const mean = Tensor.empty(gpu, [d.B, d.G], 'f32', 'group_norm.mean');
  const rstd = Tensor.empty(gpu, [d.B, d.G], 'f32', 'group_norm.rstd');
  if (x.size === 0) return { y, mean, rstd };
  const p = planGroupNorm(gpu, d.B, d.C, d.HW, d.G, opts.plan);
  const variant = { wg: p.wg, silu: opts.silu ? 1 : 0, dtype: d.dtype };
  const params = uniforms(d, p, eps);
  const grid = grid1d(gpu, d.B * d.G * p.chunks, 1);
  const partial = Tensor.empty(gpu, [d.B * d.G * p.chunks, 2], 'f32', 'group_norm.partial');
  groupNormKernel.run(gpu, { entry: 'stats', variant, params, buffers: { x, partial }, workgroups: grid, label: 'group_norm.stats' });
  groupNormKernel.run(gpu, {
    entry: 'apply',
    variant,
    params,
    buffers: { x, gamma, beta, y, partial, mean, rstd },
    workgroups: grid,
    label: opts.silu ? 'group_norm.apply+silu' : 'group_norm.apply',
  });
  partial.release();
  return { y, mean, rstd };
}

export interface GroupNormGrads {
  dx: Tensor;
  dgamma: Tensor;
  dbeta: Tensor;
}

/**
 * Gradients of groupNorm given dy and the forward's inputs and saved mean / rstd. opts.silu must match the
 * forward: the pre-activation is recomputed from the saved statistics.
 */
export function groupNormBackward(
  dy: Tensor,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  saved: { mean: Tensor; rstd: Tensor },
  opts: Omit<GroupNormOptions, 'eps'>,
): GroupNormGrads {
  const op = 'group_norm backward';
  const d = checkOperands(op, x, gamma, beta, opts.groups);
  const { mean, rstd } = saved;
  requireDType(op, d.dtype, dy);
  requireDType(op, 'f32', mean, rstd);
  requireSameGpu(op, x, dy, mean, rstd);
  requireShape(op, dy, x.shape);
  requireShape(op, mean, [d.B, d.G]);
  requireShape(op, rstd, [d.B, d.G]);
  const gpu = x.gpu;
  const dx = Tensor.empty(gpu, x.shape, d.dtype, `d_group_norm(${x.label})`);
  const dgamma = Tensor.zeros(gpu, [d.C], d.dtype, 'group_norm.dgamma');
  const dbeta = Tensor.zeros(gpu, [d.C], d.dtype, 'group_norm.dbeta');
  if (x.size === 0) return { dx, dgamma, dbeta };
  const p = planGroupNorm(gpu, d.B, d.C, d.HW, d.G, opts.plan);
  const variant = { wg: p.wg, silu: opts.silu ? 1 : 0, dtype: d.dtype };
  const params = uniforms(d, p, 0);
  const partial = Tensor.empty(gpu, [d.B * d.C * p.rowChunks, 2], 'f32', 'group_norm.bwd_partial');
  groupNormKernel.run(gpu, {
    entry: 'bwd_reduce',
    variant,
    params,
    buffers: { x, gamma, beta, dy, partial, mean, rstd },
    workgroups: grid1d(gpu, d.B * d.C * p.rowChunks, 1),
    label: 'group_norm.bwd_reduce',
  });
  // γ/β gradients in their own small dispatch: folding them into bwd_apply would take it past 8 storage bindings
  // (WebGPU's default maxStorageBuffersPerShaderStage).
  groupNormKernel.run(gpu, {
    entry: 'bwd_params',
    variant,
    params,
    buffers: { partial, dgamma, dbeta },
    workgroups: grid1d(gpu, d.C, p.wg),
    label: 'group_norm.bwd_params',
  });
  groupNormKernel.run(gpu, {
    entry: 'bwd_apply',
    variant,
    params,
    buffers: { x, gamma, beta, dy, partial, mean, rstd, dx },
    workgroups: grid1d(gpu, d.B * d.G * p.chunks, 1),
    label: 'group_norm.bwd_apply',
  });
  partial.release();
  return { dx, dgamma, dbeta };
}
