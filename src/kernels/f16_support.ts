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
import { type DType, UNIT_ROUNDOFF, f16BitsToF32, f32ToF16Bits, roundToF16 } from '../dtype.js';
import { unaryRef } from '../reference/elementwise.js';
import { matmulRef } from '../reference/matmul.js';
import { softmaxRef } from '../reference/softmax.js';
import { Tensor } from '../tensor.js';
import { cast } from './cast.js';
import { unary } from './elementwise.js';
import { Kernel } from './kernel.js';
import { matmul } from './matmul.js';
import { verifySubgroupMatrix } from './matmul_subgroup_matrix.js';
import { softmax } from './softmax.js';

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

export type F16Status = { ok: true; checks: string[] } | { ok: false; reason: string };

const probes = new WeakMap<Gpu, Promise<F16Status>>();

export const f16ProbeKernel = new Kernel<Record<string, number>>({
  name: 'f16_probe',
  entryPoints: ['builtins'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'x', kind: 'read' },
    { name: 'x32', kind: 'read' },
    { name: 'y', kind: 'read_write' },
  ],
  uniforms: [['n', 'u32']],
});

const ULP = 2 ** -10; // f16 spacing at 1

/** |got − want| ≤ atol + rtol·|want| everywhere (a NaN fails); the first failure as text, or null. */
function firstMismatch(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: (i: number) => Tolerance): string | null {
  for (let i = 0; i < want.length; i++) {
    const t = tol(i);
    const w = want[i];
    const g = got[i];
    if (w === g) continue; // also ±Infinity
    if (!(Math.abs(g - w) <= t.atol + t.rtol * Math.abs(w))) return `${what}: element ${i} got ${g}, want ${w} (atol ${t.atol}, rtol ${t.rtol})`;
  }
  return null;
}

/**
 * Runs the f16 probe once per device: f16 builtins in f16 arithmetic against float64 at the accuracy WGSL grants
 * them, then the library's f16 variants that everything else builds on (upload/readback, the GPU cast with its
 * ±Infinity overflow, elementwise exp overflowing to Infinity, GELU-erf, softmax of rows at ±65504, a vec4 GEMM)
 * against float64 references at the tolerances above. `ok: false` names the first failure; callers fall back to f32
 * (resolveDType). A device without 'shader-f16' gets `ok: false` without running anything.
 */
export function probeF16(gpu: Gpu): Promise<F16Status> {
  let p = probes.get(gpu);
  if (!p) {
    p = runProbe(gpu).catch((e: unknown) => ({ ok: false as const, reason: `the f16 probe failed to run: ${(e as Error).message}` }));
    probes.set(gpu, p);
  }
  return p;
}

