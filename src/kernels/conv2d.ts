// 2-D convolution (kernels/conv2d.wgsl): NCHW, PyTorch cross-correlation, zero padding, groups = 1, any kH × kW,
// stride and padding; forward with a fused bias / residual epilogue, input and weight gradients, and LoRA convs.
//
//   conv2d(x, w, opts)                     y = conv(x, w) + bias + residual
//   conv2dBackward(x, w, dy, opts)         {dx, dw, dbias}; dw and dbias only when asked (frozen convs pay nothing)
//   loraConv2d(x, p, opts)                 y = conv(x, W) + bias + scale·conv1x1(conv(x, A), B), in two dispatches:
//                                          h = conv(x, A) (r channels), then one conv over W whose K loop goes on
//                                          over h's r channels with B, so y is written once
//   loraConv2dBackward(x, p, dy, opts)     {dx, da, db} (W frozen: never dW); dx = convᵀ(dy, W) + convᵀ(dh, A) in
//                                          one kernel
//   packConv2dWeight(w, role)              the weight re-laid out for the kernels; pass it as `packed` to skip the
//                                          per-call packing of a frozen weight
//
// Shapes: x [B, Cin, H, W], w [Cout, Cin, kH, kW], bias [Cout], y [B, Cout, Hout, Wout] with
// Hout = ⌊(H + 2·padY − kH) / strideY⌋ + 1. LoRA: A [r, Cin, kH, kW] (same stride and padding as W), B [Cout, r, 1, 1].
//
// All GEMMs are implicit (no im2col buffer). The tile (ConvTile) and the split of K over workgroups (splitK) are
// chosen per shape by chooseConvPlan unless given.
import type { Gpu } from '../../runtime/device.js';
import { DTypeError, ShapeError } from '../../runtime/errors.js';
import { type Shape, Tensor, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';
import { commonDType, requireSameGpu } from './checks.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';
import { sum, sumTo } from './reduce.js';

/**
 * Tile geometry: a workgroup of (bn/tn) × (bm/tm) threads computes a bm (channels) × bn (pixels, or weight columns
 * for the weight gradient) block, tm × tn outputs per thread; K advances bk per shared tile.
 */
export interface ConvTile {
  readonly bm: number;
  readonly bn: number;
  readonly bk: number;
  readonly tm: number;
  readonly tn: number;
}

/**
 * Presets (256 threads each but small): large* for big layers (8×8 per thread), wide* for Cout = 64·k (320, 640),
 * tall16 for few pixels and many channels, medium and small for few tiles (small: 64 threads, CPU drivers and tests).
 */
export const CONV_TILES = {
  large16: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8 },
  large: { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8 },
  wide16: { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8 },
  tall16: { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4 },
  wide: { bm: 64, bn: 128, bk: 8, tm: 4, tn: 8 },
  medium: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
  small: { bm: 32, bn: 32, bk: 8, tm: 4, tn: 4 },
} as const satisfies Record<string, ConvTile>;

/** The pipeline variant is the tile alone; geometry and epilogue are uniforms (one pipeline per tile and entry). */
export type Conv2dVariant = {
  readonly bm: number;
  readonly bn: number;
  readonly bk: number;
  readonly tm: number;
  readonly tn: number;
  /** Storage element type (f32 tiles and accumulators either way). */
  readonly dtype: DType;
};

const FLAGS = { bias: 1, residual: 2, split: 4, flip: 8 } as const;

export const conv2dKernel = new Kernel<Conv2dVariant>({
  name: 'conv2d',
  entryPoints: ['conv', 'conv_wgrad', 'pack_weight', 'splitk_sum'],
  dtypes: ['f32', 'f16'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'x', kind: 'read' },
    { name: 'a', kind: 'read' },
    { name: 'x2', kind: 'read' },
    { name: 'a2', kind: 'read' },
    { name: 'bias', kind: 'read' },
    { name: 'res', kind: 'read' },
    { name: 'y', kind: 'read_write' },
  ],
  uniforms: [
    ['Cs', 'u32'],
    ['Hs', 'u32'],
    ['Ws', 'u32'],
    ['Cd', 'u32'],
    ['Hd', 'u32'],
    ['Wd', 'u32'],
    ['batch', 'u32'],
    ['padY', 'i32'],
    ['padX', 'i32'],
    ['kh', 'u32'],
    ['kw', 'u32'],
    ['stride', 'u32'],
    ['dil', 'u32'],
    ['dilShift', 'u32'],
    ['C2', 'u32'],
    ['pair2', 'u32'],
    ['flags', 'u32'],
    ['tilesM', 'u32'],
    ['tilesN', 'u32'],
    ['tiles1', 'u32'],
    ['tilesK', 'u32'],
    ['splits', 'u32'],
    ['segs', 'u32'],
    ['count', 'u32'],
    ['alpha', 'f32'],
  ],
  constants: (v) => ({ BM: v.bm, BN: v.bn, BK: v.bk, TM: v.tm, TN: v.tn }),
});

/** The variant of the elementwise entries (pack_weight, splitk_sum), which use no tile constant. */
const ELEMENTWISE_VARIANTS: Record<DType, Conv2dVariant> = {
  f32: { bm: 64, bn: 64, bk: 8, tm: 4, tn: 4, dtype: 'f32' },
  f16: { bm: 64, bn: 64, bk: 8, tm: 4, tn: 4, dtype: 'f16' },
};

