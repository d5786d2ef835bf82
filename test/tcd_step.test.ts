// The fused TCD step against diffusers' own float32 outputs (scheduler.json loops), a float32-emulating and a float64
// CPU reference, and the same step composed from elementwise primitives.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { binary, unary } from '../src/kernels/elementwise.js';
import { tcdStep, tcdStepScalars } from '../src/kernels/tcd_step.js';
import { tcdStepF32Ref, tcdStepRef } from '../src/reference/tcd_step.js';
import { Tensor } from '../src/tensor.js';
import golden from './fixtures/tcd_scheduler.json' with { type: 'json' };
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

const ALPHAS = Float32Array.from(golden.alphas_cumprod_float32);

/** Distance in float32 ulps (number of representable floats between a and b). */
function ulps(a: number, b: number): number {
  const ord = (x: number) => {
    const i = new Int32Array(Float32Array.of(x).buffer)[0];
    return i < 0 ? -(i & 0x7fffffff) : i;
  };
  return Math.abs(ord(a) - ord(b));
}

function maxUlps(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Number.isNaN(got[i]) ? Infinity : ulps(got[i], want[i]));
  return m;
}

function maxAbs(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i] - want[i]));
  return m;
}

// GPU vs torch float32: the host scalars and the op order are torch's, products are rounded even under fma
// contraction and the division is correctly rounded, so the kernel claims bit-identical results (0 ulp).
const MAX_ULPS = 0;

const f32 = (a: readonly number[]) => Float32Array.from(a);

interface GoldenStep {
  timestep: number;
  sample: number[];
  model_output: number[];
  noise?: number[];
  prev_sample: number[];
  pred_noised_sample: number[];
}

describe('tcdStepScalars', () => {
  it('reproduces the (t, prev, s) triples of the spec (tcd.md §2.3, measured on diffusers)', () => {
    const triples = (ts: number[], eta: number) =>
      ts.map((t, i) => {
        const sc = tcdStepScalars(ALPHAS, t, ts[i + 1], eta);
        return [sc.timestep, sc.prevTimestep, sc.s];
      });
    expect(triples([999, 759, 499, 259], 0.3)).toEqual([[999, 759, 531], [759, 499, 349], [499, 259, 181], [259, 0, 0]]);
    expect(triples([999, 759, 499, 259], 0.1)).toEqual([[999, 759, 683], [759, 499, 449], [499, 259, 233], [259, 0, 0]]);
    expect(triples([999, 879, 759, 639, 499, 379, 259, 139], 0.5).map((x) => x[2])).toEqual([439, 379, 319, 249, 189, 129, 69, 0]);
    // The float32 floor rule where it differs from a float64 floor (tcd.md §2.3): (0.3, 350) → 245, (0.3, 90) → 63,
    // (0.16, 75) → 62.
    expect(tcdStepScalars(ALPHAS, 400, 350, 0.3).s).toBe(245);
    expect(tcdStepScalars(ALPHAS, 100, 90, 0.3).s).toBe(63);
    expect(tcdStepScalars(ALPHAS, 100, 75, 0.16).s).toBe(62);
  });

  it('noise only when eta > 0 and not on the last step', () => {
    expect(tcdStepScalars(ALPHAS, 999, 759, 0.3).addNoise).toBe(true);
    expect(tcdStepScalars(ALPHAS, 999, 759, 0).addNoise).toBe(false);
    expect(tcdStepScalars(ALPHAS, 259, undefined, 0.3).addNoise).toBe(false);
  });

  it('rejects eta outside [0, 1] and timesteps off the table', () => {
    expect(() => tcdStepScalars(ALPHAS, 999, 759, 1.5)).toThrow(/eta/);
    expect(() => tcdStepScalars(ALPHAS, 1000, 759, 0.3)).toThrow(/timestep 1000/);
    expect(() => tcdStepScalars(ALPHAS, 999, 12.5, 0.3)).toThrow(/prevTimestep 12.5/);
  });
});

