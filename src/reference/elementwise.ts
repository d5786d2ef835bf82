// Plain-loop CPU references (float64) for the elementwise kernels; written from the math, not from the WGSL.
import type { BinaryOp, UnaryOp } from '../kernels/elementwise.js';

function erf(x: number): number {
  // Abramowitz–Stegun 7.1.28-style series is not precise enough; use a high-precision continued expansion:
  // erf via its Taylor series for |x| < 3, asymptotic complement beyond (float64, error < 1e-14 in that range).
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz) for large |x|.
  let f = ax;
  let C = ax;
  let D = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    D = ax + an * D;
    D = 1 / D;
    C = ax + an / C;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (f * Math.sqrt(Math.PI));
  return Math.sign(x) * (1 - erfc);
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const K = Math.sqrt(2 / Math.PI);

export function unaryRef(op: UnaryOp, x: number, alpha = 1): number {
  switch (op) {
    case 'scale':
      return alpha * x;
    case 'silu':
      return x * sigmoid(x);
    case 'gelu_tanh':
      return 0.5 * x * (1 + Math.tanh(K * (x + 0.044715 * x ** 3)));
    case 'gelu_erf':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'quick_gelu':
      return x * sigmoid(1.702 * x);
    case 'exp':
      return Math.exp(x);
    case 'identity':
      return x;
  }
}

/** d f / d x, from the closed forms. */
export function unaryGradRef(op: UnaryOp, x: number, alpha = 1): number {
  switch (op) {
    case 'scale':
      return alpha;
    case 'silu': {
      const s = sigmoid(x);
      return s * (1 + x * (1 - s));
    }
    case 'gelu_tanh': {
      const t = Math.tanh(K * (x + 0.044715 * x ** 3));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K * (1 + 3 * 0.044715 * x * x);
    }
    case 'gelu_erf':
      return 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
    case 'quick_gelu': {
      const s = sigmoid(1.702 * x);
      return s + 1.702 * x * s * (1 - s);
    }
    case 'exp':
      return Math.exp(x);
    case 'identity':
      return 1;
  }
}

export function binaryRef(op: BinaryOp, a: number, b: number): number {
  switch (op) {
    case 'add':
      return a + b;
    case 'sub':
      return a - b;
    case 'mul':
      return a * b;
    case 'div':
      return a / b;
  }
}

/** Broadcast a (shape as) and b (shape bs) with numpy rules, apply op; returns [out, outShape]. */
export function broadcastBinaryRef(
  op: BinaryOp,
  a: ArrayLike<number>,
  as: readonly number[],
  b: ArrayLike<number>,
  bs: readonly number[],
): [Float64Array, number[]] {
  const rank = Math.max(as.length, bs.length);
  const pa = [...new Array(rank - as.length).fill(1), ...as];
  const pb = [...new Array(rank - bs.length).fill(1), ...bs];
  const out = pa.map((d, i) => Math.max(d, pb[i]));
  const n = out.reduce((p, d) => p * d, 1);
  const y = new Float64Array(n);
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < n; i++) {
    let r = i;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d] = r % out[d];
      r = Math.floor(r / out[d]);
    }
    let ia = 0;
    let ib = 0;
    for (let d = 0; d < rank; d++) {
      ia = ia * pa[d] + (pa[d] === 1 ? 0 : idx[d]);
      ib = ib * pb[d] + (pb[d] === 1 ? 0 : idx[d]);
    }
    y[i] = binaryRef(op, a[ia], b[ib]);
  }
  return [y, out];
}