/** Workgroup memory a tile needs: two k-major buffers each for A and B, rows padded by one vec4. */
export function convTileSharedBytes(t: ConvTile): number {
  return 2 * t.bk * (t.bm / 4 + 1) * 16 + 2 * t.bk * (t.bn / 4 + 1) * 16;
}

/** Why a tile cannot run on this device (or is malformed); null if it can. */
export function convTileProblem(gpu: Gpu, t: ConvTile): string | null {
  if (![4, 8].includes(t.tm) || ![4, 8].includes(t.tn)) return `tm and tn must be 4 or 8 (got ${t.tm}, ${t.tn})`;
  if (t.bm % t.tm || t.bn % t.tn || t.bm % 4 || t.bn % 4) return `bm, bn must be multiples of tm, tn and 4`;
  const wx = t.bn / t.tn;
  const wy = t.bm / t.tm;
  const threads = wx * wy;
  const lim = gpu.limits;
  if (threads > gpu.maxInvocations) return `${threads} invocations exceed maxComputeInvocationsPerWorkgroup ${gpu.maxInvocations}`;
  if (wx > lim.maxComputeWorkgroupSizeX || wy > lim.maxComputeWorkgroupSizeY) return `workgroup ${wx}×${wy} exceeds the size limits`;
  // Loader layouts: conv loads A m-fastest and B n-fastest (a whole number of rows per pass), conv_wgrad loads A
  // k-fastest; each thread's share (LA, LB) must be whole and fit the 8-element registers.
  if (threads % t.bm || threads % t.bn || threads % t.bk) return `${threads} threads must be a multiple of bm, bn and bk`;
  if (t.bk % (threads / t.bm) || t.bk % (threads / t.bn) || t.bm % (threads / t.bk))
    return `bk ${t.bk} does not split into whole rows per pass for ${threads} threads`;
  const la = (t.bm * t.bk) / threads;
  const lb = (t.bn * t.bk) / threads;
  if (la < 1 || la > 8 || lb < 1 || lb > 8) return `each thread must load 1..8 elements per tile (A ${la}, B ${lb})`;
  const shared = convTileSharedBytes(t);
  if (shared > lim.maxComputeWorkgroupStorageSize)
    return `${shared} bytes of workgroup storage exceed maxComputeWorkgroupStorageSize ${lim.maxComputeWorkgroupStorageSize}`;
  return null;
}

/** A tile and a split of the K tiles over grid z. */
export interface ConvPlan {
  readonly tile: ConvTile;
  readonly splitK: number;
}

/**
 * Tuning knobs of chooseConvPlan (exported so a sweep can change them). The model: a workgroup holds a tile; an SM
 * keeps `resident[tm·tn]` of them (register-bound: 8×8 outputs per thread ≈ 128 registers → 2 per SM of 64 K
 * registers); a partly filled last wave costs `tailCost + (1 − tailCost)·fraction` of a full one (its workgroups
 * share SMs with fewer others and run faster); larger per-thread tiles do more FMAs per shared-memory load; a K split
 * writes and reads the partial sums (≈ splitPenaltyK·splits/K of the time: 4·FLOP rate / bandwidth ≈ 27 on an H100)
 * and is tried only when one split leaves SM slots empty. Defaults are for an H100 (132 SMs); the sweep in
 * bench/conv2d.bench.ts (TCD_CONV_SWEEP=1) measures the real ranking.
 */
export const CONV_PLAN_KNOBS = {
  sms: 132,
  resident: { 64: 2, 32: 3, 16: 4 } as Record<number, number>,
  intensity: { 64: 1, 32: 0.85, 16: 0.8 } as Record<number, number>,
  tailCost: 0.5,
  splitPenaltyK: 27,
  /** Fixed score lost per extra split (shorter K loops, the extra dispatch): ties go to fewer splits. */
  splitFixed: 0.005,
  minKTilesPerSplit: 16,
  maxSplits: 16,
  /** Below this many multiply-adds launch overhead dominates: the small tile, no split. */
  smallWork: 2 ** 24,
  /**
   * Presets tried for conv_wgrad, and for the conv entry (forward and input gradient) `convOrder`. H100 sweep
   * (TCD_CONV_SWEEP=1, 2026-11-26, after the conv epilogue was written out per register row; before that the 8-pixel
   * tiles ran ~10× slower): 3×3 320→320 at 128²: large 1.28 ms (split 2 1.25), wide 1.30, medium 1.50, tall16 1.74,
   * large16 1.63; 1280→1280 at 32²: large split 3 1.33, wide split 4 1.55, tall16 split 4 1.73, large16 split 3 1.73.
   */
  order: ['large16', 'large', 'wide16', 'tall16', 'wide', 'medium', 'small'] as (keyof typeof CONV_TILES)[],
  convOrder: ['large', 'wide', 'medium', 'small'] as (keyof typeof CONV_TILES)[],
};

