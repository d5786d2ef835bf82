// Fused multi-head attention (kernels/attention.wgsl): flash-style forward with a saved log-sum-exp, and the
// FlashAttention-2 backward (D = rowsum(dO ⊙ O), one kernel over key blocks for dK / dV, one over query blocks for dQ).
//
//   attention(q, k, v, {heads})            O = softmax(Q·Kᵀ·scale [+ causal mask]) · V
//   attentionWithLse(q, k, v, {heads})     O and LSE (natural log of each row's Σ exp(scaled score)), for the backward
//   attentionBackward(q, k, v, o, lse, dO, {heads})   {dq, dk, dv}
//
// Layout: Q [B, N, heads·headDim] and K, V [B, M, heads·headDim], as linear layers produce them (head h is columns
// h·headDim .. (h+1)·headDim of each token row; no transposes). O, dQ like Q; dK, dV like K, V; LSE [B, heads, N].
// headDim must be a multiple of 4 (vec4 access); N, M are arbitrary (partial tiles are masked). The causal mask is
// top-left aligned (query n sees keys 0..n), as PyTorch's is_causal; CLIP's text encoder has N = M = 77.
// scale defaults to 1/sqrt(headDim).
// Fused projections: with `slices`, Q, K, V may be column ranges of wider token rows (one [B, N, 3·C] QKV GEMM
// output, or one [B, M, Σ C] K/V output shared by many blocks), read in place; O and the gradients are contiguous.
//
// Tiles (AttentionTile) are chosen per device and headDim from the workgroup-storage and invocation limits (see
// chooseAttentionTile); they can be forced per call for tuning. On CPU adapters (lavapipe) small tiles with rolled
// loops are the default, because there compile time, not speed, is what the tile size costs (AttentionOptions.roll).
import type { Gpu } from '../../runtime/device.js';
import { LimitError, ShapeError } from '../../runtime/errors.js';
import { Tensor, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';
import { commonDType, requireDType, requireSameGpu } from './checks.js';
import { grid1d } from './grid.js';
import { runAttentionSubgroup, SUBGROUP_SHARED_BYTES, subgroupProblem } from './attention_subgroup.js';
import { ATTENTION_BINDINGS, ATTENTION_UNIFORMS } from './attention_layout.js';
import { Kernel } from './kernel.js';

/**
 * Tile geometry of one attention kernel. A workgroup owns `br` rows (queries; keys in the dK/dV kernel) and walks
 * `bc` columns (keys; queries in dK/dV) per tile, with (br/tm)·tx threads: each owns tm rows, bc/tx score columns and
 * ceil(headDim/4/tx) output vec4 columns. xp / yp / pp: vec4s of padding per shared row of the row operand, the
 * column tile and the probability tile (yp = 1 keeps the column reads conflict-free).
 */
export interface AttentionTile {
  readonly br: number;
  readonly bc: number;
  readonly tm: number;
  readonly tx: number;
  readonly xp?: number;
  readonly yp?: number;
  readonly pp?: number;
  /**
   * headDim 64, devices with subgroups: kernels/attention_subgroup.wgsl (quads of invocations share their rows; scores
   * summed with subgroup shuffles). Written {br: 64, bc: 16, tm: 4, tx: 4, sg: true} for the forward and
   * {br: 32, bc: 16, tm: 2, tx: 4, sg: true} for dQ and dK/dV (SUBGROUP_TILES).
   */
  readonly sg?: boolean;
}

export type AttentionEntry = 'forward' | 'bwd_dq' | 'bwd_dkdv';

export type AttentionVariant = {
  readonly hd: number;
  readonly br: number;
  readonly bc: number;
  readonly tm: number;
  readonly tx: number;
  readonly xp: number;
  readonly yp: number;
  readonly pp: number;
  readonly roll: boolean;
  /** Storage type of Q, K, V, O and their gradients (LSE and the math are f32). */
  readonly dtype: DType;
};

export const attentionKernel = new Kernel<AttentionVariant>({
  name: 'attention',
  entryPoints: ['forward', 'bwd_prep', 'bwd_dq', 'bwd_dkdv'],
  dtypes: ['f32', 'f16'],
  bindings: ATTENTION_BINDINGS,
  uniforms: ATTENTION_UNIFORMS,
  constants: (v) => ({
    HD: v.hd,
    BR: v.br,
    BC: v.bc,
    TM: v.tm,
    TX: v.tx,
    XP: v.xp,
    YP: v.yp,
    PP: v.pp,
    ROLL: Number(v.roll),
  }),
});

/**
 * Query rows (B·heads·N) up to which the subgroup forward gives each quad 2 rows instead of 4 (twice the workgroups).
 * H100 (TCD_ATTENTION_SWEEP): 1024² × 20 heads (20480 rows) 0.337 → 0.302 ms with 2 rows; 4096² × 10 heads (40960)
 * 2.14 ms with 4 rows, 2.28 with 2.
 */
export const SUBGROUP_TWO_ROWS_MAX = 32768;

/** The subgroup kernels' fixed geometry per entry (64 invocations each). */
export const SUBGROUP_TILES: Record<AttentionEntry, AttentionTile> = {
  forward: { br: 64, bc: 16, tm: 4, tx: 4, sg: true },
  bwd_dq: { br: 32, bc: 16, tm: 2, tx: 4, sg: true },
  bwd_dkdv: { br: 32, bc: 16, tm: 2, tx: 4, sg: true },
};

/** Tile candidates per kernel, best first; the first that fits the device (and headDim) is used. */
export const ATTENTION_TILES: Record<AttentionEntry, readonly AttentionTile[]> = {
  // headDim 64 on devices with subgroups: attention_subgroup.wgsl, H100 10 heads × 4096²: 2.12 ms = 20.3 TFLOP/s
  // (0.63× PyTorch SDPA). Otherwise 64 queries × 32 keys, 256 threads of 2 rows × 4 keys (scores) / 2 rows × 8 floats
  // (output), rows padded (xp 1) so the 4 row groups of a warp read distinct bank quads: 46 KiB at headDim 64 (H100:
  // 48 KiB), 3.17 ms there, against 4.06 for the 4-row tile below (whose row reads conflict 4-way) and 3.78 for a
  // register-tiled 64-thread kernel (8 rows × 4 keys per thread, since removed). The 32-query tiles fit 32 KiB devices.
  forward: [
    SUBGROUP_TILES.forward,
    { br: 64, bc: 32, tm: 2, tx: 8, xp: 1 },
    { br: 64, bc: 32, tm: 4, tx: 8 },
    { br: 32, bc: 32, tm: 4, tx: 8 },
    { br: 32, bc: 16, tm: 4, tx: 8 },
    { br: 16, bc: 16, tm: 2, tx: 8 },
    { br: 16, bc: 8, tm: 2, tx: 8 },
    { br: 8, bc: 8, tm: 1, tx: 8 },
    { br: 4, bc: 4, tm: 1, tx: 4 },
  ],
  // 64 queries × 16 keys, 256 threads of 2 rows, rows padded (conflict-free row reads): 47.5 KiB at headDim 64. H100
  // sweep, 4096² × 10 heads backward (with the dK/dV tile below): 13.46 ms; 14.98 with dQ 32 × 32 × tm 1, 24.8 with
  // the former tm 4 unpadded tiles. 32 × 16 (27 KiB) for 32 KiB devices.
  bwd_dq: [
    SUBGROUP_TILES.bwd_dq,
    { br: 64, bc: 16, tm: 2, tx: 8, xp: 1 },
    { br: 32, bc: 32, tm: 1, tx: 8, xp: 1 },
    { br: 32, bc: 32, tm: 2, tx: 8, xp: 1 },
    { br: 32, bc: 32, tm: 4, tx: 8 },
    { br: 32, bc: 16, tm: 4, tx: 8 },
    { br: 16, bc: 16, tm: 2, tx: 8 },
    { br: 16, bc: 8, tm: 2, tx: 8 },
    { br: 8, bc: 8, tm: 1, tx: 8 },
    { br: 4, bc: 4, tm: 1, tx: 4 },
  ],
  // 32 keys × 32 queries, as for dQ: 44 KiB at headDim 64; 32 × 16 (30 KiB) for 32 KiB devices.
  bwd_dkdv: [
    SUBGROUP_TILES.bwd_dkdv,
    { br: 32, bc: 32, tm: 1, tx: 8, xp: 1 },
    { br: 32, bc: 32, tm: 2, tx: 8, xp: 1 },
    { br: 32, bc: 32, tm: 4, tx: 8 },
    { br: 32, bc: 16, tm: 4, tx: 8 },
    { br: 16, bc: 16, tm: 2, tx: 8 },
    { br: 16, bc: 8, tm: 2, tx: 8 },
    { br: 8, bc: 8, tm: 1, tx: 8 },
    { br: 4, bc: 4, tm: 1, tx: 4 },
  ],
};

/**
 * On CPU adapters (lavapipe) speed is moot and compile time rules: it grows with the shared-memory accesses of a
 * thread's tile, so small tiles come first there.
 */
export const ATTENTION_TILES_CPU: readonly AttentionTile[] = [
  { br: 16, bc: 16, tm: 2, tx: 8 },
  { br: 8, bc: 8, tm: 1, tx: 8 },
  { br: 4, bc: 4, tm: 1, tx: 4 },
];

interface Derived {
  DV: number;
  TN: number;
  TC: number;
  WG: number;
  xLen: number;
  yLen: number;
  pLen: number;
}

function derive(t: AttentionTile, headDim: number): Derived {
  const DV = headDim / 4;
  const TC = Math.ceil(DV / t.tx);
  const DVP = TC * t.tx;
  const WG = (t.br / t.tm) * t.tx;
  return {
    DV,
    TN: t.bc / t.tx,
    TC,
    WG,
    xLen: t.br * (DVP + (t.xp ?? 0)),
    yLen: t.bc * (DVP + (t.yp ?? 1)),
    pLen: t.br * (t.bc / 4 + (t.pp ?? 1)),
  };
}

/** Workgroup storage (bytes) a kernel's tile uses at this headDim (the shared arrays its entry point touches). */
export function attentionSharedBytes(entry: AttentionEntry, t: AttentionTile, headDim: number): number {
  const d = derive(t, headDim);
  const V4 = 16;
  switch (entry) {
    case 'forward':
      if (t.sg) return SUBGROUP_SHARED_BYTES.forward;
      return (d.xLen + 2 * d.yLen + d.pLen + (t.br * t.tx) / 4) * V4;
    case 'bwd_dq':
      if (t.sg) return SUBGROUP_SHARED_BYTES.bwd_dq;
      return (2 * d.xLen + 2 * d.yLen + d.pLen) * V4;
    case 'bwd_dkdv':
      if (t.sg) return SUBGROUP_SHARED_BYTES.bwd_dkdv;
      return (2 * d.xLen + 2 * d.yLen + 2 * d.pLen) * V4 + 2 * t.bc * 4;
  }
}

/** Why a tile cannot run for this headDim on this device (or is malformed); null if it can. */
export function attentionTileProblem(gpu: Gpu, entry: AttentionEntry, t: AttentionTile, headDim: number): string | null {
  const int = (x: number) => Number.isInteger(x) && x > 0;
  if (![t.br, t.bc, t.tm, t.tx].every(int)) return `br, bc, tm, tx must be positive integers`;
  if (t.tx % 4) return `tx must be a multiple of 4 (got ${t.tx})`;
  if (t.bc % t.tx || t.bc % 4) return `bc must be a multiple of tx and of 4 (got bc ${t.bc}, tx ${t.tx})`;
  if (t.br % t.tm) return `br must be a multiple of tm (got br ${t.br}, tm ${t.tm})`;
  if (t.tm > 8) return `tm must be at most 8 (got ${t.tm})`;
  const d = derive(t, headDim);
  if (t.sg) {
    const want = SUBGROUP_TILES[entry];
    const small = entry === 'forward' && t.br === 32 && t.tm === 2; // 2 rows per quad
    if (!small && (t.br !== want.br || t.bc !== want.bc || t.tm !== want.tm || t.tx !== want.tx))
      return `subgroup (sg) tiles for ${entry} are ${JSON.stringify(want)}${entry === 'forward' ? ' or {br: 32, tm: 2, …}' : ''} (got ${JSON.stringify(t)})`;
    if (small && (t.bc !== 16 || t.tx !== 4)) return `subgroup (sg) forward tiles need bc 16 and tx 4 (got ${JSON.stringify(t)})`;
    return subgroupProblem(gpu, entry, headDim);
  }
  if (t.tm * d.TN > 64) return `tm·bc/tx = ${t.tm * d.TN} score registers exceed 64`;
  if (t.tm * d.TC > 32) return `tm·ceil(headDim/4/tx) = ${t.tm * d.TC} output vec4s exceed 32`;
  if (d.WG > gpu.maxInvocations) return `${d.WG} invocations exceed maxComputeInvocationsPerWorkgroup ${gpu.maxInvocations}`;
  if (d.WG > gpu.limits.maxComputeWorkgroupSizeX) return `${d.WG} invocations exceed maxComputeWorkgroupSizeX`;
  const shared = attentionSharedBytes(entry, t, headDim);
  const max = gpu.limits.maxComputeWorkgroupStorageSize;
  if (shared > max) return `${shared} bytes of workgroup storage exceed maxComputeWorkgroupStorageSize ${max}`;
  return null;
}

/** The first candidate (ATTENTION_TILES[entry], or ATTENTION_TILES_CPU on CPU adapters) that runs here at this headDim. */
export function chooseAttentionTile(gpu: Gpu, entry: AttentionEntry, headDim: number, dtype: DType = 'f32'): AttentionTile {
  const list = isCpuAdapter(gpu) ? ATTENTION_TILES_CPU : ATTENTION_TILES[entry];
  void dtype; // both kernels have f16 variants; the tile choice does not depend on the dtype (yet: no f16 measurements)
  for (const t of list) if (!attentionTileProblem(gpu, entry, t, headDim)) return t;
  const last = list[list.length - 1];
  throw new LimitError(
    'maxComputeWorkgroupStorageSize',
    attentionSharedBytes(entry, last, headDim),
    gpu.limits.maxComputeWorkgroupStorageSize,
    `attention ${entry} at headDim ${headDim} (no tile fits: ${attentionTileProblem(gpu, entry, last, headDim)})`,
  );
}

/** Whether this adapter is a CPU implementation (lavapipe, SwiftShader): the default for AttentionOptions.roll. */
export function isCpuAdapter(gpu: Gpu): boolean {
  let cached = cpuAdapters.get(gpu);
  if (cached === undefined) {
    cached = gpu.summary().isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(gpu.describe());
    cpuAdapters.set(gpu, cached);
  }
  return cached;
}
const cpuAdapters = new WeakMap<Gpu, boolean>();

export interface AttentionOptions {
  heads: number;
  /** Multiplies Q·Kᵀ before the softmax (default 1/sqrt(headDim)). */
  scale?: number;
  /** Query n attends to keys 0..n only. */
  causal?: boolean;
  /** Forward tile (default: chooseAttentionTile). */
  tile?: AttentionTile;
  /**
   * Keep the head-dim, column and copy loops rolled (same arithmetic, much less code). Default: only on CPU
   * adapters (lavapipe / SwiftShader), whose shader compile time grows steeply with unrolled shared-memory accesses.
   */
  roll?: boolean;
  /** Q, K, V read as column slices of their tensors' rows (default: each tensor is exactly [B, tokens, C]). */
  slices?: AttentionSlices;
  label?: string;
}

/**
 * Where Q, K, V sit in wider token rows: each operand's tensor is [B, tokens, W] (W its own row width) and the
 * operand is columns offset .. offset + channels of every row. Offsets and widths must be multiples of 4 (vec4 reads).
 */
export interface AttentionSlices {
  /** heads·headDim. */
  channels: number;
  q?: number;
  k?: number;
  v?: number;
}

export interface AttentionBackwardOptions extends AttentionOptions {
  /** Tiles of the dQ and dK/dV kernels (default: chooseAttentionTile). */
  tileDq?: AttentionTile;
  tileDkdv?: AttentionTile;
}

interface Geometry {
  /** Row widths (elements) and column offsets of Q, K, V in their tensors. */
  widths: [number, number, number];
  offsets: [number, number, number];
  B: number;
  N: number;
  M: number;
  heads: number;
  headDim: number;
  scale: number;
  causal: boolean;
  dtype: DType;
}

function geometry(op: string, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Geometry {
  const dtype = commonDType(op, q, k, v);
  requireSameGpu(op, q, k, v);
  const all = `q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)}`;
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) throw new ShapeError(`${op}: q, k, v must be [B, tokens, heads·headDim], got ${all}`);
  const heads = opts.heads;
  if (!Number.isInteger(heads) || heads < 1) throw new ShapeError(`${op}: heads must be a positive integer, got ${heads}`);
  const [B, N] = q.shape;
  const sl = opts.slices;
  const C = sl ? sl.channels : q.shape[2];
  const M = k.shape[1];
  if (k.shape[0] !== B || v.shape[0] !== B) throw new ShapeError(`${op}: batch sizes differ (expected ${B} everywhere), got ${all}`);
  const offsets: [number, number, number] = [sl?.q ?? 0, sl?.k ?? 0, sl?.v ?? 0];
  const widths: [number, number, number] = [q.shape[2], k.shape[2], v.shape[2]];
  if (!sl) {
    if (k.shape[2] !== C || v.shape[2] !== C) throw new ShapeError(`${op}: q, k, v must have the same channels (expected ${C}), got ${all}`);
  } else {
    if (!Number.isInteger(C) || C < 1) throw new ShapeError(`${op}: slices.channels must be a positive integer, got ${C}`);
    ['q', 'k', 'v'].forEach((name, i) => {
      const [off, w] = [offsets[i], widths[i]];
      if (!Number.isInteger(off) || off < 0 || off % 4 || w % 4 || off + C > w)
        throw new ShapeError(
          `${op}: ${name} slice at column ${off} of ${C} channels must fit its rows of ${w} (offset and width multiples of 4), got ${all}`,
        );
    });
  }
  if (v.shape[1] !== M) throw new ShapeError(`${op}: k and v must have the same number of keys (expected ${M}), got ${all}`);
  if (C % heads) throw new ShapeError(`${op}: channels ${C} do not split into ${heads} heads`);
  const headDim = C / heads;
  if (headDim % 4) throw new ShapeError(`${op}: headDim ${headDim} (= ${C} / ${heads} heads) must be a multiple of 4`);
  if (M < 1 && N > 0) throw new ShapeError(`${op}: attention needs at least one key, got M = ${M} (${all})`);
  const scale = opts.scale ?? 1 / Math.sqrt(headDim);
  return { widths, offsets, B, N, M, heads, headDim, scale, causal: !!opts.causal, dtype };
}

function tileFor(gpu: Gpu, entry: AttentionEntry, g: Geometry, tile: AttentionTile | undefined): AttentionTile {
  return tile ?? chooseAttentionTile(gpu, entry, g.headDim, g.dtype);
}

function variantFor(gpu: Gpu, entry: AttentionEntry, g: Geometry, tile: AttentionTile | undefined, roll?: boolean): AttentionVariant {
  const t = tileFor(gpu, entry, g, tile);
  const problem = attentionTileProblem(gpu, entry, t, g.headDim);
  if (problem) throw new Error(`attention ${entry}: tile ${JSON.stringify(t)} cannot run here: ${problem}`);
  return { hd: g.headDim, br: t.br, bc: t.bc, tm: t.tm, tx: t.tx, xp: t.xp ?? 0, yp: t.yp ?? 1, pp: t.pp ?? 1, roll: roll ?? isCpuAdapter(gpu), dtype: g.dtype };
}

function params(g: Geometry, rows = 0) {
  const stride = (g.heads * g.headDim) / 4;
  return {
    N: g.N,
    M: g.M,
    heads: g.heads,
    rows,
    qStride: g.widths[0] / 4,
    kStride: g.widths[1] / 4,
    vStride: g.widths[2] / 4,
    oStride: stride,
    scaleLog2: g.scale * Math.LOG2E,
    scale: g.scale,
    causal: Number(g.causal),
    one: 1,
    qOff: g.offsets[0] / 4,
    kOff: g.offsets[1] / 4,
    vOff: g.offsets[2] / 4,
  };
}

function checkGrid(gpu: Gpu, g: Geometry, what: string): void {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (g.heads > max) throw new LimitError('maxComputeWorkgroupsPerDimension', g.heads, max, `${what}: heads`);
  if (g.B > max) throw new LimitError('maxComputeWorkgroupsPerDimension', g.B, max, `${what}: batch`);
}

/** O and the per-row log-sum-exp LSE [B, heads, N] (natural log of Σ_m exp(scale·q·k_m) over unmasked keys). */
export function attentionWithLse(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): { o: Tensor; lse: Tensor } {
  const op = opts.label ?? 'attention';
  const g = geometry(op, q, k, v, opts);
  const gpu = q.gpu;
  checkGrid(gpu, g, op);
  const tile = tileFor(gpu, 'forward', g, opts.tile);
  const variant = variantFor(gpu, 'forward', g, tile, opts.roll);
  const C = g.heads * g.headDim;
  const o = Tensor.empty(gpu, [g.B, g.N, C], g.dtype, `${op}.o`);
  const lse = Tensor.empty(gpu, [g.B, g.heads, g.N], 'f32', `${op}.lse`);
  if (tile.sg) {
    // Chosen tile: 2 rows per quad where 4 would make too few workgroups to fill a large GPU.
    const quadRows = opts.tile ? tile.tm : g.B * g.heads * g.N <= SUBGROUP_TWO_ROWS_MAX ? 2 : 4;
    runAttentionSubgroup(gpu, 'forward', { buffers: { q, k, v, o, lse }, params: params(g), rows: g.N, heads: g.heads, B: g.B, label: `${op}.forward`, quadRows });
    return { o, lse };
  }
  attentionKernel.run(gpu, {
    entry: 'forward',
    variant,
    params: params(g),
    // `dout` is reachable from the shared loader, so forward binds it too (a read-only alias of q).
    buffers: { q, k, v, o, lse, dout: q },
    workgroups: [Math.ceil(g.N / variant.br), g.heads, g.B],
    label: `${op}.forward`,
  });
  return { o, lse };
}

/** O = softmax(Q·Kᵀ·scale [+ causal mask]) · V. */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
  const { o, lse } = attentionWithLse(q, k, v, opts);
  lse.release();
  return o;
}

