// LoRA linear layer on the matmul kernel (kernels/matmul.wgsl), W frozen:
//   y = x·Wᵀ + bias + scale·(x·Aᵀ)·Bᵀ        x [..., K] (M rows), W [N, K], A [r, K], B [N, r], bias [N]
// Forward: h = scale·x·Aᵀ (M × r, one small GEMM), then ONE GEMM whose K loop runs over K for (x, Wᵀ) and then over r
// for (h, Bᵀ) into the same accumulators (the kernel's second operand pair), so the low-rank path never re-reads or
// re-writes y.
// Backward (no dW, ever):
//   g  = scale·dY·B                       [M, r]
//   dx = dY·W + g·A                       one GEMM with a second operand pair
//   dA = gᵀ·x                             [r, K]
//   dB = dYᵀ·h  (h = scale·x·Aᵀ, from the forward or recomputed)   [N, r]
//   db = column sums of dY (when asked)
import { ShapeError } from '../../runtime/errors.js';
import { Tensor, shapeStr } from '../tensor.js';
import { commonDType, requireSameGpu } from './checks.js';
import { type MatmulTile, gemm } from './matmul.js';
import { sumTo } from './reduce.js';

export interface LoraOptions {
  /** Tile geometry for every GEMM (default: chosen per shape). */
  tile?: MatmulTile;
  /** Force scalar access (tests). */
  scalar?: boolean;
  label?: string;
}

interface LoraDims {
  M: number;
  K: number;
  N: number;
  r: number;
  lead: number[];
}