/** Score of a tile and split under CONV_PLAN_KNOBS (higher is better; 1 = full waves, no waste, 8×8 per thread). */
export function convPlanScore(t: ConvTile, splitK: number, M: number, N: number, K: number): number {
  const k = CONV_PLAN_KNOBS;
  const tm = Math.ceil(M / t.bm);
  const tn = Math.ceil(N / t.bn);
  const waste = (tm * t.bm * tn * t.bn) / (M * N);
  const per = t.tm * t.tn;
  const waves = (tm * tn * splitK) / (k.sms * (k.resident[per] ?? 2));
  const frac = waves - Math.floor(waves);
  const fill = waves / (Math.floor(waves) + (frac > 0 ? k.tailCost + (1 - k.tailCost) * frac : 0));
  const split = splitK > 1 ? 1 - (k.splitPenaltyK * splitK) / Math.max(1, K) - k.splitFixed * (splitK - 1) : 1;
  return (fill * (k.intensity[per] ?? 0.7) * split) / waste;
}

/**
 * The tile and K split for an M × N output with `kTiles(bk)` K tiles: the best-scoring (convPlanScore) preset that
 * runs here, over splits that keep at least minKTilesPerSplit K tiles each; the small tile for small problems.
 */
export function chooseConvPlan(
  gpu: Gpu,
  M: number,
  N: number,
  kTiles: (bk: number) => number,
  entry: 'conv' | 'conv_wgrad' = 'conv',
): ConvPlan {
  const k = CONV_PLAN_KNOBS;
  const feasible = (entry === 'conv' ? k.convOrder : k.order).map((n) => CONV_TILES[n]).filter((t) => !convTileProblem(gpu, t));
  const small = feasible[feasible.length - 1] ?? CONV_TILES.small;
  const K = kTiles(1);
  if (M * N * K < k.smallWork || feasible.length === 0) return { tile: small, splitK: 1 };
  let best: ConvPlan & { score: number } = { tile: small, splitK: 1, score: -Infinity };
  // The last feasible preset is the small-problem fallback; it is scored only when nothing else runs here.
  for (const t of feasible.length > 1 ? feasible.slice(0, -1) : feasible) {
    const groups = Math.ceil(M / t.bm) * Math.ceil(N / t.bn);
    const slots = k.sms * (k.resident[t.tm * t.tn] ?? 2);
    const maxS = groups >= slots ? 1 : Math.max(1, Math.min(k.maxSplits, Math.floor(kTiles(t.bk) / k.minKTilesPerSplit)));
    for (let s = 1; s <= maxS; s++) {
      const score = convPlanScore(t, s, M, N, K);
      if (score > best.score + 1e-9) best = { tile: t, splitK: s, score };
    }
  }
  return { tile: best.tile, splitK: best.splitK };
}

