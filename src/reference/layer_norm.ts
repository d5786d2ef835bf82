// Plain-loop float64 CPU references for layer normalization over the last dim and its gradients, written from
// the math (two-pass mean / centered variance in float64), not from the WGSL.

export interface LayerNormRefResult {
  y: Float64Array;
  /** [M] */
  mean: Float64Array;
  rstd: Float64Array;
}

/** x [M, D]; weight / bias [D] or null (no affine term). */
export function layerNormRef(
  x: ArrayLike<number>,
  M: number,
  D: number,
  weight: ArrayLike<number> | null,
  bias: ArrayLike<number> | null,
  eps: number,
): LayerNormRefResult {
  const y = new Float64Array(M * D);
  const mean = new Float64Array(M);
  const rstd = new Float64Array(M);
  for (let m = 0; m < M; m++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += x[m * D + d];
    const mu = s / D;
    let q = 0;
    for (let d = 0; d < D; d++) q += (x[m * D + d] - mu) ** 2;
    const r = 1 / Math.sqrt(q / D + eps);
    mean[m] = mu;
    rstd[m] = r;
    for (let d = 0; d < D; d++) y[m * D + d] = (x[m * D + d] - mu) * r * (weight ? weight[d] : 1) + (bias ? bias[d] : 0);
  }
  return { y, mean, rstd };
}

export interface LayerNormGradsRef {
  dx: Float64Array;
  dweight: Float64Array;
  dbias: Float64Array;
}

/** Gradients of sum(y · dy) for y = layerNormRef(x, ...), from the closed form. */
export function layerNormBackwardRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  M: number,
  D: number,
  weight: ArrayLike<number> | null,
  eps: number,
): LayerNormGradsRef {
  const { mean, rstd } = layerNormRef(x, M, D, null, null, eps);
  const dx = new Float64Array(M * D);
  const dweight = new Float64Array(D);
  const dbias = new Float64Array(D);
  const xh = new Float64Array(D);
  const g = new Float64Array(D);
  for (let m = 0; m < M; m++) {
    // dx = r·(g − mean(g) − x̂·mean(g·x̂)), g = dL/dx̂ = dy·w.
    let m1 = 0;
    let m2 = 0;
    for (let d = 0; d < D; d++) {
      const i = m * D + d;
      xh[d] = (x[i] - mean[m]) * rstd[m];
      dweight[d] += dy[i] * xh[d];
      dbias[d] += dy[i];
      g[d] = dy[i] * (weight ? weight[d] : 1);
      m1 += g[d];
      m2 += g[d] * xh[d];
    }
    m1 /= D;
    m2 /= D;
    for (let d = 0; d < D; d++) dx[m * D + d] = rstd[m] * (g[d] - m1 - xh[d] * m2);
  }
  return { dx, dweight, dbias };
}