function dims(op: string, x: Tensor, W: Tensor, A: Tensor, B: Tensor, bias?: Tensor | null): LoraDims {
  const ts = [x, W, A, B, ...(bias ? [bias] : [])];
  // One dtype for all (f32, or f16 with A and B cast from their f32 masters by the caller); y has it too.
  commonDType(op, ...ts);
  requireSameGpu(op, ...ts);
  if (x.rank < 1) throw new ShapeError(`${op}: x ${shapeStr(x.shape)} needs rank ≥ 1`);
  const K = x.shape[x.rank - 1];
  const lead = x.shape.slice(0, -1);
  const M = lead.reduce((p, d) => p * d, 1);
  if (W.rank !== 2 || W.shape[1] !== K)
    throw new ShapeError(`${op}: W ${shapeStr(W.shape)} must be [N, ${K}] for x ${shapeStr(x.shape)}`);
  const N = W.shape[0];
  if (A.rank !== 2 || A.shape[1] !== K)
    throw new ShapeError(`${op}: A ${shapeStr(A.shape)} must be [r, ${K}] for x ${shapeStr(x.shape)}`);
  const r = A.shape[0];
  if (B.rank !== 2 || B.shape[0] !== N || B.shape[1] !== r)
    throw new ShapeError(`${op}: B ${shapeStr(B.shape)} must be [${N}, ${r}] for W ${shapeStr(W.shape)} and A ${shapeStr(A.shape)}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== N))
    throw new ShapeError(`${op}: bias ${shapeStr(bias.shape)} must be [${N}] for W ${shapeStr(W.shape)}`);
  return { M, K, N, r, lead };
}

/** h = scale·x·Aᵀ [M, r] for x viewed as [M, K]. */
function lowRank(x2: Tensor, A: Tensor, d: LoraDims, scale: number, o: LoraOptions, label: string): Tensor {
  return gemm({
    M: d.M,
    N: d.r,
    K: d.K,
    batch: 1,
    a: { t: x2, trans: false, batchStride: 0 },
    b: { t: A, trans: true, batchStride: 0 },
    alpha: scale,
    outShape: [d.M, d.r],
    label,
    tile: o.tile,
    scalar: o.scalar,
  }).y;
}

/** y and h = scale·x·Aᵀ (keep h for loraLinearBackward to skip one GEMM). */
export function loraLinearWithH(
  x: Tensor,
  W: Tensor,
  bias: Tensor | null | undefined,
  A: Tensor,
  B: Tensor,
  scale: number,
  o: LoraOptions & { /** Added to y in the GEMM's epilogue (a skip connection), shaped like y. */ residual?: Tensor } = {},
): { y: Tensor; h: Tensor } {
  const op = o.label ?? 'loraLinear';
  const d = dims(op, x, W, A, B, bias);
  if (o.residual && (o.residual.rank !== d.lead.length + 1 || o.residual.shape.some((v, i) => v !== [...d.lead, d.N][i])))
    throw new ShapeError(`${op}: residual ${shapeStr(o.residual.shape)} must have y's shape ${shapeStr([...d.lead, d.N])}`);
  const x2 = x.reshape([d.M, d.K]);
  const h = lowRank(x2, A, d, scale, o, `${op}.h`);
  const { y } = gemm({
    M: d.M,
    N: d.N,
    K: d.K,
    batch: 1,
    a: { t: x2, trans: false, batchStride: 0 },
    b: { t: W, trans: true, batchStride: 0 },
    pair2: { K2: d.r, a: { t: h, trans: false, batchStride: 0 }, b: { t: B, trans: true, batchStride: 0 } },
    bias: bias ?? undefined,
    residual: o.residual,
    outShape: [...d.lead, d.N],
    label: op,
    tile: o.tile,
    scalar: o.scalar,
  });
  x2.release();
  return { y, h };
}

/** y = x·Wᵀ + bias + scale·(x·Aᵀ)·Bᵀ. */
export function loraLinear(
  x: Tensor,
  W: Tensor,
  bias: Tensor | null | undefined,
  A: Tensor,
  B: Tensor,
  scale: number,
  o: LoraOptions = {},
): Tensor {
  const { y, h } = loraLinearWithH(x, W, bias, A, B, scale, o);
  h.release();
  return y;
}

export interface LoraBackwardOptions extends LoraOptions {
  /** h = scale·x·Aᵀ from loraLinearWithH; recomputed when absent. */
  h?: Tensor;
  /** Also return the bias gradient. */
  bias?: boolean;
}

/** Gradients of the trainable inputs; W is frozen, so there is deliberately no dW. */
export interface LoraGrads {
  dx: Tensor;
  dA: Tensor;
  dB: Tensor;
  db?: Tensor;
}

export function loraLinearBackward(
  x: Tensor,
  W: Tensor,
  A: Tensor,
  B: Tensor,
  scale: number,
  dy: Tensor,
  o: LoraBackwardOptions = {},
): LoraGrads {
  const op = `${o.label ?? 'loraLinear'} backward`;
  const d = dims(op, x, W, A, B);
  commonDType(op, x, dy);
  const yShape = [...d.lead, d.N];
  if (dy.rank !== yShape.length || dy.shape.some((v, i) => v !== yShape[i]))
    throw new ShapeError(`${op}: dy ${shapeStr(dy.shape)} must have y's shape ${shapeStr(yShape)}`);
  if (o.h && (o.h.rank !== 2 || o.h.shape[0] !== d.M || o.h.shape[1] !== d.r))
    throw new ShapeError(`${op}: h ${shapeStr(o.h.shape)} must be [${d.M}, ${d.r}]`);
  const common = { batch: 1, tile: o.tile, scalar: o.scalar };
  const x2 = x.reshape([d.M, d.K]);
  const dy2 = dy.reshape([d.M, d.N]);
  const op2 = (t: Tensor, trans: boolean) => ({ t, trans, batchStride: 0 });

  const g = gemm({ ...common, M: d.M, N: d.r, K: d.N, a: op2(dy2, false), b: op2(B, false), alpha: scale, outShape: [d.M, d.r], label: `${op}.g` }).y;
  const dx = gemm({
    ...common,
    M: d.M,
    N: d.K,
    K: d.N,
    a: op2(dy2, false),
    b: op2(W, false),
    pair2: { K2: d.r, a: op2(g, false), b: op2(A, false) },
    outShape: x.shape,
    label: `${op}.dx`,
  }).y;
  const dA = gemm({ ...common, M: d.r, N: d.K, K: d.M, a: op2(g, true), b: op2(x2, false), outShape: [d.r, d.K], label: `${op}.dA` }).y;
  const h = o.h ?? lowRank(x2, A, d, scale, o, `${op}.h`);
  const dB = gemm({ ...common, M: d.N, N: d.r, K: d.M, a: op2(dy2, true), b: op2(h, false), outShape: [d.N, d.r], label: `${op}.dB` }).y;
  const grads: LoraGrads = { dx, dA, dB };
  if (o.bias) grads.db = sumTo(dy2, [d.N]);
  if (!o.h) h.release();
  g.release();
  x2.release();
  dy2.release();
  return grads;
}
