// Element types. f16 exists only where the device offers 'shader-f16'.
export type DType = 'f32' | 'f16';

export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, f16: 2 };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * IEEE half bits of a number, rounded to nearest even. A JS number is a double: rounding it first to f32 and then to
 * f16 could round twice (a double just above an f16 midpoint landing on it), so an inexact f32 step rounds to odd
 * (truncate, then set the last bit), which keeps the second rounding correct (f32 has 13 more bits than f16).
 */
export function f32ToF16Bits(v: number): number {
  f32[0] = v;
  let x = u32[0];
  if (f32[0] !== v && v === v) {
    if (Math.abs(f32[0]) > Math.abs(v)) x -= 1; // toward zero (same sign, magnitude one f32 ulp less)
    x |= 1;
  }
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** f16 bits of every element (round to nearest even), as the GPU stores an f16 tensor. */
export function toF16Bits(data: ArrayLike<number>): Uint16Array {
  const h = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) h[i] = f32ToF16Bits(data[i]);
  return h;
}

/** Rounds every element to the nearest f16 value (the values an f16 tensor of this data holds). */
export function roundToF16(data: ArrayLike<number>): Float64Array {
  const out = new Float64Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = f16BitsToF32(f32ToF16Bits(data[i]));
  return out;
}

/** Unit roundoff of each dtype (half the distance from 1 to the next value): 2^-24 for f32, 2^-11 for f16. */
export const UNIT_ROUNDOFF: Record<DType, number> = { f32: 2 ** -24, f16: 2 ** -11 };
/** The largest finite f16. */
export const F16_MAX = 65504;