export type Pair = number | readonly [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

/** A weight laid out for the conv kernel: 'forward' [kH·kW][Cin][Cout], 'inputGrad' [kH·kW][Cout][Cin] with the taps reversed. */
export interface PackedConv2dWeight {
  readonly t: Tensor;
  readonly role: 'forward' | 'inputGrad';
  /** The original weight's shape [Cout, Cin, kH, kW]. */
  readonly shape: readonly [number, number, number, number];
  readonly scale: number;
  release(): void;
}

function pack(w: Tensor, role: 'forward' | 'inputGrad', scale: number): PackedConv2dWeight {
  const gpu = w.gpu;
  const [Co, Ci, kh, kw] = w.shape as [number, number, number, number];
  const flip = role === 'inputGrad';
  const t = Tensor.empty(gpu, flip ? [kh * kw, Co, Ci] : [kh * kw, Ci, Co], w.dtype, `pack(${w.label})`);
  conv2dKernel.run(gpu, {
    entry: 'pack_weight',
    variant: ELEMENTWISE_VARIANTS[w.dtype],
    params: { ...zeroParams, Cs: Ci, Cd: Co, kh, kw, flags: flip ? FLAGS.flip : 0, count: t.size, alpha: scale },
    buffers: { x: w, y: t },
    workgroups: grid1d(gpu, t.size),
    label: `conv2d.pack_weight`,
  });
  return { t, role, shape: [Co, Ci, kh, kw], scale, release: () => t.release() };
}

/**
 * Packs a conv weight [Cout, Cin, kH, kW] for conv2d ('forward') or for the input gradient ('inputGrad'). Keep the
 * result for a frozen weight and pass it as `packed` (forward) / `packedInputGrad` (backward).
 */
export function packConv2dWeight(w: Tensor, role: 'forward' | 'inputGrad' = 'forward'): PackedConv2dWeight {
  commonDType('packConv2dWeight', w);
  if (w.rank !== 4) throw new ShapeError(`packConv2dWeight: weight '${w.label}' ${shapeStr(w.shape)} must be [Cout, Cin, kH, kW]`);
  return pack(w, role, 1);
}

const zeroParams = {
  Cs: 0,
  Hs: 0,
  Ws: 0,
  Cd: 0,
  Hd: 0,
  Wd: 0,
  batch: 0,
  padY: 0,
  padX: 0,
  kh: 1,
  kw: 1,
  stride: 1,
  dil: 1,
  dilShift: 0,
  C2: 0,
  pair2: 0,
  flags: 0,
  tilesM: 0,
  tilesN: 0,
  tiles1: 0,
  tilesK: 0,
  splits: 1,
  segs: 0,
  count: 0,
  alpha: 1,
};

/** Conv geometry from x [B, Cin, H, W] and a weight shape [Cout, Cin, kH, kW]. */
export interface ConvGeometry {
  B: number;
  Cin: number;
  H: number;
  W: number;
  Cout: number;
  kH: number;
  kW: number;
  strideY: number;
  strideX: number;
  padY: number;
  padX: number;
  Hout: number;
  Wout: number;
}

export function convGeometry(op: string, xShape: Shape, wShape: Shape, stride: Pair = 1, padding: Pair = 0): ConvGeometry {
  const [strideY, strideX] = pair(stride);
  const [padY, padX] = pair(padding);
  if (xShape.length !== 4) throw new ShapeError(`${op}: x ${shapeStr(xShape)} must be [B, Cin, H, W]`);
  if (wShape.length !== 4) throw new ShapeError(`${op}: weight ${shapeStr(wShape)} must be [Cout, Cin, kH, kW]`);
  const [B, Cin, H, W] = xShape;
  const [Cout, wCin, kH, kW] = wShape;
  if (wCin !== Cin)
    throw new ShapeError(`${op}: weight ${shapeStr(wShape)} expects Cin = ${wCin}, x ${shapeStr(xShape)} has Cin = ${Cin} (groups = 1)`);
  for (const [name, v, min] of [
    ['stride', strideY, 1],
    ['stride', strideX, 1],
    ['padding', padY, 0],
    ['padding', padX, 0],
    ['kernel size', kH, 1],
    ['kernel size', kW, 1],
  ] as const)
    if (!Number.isInteger(v) || v < min) throw new ShapeError(`${op}: ${name} must be an integer ≥ ${min}, got ${v}`);
  const Hout = Math.floor((H + 2 * padY - kH) / strideY) + 1;
  const Wout = Math.floor((W + 2 * padX - kW) / strideX) + 1;
  if (Hout < 1 || Wout < 1)
    throw new ShapeError(
      `${op}: a ${kH}×${kW} kernel with padding (${padY}, ${padX}) does not fit input ${H}×${W} (output would be ${Hout}×${Wout})`,
    );
  return { B, Cin, H, W, Cout, kH, kW, strideY, strideX, padY, padX, Hout, Wout };
}

/** One conv-entry dispatch, fully described (the exported functions build these). */
interface ConvCall {
  /** Gather source [B, Cs, Hs, Ws] and the packed weight [taps][Cs][Cd]. */
  src: Tensor;
  packed: Tensor;
  Cs: number;
  Hs: number;
  Ws: number;
  /** Destination [B, Cd, Hd, Wd]. */
  Cd: number;
  Hd: number;
  Wd: number;
  B: number;
  kh: number;
  kw: number;
  stride: number;
  dil: number;
  padY: number;
  padX: number;
  /** Pair 2: mode 1 pointwise over src2 [B, C2, Hd, Wd], mode 2 the same gather over src2 [B, C2, Hs, Ws]. */
  pair2?: { mode: 1 | 2; src: Tensor; packed: Tensor; C2: number };
  bias?: Tensor;
  residual?: Tensor;
  alpha?: number;
  plan?: Partial<ConvPlan>;
  label: string;
}

/** The given tile (split 1 unless given) or the chosen plan (with a given split, if any); the tile must run here. */
function resolvePlan(
  gpu: Gpu,
  label: string,
  given: Partial<ConvPlan> | undefined,
  M: number,
  N: number,
  kTiles: (bk: number) => number,
  entry: 'conv' | 'conv_wgrad',
): ConvPlan {
  const plan = given?.tile
    ? { tile: given.tile, splitK: given.splitK ?? 1 }
    : { ...chooseConvPlan(gpu, M, N, kTiles, entry), ...(given?.splitK ? { splitK: given.splitK } : {}) };
  const problem = convTileProblem(gpu, plan.tile);
  if (problem) throw new Error(`${label}: tile ${JSON.stringify(plan.tile)} cannot run here: ${problem}`);
  if (!Number.isInteger(plan.splitK) || plan.splitK < 1)
    throw new Error(`${label}: splitK must be a positive integer, got ${plan.splitK}`);
  return plan;
}

function runConv(c: ConvCall): Tensor {
  const gpu = c.src.gpu;
  const N = c.B * c.Hd * c.Wd;
  const taps = c.kh * c.kw;
  const dtype = c.src.dtype;
  const y = Tensor.empty(gpu, [c.B, c.Cd, c.Hd, c.Wd], dtype, c.label);
  if (N === 0 || c.Cd === 0) return y;
  const p2 = c.pair2;
  const kTiles = (bk: number) => ({
    t1: Math.ceil(c.Cs / bk) * taps,
    t2: p2 ? Math.ceil(p2.C2 / bk) * (p2.mode === 1 ? 1 : taps) : 0,
  });
  const { tile, splitK } = resolvePlan(gpu, c.label, c.plan, c.Cd, N, (bk) => kTiles(bk).t1 + kTiles(bk).t2, 'conv');
  const { t1, t2 } = kTiles(tile.bk);
  const tilesK = t1 + t2;
  // f16: partial sums would be rounded to f16 before they are added; f16 convs run whole.
  const splits = dtype === 'f16' ? 1 : Math.max(1, Math.min(splitK, tilesK));
  const split = splits > 1;
  const tilesM = Math.ceil(c.Cd / tile.bm);
  const tilesN = Math.ceil(N / tile.bn);
  const total = tilesM * tilesN;
  const maxX = gpu.limits.maxComputeWorkgroupsPerDimension;
  const wx = Math.min(total, maxX);
  const partial = split ? Tensor.empty(gpu, [splits, c.B, c.Cd, c.Hd, c.Wd], 'f32', `${c.label}.partials`) : undefined;
  const flags = (c.bias ? FLAGS.bias : 0) | (c.residual ? FLAGS.residual : 0);
  const params = {
    ...zeroParams,
    Cs: c.Cs,
    Hs: c.Hs,
    Ws: c.Ws,
    Cd: c.Cd,
    Hd: c.Hd,
    Wd: c.Wd,
    batch: c.B,
    padY: c.padY,
    padX: c.padX,
    kh: c.kh,
    kw: c.kw,
    stride: c.stride,
    dil: c.dil,
    dilShift: Number.isInteger(Math.log2(c.dil)) ? Math.log2(c.dil) : 32,
    C2: p2?.C2 ?? 0,
    pair2: p2?.mode ?? 0,
    flags: flags | (split ? FLAGS.split : 0),
    tilesM,
    tilesN,
    tiles1: t1,
    tilesK,
    splits,
    alpha: c.alpha ?? 1,
  };
  // Unused read bindings get read-only aliases of the source (allowed); y is the only writable binding.
  conv2dKernel.run(gpu, {
    entry: 'conv',
    variant: { ...tile, dtype },
    params,
    buffers: {
      x: c.src,
      a: c.packed,
      x2: p2?.src ?? c.src,
      a2: p2?.packed ?? c.packed,
      bias: c.bias ?? c.src,
      res: c.residual ?? c.src,
      y: partial ?? y,
    },
    workgroups: [wx, Math.ceil(total / wx), splits],
    label: c.label,
  });
  if (partial) {
    conv2dKernel.run(gpu, {
      entry: 'splitk_sum',
      variant: ELEMENTWISE_VARIANTS[dtype],
      params: { ...params, flags, count: y.size },
      buffers: { x: partial, bias: c.bias ?? partial, res: c.residual ?? partial, y },
      workgroups: grid1d(gpu, y.size),
      label: `${c.label}.splitk_sum`,
    });
    partial.release();
  }
  return y;
}

/** One conv_wgrad: dW [Cd, Cs·kh·kw] = alpha · Σ dy ⊗ im2col(x), forward geometry; x [B, Cs, Hs, Ws], dy [B, Cd, Hd, Wd]. */
interface WgradCall {
  x: Tensor;
  dy: Tensor;
  kh: number;
  kw: number;
  stride: number;
  padY: number;
  padX: number;
  alpha?: number;
  plan?: Partial<ConvPlan>;
  outShape: Shape;
  label: string;
}

function runWgrad(c: WgradCall): Tensor {
  const gpu = c.x.gpu;
  const [B, Cs, Hs, Ws] = c.x.shape;
  const [, Cd, Hd, Wd] = c.dy.shape;
  const taps = c.kh * c.kw;
  const M = Cd;
  const N = Cs * taps;
  const kTiles = (bk: number) => B * Hd * Math.ceil(Wd / bk);
  const { tile, splitK } = resolvePlan(gpu, c.label, c.plan, M, N, kTiles, 'conv_wgrad');
  const tilesK = kTiles(tile.bk);
  // Partials must fit one binding.
  const maxSplits = Math.max(1, Math.floor(gpu.limits.maxStorageBufferBindingSize / Math.max(1, 4 * M * N)));
  const dtype = c.x.dtype;
  const splits = dtype === 'f16' ? 1 : Math.max(1, Math.min(splitK, tilesK, maxSplits));
  const tilesM = Math.ceil(M / tile.bm);
  const tilesN = Math.ceil(N / tile.bn);
  const total = tilesM * tilesN;
  const out = Tensor.empty(gpu, splits > 1 ? [splits, M, N] : [M, N], dtype, splits > 1 ? `${c.label}.partials` : c.label);
  if (M * N === 0) return reshapeOwned(out, c.outShape);
  if (tilesK === 0) {
    out.release();
    return Tensor.zeros(gpu, c.outShape, dtype, c.label);
  }
  const wx = Math.min(total, gpu.limits.maxComputeWorkgroupsPerDimension);
  conv2dKernel.run(gpu, {
    entry: 'conv_wgrad',
    variant: { ...tile, dtype },
    params: {
      ...zeroParams,
      kh: c.kh,
      kw: c.kw,
      stride: c.stride,
      Cs,
      Hs,
      Ws,
      Cd,
      Hd,
      Wd,
      batch: B,
      padY: c.padY,
      padX: c.padX,
      tilesM,
      tilesN,
      tilesK,
      splits,
      segs: Math.ceil(Wd / tile.bk),
      alpha: c.alpha ?? 1,
    },
    // conv_wgrad shares the K loop with conv, so conv's pair-2 bindings are bound too (read-only aliases).
    buffers: { x: c.x, a: c.dy, x2: c.x, a2: c.dy, bias: c.x, res: c.x, y: out },
    workgroups: [wx, Math.ceil(total / wx), splits],
    label: c.label,
  });
  if (splits === 1) return reshapeOwned(out, c.outShape);
  const summed = sum(out, 0);
  out.release();
  return reshapeOwned(summed, c.outShape);
}

function reshapeOwned(t: Tensor, shape: Shape): Tensor {
  const v = t.reshape(shape);
  t.release();
  return v;
}

/** Strides other than 1 need the same stride on both axes in this kernel (the gather has one STRIDE constant). */
function kernelStride(op: string, g: ConvGeometry): number {
  if (g.strideY !== g.strideX) throw new ShapeError(`${op}: stride (${g.strideY}, ${g.strideX}) must be equal on both axes`);
  return g.strideY;
}

export interface Conv2dOptions {
  /** Stride (default 1); one number or [strideY, strideX] (equal). */
  stride?: Pair;
  /** Zero padding on each side (default 0); one number or [padY, padX]. */
  padding?: Pair;
  /** Per-output-channel bias [Cout], added in the epilogue. */
  bias?: Tensor;
  /** A tensor of the output's shape added in the epilogue (e.g. the resnet shortcut). */
  residual?: Tensor;
  /** The weight already packed by packConv2dWeight(w, 'forward') (frozen weights: pack once). */
  packed?: PackedConv2dWeight;
  /** Tile and K split (default: chooseConvPlan). */
  plan?: Partial<ConvPlan>;
  label?: string;
}

function checkPacked(op: string, p: PackedConv2dWeight | undefined, w: Tensor, role: PackedConv2dWeight['role']): void {
  if (!p) return;
  if (p.role !== role) throw new ShapeError(`${op}: packed weight has role '${p.role}', expected '${role}'`);
  if (p.t.dtype !== w.dtype) throw new DTypeError(`${op}: packed weight has dtype ${p.t.dtype}, the weight ${w.dtype}`);
  if (p.shape.some((d, i) => d !== w.shape[i]))
    throw new ShapeError(`${op}: packed weight was made from shape ${shapeStr(p.shape)}, weight is ${shapeStr(w.shape)}`);
}

function checkCommon(op: string, x: Tensor, w: Tensor, g: ConvGeometry, bias?: Tensor, residual?: Tensor): void {
  const extra = [bias, residual].filter((t): t is Tensor => !!t);
  commonDType(op, x, w, ...extra);
  requireSameGpu(op, x, w, ...extra);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== g.Cout))
    throw new ShapeError(`${op}: bias '${bias.label}' ${shapeStr(bias.shape)} must be [${g.Cout}] (Cout)`);
  const outShape = [g.B, g.Cout, g.Hout, g.Wout];
  if (residual && (residual.rank !== 4 || residual.shape.some((d, i) => d !== outShape[i])))
    throw new ShapeError(
      `${op}: residual '${residual.label}' ${shapeStr(residual.shape)} must have the output shape ${shapeStr(outShape)}`,
    );
}