async function runProbe(gpu: Gpu): Promise<F16Status> {
  if (!gpu.hasF16) return { ok: false, reason: `the device does not offer 'shader-f16' (${gpu.describe()})` };
  const checks: string[] = [];
  const live: Tensor[] = [];
  const t16 = (data: ArrayLike<number>, shape: number[], label: string) => {
    const t = Tensor.fromArray(gpu, data, shape, { dtype: 'f16', label: `f16-probe.${label}` });
    live.push(t);
    return t;
  };
  const keep = (t: Tensor) => (live.push(t), t);
  try {
    // 1. Builtins in f16 arithmetic. Inputs are f16 values in [-8, 10.9] away from 0 (exp below its overflow).
    const n = 64;
    const xs = roundToF16(Array.from({ length: n }, (_, i) => (i % 2 ? 1 : -1) * 2 ** -8 + -8 + (18.9 * i) / (n - 1)));
    const x32 = Array.from(xs, (v, i) => v * 1.0001 + (i % 3) * 0.37); // arbitrary f32 values for the conversion
    const x = t16(xs, [n], 'x');
    const xf = keep(Tensor.fromArray(gpu, x32, [n], { label: 'f16-probe.x32' }));
    const y = keep(Tensor.empty(gpu, [n * 6], 'f16', 'f16-probe.y'));
    f16ProbeKernel.run(gpu, { entry: 'builtins', variant: {}, params: { n }, buffers: { x, x32: xf, y }, workgroups: [Math.ceil(n / 64)], label: 'f16_probe.builtins' });
    const out = await y.toArray();
    const col = (k: number) => Array.from({ length: n }, (_, i) => out[i * 6 + k]);
    // WGSL accuracy for f16: exp and exp2-based pow 3 + 2·|x| ULP; division 2.5 ULP; sqrt (via inverseSqrt and a
    // division) ≤ 5 ULP; tanh inherits from sinh/cosh: 1e-3 absolute; conversion within one ULP.
    const expTol = (v: number) => ({ atol: 2 ** -24, rtol: (3 + 2 * Math.abs(v)) * ULP });
    const builtins: [string, number[], (v: number) => number, (i: number) => Tolerance][] = [
      ['exp', col(0), Math.exp, (i) => expTol(xs[i])],
      ['tanh', col(1), Math.tanh, () => ({ atol: 1e-3, rtol: 4 * ULP })],
      ['division', col(2), (v) => 1 / v, () => ({ atol: 0, rtol: 2.5 * ULP })],
      ['sqrt', col(3), (v) => Math.sqrt(Math.abs(v)), () => ({ atol: 2 ** -24, rtol: 5 * ULP })],
      ['pow(2, x + 5)', col(4), (v) => 2 ** (v + 5), (i) => ({ atol: 0, rtol: (3 + 2 * Math.abs(xs[i] + 5)) * ULP })],
    ];
    for (const [name, got, f, tol] of builtins) {
      const bad = firstMismatch(`f16 ${name}`, got, Array.from(xs, f), tol);
      if (bad) return { ok: false, reason: bad };
      checks.push(`f16 ${name}`);
    }
    const conv = firstMismatch('f32 → f16 conversion', col(5), Array.from(x32, (v) => Math.fround(v)), () => ({ atol: 0, rtol: ULP }));
    if (conv) return { ok: false, reason: conv };
    checks.push('f32 → f16 conversion');

    // 2. The library's f16 variants (f16 storage, f32 math).
    const vals = [-70000, -65504, -1.5, 0, 2 ** -20, 1 / 3, 65504, 70000];
    const c16 = keep(cast(keep(Tensor.fromArray(gpu, vals, [8], { label: 'f16-probe.c32' })), 'f16'));
    const bad = firstMismatch('GPU cast to f16', await c16.toArray(), vals.map((v) => f16BitsToF32(f32ToF16Bits(v))), () => ({ atol: 0, rtol: 0 }));
    if (bad) return { ok: false, reason: bad };
    checks.push('cast (RNE, ±Infinity past the range)');

    const ex = roundToF16([-5, 0, 3, 11, 11.2, 12]);
    const e16 = keep(unary('exp', t16(ex, [6], 'e')));
    const expBad = firstMismatch('exp (f16 storage)', await e16.toArray(), Array.from(ex, (v) => f16BitsToF32(f32ToF16Bits(Math.exp(v)))), () => F16_TOL.elementwise);
    if (expBad) return { ok: false, reason: expBad };
    checks.push('exp overflow to Infinity');
    const g16 = keep(unary('gelu_erf', t16(xs, [n], 'g')));
    const geluBad = firstMismatch('gelu_erf (f16 storage)', await g16.toArray(), Array.from(xs, (v) => unaryRef('gelu_erf', v)), () => F16_TOL.elementwise);
    if (geluBad) return { ok: false, reason: geluBad };
    checks.push('gelu_erf');

    const sx = roundToF16([65504, -65504, 0, 1, 60000, 65000, -3, 2]);
    const sm = keep(softmax(t16(sx, [2, 4], 's')));
    const smBad = firstMismatch('softmax at ±65504', await sm.toArray(), softmaxRef(sx, 4), () => f16NormTolerance(4, 1));
    if (smBad) return { ok: false, reason: smBad };
    checks.push('softmax at ±65504');

    const av = roundToF16(Array.from({ length: 8 * 16 }, (_, i) => Math.sin(i)));
    const bv = roundToF16(Array.from({ length: 16 * 8 }, (_, i) => Math.cos(3 * i)));
    const mm = keep(matmul(t16(av, [8, 16], 'a'), t16(bv, [16, 8], 'b')));
    const mmBad = firstMismatch('matmul (vec4)', await mm.toArray(), matmulRef(av, [8, 16], bv, [16, 8]).y, () => f16Tolerance(16, 1));
    if (mmBad) return { ok: false, reason: mmBad };
    checks.push('matmul vec4');
    // Tensor cores (where offered): verified here, else f16 GEMMs keep the matmul.wgsl variant; not a reason to
    // refuse f16 (the verdict is listed either way).
    const sgm = await verifySubgroupMatrix(gpu);
    checks.push(sgm ? `subgroup-matrix GEMM not used: ${sgm}` : 'subgroup-matrix GEMM verified (used for f16 GEMMs)');
    return { ok: true, checks };
  } finally {
    live.forEach((t) => t.release());
  }
}

export type DTypeChoice = DType | 'auto';

/**
 * The dtype to run in: 'f32' as asked; 'f16' or 'auto' → f16 when the device passes the probe, else f32 with the
 * reason passed to `log` (a request for f16 that cannot be honoured is never silent).
 */
export async function resolveDType(gpu: Gpu, requested: DTypeChoice, log: (line: string) => void = console.warn): Promise<DType> {
  if (requested === 'f32') return 'f32';
  const status = await probeF16(gpu);
  if (status.ok) return 'f16';
  log(`[dtype] ${requested === 'f16' ? 'f16 requested but ' : ''}running in f32: ${status.reason}`);
  return 'f32';
}

/** Parses a dtype option ('f32', 'f16', 'auto'); throws naming the accepted values. */
export function parseDTypeChoice(value: string, what = 'dtype'): DTypeChoice {
  if (value === 'f32' || value === 'f16' || value === 'auto') return value;
  throw new Error(`${what} must be one of f32, f16, auto; got '${value}'`);
}