export interface AttentionGrads {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
}

/** Gradients of O = attention(q, k, v) given dO, from the forward's O and LSE (the softmax is recomputed per tile). */
export function attentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  o: Tensor,
  lse: Tensor,
  dO: Tensor,
  opts: AttentionBackwardOptions,
): AttentionGrads {
  const op = `${opts.label ?? 'attention'} backward`;
  const g = geometry(op, q, k, v, opts);
  requireDType(op, g.dtype, o, dO);
  requireDType(op, 'f32', lse);
  requireSameGpu(op, q, o, lse, dO);
  const C = g.heads * g.headDim;
  const qShape = [g.B, g.N, C];
  const kShape = [g.B, g.M, C];
  for (const [name, t] of [['o', o], ['dO', dO]] as const)
    if (t.shape.length !== 3 || t.shape.some((d, i) => d !== qShape[i]))
      throw new ShapeError(`${op}: ${name} ${shapeStr(t.shape)} must have q's shape ${shapeStr(qShape)}`);
  const lseShape = [g.B, g.heads, g.N];
  if (lse.shape.length !== 3 || lse.shape.some((d, i) => d !== lseShape[i]))
    throw new ShapeError(`${op}: lse ${shapeStr(lse.shape)} must be [B, heads, N] = ${shapeStr(lseShape)}`);
  const gpu = q.gpu;
  checkGrid(gpu, g, op);
  const tileDq = tileFor(gpu, 'bwd_dq', g, opts.tileDq);
  const tileDkdv = tileFor(gpu, 'bwd_dkdv', g, opts.tileDkdv);
  // bwd_prep's variant: the general dQ tile's (bwd_prep reads only HD and ROLL).
  const vDq = variantFor(gpu, 'bwd_dq', g, tileDq.sg ? { br: 16, bc: 16, tm: 2, tx: 8 } : tileDq, opts.roll);
  const vDkdv = tileDkdv.sg ? vDq : variantFor(gpu, 'bwd_dkdv', g, tileDkdv, opts.roll);
  const dq = Tensor.empty(gpu, qShape, g.dtype, `${op}.dq`);
  const dk = Tensor.empty(gpu, kShape, g.dtype, `${op}.dk`);
  const dv = Tensor.empty(gpu, kShape, g.dtype, `${op}.dv`);
  const dvec = Tensor.empty(gpu, lseShape, 'f32', `${op}.D`);
  const rows = g.B * g.N * g.heads;
  const bufs = { q, k, v, o, lse, dout: dO, dvec, dq, dk, dv };
  attentionKernel.run(gpu, {
    entry: 'bwd_prep',
    // bwd_prep reads only HD and ROLL: one pipeline per headDim, whatever the tiles.
    variant: { ...vDq, br: 16, bc: 16, tm: 2, tx: 8, xp: 0, yp: 1, pp: 1 },
    params: params(g, rows),
    buffers: bufs,
    workgroups: grid1d(gpu, rows),
    label: `${op}.prep`,
  });
  const sgArgs = { buffers: bufs, params: params(g), heads: g.heads, B: g.B };
  if (tileDkdv.sg) runAttentionSubgroup(gpu, 'bwd_dkdv', { ...sgArgs, rows: g.M, label: `${op}.dkdv` });
  else
    attentionKernel.run(gpu, {
      entry: 'bwd_dkdv',
      variant: vDkdv,
      params: params(g),
      buffers: bufs,
      workgroups: [Math.ceil(g.M / vDkdv.br), g.heads, g.B],
      label: `${op}.dkdv`,
    });
  if (tileDq.sg) runAttentionSubgroup(gpu, 'bwd_dq', { ...sgArgs, rows: g.N, label: `${op}.dq` });
  else
    attentionKernel.run(gpu, {
      entry: 'bwd_dq',
      variant: vDq,
      params: params(g),
      buffers: bufs,
      workgroups: [Math.ceil(g.N / vDq.br), g.heads, g.B],
      label: `${op}.dq`,
    });
  dvec.release();
  return { dq, dk, dv };
}

/** Floating-point operations of the forward (the FlashAttention convention: 4·B·heads·N·M·headDim, mask ignored). */
export function attentionFlops(B: number, heads: number, N: number, M: number, headDim: number): number {
  return 4 * B * heads * N * M * headDim;
}