/** y = conv(x, w) + bias + residual. */
export function conv2d(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  const op = opts.label ?? 'conv2d';
  const g = convGeometry(op, x.shape, w.shape, opts.stride ?? 1, opts.padding ?? 0);
  checkCommon(op, x, w, g, opts.bias, opts.residual);
  checkPacked(op, opts.packed, w, 'forward');
  const stride = kernelStride(op, g);
  const packed = opts.packed ?? pack(w, 'forward', 1);
  const y = runConv({
    src: x,
    packed: packed.t,
    Cs: g.Cin,
    Hs: g.H,
    Ws: g.W,
    Cd: g.Cout,
    Hd: g.Hout,
    Wd: g.Wout,
    B: g.B,
    kh: g.kH,
    kw: g.kW,
    stride,
    dil: 1,
    padY: g.padY,
    padX: g.padX,
    bias: opts.bias,
    residual: opts.residual,
    plan: opts.plan,
    label: op,
  });
  if (!opts.packed) packed.release();
  return y;
}

/** The input gradient dx [B, Cin, H, W] of a conv with geometry g: a transposed conv of dy (+ a pair-2 term). */
function inputGrad(
  op: string,
  g: ConvGeometry,
  dy: Tensor,
  packedT: Tensor,
  pair2?: { src: Tensor; packed: Tensor; C2: number },
  plan?: Partial<ConvPlan>,
): Tensor {
  return runConv({
    src: dy,
    packed: packedT,
    Cs: g.Cout,
    Hs: g.Hout,
    Ws: g.Wout,
    Cd: g.Cin,
    Hd: g.H,
    Wd: g.W,
    B: g.B,
    kh: g.kH,
    kw: g.kW,
    stride: 1,
    dil: kernelStride(op, g),
    // Destination pixel iy takes source row oy = (iy + p − ky)/s = (iy − (kH−1−p) + ky')/s with the flipped tap ky'.
    padY: g.kH - 1 - g.padY,
    padX: g.kW - 1 - g.padX,
    pair2: pair2 && { mode: 2, ...pair2 },
    plan,
    label: `${op}.dx`,
  });
}

