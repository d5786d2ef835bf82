// Nearest upsampling, concat and split: parity with the CPU reference, gradients by finite differences, edges.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { concat, concatBackward, split, upsampleNearest, upsampleNearestBackward } from '../src/kernels/resample.js';
import { concatRef, upsampleNearestBackwardRef, upsampleNearestRef } from '../src/reference/resample.js';
import { Tensor, numel } from '../src/tensor.js';
import { dot, expectClose, finiteDiff, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// Copies are exact; the backward sums at most a few f32 values in the reference's order.
const EXACT = { atol: 0, rtol: 0 };
const SUM = { atol: 1e-6, rtol: 1e-6 };

describe('upsampleNearest', () => {
  // [B, C, H, W] and output size: ×2 (default), size-1 dims, and exact sizes (diffusers' upsample_size when the
  // latent is not a multiple of 8), including one not a multiple of the input and a shrink.
  const cases: [number[], [number, number] | undefined][] = [
    [[2, 3, 5, 7], undefined],
    [[1, 1, 1, 1], undefined],
    [[1, 2, 4, 4], [7, 9]],
    [[2, 1, 3, 5], [8, 11]],
    [[1, 3, 6, 5], [4, 3]],
    [[1, 1, 63, 1], [125, 3]],
  ];
  for (const [shape, size] of cases) {
    const [Ho, Wo] = size ?? [2 * shape[2], 2 * shape[3]];
    it(`${JSON.stringify(shape)} → ${Ho}×${Wo}: forward and backward match the reference`, async () => {
      const xv = seeded(numel(shape), 31);
      const x = Tensor.fromArray(gpu, xv, shape, { label: 'x' });
      const y = upsampleNearest(x, { size });
      expect(y.shape).toEqual([shape[0], shape[1], Ho, Wo]);
      expectClose(await y.toArray(), upsampleNearestRef(xv, shape, Ho, Wo), EXACT, 'y');
      const dyv = seeded(y.size, 32);
      const dy = Tensor.fromArray(gpu, dyv, y.shape, { label: 'dy' });
      const dx = upsampleNearestBackward(dy, shape, { size });
      expectClose(await dx.toArray(), upsampleNearestBackwardRef(dyv, shape, Ho, Wo), SUM, 'dx');
      [x, y, dy, dx].forEach((t) => t.release());
    });
  }

  it('×2 backward sums each 2×2 block, and matches finite differences', async () => {
    const shape = [1, 2, 3, 3];
    const xv = seeded(18, 33);
    const Rv = seeded(72, 34);
    const dy = Tensor.fromArray(gpu, Rv, [1, 2, 6, 6]);
    const dx = await upsampleNearestBackward(dy, shape).toArray();
    // Pixel (c=1, h=2, w=0): output rows 4..5, cols 0..1 of channel 1.
    const block = [4 * 6 + 0, 4 * 6 + 1, 5 * 6 + 0, 5 * 6 + 1].map((k) => Rv[36 + k]);
    expect(dx[9 + 6]).toBeCloseTo(block.reduce((s, v) => s + v, 0), 6);
    const loss = async ([v]: Float32Array[]) => {
      const t = Tensor.fromArray(gpu, v, shape);
      const y = upsampleNearest(t);
      const l = dot(await y.toArray(), Rv);
      t.release();
      y.release();
      return l;
    };
    const idx = [0, 4, 8, 15, 17];
    expectClose(idx.map((i) => dx[i]), await finiteDiff(loss, [xv], 0, idx), { atol: 1e-2, rtol: 1e-2 }, 'dx vs FD');
    dy.release();
  });

  it('rejects non-NCHW inputs and a wrong dy', () => {
    const x = Tensor.zeros(gpu, [2, 3, 4]);
    expect(() => upsampleNearest(x)).toThrow(ShapeError);
    expect(() => upsampleNearest(x)).toThrow(/\[2, 3, 4\], expected rank 4/);
    const dy = Tensor.zeros(gpu, [1, 2, 6, 6]);
    expect(() => upsampleNearestBackward(dy, [1, 2, 3, 4])).toThrow(/dy has shape \[1, 2, 6, 6\], expected \[1, 2, 6, 8\]/);
    [x, dy].forEach((t) => t.release());
  });
});

describe('concat and split', () => {
  // [aShape, bShape, axis]: channels of NCHW (the UNet skip concat), other axes, and a size-1 part.
  const cases: [number[], number[], number][] = [
    [[2, 3, 4, 5], [2, 2, 4, 5], 1],
    [[1, 1, 3, 3], [1, 4, 3, 3], 1],
    [[3, 5], [3, 2], -1],
    [[2, 3, 1], [5, 3, 1], 0],
    [[7], [1], 0],
  ];
  for (const [as, bs, axis] of cases) {
    it(`${JSON.stringify(as)} ++ ${JSON.stringify(bs)} on axis ${axis}: concat, split and their gradients`, async () => {
      const av = seeded(numel(as), 41);
      const bv = seeded(numel(bs), 42);
      const a = Tensor.fromArray(gpu, av, as, { label: 'a' });
      const b = Tensor.fromArray(gpu, bv, bs, { label: 'b' });
      const y = concat(a, b, axis);
      const ax = axis < 0 ? axis + as.length : axis;
      expect(y.shape).toEqual(as.map((d, i) => (i === ax ? d + bs[i] : d)));
      const yv = await y.toArray();
      expectClose(yv, concatRef(av, as, bv, bs, ax), EXACT, 'concat');
      // split is the inverse and the backward of concat: a gradient equals the matching slice of dy.
      const [pa, pb] = split(y, as[ax], axis);
      expect(pa.shape).toEqual(as);
      expect(pb.shape).toEqual(bs);
      expectClose(await pa.toArray(), av, EXACT, 'split a');
      expectClose(await pb.toArray(), bv, EXACT, 'split b');
      const [da, db] = concatBackward(y, as, bs, axis);
      expectClose(await da.toArray(), av, EXACT, 'da');
      expectClose(await db.toArray(), bv, EXACT, 'db');
      [a, b, y, pa, pb, da, db].forEach((t) => t.release());
    });
  }

  it('concat gradient matches finite differences of L = sum(y·R)', async () => {
    const [as, bs] = [[1, 2, 2, 2], [1, 3, 2, 2]];
    const av = seeded(8, 43);
    const bv = seeded(12, 44);
    const Rv = seeded(20, 45);
    const [da, db] = concatBackward(Tensor.fromArray(gpu, Rv, [1, 5, 2, 2]), as, bs);
    const loss = async ([x0, x1]: Float32Array[]) => {
      const ta = Tensor.fromArray(gpu, x0, as);
      const tb = Tensor.fromArray(gpu, x1, bs);
      const y = concat(ta, tb);
      const l = dot(await y.toArray(), Rv);
      [ta, tb, y].forEach((t) => t.release());
      return l;
    };
    const gA = await da.toArray();
    const gB = await db.toArray();
    expectClose([gA[0], gA[7]], await finiteDiff(loss, [av, bv], 0, [0, 7]), { atol: 1e-2, rtol: 1e-2 }, 'da vs FD');
    expectClose([gB[0], gB[11]], await finiteDiff(loss, [av, bv], 1, [0, 11]), { atol: 1e-2, rtol: 1e-2 }, 'db vs FD');
  });

  it('rejects mismatched shapes and out-of-range splits, naming them', () => {
    const a = Tensor.zeros(gpu, [1, 2, 4, 4]);
    const b = Tensor.zeros(gpu, [1, 2, 4, 5]);
    expect(() => concat(a, b)).toThrow(ShapeError);
    expect(() => concat(a, b)).toThrow(/\[1, 2, 4, 4\] and \[1, 2, 4, 5\] differ in dim 3 \(4 vs 5\)/);
    expect(() => concat(a, b, 4)).toThrow(/axis 4 is out of range/);
    expect(() => split(a, 3)).toThrow(/first part of 3 along axis 1 does not fit \[1, 2, 4, 4\]/);
    [a, b].forEach((t) => t.release());
  });
});
