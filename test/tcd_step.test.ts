// The fused TCD step against a float32-emulating and a float64 CPU reference and the same step composed from
// elementwise primitives (odd sizes, the last step, errors). Against diffusers' own float32 outputs (scheduler.json
// TCD loops): the golden scheduler suite, test/golden/scheduler.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { binary, unary } from '../src/kernels/elementwise.js';
import { tcdStep, tcdStepScalars } from '../src/kernels/tcd_step.js';
import { tcdStepF32Ref } from '../src/reference/tcd_step.js';
import { Tensor } from '../src/tensor.js';
import golden from './fixtures/tcd_scheduler.json' with { type: 'json' };
import { expectClose, maxUlps, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

const ALPHAS = Float32Array.from(golden.alphas_cumprod_float32);

// GPU vs torch float32: the host scalars and the op order are torch's, products are rounded even under fma
// contraction and the division is correctly rounded, so the kernel claims bit-identical results (0 ulp).
const MAX_ULPS = 0;

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