export interface Conv2dBackwardOptions extends Omit<Conv2dOptions, 'residual' | 'packed'> {
  /** Compute dx (default true). */
  needInput?: boolean;
  /** Compute dw (default false: frozen weights pay nothing). */
  needWeight?: boolean;
  /** Compute dbias (default false). */
  needBias?: boolean;
  /** The weight packed by packConv2dWeight(w, 'inputGrad') (frozen weights: pack once). */
  packedInputGrad?: PackedConv2dWeight;
  /** Tile and K split for the weight gradient (default: chooseConvPlan). */
  wgradPlan?: Partial<ConvPlan>;
}

export interface Conv2dGrads {
  dx?: Tensor;
  dw?: Tensor;
  dbias?: Tensor;
}

function checkDy(op: string, dy: Tensor, g: ConvGeometry, x: Tensor): void {
  commonDType(op, x, dy);
  const want = [g.B, g.Cout, g.Hout, g.Wout];
  if (dy.rank !== 4 || dy.shape.some((d, i) => d !== want[i]))
    throw new ShapeError(`${op}: dy '${dy.label}' ${shapeStr(dy.shape)} must have the output shape ${shapeStr(want)}`);
}

/** dbias[c] = Σ_{b, y, x} dy[b, c, y, x]. */
function biasGrad(dy: Tensor, Cout: number): Tensor {
  return reshapeOwned(sumTo(dy, [1, Cout, 1, 1]), [Cout]);
}

