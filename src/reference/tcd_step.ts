// CPU references for diffusers TCDScheduler.step (epsilon prediction), written from scheduling_tcd.py:
//   prev_t = next timestep (0 on the last step); s = floor((1 − eta)·prev_t)   (torch: a float32 product)
//   x0 = (x − sqrt(1 − ᾱ_t)·ε) / sqrt(ᾱ_t);  x_s = sqrt(ᾱ_s)·x0 + sqrt(1 − ᾱ_s)·ε
//   prev = sqrt(ᾱ_prev/ᾱ_s)·x_s + sqrt(1 − ᾱ_prev/ᾱ_s)·z  if eta > 0 and not the last step, else x_s
// tcdStepRef works in float64. tcdStepF32Ref rounds every operation to float32 in diffusers' order (torch's 0-dim
// float32 scalars, then the per-element ops), which reproduces torch's CPU output bit for bit.

export interface TcdRefOutput {
  prev: Float64Array;
  xs: Float64Array;
  x0: Float64Array;
}

function timestepS(eta: number, prevT: number): number {
  return Math.floor(Math.fround(Math.fround(1 - eta) * prevT));
}

/** Float64 step; `alphas` is the ᾱ table (its values are used as given). prevT undefined = last step. */
export function tcdStepRef(
  x: ArrayLike<number>,
  eps: ArrayLike<number>,
  noise: ArrayLike<number> | undefined,
  alphas: ArrayLike<number>,
  t: number,
  prevT: number | undefined,
  eta: number,
): TcdRefOutput {
  const last = prevT === undefined;
  const p = last ? 0 : prevT;
  const s = timestepS(eta, p);
  const [aT, aP, aS] = [alphas[t], alphas[p], alphas[s]];
  const n = x.length;
  const out = { prev: new Float64Array(n), xs: new Float64Array(n), x0: new Float64Array(n) };
  for (let i = 0; i < n; i++) {
    const x0 = (x[i] - Math.sqrt(1 - aT) * eps[i]) / Math.sqrt(aT);
    const xs = Math.sqrt(aS) * x0 + Math.sqrt(1 - aS) * eps[i];
    out.x0[i] = x0;
    out.xs[i] = xs;
    out.prev[i] = eta > 0 && !last ? Math.sqrt(aP / aS) * xs + Math.sqrt(1 - aP / aS) * noise![i] : xs;
  }
  return out;
}

/** The same step with every operation rounded to float32 in diffusers' order (alphas: the float32 table). */
export function tcdStepF32Ref(
  x: ArrayLike<number>,
  eps: ArrayLike<number>,
  noise: ArrayLike<number> | undefined,
  alphas: ArrayLike<number>,
  t: number,
  prevT: number | undefined,
  eta: number,
): TcdRefOutput {
  const f = Math.fround;
  const last = prevT === undefined;
  const p = last ? 0 : prevT;
  const s = timestepS(eta, p);
  const [aT, aP, aS] = [f(alphas[t]), f(alphas[p]), f(alphas[s])];
  const sbT = f(Math.sqrt(f(1 - aT)));
  const saT = f(Math.sqrt(aT));
  const saS = f(Math.sqrt(aS));
  const sbS = f(Math.sqrt(f(1 - aS)));
  const r = f(aP / aS);
  const c1 = f(Math.sqrt(r));
  const c2 = f(Math.sqrt(f(1 - r)));
  const n = x.length;
  const out = { prev: new Float64Array(n), xs: new Float64Array(n), x0: new Float64Array(n) };
  for (let i = 0; i < n; i++) {
    const x0 = f(f(f(x[i]) - f(sbT * f(eps[i]))) / saT);
    const xs = f(f(saS * x0) + f(sbS * f(eps[i])));
    out.x0[i] = x0;
    out.xs[i] = xs;
    out.prev[i] = eta > 0 && !last ? f(f(c1 * xs) + f(c2 * f(noise![i]))) : xs;
  }
  return out;
}
