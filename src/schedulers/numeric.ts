// Float32 emulation and the numpy/torch numerics the diffusers schedulers rely on. JS doubles reproduce float32
// + − × ÷ sqrt exactly when every result is rounded with Math.fround (53 ≥ 2·24 + 2).

/** Rounding of one arithmetic result: Math.fround (diffusers/torch float32) or the identity (float64). */
export type Round = (x: number) => number;

export type Precision = 'float32' | 'float64';

export const roundFor = (precision: Precision): Round => (precision === 'float32' ? Math.fround : (x: number) => x);

const f32 = new Float32Array(1);
const bits = new Int32Array(f32.buffer);

/** The float32 next to r (a float32 value) in the direction of `toward`. */
function nextF32(r: number, toward: number): number {
  if (r === toward) return r;
  if (r === 0) return toward > 0 ? 1.401298464324817e-45 : -1.401298464324817e-45;
  f32[0] = r;
  // For positive r the bit pattern grows with the value; for negative r it grows with the magnitude.
  bits[0] += (toward > r) === (r > 0) ? 1 : -1;
  return f32[0];
}

/**
 * a·b + c rounded once to float32, as a fused multiply-add on float32 operands computes it. Exact when a·b is exact in
 * double (a float32 times an integer below 2^29, as in torch's linspace).
 */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  // TwoSum: s + err is exactly p + c.
  const bp = s - c;
  const err = p - bp + (c - (s - bp));
  const r = Math.fround(s);
  if (err === 0 || r === s) return r;
  // s carries 29 more bits than float32, so fround(s) is wrong only when s lies exactly halfway between two floats
  // and the discarded err pushes the exact sum to the other side.
  const n = nextF32(r, s);
  if (s - r !== n - s) return r;
  return (err > 0) === (n > r) ? n : r;
}

/** numpy's np.round / ndarray.round: round half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num, endpoint) in float64: i·step + start, the endpoint set exactly. */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): Float64Array {
  const out = new Float64Array(num);
  const div = endpoint ? num - 1 : num;
  const step = (stop - start) / div;
  for (let i = 0; i < num; i++) out[i] = div > 0 ? i * step + start : start;
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/**
 * torch.linspace(start, end, steps, dtype=float32) on the CPU: the symmetric formula of ATen's linspace kernel
 * (start + step·i for the first half, end − step·(steps − i − 1) for the second), evaluated as float32 fused
 * multiply-adds. This reproduces torch 2.11's float32 output bit for bit (all 1000 SDXL betas; see the tests).
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float64Array {
  const f = Math.fround;
  const s = f(start);
  const e = f(end);
  const out = new Float64Array(steps);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < half ? fmaF32(step, i, s) : fmaF32(-step, steps - i - 1, e);
  return out;
}

/** np.interp(x, xp, fp) for increasing xp (values outside the range clamp to the ends). */
export function npInterp(x: number, xp: ArrayLike<number>, fp: ArrayLike<number>): number {
  const n = xp.length;
  if (x <= xp[0]) return fp[0];
  if (x >= xp[n - 1]) return fp[n - 1];
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xp[mid] <= x) lo = mid;
    else hi = mid;
  }
  if (xp[lo] === x) return fp[lo];
  const slope = (fp[lo + 1] - fp[lo]) / (xp[lo + 1] - xp[lo]);
  return slope * (x - xp[lo]) + fp[lo];
}