/**
 * Gradients of y = conv(x, w) + bias (+ residual, whose gradient is dy itself). Only what is asked is computed:
 * dx by default, dw with needWeight, dbias with needBias; the others come back undefined.
 */
export function conv2dBackward(x: Tensor, w: Tensor, dy: Tensor, opts: Conv2dBackwardOptions = {}): Conv2dGrads {
  const op = `${opts.label ?? 'conv2d'} backward`;
  const g = convGeometry(op, x.shape, w.shape, opts.stride ?? 1, opts.padding ?? 0);
  checkCommon(op, x, w, g, opts.bias);
  checkDy(op, dy, g, x);
  requireSameGpu(op, x, dy);
  checkPacked(op, opts.packedInputGrad, w, 'inputGrad');
  const grads: Conv2dGrads = {};
  if (opts.needInput ?? true) {
    const packed = opts.packedInputGrad ?? pack(w, 'inputGrad', 1);
    grads.dx = inputGrad(op, g, dy, packed.t, undefined, opts.plan);
    if (!opts.packedInputGrad) packed.release();
  }
  if (opts.needWeight) {
    grads.dw = runWgrad({
      x,
      dy,
      kh: g.kH,
      kw: g.kW,
      stride: kernelStride(op, g),
      padY: g.padY,
      padX: g.padX,
      plan: opts.wgradPlan,
      outShape: w.shape,
      label: `${op}.dw`,
    });
  }
  if (opts.needBias) grads.dbias = biasGrad(dy, g.Cout);
  return grads;
}

/** A LoRA-targeted conv: frozen W (and bias), trainable A (down, r×Cin×kH×kW) and B (up, Cout×r×1×1). */
export interface LoraConv2dParams {
  w: Tensor;
  bias?: Tensor;
  a: Tensor;
  b: Tensor;
  /** alpha / r × the adapter weight. */
  scale: number;
  /** W packed once by packConv2dWeight(w, 'forward') / (w, 'inputGrad'); packed per call when absent. */
  packedW?: PackedConv2dWeight;
  packedWInputGrad?: PackedConv2dWeight;
}

export interface LoraConv2dOptions {
  stride?: Pair;
  padding?: Pair;
  residual?: Tensor;
  plan?: Partial<ConvPlan>;
  label?: string;
}

function checkLora(op: string, x: Tensor, p: LoraConv2dParams, g: ConvGeometry): number {
  commonDType(op, x, p.a, p.b);
  requireSameGpu(op, x, p.a, p.b);
  const r = p.a.shape[0];
  const wantA = [r, g.Cin, g.kH, g.kW];
  if (p.a.rank !== 4 || p.a.shape.some((d, i) => d !== wantA[i]))
    throw new ShapeError(`${op}: lora A '${p.a.label}' ${shapeStr(p.a.shape)} must be [r, Cin, kH, kW] = ${shapeStr(wantA)}`);
  const wantB = [g.Cout, r, 1, 1];
  if (p.b.rank !== 4 || p.b.shape.some((d, i) => d !== wantB[i]))
    throw new ShapeError(`${op}: lora B '${p.b.label}' ${shapeStr(p.b.shape)} must be [Cout, r, 1, 1] = ${shapeStr(wantB)}`);
  checkPacked(op, p.packedW, p.w, 'forward');
  checkPacked(op, p.packedWInputGrad, p.w, 'inputGrad');
  return r;
}

/**
 * y = conv(x, W) + bias + scale·conv1x1(h, B) (+ residual) with h = conv(x, A). Returns y and h (keep h for
 * loraConv2dBackward, or let it be recomputed).
 */
