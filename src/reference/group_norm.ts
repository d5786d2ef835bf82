// Plain-loop float64 CPU references for group normalization (optionally followed by SiLU) and its gradients,
// written from the math (two-pass mean / centered variance in float64), not from the WGSL.

export interface GroupNormRefResult {
  y: Float64Array;
  /** [B, G] */
  mean: Float64Array;
  rstd: Float64Array;
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

/** x [B, C, HW] (HW = product of the spatial dims), gamma / beta [C]. */
export function groupNormRef(
  x: ArrayLike<number>,
  shape: readonly number[],
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  G: number,
  eps: number,
  silu = false,
): GroupNormRefResult {
  const [B, C] = shape;
  const HW = shape.slice(2).reduce((p, d) => p * d, 1);
  const Cg = C / G;
  const N = Cg * HW;
  const y = new Float64Array(B * C * HW);
  const mean = new Float64Array(B * G);
  const rstd = new Float64Array(B * G);
  for (let b = 0; b < B; b++)
    for (let g = 0; g < G; g++) {
      const base = (b * C + g * Cg) * HW;
      let s = 0;
      for (let i = 0; i < N; i++) s += x[base + i];
      const mu = s / N;
      let q = 0;
      for (let i = 0; i < N; i++) q += (x[base + i] - mu) ** 2;
      const r = 1 / Math.sqrt(q / N + eps);
      mean[b * G + g] = mu;
      rstd[b * G + g] = r;
      for (let i = 0; i < N; i++) {
        const c = g * Cg + Math.floor(i / HW);
        const z = (x[base + i] - mu) * r * gamma[c] + beta[c];
        y[base + i] = silu ? z * sigmoid(z) : z;
      }
    }
  return { y, mean, rstd };
}

export interface GroupNormGradsRef {
  dx: Float64Array;
  dgamma: Float64Array;
  dbeta: Float64Array;
}

/** Gradients of sum(y · dy) for y = groupNormRef(x, ...), from the closed form. */
export function groupNormBackwardRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  shape: readonly number[],
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  G: number,
  eps: number,
  silu = false,
): GroupNormGradsRef {
  const [B, C] = shape;
  const HW = shape.slice(2).reduce((p, d) => p * d, 1);
  const Cg = C / G;
  const N = Cg * HW;
  const { mean, rstd } = groupNormRef(x, shape, gamma, beta, G, eps, false);
  const dx = new Float64Array(B * C * HW);
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  const xh = new Float64Array(N);
  const dxh = new Float64Array(N);
  for (let b = 0; b < B; b++)
    for (let g = 0; g < G; g++) {
      const base = (b * C + g * Cg) * HW;
      const mu = mean[b * G + g];
      const r = rstd[b * G + g];
      // dL/dx̂ and its group means; dx = r·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)).
      let m1 = 0;
      let m2 = 0;
      for (let i = 0; i < N; i++) {
        const c = g * Cg + Math.floor(i / HW);
        xh[i] = (x[base + i] - mu) * r;
        const z = xh[i] * gamma[c] + beta[c];
        const s = sigmoid(z);
        const dz = dy[base + i] * (silu ? s * (1 + z * (1 - s)) : 1);
        dbeta[c] += dz;
        dgamma[c] += dz * xh[i];
        dxh[i] = dz * gamma[c];
        m1 += dxh[i];
        m2 += dxh[i] * xh[i];
      }
      m1 /= N;
      m2 /= N;
      for (let i = 0; i < N; i++) dx[base + i] = r * (dxh[i] - m1 - xh[i] * m2);
    }
  return { dx, dgamma, dbeta };
}
