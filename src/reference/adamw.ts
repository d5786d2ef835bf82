// Plain-loop float64 CPU references for AdamW (torch.optim.AdamW, decoupled weight decay) and L2 gradient-norm
// clipping (torch.nn.utils.clip_grad_norm_). Written from the algorithm in torch's documentation, not from the WGSL.

export interface AdamWRefOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** One AdamW step t (1-based) in place on float64 copies of p, m, v, with gradient g. */
export function adamwRef(p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, step: number, o: AdamWRefOptions): void {
  const bc1 = 1 - o.beta1 ** step;
  const bc2 = 1 - o.beta2 ** step;
  for (let i = 0; i < p.length; i++) {
    p[i] *= 1 - o.lr * o.weightDecay;
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
    const mHat = m[i] / bc1;
    const vHat = v[i] / bc2;
    p[i] -= (o.lr * mHat) / (Math.sqrt(vHat) + o.eps);
  }
}

/** Total L2 norm of all grads and the clip coefficient min(1, maxNorm / (norm + 1e-6)). */
export function clipCoefRef(grads: readonly ArrayLike<number>[], maxNorm: number): { norm: number; coef: number } {
  let ss = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) ss += g[i] * g[i];
  const norm = Math.sqrt(ss);
  return { norm, coef: Math.min(1, maxNorm / (norm + 1e-6)) };
}
