// Plain-loop CPU references (float64) for softmax over the last axis; written from the math, not from the WGSL.

/** y = exp(x − max) / Σ exp(x − max) per row of C elements. */
export function softmaxRef(x: ArrayLike<number>, C: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r * C < x.length; r++) {
    const o = r * C;
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, x[o + c]);
    let s = 0;
    for (let c = 0; c < C; c++) s += Math.exp(x[o + c] - m);
    for (let c = 0; c < C; c++) y[o + c] = Math.exp(x[o + c] - m) / s;
  }
  return y;
}

/** dx = y ⊙ (dy − Σ dy ⊙ y) per row of C elements. */
export function softmaxBackwardRef(y: ArrayLike<number>, dy: ArrayLike<number>, C: number): Float64Array {
  const dx = new Float64Array(y.length);
  for (let r = 0; r * C < y.length; r++) {
    const o = r * C;
    let d = 0;
    for (let c = 0; c < C; c++) d += dy[o + c] * y[o + c];
    for (let c = 0; c < C; c++) dx[o + c] = y[o + c] * (dy[o + c] - d);
  }
  return dx;
}
