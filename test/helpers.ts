// Shared test utilities: one Gpu per test file, adapter assertion, closeness checks, seeded data,
// finite differences.
import { expect } from 'vitest';
import { Gpu } from '../runtime/device.js';

/**
 * Creates the Gpu for a test file and asserts which adapter it is. TCD_EXPECT_ADAPTER (a regex, e.g. 'llvmpipe' in CI,
 * 'NVIDIA' on the H100) must match the adapter description when set; the adapter is printed either way.
 */
export async function testGpu(opts: Parameters<typeof Gpu.create>[0] = {}): Promise<Gpu> {
  const gpu = await Gpu.create({ immediate: process.env.TCD_IMMEDIATE === '1', ...opts });
  const desc = gpu.describe();
  console.log(`[adapter] ${desc}`);
  const want = process.env.TCD_EXPECT_ADAPTER;
  if (want) expect(desc, `adapter must match TCD_EXPECT_ADAPTER=${want}`).toMatch(new RegExp(want, 'i'));
  expect(gpu.device, 'a WebGPU device').toBeTruthy();
  return gpu;
}

/** Deterministic uniform values in [lo, hi) (mulberry32). */
export function seeded(n: number, seed = 1, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const r = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = lo + (hi - lo) * r;
  }
  return out;
}

/** Normal values N(mu, sigma²) (Box–Muller on seeded uniforms). */
export function seededNormal(n: number, seed: number, mu = 0, sigma = 1): Float32Array {
  const u = seeded(2 * n, seed, 1e-7, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = mu + sigma * Math.sqrt(-2 * Math.log(u[2 * i])) * Math.cos(2 * Math.PI * u[2 * i + 1]);
  return out;
}

export interface Tolerance {
  atol: number;
  rtol: number;
}

/** |got - want| <= atol + rtol·|want| elementwise; reports the worst element. Also rejects all-zero outputs. */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance, what = 'output'): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  let worst = -1;
  let worstExcess = 0;
  let maxAbs = 0;
  let anyNonZero = false;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    if (g !== 0) anyNonZero = true;
    const err = Math.abs(g - w);
    maxAbs = Math.max(maxAbs, err);
    const excess = err - (tol.atol + tol.rtol * Math.abs(w));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(g))) {
      worst = i;
      worstExcess = excess;
    }
  }
  // Outputs that should hold values clearly above the tolerance must not come back all zero.
  const wantNonZero = Array.prototype.some.call(want, (v: number) => Math.abs(v) > 10 * tol.atol);
  if (wantNonZero) expect(anyNonZero, `${what}: all zeros`).toBe(true);
  if (worst >= 0)
    throw new Error(
      `${what}: element ${worst} got ${got[worst]}, want ${want[worst]} (atol ${tol.atol}, rtol ${tol.rtol}; max abs err ${maxAbs})`,
    );
}

/**
 * Central finite differences of a scalar loss w.r.t. selected elements of one input.
 * loss(inputs) must run the GPU forward and return a float64 scalar.
 */
export async function finiteDiff(
  loss: (inputs: Float32Array[]) => Promise<number>,
  inputs: Float32Array[],
  which: number,
  indices: number[],
  eps = 1e-2,
): Promise<number[]> {
  const out: number[] = [];
  for (const i of indices) {
    const plus = inputs.map((a) => a.slice());
    const minus = inputs.map((a) => a.slice());
    plus[which][i] += eps;
    minus[which][i] -= eps;
    // Use the actually representable step.
    const h = plus[which][i] - minus[which][i];
    out.push(((await loss(plus)) - (await loss(minus))) / h);
  }
  return out;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Distance in float32 ulps (number of representable floats between a and b). */
export function ulps(a: number, b: number): number {
  const ord = (x: number) => {
    const i = new Int32Array(Float32Array.of(x).buffer)[0];
    return i < 0 ? -(i & 0x7fffffff) : i;
  };
  return Math.abs(ord(a) - ord(b));
}

/** Largest float32 ulp distance of got from want (want rounded to float32 first); NaN counts as Infinity. */
export function maxUlps(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Number.isNaN(got[i]) ? Infinity : ulps(got[i], Math.fround(want[i])));
  return m;
}

export function maxAbs(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i] - want[i]));
  return m;
}
