// Matrix multiplication (kernels/matmul.wgsl): batched, optional transposes, fused alpha / bias / activation
// epilogue, and a second operand pair accumulated into the same output (used by LoRA, src/kernels/lora_matmul.ts).
//
//   matmul(a, b, opts)          Y = act(alpha · op(A)·op(B) + bias) [+ residual]
//   matmulWithPre(a, b, opts)   the same, also returning the pre-activation Z = alpha · op(A)·op(B) + bias
//   matmulBackward(a, b, dy, opts)  {da, db, dbias}; with an activation it needs Z: pass `pre` (from
//                                   matmulWithPre) or it is recomputed with one extra GEMM.
//
// Shapes: A [...batch, M, K] (transA: [...batch, K, M]), B [...batch, K, N] (transB: [...batch, N, K]), Y [...batch,
// M, N]. The batch dims of A and B must be equal, or one side's batch must hold a single matrix (broadcast). When
// B is a single matrix and A is not transposed, A's batch is folded into M (one large GEMM).
//
// Variants (tile geometry, transposes, epilogue, vec4 or scalar access) are a typed object whose fields become
// override constants; the tile is chosen per device and shape by chooseMatmulTile unless given. Reductions over
// many rows into a small output with both operands K-major (weight gradients) run split over K (splitKFor).
import type { Gpu } from '../../runtime/device.js';
import { DTypeError, ShapeError } from '../../runtime/errors.js';
import type { DType } from '../dtype.js';
import { type Shape, Tensor, numel, shapeStr } from '../tensor.js';
import { broadcastShapes, commonDType, requireSameGpu } from './checks.js';
import { UNARY_OPS, unaryBackward } from './elementwise.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';
import { matmulSubgroupMatrix, subgroupMatrixVerified } from './matmul_subgroup_matrix.js';
import { sumTo } from './reduce.js';

export type Activation = 'none' | 'silu' | 'gelu_erf' | 'gelu_tanh' | 'quick_gelu';
export const ACTIVATIONS: readonly Activation[] = ['none', 'silu', 'gelu_erf', 'gelu_tanh', 'quick_gelu'];

/** Activation → the elementwise UNARY_OPS id the WGSL switches on (same ids, same math). */
const ACT_IDS: Record<Activation, number> = {
  none: UNARY_OPS.identity,
  silu: UNARY_OPS.silu,
  gelu_erf: UNARY_OPS.gelu_erf,
  gelu_tanh: UNARY_OPS.gelu_tanh,
  quick_gelu: UNARY_OPS.quick_gelu,
};

/**
 * Tile geometry. A workgroup of (bn/tn) × (bm/tm) threads computes a bm × bn block of Y, each thread tm × tn outputs;
 * K advances bk per shared tile. pad: vec4s of padding per shared k-row; group: tile rows per swizzle group.
 */
export interface MatmulTile {
  readonly bm: number;
  readonly bn: number;
  readonly bk: number;
  readonly tm: number;
  readonly tn: number;
  readonly pad: number;
  readonly group: number;
}

/**
 * Presets, all within 256 invocations and 32 KiB of workgroup storage. Measured on the H100 (Dawn/Vulkan, f32,
 * 4096³): large (128×128, 256 threads of 8×8) 33–38 TFLOP/s; medium (64×128, 128 threads of 8×8) 31; small (32×32,
 * 64 threads of 4×4) 22, but the best where the output has few large tiles (e.g. 1024×1280 outputs: 18.7 vs 16.1).
 * bk = 8: bk = 16 measured 23 TFLOP/s on the same large tile, and compiles twice as slowly on lavapipe.
 */
export const MATMUL_TILES = {
  large: { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8, pad: 1, group: 8 },
  medium: { bm: 64, bn: 128, bk: 8, tm: 8, tn: 8, pad: 1, group: 8 },
  small: { bm: 32, bn: 32, bk: 8, tm: 4, tn: 4, pad: 1, group: 8 },
} as const satisfies Record<string, MatmulTile>;

