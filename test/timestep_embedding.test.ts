// Sinusoidal timestep embedding vs diffusers' own outputs (tiny SDXL-shaped UNet), the float64 reference with torch's
// float32 argument rounding, and the exact float64 math.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { timestepEmbedding, type TimestepEmbeddingOptions } from '../src/kernels/timestep_embedding.js';
import { timestepEmbeddingRef } from '../src/reference/timestep_embedding.js';
import { Tensor } from '../src/tensor.js';
import golden from './fixtures/timestep_embedding.json' with { type: 'json' };
import { expectClose, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

async function embed(ts: readonly number[], dim: number, opts: TimestepEmbeddingOptions): Promise<Float32Array> {
  const t = Tensor.fromArray(gpu, ts, [ts.length], { label: 't' });
  const y = timestepEmbedding(t, dim, opts);
  expect(y.shape).toEqual([ts.length, dim]);
  const out = await y.toArray();
  t.release();
  y.release();
  return out;
}

// sin/cos of the same float32 argument: the kernel's Cephes evaluation is within 2 ulp of 1 (1.2e-7 observed over
// the sweep below on llvmpipe; 6e-8 against torch's own outputs).
const SAME_ARG = { atol: 2.5e-7, rtol: 0 };

describe('timestepEmbedding', () => {
  const SDXL = { flipSinToCos: true, downscaleFreqShift: 0 };

  it("matches diffusers' Timesteps outputs of the tiny UNet (time_proj and add_time_proj, torch float32 CPU)", async () => {
    const opts = { flipSinToCos: golden.flip_sin_to_cos, downscaleFreqShift: golden.freq_shift };
    const tp = await embed(golden.timestep, golden.time_proj_dim, opts);
    expectClose(tp, Float32Array.from(golden.time_proj), SAME_ARG, 'time_proj');
    // add_time_proj embeds time_ids.flatten() (sizes up to 1344).
    const ap = await embed(golden.time_ids, golden.addition_time_embed_dim, opts);
    expectClose(ap, Float32Array.from(golden.add_time_proj), SAME_ARG, 'add_time_proj');
  });

  // SDXL: timesteps at dim 320 (incl. a fractional one, as Euler passes) and size conditioning at dim 256.
  const cases: [string, number[], number, TimestepEmbeddingOptions][] = [
    ['SDXL timesteps, dim 320', [999, 0, 1, 500.5, 759], 320, SDXL],
    ['SDXL add_time_ids, dim 256', [1024, 1024, 0, 0, 1024, 1024, 768, 1344, 16, 32, 4096, 8000], 256, SDXL],
    ['odd dim 7, shift 1, no flip', [3, 250], 7, {}],
    ['dim 1 (all padding)', [5], 1, {}],
    ['dim 2, scale 2.5, max_period 100', [0.25, 17], 6, { scale: 2.5, maxPeriod: 100, flipSinToCos: true }],
  ];
  for (const [name, ts, dim, opts] of cases) {
    it(`${name}: matches the float64 reference (torch's float32 arguments, and the exact math)`, async () => {
      const got = await embed(ts, dim, opts);
      expectClose(got, timestepEmbeddingRef(ts, dim, { ...opts, torchF32: true }), SAME_ARG, 'vs torch-f32 arguments');
      // Against exact float64 the float32 rounding of arg = t·freq (as torch rounds it) dominates: |arg|·2^-23.
      const maxArg = Math.max(...ts.map(Math.abs)) * (opts.scale ?? 1);
      expectClose(got, timestepEmbeddingRef(ts, dim, opts), { atol: maxArg * 2 ** -23 + 4e-7, rtol: 0 }, 'vs exact float64');
      if (dim % 2 === 1) for (let n = 0; n < ts.length; n++) expect(got[n * dim + dim - 1]).toBe(0);
    });
  }

  it('sweep: every integer timestep 0..999 at dim 320, and sizes up to 8192 at dim 256', async () => {
    const ts = Array.from({ length: 1000 }, (_, i) => i);
    expectClose(await embed(ts, 320, SDXL), timestepEmbeddingRef(ts, 320, { ...SDXL, torchF32: true }), SAME_ARG, 'timesteps');
    const sizes = Array.from({ length: 513 }, (_, i) => 16 * i);
    expectClose(await embed(sizes, 256, SDXL), timestepEmbeddingRef(sizes, 256, { ...SDXL, torchF32: true }), SAME_ARG, 'sizes');
  });

  it('flip_sin_to_cos swaps the halves', async () => {
    const a = await embed([37], 8, { flipSinToCos: false });
    const b = await embed([37], 8, { flipSinToCos: true });
    expect(Array.from(b)).toEqual([...a.slice(4), ...a.slice(0, 4)]);
  });

  it('rejects timesteps that are not [N] and a bad dim', () => {
    const t = Tensor.zeros(gpu, [2, 1]);
    expect(() => timestepEmbedding(t, 8)).toThrow(ShapeError);
    expect(() => timestepEmbedding(t, 8)).toThrow(/shape \[2, 1\], expected \[N\]/);
    const u = Tensor.zeros(gpu, [2]);
    expect(() => timestepEmbedding(u, 0)).toThrow(/dim must be a positive integer, got 0/);
    [t, u].forEach((x) => x.release());
  });
});
