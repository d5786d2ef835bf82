// Plain-loop CPU references (float64 accumulation) for matmul and the LoRA linear layer, forward and backward;
// written from the math, not from the WGSL. Matrices are row-major; a "trans" operand is stored transposed.
import type { Activation } from '../kernels/matmul.js';
import { unaryGradRef, unaryRef } from './elementwise.js';

type Arr = ArrayLike<number>;

function act(a: Activation, x: number): number {
  return a === 'none' ? x : unaryRef(a, x);
}
function actGrad(a: Activation, x: number): number {
  return a === 'none' ? 1 : unaryGradRef(a, x);
}

export interface MatmulRefOptions {
  transA?: boolean;
  transB?: boolean;
  bias?: Arr;
  activation?: Activation;
  alpha?: number;
}

/** Element (i, j) of op(X) for X stored [rows, cols] row-major (or transposed), at batch offset `off`. */
function at(x: Arr, off: number, trans: boolean, i: number, j: number, rowsOp: number, colsOp: number): number {
  return trans ? x[off + j * rowsOp + i] : x[off + i * colsOp + j];
}

function prod(s: readonly number[]): number {
  return s.reduce((p, d) => p * d, 1);
}

export interface MatmulRefResult {
  y: Float64Array;
  /** alpha·op(A)·op(B) + bias, before the activation. */
  pre: Float64Array;
  shape: number[];
}

/**
 * Y = act(alpha · op(A)·op(B) + bias) with batch dims: equal on both sides, or one side a single matrix.
 * aShape / bShape are the stored shapes.
 */
export function matmulRef(a: Arr, aShape: readonly number[], b: Arr, bShape: readonly number[], o: MatmulRefOptions = {}): MatmulRefResult {
  const ta = !!o.transA;
  const tb = !!o.transB;
  const [a0, a1] = aShape.slice(-2);
  const [b0, b1] = bShape.slice(-2);
  const [M, K] = ta ? [a1, a0] : [a0, a1];
  const N = tb ? b0 : b1;
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  const na = prod(aBatch);
  const nb = prod(bBatch);
  const batchShape = na > 1 ? aBatch : nb > 1 ? bBatch : aBatch.length >= bBatch.length ? aBatch : bBatch;
  const rank = Math.max(aBatch.length, bBatch.length);
  const outBatch = [...new Array(rank - batchShape.length).fill(1), ...batchShape];
  const nOut = Math.max(na, nb);
  const alpha = o.alpha ?? 1;
  const activation = o.activation ?? 'none';
  const y = new Float64Array(nOut * M * N);
  const pre = new Float64Array(nOut * M * N);
  for (let z = 0; z < nOut; z++) {
    const offA = na === 1 ? 0 : z * M * K;
    const offB = nb === 1 ? 0 : z * K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += at(a, offA, ta, i, k, M, K) * at(b, offB, tb, k, j, K, N);
        const v = alpha * s + (o.bias ? o.bias[j] : 0);
        pre[(z * M + i) * N + j] = v;
        y[(z * M + i) * N + j] = act(activation, v);
      }
    }
  }
  return { y, pre, shape: [...outBatch, M, N] };
}

export interface MatmulGradsRef {
  da: Float64Array;
  db: Float64Array;
  dbias: Float64Array;
}

/** Gradients of matmulRef's output given dY, in the stored layouts (summed over a broadcast side's batch). */
export function matmulBackwardRef(
  a: Arr,
  aShape: readonly number[],
  b: Arr,
  bShape: readonly number[],
  dy: Arr,
  o: MatmulRefOptions = {},
): MatmulGradsRef {
  const ta = !!o.transA;
  const tb = !!o.transB;
  const [a0, a1] = aShape.slice(-2);
  const [b0, b1] = bShape.slice(-2);
  const [M, K] = ta ? [a1, a0] : [a0, a1];
  const N = tb ? b0 : b1;
  const na = prod(aShape.slice(0, -2));
  const nb = prod(bShape.slice(0, -2));
  const nOut = Math.max(na, nb);
  const alpha = o.alpha ?? 1;
  const activation = o.activation ?? 'none';
  const { pre } = matmulRef(a, aShape, b, bShape, o);
  const dz = Float64Array.from(pre, (z, i) => dy[i] * actGrad(activation, z));
  const da = new Float64Array(a.length);
  const db = new Float64Array(b.length);
  const dbias = new Float64Array(N);
  for (let z = 0; z < nOut; z++) {
    const offA = na === 1 ? 0 : z * M * K;
    const offB = nb === 1 ? 0 : z * K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        const g = dz[(z * M + i) * N + j];
        dbias[j] += g;
        for (let k = 0; k < K; k++) {
          // y_ij += alpha · A_ik · B_kj
          const ia = offA + (ta ? k * M + i : i * K + k);
          const ib = offB + (tb ? j * K + k : k * N + j);
          da[ia] += alpha * g * b[ib];
          db[ib] += alpha * g * a[ia];
        }
      }
    }
  }
  return { da, db, dbias };
}

/** LoRA linear: y = x·Wᵀ + bias + scale·(x·Aᵀ)·Bᵀ, x [rows, K], W [N, K], A [r, K], B [N, r]. */
export function loraLinearRef(x: Arr, rows: number, K: number, W: Arr, N: number, bias: Arr | undefined, A: Arr, B: Arr, r: number, scale: number): Float64Array {
  const y = new Float64Array(rows * N);
  const h = new Float64Array(r);
  for (let i = 0; i < rows; i++) {
    for (let q = 0; q < r; q++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[i * K + k] * A[q * K + k];
      h[q] = s;
    }
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[j] : 0;
      for (let k = 0; k < K; k++) s += x[i * K + k] * W[j * K + k];
      let low = 0;
      for (let q = 0; q < r; q++) low += h[q] * B[j * r + q];
      y[i * N + j] = s + scale * low;
    }
  }
  return y;
}

/** Gradients of loraLinearRef for x, A, B and the bias (W is frozen: no dW). */
export function loraLinearBackwardRef(
  x: Arr,
  rows: number,
  K: number,
  W: Arr,
  N: number,
  A: Arr,
  B: Arr,
  r: number,
  scale: number,
  dy: Arr,
): { dx: Float64Array; dA: Float64Array; dB: Float64Array; db: Float64Array } {
  const dx = new Float64Array(rows * K);
  const dA = new Float64Array(r * K);
  const dB = new Float64Array(N * r);
  const db = new Float64Array(N);
  for (let i = 0; i < rows; i++) {
    const h = new Float64Array(r); // x_i·Aᵀ
    const g = new Float64Array(r); // dy_i·B
    for (let q = 0; q < r; q++) {
      for (let k = 0; k < K; k++) h[q] += x[i * K + k] * A[q * K + k];
      for (let j = 0; j < N; j++) g[q] += dy[i * N + j] * B[j * r + q];
    }
    for (let j = 0; j < N; j++) {
      const d = dy[i * N + j];
      db[j] += d;
      for (let k = 0; k < K; k++) dx[i * K + k] += d * W[j * K + k];
      for (let q = 0; q < r; q++) dB[j * r + q] += scale * d * h[q];
    }
    for (let q = 0; q < r; q++) {
      for (let k = 0; k < K; k++) {
        dx[i * K + k] += scale * g[q] * A[q * K + k];
        dA[q * K + k] += scale * g[q] * x[i * K + k];
      }
    }
  }
  return { dx, dA, dB, db };
}
