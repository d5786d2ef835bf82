// Float64 reference of IEEE binary16 rounding, written from the definition (value grid and ties-to-even) and
// independent of the bit manipulation in src/dtype.ts.

/** The f16 value nearest to v (ties to the even significand); ±Infinity past the overflow threshold 65520. */
export function roundF16Ref(v: number): number {
  if (Number.isNaN(v)) return NaN;
  const a = Math.abs(v);
  if (a === 0 || !Number.isFinite(a)) return v;
  // Spacing of the f16 grid at a: 2^(e-10) for a in [2^e, 2^(e+1)), e ≥ -14; subnormals share 2^-24.
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 rounding near powers of two
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -14) - 10);
  const q = a / ulp; // exact: a power-of-two scaling
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  const out = r * ulp;
  // 65504 is the largest f16; values from 65520 (its midpoint with 2^16) on round to infinity.
  if (out > 65504) return v < 0 ? -Infinity : Infinity;
  return v < 0 ? -out : out;
}