export type MatmulVariant = {
  readonly bm: number;
  readonly bn: number;
  readonly bk: number;
  readonly tm: number;
  readonly tn: number;
  readonly pad: number;
  readonly group: number;
  readonly transA: boolean;
  readonly transB: boolean;
  readonly pair2: boolean;
  readonly transA2: boolean;
  readonly transB2: boolean;
  readonly bias: boolean;
  readonly res: boolean;
  readonly act: number;
  readonly vec4: boolean;
  /** Storage element type (f32 tiles and accumulators either way). */
  readonly dtype: DType;
};

export const matmulKernel = new Kernel<MatmulVariant>({
  name: 'matmul',
  entryPoints: ['matmul', 'sum_slices'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'a', kind: 'read' },
    { name: 'b', kind: 'read' },
    { name: 'a2', kind: 'read' },
    { name: 'b2', kind: 'read' },
    { name: 'bias', kind: 'read' },
    { name: 'y', kind: 'read_write' },
    { name: 'pre', kind: 'read_write' },
    { name: 'res', kind: 'read' },
  ],
  uniforms: [
    ['M', 'u32'],
    ['N', 'u32'],
    ['K', 'u32'],
    ['K2', 'u32'],
    ['batchA', 'u32'],
    ['batchB', 'u32'],
    ['batchA2', 'u32'],
    ['batchB2', 'u32'],
    ['batchY', 'u32'],
    ['tilesM', 'u32'],
    ['tilesN', 'u32'],
    ['alpha', 'f32'],
    ['storePre', 'u32'],
    ['ldA', 'u32'],
    ['ldB', 'u32'],
    ['firstZOnly', 'u32'],
  ],
  constants: (v) => ({
    BM: v.bm,
    BN: v.bn,
    BK: v.bk,
    TM: v.tm,
    TN: v.tn,
    PAD: v.pad,
    GROUP_M: v.group,
    TRANS_A: Number(v.transA),
    TRANS_B: Number(v.transB),
    PAIR2: Number(v.pair2),
    TRANS_A2: Number(v.transA2),
    TRANS_B2: Number(v.transB2),
    HAS_BIAS: Number(v.bias),
    HAS_RES: Number(v.res),
    ACT: v.act,
    VEC4: Number(v.vec4),
  }),
  dtypes: ['f32', 'f16'],
  // The element type of the storage arrays (vec4 access needs array<vec4<T>> bindings) and its conversions to and
  // from the f32 math: toVec4 (a scalar is splat), elem4 (a vec4, or its x), elem1 (one value).
  prelude: (v) =>
    v.vec4
      ? 'alias Elem = vec4<T>;\nfn toVec4(e: Elem) -> vec4f { return vec4f(e); }\nfn elem4(v: vec4f) -> Elem { return toT4(v); }\nfn elem1(v: f32) -> Elem { return Elem(toT(v)); }'
      : 'alias Elem = T;\nfn toVec4(e: Elem) -> vec4f { return vec4f(f32(e)); }\nfn elem4(v: vec4f) -> Elem { return toT(v.x); }\nfn elem1(v: f32) -> Elem { return toT(v); }',
});

/** Shared-memory bytes a tile needs (two buffers each for A and B). */
export function tileSharedBytes(t: MatmulTile): number {
  return 2 * t.bk * (t.bm / 4 + t.pad) * 16 + 2 * t.bk * (t.bn / 4 + t.pad) * 16;
}

/** Why a tile cannot run on this device (or is malformed); null if it can. */
export function tileProblem(gpu: Gpu, t: MatmulTile): string | null {
  if (![4, 8].includes(t.tm) || ![4, 8].includes(t.tn)) return `tm and tn must be 4 or 8 (got ${t.tm}, ${t.tn})`;
  if (t.bm % t.tm || t.bn % t.tn) return `bm, bn must be multiples of tm, tn`;
  if (t.bk % 4 || t.bk <= 0) return `bk must be a positive multiple of 4 (got ${t.bk})`;
  if (t.group < 1) return `group must be at least 1`;
  const wx = t.bn / t.tn;
  const wy = t.bm / t.tm;
  const threads = wx * wy;
  const lim = gpu.limits;
  if (threads > gpu.maxInvocations) return `${threads} invocations exceed maxComputeInvocationsPerWorkgroup ${gpu.maxInvocations}`;
  if (wx > lim.maxComputeWorkgroupSizeX || wy > lim.maxComputeWorkgroupSizeY) return `workgroup ${wx}×${wy} exceeds the size limits`;
  for (const [side, units] of [['A', (t.bm * t.bk) / 4], ['B', (t.bn * t.bk) / 4]] as const) {
    if (units % threads || units / threads > 4 || units / threads < 1)
      return `the ${side} tile's ${units} vec4 units do not split into 1..4 per thread over ${threads} threads`;
  }
  const shared = tileSharedBytes(t);
  if (shared > lim.maxComputeWorkgroupStorageSize)
    return `${shared} bytes of workgroup storage exceed maxComputeWorkgroupStorageSize ${lim.maxComputeWorkgroupStorageSize}`;
  return null;
}

