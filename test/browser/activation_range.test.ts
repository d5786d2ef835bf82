// Activations at large |x| (elementwise forward and backward, and the matmul epilogue): finite and equal to the
// float64 reference. Runs under vitest and in the browser run: WGSL's tanh() on Chromium's SwiftShader returns NaN
// for |x| ≳ 90 (its exp overflows), so an unclamped gelu_tanh gives NaN from |x| ≈ 13 there, where lavapipe is fine.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../runtime/device.js';
import { type UnaryOp, unary, unaryBackward } from '../../src/kernels/elementwise.js';
import { type Activation, matmul } from '../../src/kernels/matmul.js';
import { unaryGradRef, unaryRef } from '../../src/reference/elementwise.js';
import { Tensor } from '../../src/tensor.js';
import { expectClose, testGpu } from '../helpers.js';

const XS = [-1e4, -200, -100, -50, -20, -14, -13, -10, -5, -1, -1e-3, 0, 1e-3, 1, 5, 10, 13, 14, 20, 50, 100, 200, 1e4];
const OPS: (UnaryOp & Activation)[] = ['silu', 'gelu_tanh', 'gelu_erf', 'quick_gelu'];
/**
 * float32 vs float64: a few ulp of |y|, plus absolute error where f32 cancels (1 + tanh(u) at u ≈ −4: terms of
 * size 1, result 1e-6).
 */
const TOL = { atol: 1e-5, rtol: 1e-5 };

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

const finite = (a: ArrayLike<number>, what: string) => {
  const bad = XS.filter((_, i) => !Number.isFinite(a[i]));
  expect(bad, `${what}: inputs giving non-finite outputs`).toEqual([]);
};

describe('activations at large |x|', () => {
  for (const op of OPS) {
    it(`${op}: elementwise forward and backward are finite and match float64 for |x| up to 1e4`, async () => {
      const x = Tensor.fromArray(gpu, XS, [XS.length], { label: 'x' });
      const dy = Tensor.fromArray(gpu, XS.map(() => 1), [XS.length], { label: 'dy' });
      const y = unary(op, x);
      const dx = unaryBackward(op, x, dy);
      const [yv, dxv] = [await y.toArray(), await dx.toArray()];
      finite(yv, `${op} forward`);
      finite(dxv, `${op} backward`);
      expectClose(yv, XS.map((v) => unaryRef(op, Math.fround(v))), TOL, `${op} forward`);
      expectClose(dxv, XS.map((v) => unaryGradRef(op, Math.fround(v))), TOL, `${op} backward`);
      [x, dy, y, dx].forEach((t) => t.release());
    });

    it(`${op}: matmul epilogue is finite and matches float64 for |x| up to 1e4`, async () => {
      // [n, 1] · [1, 1] = x exactly, then the fused activation.
      const a = Tensor.fromArray(gpu, XS, [XS.length, 1], { label: 'x' });
      const b = Tensor.fromArray(gpu, [1], [1, 1], { label: 'one' });
      const y = matmul(a, b, { activation: op });
      const yv = await y.toArray();
      finite(yv, `matmul + ${op}`);
      expectClose(yv, XS.map((v) => unaryRef(op, Math.fround(v))), TOL, `matmul + ${op}`);
      [a, b, y].forEach((t) => t.release());
    });
  }
});
