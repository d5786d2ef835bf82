// Parity of the elementwise kernels with the float64 CPU reference, and finite-difference checks of the gradients.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { BINARY_OPS, type BinaryOp, UNARY_OPS, type UnaryOp, binary, binaryBackward, unary, unaryBackward } from '../src/kernels/elementwise.js';
import { broadcastBinaryRef, unaryGradRef, unaryRef } from '../src/reference/elementwise.js';
import { Tensor } from '../src/tensor.js';
import { dot, expectClose, finiteDiff, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// f32 transcendental functions on GPUs are accurate to a few ulp; GELU-erf's erf approximation is < 1.2e-7 abs.
const TOL = { atol: 2e-6, rtol: 2e-5 };

describe('unary', () => {
  // 1000 does not fill a 256-wide workgroup evenly; 1 is the size-1 edge.
  for (const op of Object.keys(UNARY_OPS) as UnaryOp[]) {
    for (const n of [1, 1000]) {
      it(`${op} n=${n} matches the CPU reference`, async () => {
        const xs = seeded(n, 7, -6, 6);
        const x = Tensor.fromArray(gpu, xs, [n], { label: 'x' });
        const y = unary(op, x, { alpha: -0.75 });
        const got = await y.toArray();
        expectClose(got, Array.from(xs, (v) => unaryRef(op, v, -0.75)), op === 'exp' ? { atol: 1e-6, rtol: 1e-5 } : TOL);
        x.release();
        y.release();
      });
    }
    it(`${op} backward matches the closed form and finite differences`, async () => {
      const n = 300;
      const xs = seeded(n, 11, -4, 4);
      const dys = seeded(n, 12);
      const x = Tensor.fromArray(gpu, xs, [n], { label: 'x' });
      const dy = Tensor.fromArray(gpu, dys, [n], { label: 'dy' });
      const dx = await unaryBackward(op, x, dy, { alpha: 1.5 }).toArray();
      expectClose(dx, Array.from(xs, (v, i) => dys[i] * unaryGradRef(op, v, 1.5)), TOL, `${op} dx`);
      // The Jacobian is diagonal: perturbing every element at once gives all partials from two forwards.
      const eps = 1e-2;
      const run = async (shift: number) => {
        const t = Tensor.fromArray(gpu, xs.map((v) => v + shift), [n]);
        const y = unary(op, t, { alpha: 1.5 });
        const out = await y.toArray();
        t.release();
        y.release();
        return out;
      };
      const [yp, ym] = [await run(eps), await run(-eps)];
      const fd = Array.from(yp, (v, i) => (dys[i] * (v - ym[i])) / (2 * eps));
      expectClose(dx, fd, { atol: 5e-3, rtol: 5e-3 }, `${op} dx vs finite differences`);
      x.release();
      dy.release();
    });
  }
});

describe('binary with broadcasting', () => {
  const cases: [number[], number[]][] = [
    [[3, 5], [3, 5]],
    [[2, 3, 4], [4]],
    [[2, 1, 4], [3, 1]],
    [[1], [7, 3]],
    [[2, 3, 1, 5], [1, 3, 6, 1]],
  ];
  for (const op of Object.keys(BINARY_OPS) as BinaryOp[]) {
    for (const [as, bs] of cases) {
      it(`${op} ${JSON.stringify(as)} ∘ ${JSON.stringify(bs)} forward and backward`, async () => {
        const na = as.reduce((p, d) => p * d, 1);
        const nb = bs.reduce((p, d) => p * d, 1);
        const av = seeded(na, 3);
        // Keep divisors away from 0.
        const bv = op === 'div' ? seeded(nb, 4, 0.5, 2) : seeded(nb, 4);
        const a = Tensor.fromArray(gpu, av, as, { label: 'a' });
        const b = Tensor.fromArray(gpu, bv, bs, { label: 'b' });
        const y = binary(op, a, b);
        const [want, outShape] = broadcastBinaryRef(op, av, as, bv, bs);
        expect(y.shape).toEqual(outShape);
        expectClose(await y.toArray(), want, TOL);

        // Gradient of L = sum(y · R) against finite differences of the GPU forward.
        const R = seeded(want.length, 5);
        const dy = Tensor.fromArray(gpu, R, outShape, { label: 'dy' });
        const { da, db } = binaryBackward(op, a, b, dy);
        expect(da.shape).toEqual(as);
        expect(db.shape).toEqual(bs);
        const loss = async ([x0, x1]: Float32Array[]) => {
          const ta = Tensor.fromArray(gpu, x0, as);
          const tb = Tensor.fromArray(gpu, x1, bs);
          const ty = binary(op, ta, tb);
          const l = dot(await ty.toArray(), R);
          [ta, tb, ty].forEach((t) => t.release());
          return l;
        };
        const pick = (n: number) => [...new Set([0, n - 1, Math.floor(n / 2)])];
        const fdA = await finiteDiff(loss, [av, bv], 0, pick(na));
        const fdB = await finiteDiff(loss, [av, bv], 1, pick(nb));
        const gA = await da.toArray();
        const gB = await db.toArray();
        expectClose(pick(na).map((i) => gA[i]), fdA, { atol: 2e-2, rtol: 2e-2 }, 'da vs FD');
        expectClose(pick(nb).map((i) => gB[i]), fdB, { atol: 2e-2, rtol: 2e-2 }, 'db vs FD');
        [a, b, y, dy, da, db].forEach((t) => t.release());
      });
    }
  }

  it('rejects shapes that do not broadcast, naming both', () => {
    const a = Tensor.zeros(gpu, [2, 3]);
    const b = Tensor.zeros(gpu, [4]);
    expect(() => binary('add', a, b)).toThrow(ShapeError);
    expect(() => binary('add', a, b)).toThrow(/\[2, 3\] and \[4\]/);
    a.release();
    b.release();
  });

  it('handles more elements than one dispatch dimension holds', async () => {
    // 65535 * 256 + 1000 elements forces the 2-D grid.
    const n = 65535 * 256 + 1000;
    const a = Tensor.fromArray(gpu, new Float32Array(n).fill(1.5), [n]);
    const b = Tensor.fromArray(gpu, Float32Array.from([2]), [1]);
    const y = await binary('mul', a, b).toArray();
    expect(y[0]).toBe(3);
    expect(y[n - 1]).toBe(3);
    expect(y[65535 * 256 + 3]).toBe(3);
    a.release();
    b.release();
  });
});