const tilesOf = (t: MatmulTile, M: number, N: number) => Math.ceil(M / t.bm) * Math.ceil(N / t.bn);

/** Workgroups of the large tile from which it beats the small one (H100: equal at 160, small ahead at 80). */
export const LARGE_TILE_MIN_GROUPS = 160;

/**
 * The tile for an M × N output (times batch): the large tile when it still makes enough workgroups to fill a big
 * GPU (4× the arithmetic intensity of 64×64, 1/4 the workgroups), else the small one.
 */
export function chooseMatmulTile(gpu: Gpu, M: number, N: number, batch = 1): MatmulTile {
  const large = MATMUL_TILES.large;
  if (!tileProblem(gpu, large) && tilesOf(large, M, N) * batch >= LARGE_TILE_MIN_GROUPS) return large;
  return MATMUL_TILES.small;
}

/**
 * Split-K applies below this many workgroups (below SPLIT_K_BELOW_GROUPS_KN when B is stored [K, N], as in input
 * gradients dY·W) and aims for the target, while each slice keeps at least SPLIT_K_MIN_K of K. H100 sweep
 * (TCD_MATMUL_SWEEP, large tile, ms): 1024×1280×1280 0.213 → 0.154 in 8 slices; 1024×5120×1280 0.927 → 0.478 in 8;
 * 4096×640×640 0.179 → 0.155 in 4; 4096×2560×640 0.697 → 0.475 in 4; dY·W 1024×10240×1280 1.76 → 0.883 in 8 and
 * 1024×1280×5120 (320 tiles) 0.528 → 0.454 in 2; but 1024×1280×3840 (240 tiles) 0.358 → 0.378 in 2 and
 * 1024×1280×10240 (640) 0.872 → 0.902.
 */
const SPLIT_K_BELOW_GROUPS = 200;
const SPLIT_K_BELOW_GROUPS_KN = 400;
const SPLIT_K_TARGET_GROUPS = 512;
/** ... while each split keeps at least this many K steps. */
const SPLIT_K_MIN_K = 128;

/**
 * How many K-slices a GEMM runs as (1: no split). Weight gradients (dW = Xᵀ·dY, LoRA's dA and dB) and LoRA's
 * rank-r products (h = x·Aᵀ, g = dY·B) reduce over thousands of K into small outputs, which alone make a few dozen
 * workgroups. Slice s of K is operand data at offset s·(K/S) (a K-major operand: whole rows; a K-contiguous one:
 * columns, rows keep their full length), so the slices run as the grid's batch and one sum over them follows.
 * Only for a single GEMM without activation (alpha is linear and stays; the bias and a second pair go into slice 0).
 */
export function splitKFor(c: GemmCall, tile: MatmulTile): number {
  // f16: the slices' partial sums would be rounded to f16 before they are added; f16 GEMMs run whole.
  if (c.a.t?.dtype === 'f16') return 1;
  if (c.batch !== 1 || c.storePre || (c.activation ?? 'none') !== 'none') return 1;
  const tiles = tilesOf(tile, c.M, c.N);
  if (tiles >= (c.b.trans ? SPLIT_K_BELOW_GROUPS : SPLIT_K_BELOW_GROUPS_KN)) return 1;
  // vec4 access needs slice offsets on vec4 boundaries along K-contiguous rows: keep K/S a multiple of 4.
  let s = 1;
  while (tiles * s < SPLIT_K_TARGET_GROUPS && c.K % (8 * s) === 0 && c.K / (2 * s) >= SPLIT_K_MIN_K) s *= 2;
  return s;
}

