// Plain-loop CPU references (float64) for the reductions; written from the math, not from the WGSL.

function prod(v: readonly number[]): number {
  return v.reduce((p, d) => p * d, 1);
}

/** Σ (or mean) of x (row-major, `shape`) over `axis`; returns values and the shape without the axis. */
export function sumAxisRef(x: ArrayLike<number>, shape: readonly number[], axis: number, mean = false): [Float64Array, number[]] {
  const a = axis < 0 ? axis + shape.length : axis;
  const O = prod(shape.slice(0, a));
  const N = shape[a];
  const I = prod(shape.slice(a + 1));
  const y = new Float64Array(O * I);
  for (let o = 0; o < O; o++)
    for (let i = 0; i < I; i++) {
      let s = 0;
      for (let j = 0; j < N; j++) s += x[(o * N + j) * I + i];
      y[o * I + i] = mean ? s / N : s;
    }
  return [y, shape.filter((_, k) => k !== a)];
}

/** Σ of x over the dims where `target` (right-aligned) is 1 and x is not. */
export function sumToRef(x: ArrayLike<number>, shape: readonly number[], target: readonly number[]): Float64Array {
  const t = [...new Array(shape.length - target.length).fill(1), ...target];
  const y = new Float64Array(prod(t));
  const n = prod(shape);
  for (let k = 0; k < n; k++) {
    // Index of element k in x, mapped to the target (0 on reduced dims).
    let rem = k;
    let off = 0;
    let stride = 1;
    for (let d = shape.length - 1; d >= 0; d--) {
      const c = rem % shape[d];
      rem = Math.floor(rem / shape[d]);
      off += (t[d] === 1 ? 0 : c) * stride;
      stride *= t[d];
    }
    y[off] += x[k];
  }
  return y;
}

/** dx of y = sum / mean over `axis`: dy broadcast along the axis (÷ N for mean). */
export function sumAxisBackwardRef(dy: ArrayLike<number>, shape: readonly number[], axis: number, mean = false): Float64Array {
  const a = axis < 0 ? axis + shape.length : axis;
  const O = prod(shape.slice(0, a));
  const N = shape[a];
  const I = prod(shape.slice(a + 1));
  const dx = new Float64Array(O * N * I);
  for (let o = 0; o < O; o++)
    for (let j = 0; j < N; j++)
      for (let i = 0; i < I; i++) dx[(o * N + j) * I + i] = mean ? dy[o * I + i] / N : dy[o * I + i];
  return dx;
}

/** sqrt(Σ over arrays Σ x²) in float64. */
export function l2NormRef(xs: readonly ArrayLike<number>[]): number {
  let s = 0;
  for (const x of xs) for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}