describe('tcdStep vs diffusers (scheduler.json TCD loops, torch float32 CPU)', () => {
  for (const [name, loop] of Object.entries(golden.loops)) {
    it(`${name}: every step, and the float32 emulation is bit-exact`, async () => {
      // The JSON holds shortest float32 decimals: round them back to the float32 values torch produced.
      const steps = (loop.steps as GoldenStep[]).map((st) => ({
        timestep: st.timestep,
        sample: f32(st.sample),
        model_output: f32(st.model_output),
        noise: st.noise && f32(st.noise),
        prev_sample: f32(st.prev_sample),
        pred_noised_sample: f32(st.pred_noised_sample),
      }));
      const report: string[] = [];
      for (let i = 0; i < steps.length; i++) {
        const st = steps[i];
        const prevT = loop.timesteps[i + 1] as number | undefined;
        const sc = tcdStepScalars(ALPHAS, st.timestep, prevT, loop.eta);
        expect(sc.addNoise, `step ${i}: noise drawn`).toBe(st.noise !== undefined);
        // The host scalars and op order are right iff the float32 emulation matches torch exactly.
        const emu = tcdStepF32Ref(st.sample, st.model_output, st.noise, ALPHAS, st.timestep, prevT, loop.eta);
        expect(maxAbs(emu.prev, st.prev_sample), `step ${i}: emulated prev_sample`).toBe(0);
        expect(maxAbs(emu.xs, st.pred_noised_sample), `step ${i}: emulated pred_noised_sample`).toBe(0);

        const shape = golden.shape;
        const x = Tensor.fromArray(gpu, st.sample, shape, { label: 'sample' });
        const eps = Tensor.fromArray(gpu, st.model_output, shape, { label: 'model_output' });
        const z = st.noise ? Tensor.fromArray(gpu, st.noise, shape, { label: 'noise' }) : undefined;
        const out = tcdStep(x, eps, sc, z);
        const [prev, xs, x0] = await Promise.all([out.prevSample.toArray(), out.predNoisedSample.toArray(), out.predOriginalSample.toArray()]);
        const u = [maxUlps(prev, st.prev_sample), maxUlps(xs, st.pred_noised_sample), maxUlps(x0, emu.x0)];
        report.push(`t=${st.timestep}: ${u.join('/')} ulp, ${maxAbs(prev, st.prev_sample).toExponential(2)} abs`);
        expect(Math.max(...u), `step ${i} (t=${st.timestep}): max ulps of prev / x_s / x0 = ${u}`).toBeLessThanOrEqual(MAX_ULPS);
        if (!sc.addNoise) expect(Array.from(prev)).toEqual(Array.from(xs));

        // Float64 reference: torch's float32 rounding amplified by 1/sqrt(ᾱ_t) (14.6 at t = 999) stays within
        // 3e-6 relative to the sample scale (tcd.md §9.9 observes up to 2.7e-6 absolute on its t = 999 vectors).
        const ref = tcdStepRef(st.sample, st.model_output, st.noise, ALPHAS, st.timestep, prevT, loop.eta);
        const scaleOf = (a: ArrayLike<number>) => Math.max(1, ...Array.from(a, Math.abs));
        expectClose(prev, ref.prev, { atol: 3e-6 * scaleOf(ref.prev), rtol: 0 }, `step ${i} prev vs float64`);
        expectClose(x0, ref.x0, { atol: 3e-6 * scaleOf(ref.x0), rtol: 0 }, `step ${i} x0 vs float64`);
        [x, eps, z, out.prevSample, out.predNoisedSample, out.predOriginalSample].forEach((t) => t?.release());
      }
      console.log(`[tcd_step] ${name} GPU vs torch: ${report.join('; ')}`);
    });
  }
});