/** Large-tile workgroups from which a splittable GEMM takes the large tile (then split) over the small one. */
const LARGE_TILE_SPLIT_MIN_TILES = 64;

/**
 * Tile for a GEMM call: chooseMatmulTile, except that a GEMM which split-K can spread over enough workgroups takes the
 * large tile even below LARGE_TILE_MIN_GROUPS (H100: 1024×1280×1280 large in 4 slices 0.169 ms vs small 0.183;
 * 1024×5120×1280 0.571 vs 0.683; but 77×2048×1280 small in 4 slices 0.058 vs large 0.098).
 */
export function gemmTile(gpu: Gpu, c: GemmCall): MatmulTile {
  if (c.tile) return c.tile;
  const large = MATMUL_TILES.large;
  if (c.splitK === undefined && !tileProblem(gpu, large) && tilesOf(large, c.M, c.N) >= LARGE_TILE_SPLIT_MIN_TILES) {
    const s = splitKFor(c, large);
    if (s > 1 && tilesOf(large, c.M, c.N) * s >= LARGE_TILE_MIN_GROUPS) return large;
  }
  return chooseMatmulTile(gpu, c.M, c.N, c.batch);
}

/** One operand of a GEMM: a contiguous tensor, whether it is stored transposed, the element stride between batches. */
export interface GemmOperand {
  readonly t: Tensor;
  readonly trans: boolean;
  readonly batchStride: number;
}

/** A fully described GEMM call (the wrappers below build these; LoRA builds its own). */
export interface GemmCall {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly batch: number;
  readonly a: GemmOperand;
  readonly b: GemmOperand;
  /** Second pair, accumulated after the first: op(A2) [M, K2], op(B2) [K2, N]. */
  readonly pair2?: { readonly K2: number; readonly a: GemmOperand; readonly b: GemmOperand };
  readonly bias?: Tensor;
  readonly activation?: Activation;
  readonly alpha?: number;
  readonly storePre?: boolean;
  /** Added after the activation; shaped like the output. */
  readonly residual?: Tensor;
  readonly outShape: Shape;
  readonly label: string;
  readonly tile?: MatmulTile;
  /** Force scalar access even where vec4 alignment holds (tests). */
  readonly scalar?: boolean;
  /** K-slices (default: splitKFor; 1 disables). */
  readonly splitK?: number;
  /** Row length of pair 1's K-contiguous operands (A stored [M, K], B stored [N, K]); default K (split-K slices). */
  readonly ldA?: number;
  readonly ldB?: number;
  /** Add the bias and the second pair into batch entry 0 only (split-K partial sums). */
  readonly firstZOnly?: boolean;
}

const scratch = new WeakMap<Gpu, Tensor>();
/** A 16-byte tensor bound as `pre` when the pre-activation is not stored (a binding must exist; 16 B fits vec4). */
function scratchFor(gpu: Gpu): Tensor {
  let t = scratch.get(gpu);
  if (!t || t.isReleased) {
    t = Tensor.empty(gpu, [4], 'f32', 'matmul-unused-pre');
    scratch.set(gpu, t);
  }
  return t;
}

/** The pipeline variant a GEMM call runs with (tile per device and shape, vec4 where alignment allows). */
export function gemmVariant(gpu: Gpu, c: GemmCall): MatmulVariant {
  const tile = gemmTile(gpu, c);
  const problem = tileProblem(gpu, tile);
  if (problem) throw new Error(`${c.label}: tile ${JSON.stringify(tile)} cannot run here: ${problem}`);
  const p2 = c.pair2;
  // vec4 access: every operand's contiguous dim and N multiples of 4 (then every buffer holds whole vec4s).
  const aligned = (n: number) => n > 0 && n % 4 === 0;
  const vec4 =
    !c.scalar &&
    aligned(c.N) &&
    aligned(c.a.trans ? c.M : c.K) &&
    aligned(c.b.trans ? c.K : c.N) &&
    (!p2 || (aligned(p2.a.trans ? c.M : p2.K2) && aligned(p2.b.trans ? p2.K2 : c.N)));
  return {
    bm: tile.bm,
    bn: tile.bn,
    bk: tile.bk,
    tm: tile.tm,
    tn: tile.tn,
    pad: tile.pad,
    group: tile.group,
    transA: c.a.trans,
    transB: c.b.trans,
    pair2: !!p2,
    transA2: p2?.a.trans ?? false,
    transB2: p2?.b.trans ?? false,
    bias: !!c.bias,
    res: !!c.residual,
    act: ACT_IDS[c.activation ?? 'none'],
    vec4,
    dtype: c.a.t.dtype,
  };
}

