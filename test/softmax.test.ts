// Parity of softmax (last axis) and its backward with float64 CPU references, extreme inputs, and a
// finite-difference check of the gradient.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { planSoftmax, softmax, softmaxBackward } from '../src/kernels/softmax.js';
import { softmaxBackwardRef, softmaxRef } from '../src/reference/softmax.js';
import { Tensor, numel } from '../src/tensor.js';
import { dot, expectClose, finiteDiff, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// Outputs are in [0, 1]; f32 exp is good to a few ulp and the row sum to ~1e-7 relative.
const TOL = { atol: 1e-6, rtol: 1e-5 };
const GRAD_TOL = { atol: 1e-6, rtol: 1e-4 };

describe('softmax', () => {
  // Row lengths: 1, odd, CLIP's 77, 1000, 4096 (cached in registers), 5003 and 20000 (re-read beyond the cache);
  // R = 1 and odd R leave the last workgroup partly empty.
  const shapes = [[1, 1], [5, 1], [3, 3], [4, 77], [2, 3, 77], [3, 1000], [2, 4096], [2, 5003], [1, 20000], [333, 7], [1, 2, 3, 5]];
  for (const shape of shapes)
    it(`forward and backward ${JSON.stringify(shape)}`, async () => {
      const C = shape[shape.length - 1];
      const n = numel(shape);
      const xs = seeded(n, 3 + C, -8, 8);
      const x = Tensor.fromArray(gpu, xs, shape, { label: 'x' });
      const y = softmax(x);
      expect(y.shape).toEqual(shape);
      const ys = await y.toArray();
      expectClose(ys, softmaxRef(xs, C), TOL, 'y');
      const gs = seeded(n, 5 + C);
      const dy = Tensor.fromArray(gpu, gs, shape, { label: 'dy' });
      const dx = softmaxBackward(y, dy);
      expectClose(await dx.toArray(), softmaxBackwardRef(ys, gs, C), GRAD_TOL, 'dx');
      [x, y, dy, dx].forEach((t) => t.release());
    });

  it('stays finite and exact for inputs of ±1e4', async () => {
    const C = 300;
    const xs = new Float32Array(3 * C);
    for (let i = 0; i < C; i++) {
      xs[i] = i % 7 === 0 ? 1e4 : -1e4; // row 0: several equal maxima
      xs[C + i] = -1e4 + (i % 5); // row 1: all very negative
      xs[2 * C + i] = i === C - 1 ? 1e4 : i; // row 2: one dominant element
    }
    const x = Tensor.fromArray(gpu, xs, [3, C]);
    const y = softmax(x);
    const ys = await y.toArray();
    expect(ys.some(Number.isNaN), 'no NaN').toBe(false);
    expectClose(ys, softmaxRef(xs, C), TOL, 'y');
    const dy = Tensor.fromArray(gpu, seeded(3 * C, 2), [3, C]);
    const dx = await softmaxBackward(y, dy).toArray();
    expect(dx.every(Number.isFinite), 'dx finite').toBe(true);
    [x, y, dy].forEach((t) => t.release());
  });

  it('backward matches finite differences of the forward', async () => {
    const shape = [3, 9];
    const xs = seeded(27, 8, -2, 2);
    const R = seeded(27, 9);
    const x = Tensor.fromArray(gpu, xs, shape);
    const y = softmax(x);
    const dy = Tensor.fromArray(gpu, R, shape);
    const dx = await softmaxBackward(y, dy).toArray();
    // L = Σ softmax(x)·R.
    const loss = async ([x0]: Float32Array[]) => {
      const t = Tensor.fromArray(gpu, x0, shape);
      const o = softmax(t);
      const l = dot(await o.toArray(), R);
      t.release();
      o.release();
      return l;
    };
    const idx = [0, 4, 8, 13, 26];
    const fd = await finiteDiff(loss, [xs], 0, idx);
    expectClose(idx.map((i) => dx[i]), fd, { atol: 2e-3, rtol: 2e-2 }, 'dx vs FD');
    [x, y, dy].forEach((t) => t.release());
  });

  it('plans threads per row by row length', () => {
    // CPU adapters cache at most 4 elements per thread.
    const cpu = gpu.summary().isFallbackAdapter;
    expect(planSoftmax(gpu, 77)).toMatchObject({ tpr: 16, wg: 256, vpt: cpu ? 4 : 8 });
    expect(planSoftmax(gpu, 4096)).toMatchObject({ tpr: 256, wg: 256, vpt: cpu ? 4 : 16 });
    expect(planSoftmax(gpu, 1)).toMatchObject({ tpr: 1, vpt: 1 });
  });

  it('rejects rank 0 and mismatched dy', () => {
    const s = Tensor.zeros(gpu, []);
    expect(() => softmax(s)).toThrow(ShapeError);
    const y = Tensor.zeros(gpu, [2, 3]);
    const dy = Tensor.zeros(gpu, [3, 2]);
    expect(() => softmaxBackward(y, dy)).toThrow(/dy has shape \[3, 2\], expected y's shape \[2, 3\]/);
    [s, y, dy].forEach((t) => t.release());
  });

  it('handles empty rows and zero rows', async () => {
    const a = Tensor.empty(gpu, [0, 5]);
    const b = Tensor.empty(gpu, [4, 0]);
    expect(softmax(a).shape).toEqual([0, 5]);
    expect(softmax(b).shape).toEqual([4, 0]);
    await gpu.sync();
    a.release();
    b.release();
  });
});