export function loraConv2d(x: Tensor, p: LoraConv2dParams, opts: LoraConv2dOptions = {}): { y: Tensor; h: Tensor } {
  const op = opts.label ?? 'lora_conv2d';
  const g = convGeometry(op, x.shape, p.w.shape, opts.stride ?? 1, opts.padding ?? 0);
  checkCommon(op, x, p.w, g, p.bias, opts.residual);
  const r = checkLora(op, x, p, g);
  const h = conv2d(x, p.a, { stride: opts.stride, padding: opts.padding, label: `${op}.h` });
  // B [Cout, r, 1, 1] packed as [1][r][Cout] with the scale folded in.
  const pb = pack(p.b, 'forward', p.scale);
  const pw = p.packedW ?? pack(p.w, 'forward', 1);
  const y = runConv({
    src: x,
    packed: pw.t,
    Cs: g.Cin,
    Hs: g.H,
    Ws: g.W,
    Cd: g.Cout,
    Hd: g.Hout,
    Wd: g.Wout,
    B: g.B,
    kh: g.kH,
    kw: g.kW,
    stride: kernelStride(op, g),
    dil: 1,
    padY: g.padY,
    padX: g.padX,
    pair2: { mode: 1, src: h, packed: pb.t, C2: r },
    bias: p.bias,
    residual: opts.residual,
    plan: opts.plan,
    label: op,
  });
  pb.release();
  if (!p.packedW) pw.release();
  return { y, h };
}

export interface LoraConv2dBackwardOptions extends Omit<LoraConv2dOptions, 'residual'> {
  /** h = conv(x, A) from loraConv2d; recomputed when absent and dB is asked. */
  h?: Tensor;
  /** Compute dx (default true). */
  needInput?: boolean;
  /** Compute dA / dB (default true each). */
  needA?: boolean;
  needB?: boolean;
  /** Compute dbias (default false: the base bias is frozen too). */
  needBias?: boolean;
  wgradPlan?: Partial<ConvPlan>;
}

export interface LoraConv2dGrads {
  dx?: Tensor;
  da?: Tensor;
  db?: Tensor;
  dbias?: Tensor;
}

/**
 * Gradients of loraConv2d given dy, with dh = scale·Bᵀ·dy (a 1×1 transposed conv):
 *   dx = convᵀ(dy, W) + convᵀ(dh, A)   (one kernel),   dA = wgrad(dh, x),   dB = scale·wgrad(dy, h) (1×1).
 * W is frozen: its gradient is never computed.
 */
export function loraConv2dBackward(x: Tensor, p: LoraConv2dParams, dy: Tensor, opts: LoraConv2dBackwardOptions = {}): LoraConv2dGrads {
  const op = `${opts.label ?? 'lora_conv2d'} backward`;
  const g = convGeometry(op, x.shape, p.w.shape, opts.stride ?? 1, opts.padding ?? 0);
  checkCommon(op, x, p.w, g, p.bias);
  const r = checkLora(op, x, p, g);
  checkDy(op, dy, g, x);
  requireSameGpu(op, x, dy);
  const needInput = opts.needInput ?? true;
  const needA = opts.needA ?? true;
  const needB = opts.needB ?? true;
  const stride = kernelStride(op, g);
  const grads: LoraConv2dGrads = {};
  let dh: Tensor | undefined;
  if (needInput || needA) {
    // dh [B, r, Hout, Wout] = scale · Σ_co B[co, j] dy[b, co]: a 1×1 conv of dy with Bᵀ packed as [1][Cout][r].
    const pbT = pack(p.b, 'inputGrad', p.scale);
    dh = runConv({
      src: dy,
      packed: pbT.t,
      Cs: g.Cout,
      Hs: g.Hout,
      Ws: g.Wout,
      Cd: r,
      Hd: g.Hout,
      Wd: g.Wout,
      B: g.B,
      kh: 1,
      kw: 1,
      stride: 1,
      dil: 1,
      padY: 0,
      padX: 0,
      label: `${op}.dh`,
    });
    pbT.release();
  }
  if (needInput) {
    const pw = p.packedWInputGrad ?? pack(p.w, 'inputGrad', 1);
    const pa = pack(p.a, 'inputGrad', 1);
    grads.dx = inputGrad(op, g, dy, pw.t, { src: dh!, packed: pa.t, C2: r }, opts.plan);
    pa.release();
    if (!p.packedWInputGrad) pw.release();
  }
  const wg = { kh: g.kH, kw: g.kW, stride, padY: g.padY, padX: g.padX, plan: opts.wgradPlan };
  if (needA) grads.da = runWgrad({ x, dy: dh!, ...wg, outShape: p.a.shape, label: `${op}.da` });
  if (needB) {
    const h = opts.h ?? conv2d(x, p.a, { stride: opts.stride, padding: opts.padding, label: `${op}.h` });
    grads.db = runWgrad({
      x: h,
      dy,
      kh: 1,
      kw: 1,
      stride: 1,
      padY: 0,
      padX: 0,
      alpha: p.scale,
      plan: opts.wgradPlan,
      outShape: p.b.shape,
      label: `${op}.db`,
    });
    if (!opts.h) h.release();
  }
  dh?.release();
  if (opts.needBias) grads.dbias = biasGrad(dy, g.Cout);
  return grads;
}

/** Multiply-adds ×2 of a conv forward (the flop convention of the PyTorch anchors; bias adds not counted). */
export function conv2dFlops(g: ConvGeometry): number {
  return 2 * g.B * g.Cout * g.Hout * g.Wout * g.Cin * g.kH * g.kW;
}