/**
 * Whether an f16 GEMM can take the subgroup-matrix kernel (tensor cores): verified on this device by the f16 probe,
 * a single GEMM (or A's batch folded into M) with A stored [M, K] and a plain epilogue (alpha, bias).
 */
function subgroupMatrixEligible(gpu: Gpu, c: GemmCall): boolean {
  return (
    c.a.t.dtype === 'f16' && subgroupMatrixVerified(gpu) && c.batch === 1 && !c.a.trans && !c.pair2 && (c.activation ?? 'none') === 'none' &&
    !c.storePre && !c.residual && !c.firstZOnly && c.ldA === undefined && c.ldB === undefined && !c.tile && !c.scalar &&
    c.splitK === undefined && c.b.t.size === c.K * c.N && c.a.t.size === c.M * c.K
  );
}

/** Runs one GEMM (split over K where that helps, see splitKFor); returns Y (and Z when storePre). */
export function gemm(c: GemmCall): { y: Tensor; pre?: Tensor } {
  const gpu = c.a.t.gpu;
  if (subgroupMatrixEligible(gpu, c)) {
    const a2 = c.a.t.reshape([c.M, c.K]);
    const b2 = c.b.t.reshape(c.b.trans ? [c.N, c.K] : [c.K, c.N]);
    const y = matmulSubgroupMatrix(a2, b2, { transB: c.b.trans, bias: c.bias, alpha: c.alpha, label: c.label });
    a2.release();
    b2.release();
    const out = y.reshape(c.outShape);
    y.release();
    return { y: out };
  }
  const tile = gemmTile(gpu, c);
  const s = c.splitK ?? splitKFor(c, tile);
  if (s > 1) {
    if (c.K % s !== 0) throw new Error(`${c.label}: split-K ${s} does not divide K = ${c.K}`);
    if (c.batch !== 1 || c.storePre || (c.activation ?? 'none') !== 'none')
      throw new Error(`${c.label}: split-K needs a single GEMM without activation or stored pre-activation`);
    const kc = c.K / s;
    // K-major operands (A stored [K, M], B stored [K, N]): slice z starts kc rows further. K-contiguous ones (A
    // [M, K], B [N, K]): kc columns further, rows keep their full length K.
    const partial = gemmOnce({
      ...c,
      K: kc,
      batch: s,
      a: { ...c.a, batchStride: c.a.trans ? kc * c.M : kc },
      b: { ...c.b, batchStride: c.b.trans ? kc : kc * c.N },
      ldA: c.K,
      ldB: c.K,
      firstZOnly: true,
      outShape: [s, c.M, c.N],
      label: `${c.label}.splitK${s}`,
      tile,
    }).y;
    const y = sumSlices(partial, s, c.outShape, c.residual, `${c.label}.splitK_sum`);
    partial.release();
    return { y };
  }
  return gemmOnce({ ...c, tile });
}

/** Σ over the leading `slices` of partial [slices, ...] (+ residual), shaped outShape: one pass, vec4 where aligned. */
function sumSlices(partial: Tensor, slices: number, outShape: Shape, residual: Tensor | undefined, label: string): Tensor {
  const gpu = partial.gpu;
  const count = partial.size / slices;
  const vec4 = count % 4 === 0;
  const y = Tensor.empty(gpu, outShape, partial.dtype, label);
  const variant: MatmulVariant = { ...SUM_VARIANT, res: !!residual, vec4, dtype: partial.dtype };
  const n = vec4 ? count / 4 : count;
  matmulKernel.run(gpu, {
    entry: 'sum_slices',
    variant,
    params: { M: n, N: 0, K: slices, K2: 0, batchA: 0, batchB: 0, batchA2: 0, batchB2: 0, batchY: 0, tilesM: 0, tilesN: 0, alpha: 1, storePre: 0, ldA: 0, ldB: 0, firstZOnly: 0 },
    buffers: { a: partial, b: partial, a2: partial, b2: partial, bias: partial, y, pre: partial, res: residual ?? partial },
    workgroups: grid1d(gpu, n),
    label,
  });
  return y;
}

