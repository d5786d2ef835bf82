// GEGLU forward/backward vs the float64 CPU reference, vs the same op composed from split + gelu_erf + mul, and
// finite-difference gradients.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { binary, unary, unaryBackward } from '../src/kernels/elementwise.js';
import { geglu, gegluBackward } from '../src/kernels/geglu.js';
import { concat, split } from '../src/kernels/resample.js';
import { gegluBackwardRef, gegluRef } from '../src/reference/geglu.js';
import { Tensor, numel } from '../src/tensor.js';
import { dot, expectClose, finiteDiff, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// erf_f32 is within 1.2e-7 absolute; products of O(1) values add a few ulp.
const TOL = { atol: 2e-6, rtol: 2e-5 };

describe('geglu', () => {
  // [rows..., 2F]: F % 4 == 0 takes the vec4 path, odd F the scalar one; size-1 rows and F = 1 are edges.
  const shapes = [[3, 8], [2, 5, 14], [1, 2], [7, 1, 24], [1000, 6]];
  for (const shape of shapes) {
    const F = shape[shape.length - 1] / 2;
    const R = numel(shape) / (2 * F);
    it(`${JSON.stringify(shape)} (${F % 4 === 0 ? 'vec4' : 'scalar'}) forward and backward match the reference`, async () => {
      const pv = seeded(numel(shape), 21, -4, 4);
      const p = Tensor.fromArray(gpu, pv, shape, { label: 'p' });
      const y = geglu(p);
      expect(y.shape).toEqual([...shape.slice(0, -1), F]);
      expectClose(await y.toArray(), gegluRef(pv, R, F), TOL, 'y');
      const dyv = seeded(R * F, 22);
      const dy = Tensor.fromArray(gpu, dyv, y.shape, { label: 'dy' });
      const dp = gegluBackward(p, dy);
      expect(dp.shape).toEqual(shape);
      expectClose(await dp.toArray(), gegluBackwardRef(pv, dyv, R, F), TOL, 'dp');
      [p, y, dy, dp].forEach((t) => t.release());
    });
  }

  for (const F of [4, 3]) {
    it(`F=${F}: fused equals split + gelu_erf + mul, forward and backward`, async () => {
      const R = 5;
      const pv = seeded(R * 2 * F, 23, -3, 3);
      const dyv = seeded(R * F, 24);
      const p = Tensor.fromArray(gpu, pv, [R, 2 * F]);
      const dy = Tensor.fromArray(gpu, dyv, [R, F]);
      const [hidden, gate] = split(p, F, -1);
      const g = unary('gelu_erf', gate);
      const y = binary('mul', hidden, g);
      // d hidden = dy·GELU(gate); d gate = GELU'(gate)·(dy·hidden).
      const dHidden = binary('mul', dy, g);
      const dyHidden = binary('mul', dy, hidden);
      const dGate = unaryBackward('gelu_erf', gate, dyHidden);
      const dp = concat(dHidden, dGate, -1);
      const yF = geglu(p);
      const dpF = gegluBackward(p, dy);
      // Same erf, same products: equal up to the order of two multiplications.
      expectClose(await yF.toArray(), await y.toArray(), { atol: 1e-7, rtol: 1e-6 }, 'y fused vs composed');
      expectClose(await dpF.toArray(), await dp.toArray(), { atol: 1e-7, rtol: 1e-6 }, 'dp fused vs composed');
      [p, dy, hidden, gate, g, y, dHidden, dyHidden, dGate, dp, yF, dpF].forEach((t) => t.release());
    });
  }

  it('gradient matches finite differences of L = sum(y·R)', async () => {
    const shape = [3, 10];
    const pv = seeded(30, 25, -2, 2);
    const Rv = seeded(15, 26);
    const p = Tensor.fromArray(gpu, pv, shape);
    const dy = Tensor.fromArray(gpu, Rv, [3, 5]);
    const dp = await gegluBackward(p, dy).toArray();
    const loss = async ([x]: Float32Array[]) => {
      const t = Tensor.fromArray(gpu, x, shape);
      const y = geglu(t);
      const l = dot(await y.toArray(), Rv);
      t.release();
      y.release();
      return l;
    };
    // Hidden and gate elements of the first, middle and last rows.
    const idx = [0, 4, 5, 9, 12, 17, 20, 29];
    const fd = await finiteDiff(loss, [pv], 0, idx);
    expectClose(idx.map((i) => dp[i]), fd, { atol: 2e-2, rtol: 2e-2 }, 'dp vs finite differences');
    p.release();
    dy.release();
  });

  it('rejects an odd last dimension and a wrong dy, naming the shapes', () => {
    const p = Tensor.zeros(gpu, [2, 5]);
    expect(() => geglu(p)).toThrow(ShapeError);
    expect(() => geglu(p)).toThrow(/\[2, 5\] must have an even last dimension/);
    const q = Tensor.zeros(gpu, [2, 6]);
    const dy = Tensor.zeros(gpu, [2, 6]);
    expect(() => gegluBackward(q, dy)).toThrow(/dy has shape \[2, 6\], expected \[2, 3\]/);
    [p, q, dy].forEach((t) => t.release());
  });
});