describe('tcdStep edge cases', () => {
  // Odd sizes not filling a workgroup, and a single element.
  for (const n of [1, 1000]) {
    it(`n=${n}: matches the float32 emulation and the step composed from elementwise primitives`, async () => {
      const xs = seeded(n, 3, -3, 3);
      const es = seeded(n, 4, -2, 2);
      const zs = seeded(n, 5, -2, 2);
      if (n > 1) {
        // x0 = 0 exactly (the division's zero path) and large magnitudes.
        [xs[0], es[0], xs[1], es[1]] = [0, 0, 3e30, -1e30];
      }
      const sc = tcdStepScalars(ALPHAS, 999, 759, 0.3);
      const x = Tensor.fromArray(gpu, xs, [n]);
      const eps = Tensor.fromArray(gpu, es, [n]);
      const z = Tensor.fromArray(gpu, zs, [n]);
      const out = tcdStep(x, eps, sc, z);
      const prev = await out.prevSample.toArray();
      const emu = tcdStepF32Ref(xs, es, zs, ALPHAS, 999, 759, 0.3);
      expect(maxUlps(prev, emu.prev)).toBeLessThanOrEqual(MAX_ULPS);

      // Composed: x0 = (x − sbT·ε)·(1/saT) (a multiply by the reciprocal instead of the division: ≤ 1 ulp more),
      // x_s = saS·x0 + sbS·ε, prev = c1·x_s + c2·z.
      const tmp: Tensor[] = [];
      const k = (t: Tensor) => (tmp.push(t), t);
      const x0 = k(unary('scale', k(binary('sub', x, k(unary('scale', eps, { alpha: sc.sqrtBetaT })))), { alpha: Math.fround(1 / sc.sqrtAlphaT) }));
      const xsC = k(binary('add', k(unary('scale', x0, { alpha: sc.sqrtAlphaS })), k(unary('scale', eps, { alpha: sc.sqrtBetaS }))));
      const prevC = k(binary('add', k(unary('scale', xsC, { alpha: sc.cPrev })), k(unary('scale', z, { alpha: sc.cNoise }))));
      const composed = await prevC.toArray();
      expectClose(prev, composed, { atol: 1e-5, rtol: 1e-6 }, 'fused vs composed');
      [x, eps, z, out.prevSample, out.predNoisedSample, out.predOriginalSample, ...tmp].forEach((t) => t.release());
    });
  }

  it('last step with eta > 0 draws no noise: prev = x_s', async () => {
    const sc = tcdStepScalars(ALPHAS, 259, undefined, 0.3);
    const x = Tensor.fromArray(gpu, seeded(7, 1), [7]);
    const eps = Tensor.fromArray(gpu, seeded(7, 2), [7]);
    const out = tcdStep(x, eps, sc);
    expect(Array.from(await out.prevSample.toArray())).toEqual(Array.from(await out.predNoisedSample.toArray()));
    [x, eps, out.prevSample, out.predNoisedSample, out.predOriginalSample].forEach((t) => t.release());
  });

  it('rejects a missing noise tensor and mismatched shapes, naming them', () => {
    const x = Tensor.zeros(gpu, [1, 4, 2, 2]);
    const eps = Tensor.zeros(gpu, [1, 4, 2, 2]);
    const bad = Tensor.zeros(gpu, [1, 4, 2, 3]);
    const sc = tcdStepScalars(ALPHAS, 999, 759, 0.3);
    expect(() => tcdStep(x, eps, sc)).toThrow(ShapeError);
    expect(() => tcdStep(x, eps, sc)).toThrow(/needs a noise tensor of shape \[1, 4, 2, 2\]/);
    expect(() => tcdStep(x, bad, sc, eps)).toThrow(/model_output has shape \[1, 4, 2, 3\], expected the sample's \[1, 4, 2, 2\]/);
    expect(() => tcdStep(x, eps, sc, bad)).toThrow(/noise has shape \[1, 4, 2, 3\], expected \[1, 4, 2, 2\]/);
    [x, eps, bad].forEach((t) => t.release());
  });
});