/** sum_slices reads only VEC4 and HAS_RES: one fixed variant otherwise (the small tile's geometry). */
const SUM_VARIANT: MatmulVariant = {
  ...MATMUL_TILES.small,
  transA: false,
  transB: false,
  pair2: false,
  transA2: false,
  transB2: false,
  bias: false,
  res: false,
  act: ACT_IDS.none,
  vec4: false,
  dtype: 'f32',
};

function gemmOnce(c: GemmCall): { y: Tensor; pre?: Tensor } {
  const gpu = c.a.t.gpu;
  const variant = gemmVariant(gpu, c);
  const tile = variant;
  const p2 = c.pair2;
  const y = Tensor.empty(gpu, c.outShape, variant.dtype, c.label);
  const pre = c.storePre ? Tensor.empty(gpu, c.outShape, variant.dtype, `${c.label}.pre`) : undefined;
  const tilesM = Math.ceil(c.M / tile.bm);
  const tilesN = Math.ceil(c.N / tile.bn);
  const total = tilesM * tilesN;
  const maxX = gpu.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(total, maxX);
  matmulKernel.run(gpu, {
    entry: 'matmul',
    variant,
    params: {
      M: c.M,
      N: c.N,
      K: c.K,
      K2: p2?.K2 ?? 0,
      batchA: c.a.batchStride,
      batchB: c.b.batchStride,
      batchA2: p2?.a.batchStride ?? 0,
      batchB2: p2?.b.batchStride ?? 0,
      batchY: c.M * c.N,
      tilesM,
      tilesN,
      alpha: c.alpha ?? 1,
      storePre: Number(!!c.storePre),
      ldA: c.ldA ?? c.K,
      ldB: c.ldB ?? c.K,
      firstZOnly: Number(!!c.firstZOnly),
    },
    // Unused bindings get read-only aliases of A / B (read-only aliasing is allowed) or a scratch buffer.
    buffers: {
      a: c.a.t,
      b: c.b.t,
      a2: p2?.a.t ?? c.a.t,
      b2: p2?.b.t ?? c.b.t,
      bias: c.bias ?? c.a.t,
      y,
      pre: pre ?? scratchFor(gpu),
      res: c.residual ?? c.a.t,
    },
    workgroups: [x, x === 0 ? 0 : Math.ceil(total / x), c.batch],
    label: c.label,
  });
  return { y, pre };
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** Per-column bias, shape [N]. */
  bias?: Tensor;
  activation?: Activation;
  /** Scales op(A)·op(B) before the bias (default 1). */
  alpha?: number;
  /** Tile geometry (default: chooseMatmulTile per device and shape). */
  tile?: MatmulTile;
  /** Force scalar loads and stores (default: vec4 where alignment allows). */
  scalar?: boolean;
  /** K-slices (default: splitKFor; 1 disables). */
  splitK?: number;
  /** Added after the activation (a skip connection), shaped like the output. */
  residual?: Tensor;
  label?: string;
}

interface Plan {
  M: number;
  N: number;
  K: number;
  /** GEMM batch count (1 when folded). */
  batch: number;
  /** Matrices in A's and B's batch. */
  na: number;
  nb: number;
  outShape: number[];
  /** A's batch folded into M. */
  folded: boolean;
}

