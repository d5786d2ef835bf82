// f16 support: the tolerances the f16 kernel variants are held to, and the runtime probe that decides whether this
// device's f16 path is trusted (else f32 with a logged reason).
//
// Tolerances. An f16 variant stores f16 and computes in f32. With inputs that are exact f16 values, an output that
// is one f32 computation rounded once to f16 is off by at most u·|want| + (f32 error)·(1 + u) + 2^-25 (subnormals),
// u = 2^-11 the f16 unit roundoff. A reduction of n terms accumulated in f32 adds about n·2^-24·Σ|terms| (a
// pairwise or tree sum much less), and an f16 intermediate rounded before the reduction (a per-element gradient,
// an f16 probability row) adds u·Σ|terms|. So: elementwise {atol: f32 atol + 2^-25, rtol: u + f32 rtol}; a
// reduction of n terms of magnitude ≤ m {atol: (c·u + n·2^-24)·n·m, rtol: u}, c the number of f16 roundings inside.
import type { Gpu } from '../../runtime/device.js';
import { UNIT_ROUNDOFF } from '../dtype.js';

export interface Tolerance {
  atol: number;
  rtol: number;
}

const U16 = UNIT_ROUNDOFF.f16;
const U32 = UNIT_ROUNDOFF.f32;

/** Fixed f16 tolerances (see the header for the derivation). */
export const F16_TOL = {
  /** One f32 transcendental (≤ 2e-6 abs, 2e-5 rel as the f32 suite allows), then one rounding to f16. */
  elementwise: { atol: 2e-6 + 2 ** -25, rtol: U16 + 2e-5 },
} as const;

/**
 * Tolerance of an f16 output that reduces `n` terms of magnitude ≤ `magnitude` in f32, with `roundings` f16
 * roundings of the terms before the sum (0: the kernel reads exact f16 inputs and accumulates in f32; 1: the terms
 * themselves were rounded to f16, e.g. a gradient dZ stored in f16). Adds the elementwise tolerance for a fused
 * epilogue (activation) and the final rounding (rtol u).
 */
export function f16Tolerance(n: number, magnitude: number, roundings = 0): Tolerance {
  return { atol: (roundings * U16 + n * U32) * n * magnitude + F16_TOL.elementwise.atol, rtol: F16_TOL.elementwise.rtol };
}

/**
 * Tolerance of an f16 normalisation output (layer / group norm, softmax) over rows of n: statistics in f32 are off by
 * about n·2^-24 relative, which scales outputs of magnitude ≤ maxAbs; then one rounding (rtol u).
 */
export function f16NormTolerance(n: number, maxAbs: number): Tolerance {
  return { atol: n * U32 * maxAbs + F16_TOL.elementwise.atol, rtol: F16_TOL.elementwise.rtol };
}

export type F16Status = { ok: true } | { ok: false; reason: string };

const status = new WeakMap<Gpu, Promise<F16Status>>();

/** Placeholder filled by the probe below (set once per device). */
export function f16StatusCache(): WeakMap<Gpu, Promise<F16Status>> {
  return status;
}
