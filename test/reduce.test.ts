// Parity of the reductions (sum / mean over an axis, sumTo, L2 norm) with float64 CPU references, and
// finite-difference checks of the sum / mean gradients.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { globalL2Norm, l2Norm, mean, meanAll, meanBackward, planReduce, sum, sumAll, sumBackward, sumTo } from '../src/kernels/reduce.js';
import { l2NormRef, sumAxisBackwardRef, sumAxisRef, sumToRef } from '../src/reference/reduce.js';
import { Tensor, numel } from '../src/tensor.js';
import { dot, expectClose, finiteDiff, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// f32 sums of N values in [-1, 1]: each thread adds a short strided slice, then a tree combines them, so the error
// grows far slower than N·ε; 1e-7·N (relative ~1e-5 of a typical |sum| ~ √N) bounds it with margin.
const sumTol = (N: number) => ({ atol: 1e-6 + 1e-7 * N, rtol: 1e-5 });

async function checkAxis(shape: number[], axis: number, op: 'sum' | 'mean', keepdim = false) {
  const xs = seeded(numel(shape), 17 + shape.length + axis);
  const x = Tensor.fromArray(gpu, xs, shape, { label: 'x' });
  const y = (op === 'sum' ? sum : mean)(x, axis, { keepdim });
  const a = axis < 0 ? axis + shape.length : axis;
  const [want, outShape] = sumAxisRef(xs, shape, axis, op === 'mean');
  expect(y.shape).toEqual(keepdim ? shape.map((d, i) => (i === a ? 1 : d)) : outShape);
  const N = shape[a];
  expectClose(await y.toArray(), want, op === 'sum' ? sumTol(N) : { atol: 1e-6, rtol: 1e-5 }, `${op} ${JSON.stringify(shape)} axis ${axis}`);
  x.release();
  y.release();
}

describe('sum / mean over one axis', () => {
  for (const shape of [
    [3, 5, 7],
    [2, 3, 1, 5],
  ])
    for (let axis = -1; axis < shape.length; axis++)
      for (const op of ['sum', 'mean'] as const)
        it(`${op} ${JSON.stringify(shape)} axis ${axis}`, () => checkAxis(shape, axis, op, axis === 1));

  // Odd sizes, size-1 dims, long rows (N split over workgroups, then a second pass), many short rows.
  const cases: [number[], number][] = [
    [[1], 0],
    [[1, 1, 1], 1],
    [[7, 1000, 3], 0],
    [[7, 1000, 3], 1],
    [[7, 1000, 3], 2],
    [[3, 100003], 1],
    [[100003, 3], 0],
    [[2048, 1280], 0],
    [[20000, 5], 1],
  ];
  for (const [shape, axis] of cases) {
    it(`sum ${JSON.stringify(shape)} axis ${axis}`, () => checkAxis(shape, axis, 'sum'));
  }
  it('mean [3, 100003] axis 1', () => checkAxis([3, 100003], 1, 'mean'));

  it('splits long reductions over workgroups', () => {
    // The bias-gradient shape: 1280 outputs, 4096 rows → several chunks, then one pass over the partials.
    const p = planReduce(gpu, 1280, 4096, 1280);
    expect(p.chunks).toBeGreaterThan(1);
    expect(planReduce(gpu, 1280, p.chunks, 1280).chunks).toBe(1);
  });

  it('sumAll / meanAll give scalars', async () => {
    const xs = seeded(12345, 3);
    const x = Tensor.fromArray(gpu, xs, [15, 823]);
    const s = sumAll(x);
    const m = meanAll(x);
    expect(s.shape).toEqual([]);
    const want = xs.reduce((p, v) => p + v, 0);
    expectClose(await s.toArray(), [want], sumTol(xs.length));
    expectClose(await m.toArray(), [want / xs.length], { atol: 1e-7, rtol: 1e-5 });
    [x, s, m].forEach((t) => t.release());
  });

  it('reduces an empty axis to 0 (sum) and NaN (mean)', async () => {
    const x = Tensor.empty(gpu, [3, 0, 2]);
    const s = sum(x, 1);
    const m = mean(x, 1);
    expect(s.shape).toEqual([3, 2]);
    expect(Array.from(await s.toArray())).toEqual([0, 0, 0, 0, 0, 0]);
    expect((await m.toArray()).every(Number.isNaN)).toBe(true);
    [x, s, m].forEach((t) => t.release());
  });

  it('rejects a bad axis naming the range and the shape', () => {
    const x = Tensor.zeros(gpu, [2, 3]);
    expect(() => sum(x, 2)).toThrow(ShapeError);
    expect(() => sum(x, -3)).toThrow(/axis -3 is out of range for shape \[2, 3\] \(expected an integer in \[-2, 1\]\)/);
    expect(() => mean(x, 0.5)).toThrow(ShapeError);
    x.release();
  });
});

describe('sum / mean backward', () => {
  for (const op of ['sum', 'mean'] as const)
    for (const [shape, axis] of [
      [[3, 4, 5], 1],
      [[2, 3, 1, 5], -1],
      [[6, 7], 0],
    ] as [number[], number][])
      it(`${op} ${JSON.stringify(shape)} axis ${axis}: closed form and finite differences`, async () => {
        const xs = seeded(numel(shape), 5);
        const a = axis < 0 ? axis + shape.length : axis;
        const outShape = shape.filter((_, i) => i !== a);
        const R = seeded(numel(outShape), 6);
        const dy = Tensor.fromArray(gpu, R, outShape, { label: 'dy' });
        const dxT = (op === 'sum' ? sumBackward : meanBackward)(dy, shape, axis);
        expect(dxT.shape).toEqual(shape);
        const dx = await dxT.toArray();
        expectClose(dx, sumAxisBackwardRef(R, shape, axis, op === 'mean'), { atol: 1e-7, rtol: 1e-6 }, 'dx');
        // L = Σ y·R against central differences of the GPU forward.
        const loss = async ([x0]: Float32Array[]) => {
          const x = Tensor.fromArray(gpu, x0, shape);
          const y = (op === 'sum' ? sum : mean)(x, axis);
          const l = dot(await y.toArray(), R);
          x.release();
          y.release();
          return l;
        };
        const idx = [0, Math.floor(xs.length / 3), xs.length - 1];
        const fd = await finiteDiff(loss, [xs], 0, idx);
        expectClose(idx.map((i) => dx[i]), fd, { atol: 2e-3, rtol: 2e-3 }, 'dx vs FD');
        dy.release();
        dxT.release();
      });

  it('accepts dy in the keepdim shape and rejects a wrong size', () => {
    const dy = Tensor.zeros(gpu, [3, 1, 5]);
    const dx = sumBackward(dy, [3, 4, 5], 1);
    expect(dx.shape).toEqual([3, 4, 5]);
    expect(() => meanBackward(dy, [3, 4, 6], 1)).toThrow(/dy \[3, 1, 5\] has 15 elements, expected 18/);
    dy.release();
    dx.release();
  });
});

describe('sumTo', () => {
  const cases: [number[], number[]][] = [
    [[2, 3, 4, 5], [3, 1, 5]],
    [[2, 3, 4, 5, 6], [3, 1, 5, 1]],
    [[64, 33], [33]],
    [[3, 4, 5], [3, 1, 1]],
    [[2, 1, 4], [1, 1]],
    [[5, 7], []],
    [[2, 3], [2, 3]],
    [[4, 1, 3], [1, 3]],
    [[40, 50, 64], [64]],
  ];
  for (const [shape, target] of cases)
    it(`${JSON.stringify(shape)} → ${JSON.stringify(target)}`, async () => {
      const xs = seeded(numel(shape), 9);
      const x = Tensor.fromArray(gpu, xs, shape, { label: 'x' });
      const y = sumTo(x, target);
      expect(y.shape).toEqual(target);
      expectClose(await y.toArray(), sumToRef(xs, shape, target), sumTol(numel(shape) / Math.max(1, numel(target))));
      x.release();
      y.release();
      // x is still usable after y (a view when nothing is reduced) is released.
    });

  it('sums an empty dim to zeros', async () => {
    const x = Tensor.empty(gpu, [0, 3]);
    const y = sumTo(x, [3]);
    expect(Array.from(await y.toArray())).toEqual([0, 0, 0]);
    x.release();
    y.release();
  });

  it('rejects targets that do not broadcast to x', () => {
    const x = Tensor.zeros(gpu, [2, 3]);
    expect(() => sumTo(x, [2])).toThrow(/cannot reduce \[2, 3\] to \[2\] \(dim 1: 3 vs 2\)/);
    expect(() => sumTo(x, [1, 2, 3])).toThrow(ShapeError);
    x.release();
  });
});

describe('L2 norm', () => {
  it('of 2^22 elements matches float64', async () => {
    const n = 2 ** 22;
    const xs = seeded(n, 21, -2, 2);
    const x = Tensor.fromArray(gpu, xs, [1024, 4096]);
    const y = l2Norm(x);
    expect(y.shape).toEqual([]);
    expectClose(await y.toArray(), [l2NormRef([xs])], { atol: 0, rtol: 2e-6 });
    x.release();
    y.release();
  });

  it('does not stall where one serial f32 sum would', async () => {
    // x[0]² = 2^24: a single running f32 sum would stay at 2^24 while adding the 2^22 − 1 ones after it.
    const n = 2 ** 22;
    const xs = new Float32Array(n).fill(1);
    xs[0] = 4096;
    const x = Tensor.fromArray(gpu, xs, [n]);
    const y = l2Norm(x);
    expectClose(await y.toArray(), [Math.sqrt(2 ** 24 + n - 1)], { atol: 0, rtol: 1e-6 });
    x.release();
    y.release();
  });

  it('of 10^8 elements matches float64 (where one binding holds 400 MB; not on CPU adapters)', async () => {
    const n = 1e8;
    if (gpu.limits.maxStorageBufferBindingSize < 4 * n || gpu.summary().isFallbackAdapter) {
      console.log(`[skip] L2 norm of 10^8: needs a non-CPU adapter with a 400 MB binding`);
      return;
    }
    const xs = seeded(n, 23, -1, 1);
    const x = Tensor.fromArray(gpu, xs, [n]);
    const y = l2Norm(x);
    expectClose(await y.toArray(), [l2NormRef([xs])], { atol: 0, rtol: 2e-6 });
    x.release();
    y.release();
  });

  it('over a list of tensors, including size-1 and empty ones', async () => {
    const shapes = [[300, 1000], [1], [0, 4], [7, 13, 5], [100003]];
    const data = shapes.map((s, i) => seeded(numel(s), 30 + i, -3, 3));
    const ts = shapes.map((s, i) => Tensor.fromArray(gpu, data[i], s));
    const y = globalL2Norm(ts);
    expectClose(await y.toArray(), [l2NormRef(data)], { atol: 0, rtol: 2e-6 });
    const none = globalL2Norm([], gpu);
    expect(Array.from(await none.toArray())).toEqual([0]);
    [...ts, y, none].forEach((t) => t.release());
  });
});