function plan(op: string, a: Tensor, b: Tensor, transA: boolean, transB: boolean): Plan {
  const both = `a ${shapeStr(a.shape)}${transA ? 'ᵀ' : ''} and b ${shapeStr(b.shape)}${transB ? 'ᵀ' : ''}`;
  if (a.rank < 2 || b.rank < 2) throw new ShapeError(`${op}: operands need rank ≥ 2, got ${both}`);
  const [a0, a1] = a.shape.slice(-2);
  const [b0, b1] = b.shape.slice(-2);
  const [M, Ka] = transA ? [a1, a0] : [a0, a1];
  const [Kb, N] = transB ? [b1, b0] : [b0, b1];
  if (Ka !== Kb) throw new ShapeError(`${op}: inner dims differ (K ${Ka} vs ${Kb}) for ${both}`);
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const na = numel(aBatch);
  const nb = numel(bBatch);
  let batchShape: number[];
  try {
    batchShape = broadcastShapes(op, aBatch, bBatch);
  } catch {
    throw new ShapeError(`${op}: batch dims do not broadcast for ${both}`);
  }
  const nOut = numel(batchShape);
  if (!(na === 1 || nb === 1 || (na === nOut && nb === nOut)))
    throw new ShapeError(`${op}: batch dims must be equal or one side a single matrix, got ${both}`);
  const folded = nb === 1 && na > 1 && !transA;
  return { M, N, K: Ka, batch: folded ? 1 : nOut, na, nb, outShape: [...batchShape, M, N], folded };
}

function checkResidual(op: string, residual: Tensor | undefined, outShape: Shape, dtype: DType): void {
  if (!residual) return;
  if (residual.dtype !== dtype) throw new DTypeError(`${op}: residual '${residual.label}' has dtype ${residual.dtype}, expected ${dtype} (as the operands)`);
  if (residual.shape.length !== outShape.length || residual.shape.some((d, i) => d !== outShape[i]))
    throw new ShapeError(`${op}: residual ${shapeStr(residual.shape)} must have the output shape ${shapeStr(outShape)}`);
}

/** Operands share one dtype (f32 or f16), which the output gets; returns it. */
function checkOperands(op: string, a: Tensor, b: Tensor, bias: Tensor | undefined, N: number): DType {
  const dtype = commonDType(op, a, b, ...(bias ? [bias] : []));
  requireSameGpu(op, a, b, ...(bias ? [bias] : []));
  if (bias && (bias.rank !== 1 || bias.shape[0] !== N))
    throw new ShapeError(`${op}: bias ${shapeStr(bias.shape)} must be [${N}] (the output columns)`);
  return dtype;
}

function run(a: Tensor, b: Tensor, opts: MatmulOptions, storePre: boolean): { y: Tensor; pre?: Tensor } {
  const op = opts.label ?? 'matmul';
  const transA = !!opts.transA;
  const transB = !!opts.transB;
  const p = plan(op, a, b, transA, transB);
  const dtype = checkOperands(op, a, b, opts.bias, p.N);
  checkResidual(op, opts.residual, p.outShape, dtype);
  const M = p.folded ? p.M * p.na : p.M;
  return gemm({
    M,
    N: p.N,
    K: p.K,
    batch: p.batch,
    a: { t: a, trans: transA, batchStride: p.na === 1 || p.folded ? 0 : p.M * p.K },
    b: { t: b, trans: transB, batchStride: p.nb === 1 ? 0 : p.K * p.N },
    bias: opts.bias,
    activation: opts.activation,
    alpha: opts.alpha,
    storePre,
    outShape: p.outShape,
    label: op,
    tile: opts.tile,
    scalar: opts.scalar,
    splitK: opts.splitK,
    residual: opts.residual,
  });
}

/** Y = act(alpha · op(A)·op(B) + bias). */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return run(a, b, opts, false).y;
}

/** Y and the pre-activation Z = alpha · op(A)·op(B) + bias (keep Z for matmulBackward with an activation). */
export function matmulWithPre(a: Tensor, b: Tensor, opts: MatmulOptions = {}): { y: Tensor; pre: Tensor } {
  const r = run(a, b, opts, true);
  return { y: r.y, pre: r.pre! };
}

export interface MatmulBackwardOptions extends MatmulOptions {
  /** The forward's pre-activation (matmulWithPre); recomputed when an activation is fused and it is not given. */
  pre?: Tensor;
  /** Which gradients to compute (default all; dbias only with a bias). */
  needA?: boolean;
  needB?: boolean;
}

export interface MatmulGrads {
  da?: Tensor;
  db?: Tensor;
  dbias?: Tensor;
}

/**
 * Gradients of Y = act(alpha · op(A)·op(B) + bias) given dY. With dZ = dY · act'(Z):
 *   d op(A) = alpha · dZ·op(B)ᵀ,  d op(B) = alpha · op(A)ᵀ·dZ,  dbias = column sums of dZ,
 * each returned in its operand's stored layout and shape (summed over broadcast batch dims).
 */
export function matmulBackward(a: Tensor, b: Tensor, dy: Tensor, opts: MatmulBackwardOptions = {}): MatmulGrads {
  const op = `${opts.label ?? 'matmul'} backward`;
  const transA = !!opts.transA;
  const transB = !!opts.transB;
  const p = plan(op, a, b, transA, transB);
  const dtype = checkOperands(op, a, b, opts.bias, p.N);
  if (dy.dtype !== dtype) throw new DTypeError(`${op}: dy '${dy.label}' has dtype ${dy.dtype}, expected ${dtype} (as the operands)`);
  if (dy.shape.length !== p.outShape.length || dy.shape.some((d, i) => d !== p.outShape[i]))
    throw new ShapeError(`${op}: dy ${shapeStr(dy.shape)} must have the output shape ${shapeStr(p.outShape)}`);
  const act = opts.activation ?? 'none';
  const alpha = opts.alpha ?? 1;
  const base = { alpha, tile: opts.tile, scalar: opts.scalar };

  let dz = dy;
  if (act !== 'none') {
    let pre = opts.pre;
    if (!pre) {
      // Recompute Z with the forward's own pipeline (same variant; the activated output is dropped).
      const r = run(a, b, { ...opts, label: `${op}.recompute` }, true);
      r.y.release();
      pre = r.pre!;
    }
    if (pre.size !== dy.size) throw new ShapeError(`${op}: pre ${shapeStr(pre.shape)} must have the output shape ${shapeStr(p.outShape)}`);
    dz = unaryBackward(act, pre, dy);
    if (!opts.pre) pre.release();
  }
  const grads: MatmulGrads = {};
  if (opts.bias) {
    const rows = dz.reshape([dz.size / p.N, p.N]);
    grads.dbias = sumTo(rows, [p.N]);
    rows.release();
  }

  if (opts.needA !== false) {
    // d op(A) = dZ·op(B)ᵀ; stored transposed: dA = op(B)·dZᵀ.
    const full = transA
      ? matmul(b, dz, { ...base, transA: transB, transB: true, label: `${op}.da` })
      : matmul(dz, b, { ...base, transA: false, transB: !transB, label: `${op}.da` });
    grads.da = reduceTo(full, a.shape);
  }
  if (opts.needB !== false) {
    let full: Tensor;
    if (p.folded) {
      // B is shared by every A matrix: one GEMM reduces over all batch·M rows.
      const a2 = a.reshape([p.na * p.M, p.K]);
      const dz2 = dz.reshape([p.na * p.M, p.N]);
      full = transB
        ? matmul(dz2, a2, { ...base, transA: true, label: `${op}.db` })
        : matmul(a2, dz2, { ...base, transA: true, label: `${op}.db` });
      a2.release();
      dz2.release();
    } else {
      // d op(B) = op(A)ᵀ·dZ; stored transposed: dB = dZᵀ·op(A).
      full = transB
        ? matmul(dz, a, { ...base, transA: true, transB: transA, label: `${op}.db` })
        : matmul(a, dz, { ...base, transA: !transA, transB: false, label: `${op}.db` });
    }
    grads.db = reduceTo(full, b.shape);
  }
  if (dz !== dy) dz.release();
  return grads;
}

/** A gradient computed on the broadcast batch shape, summed (if needed) and viewed as the operand's shape. */
function reduceTo(full: Tensor, shape: Shape): Tensor {
  if (full.size === numel(shape)) {
    const g = full.reshape(shape);
    full.release();
    return g;
  }
  const g = sumTo(full, shape.slice(-2));
  full.release();
  const v = g.reshape(shape);
  g.release();
  return v;
}
