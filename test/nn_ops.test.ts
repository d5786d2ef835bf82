// Autograd ops added for the UNet that have no kernel test of their own: transpose (forward and backward) and the
// unfused LoRA linear on the matmul kernel's second operand pair (forward and dx, dA, dB against float64 references;
// the frozen base weight gets no gradient).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { loraLinear } from '../src/autograd/lora_ops.js';
import { transpose } from '../src/autograd/nn_ops.js';
import { mul, sumAllOp } from '../src/autograd/ops.js';
import { Tape, Var, tidy } from '../src/autograd/tape.js';
import { Tensor } from '../src/tensor.js';
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

const T = (data: Float32Array, shape: number[], grad = false, name = 't') => new Var(Tensor.fromArray(gpu, data, shape, { label: name }), grad, name);
const TOL = { atol: 1e-5, rtol: 1e-5 };

/** loss = sum(f(inputs) · R); returns the output and the gradients of the inputs that require one. */
async function run(f: () => Var, R: Float32Array, wrt: Var[]) {
  const tape = new Tape();
  const r = T(R, [R.length]);
  const { y, loss } = tape.record(() =>
    tidy(() => {
      const out = f();
      return { y: out, loss: sumAllOp(mul(out, reshapeLike(r, out))) };
    }),
  );
  const out = await y.value.toArray();
  const seed = Tensor.fromArray(gpu, [1], [1]);
  tape.backward(loss, seed);
  seed.release();
  const grads = await Promise.all(wrt.map((v) => v.grad?.toArray()));
  [y, loss, r].forEach((v) => v.dispose());
  return { out, grads };
}

function reshapeLike(r: Var, like: Var): Var {
  return new Var(r.value.reshape(like.shape));
}

describe('transpose', () => {
  for (const [B, R, C] of [
    [3, 5, 17],
    [2, 40, 33],
  ])
    it(`[${B}, ${R}, ${C}] → [${B}, ${C}, ${R}]; backward is the transpose of dy`, async () => {
      const xs = seeded(B * R * C, 1);
      const Rw = seeded(B * R * C, 2);
      const x = T(xs, [B, R, C], true, 'x');
      const { out, grads } = await run(() => transpose(x), Rw, [x]);
      const want = new Float32Array(B * R * C);
      const dx = new Float32Array(B * R * C);
      for (let b = 0; b < B; b++)
        for (let r = 0; r < R; r++)
          for (let c = 0; c < C; c++) {
            want[(b * C + c) * R + r] = xs[(b * R + r) * C + c];
            dx[(b * R + r) * C + c] = Rw[(b * C + c) * R + r];
          }
      expect(Array.from(out)).toEqual(Array.from(want));
      expect(Array.from(grads[0]!)).toEqual(Array.from(dx));
      x.dispose();
    });
});

describe('loraLinear', () => {
  for (const r of [4, 3]) {
    it(`x [2, 3, 8], W [6, 8] frozen, bias, r = ${r}, scale 0.5: y, dx, dA, dB match float64; no dW`, async () => {
      const [M, K, N, s] = [6, 8, 6, 0.5];
      const xs = seeded(M * K, 10);
      const ws = seeded(N * K, 11, -0.5, 0.5);
      const bs = seeded(N, 12);
      const as = seeded(r * K, 13, -0.5, 0.5);
      const Bs = seeded(N * r, 14, -0.5, 0.5);
      const Rw = seeded(M * N, 15);
      const x = T(xs, [2, 3, K], true, 'x');
      const w = T(ws, [N, K], false, 'W');
      const bias = T(bs, [N], false, 'bias');
      const a = T(as, [r, K], true, 'A');
      const b = T(Bs, [N, r], true, 'B');
      const { out, grads } = await run(() => loraLinear(x, w, bias, { a, b, scale: s }), Rw, [x, a, b]);
      expect(w.grad).toBeUndefined();
      expect(bias.grad).toBeUndefined();
      // float64 reference.
      const h = new Float64Array(M * r);
      for (let m = 0; m < M; m++) for (let j = 0; j < r; j++) for (let k = 0; k < K; k++) h[m * r + j] += s * xs[m * K + k] * as[j * K + k];
      const y = new Float64Array(M * N);
      for (let m = 0; m < M; m++)
        for (let n = 0; n < N; n++) {
          let v = bs[n];
          for (let k = 0; k < K; k++) v += xs[m * K + k] * ws[n * K + k];
          for (let j = 0; j < r; j++) v += h[m * r + j] * Bs[n * r + j];
          y[m * N + n] = v;
        }
      const dh = new Float64Array(M * r);
      for (let m = 0; m < M; m++) for (let j = 0; j < r; j++) for (let n = 0; n < N; n++) dh[m * r + j] += s * Rw[m * N + n] * Bs[n * r + j];
      const dx = new Float64Array(M * K);
      for (let m = 0; m < M; m++)
        for (let k = 0; k < K; k++) {
          let v = 0;
          for (let n = 0; n < N; n++) v += Rw[m * N + n] * ws[n * K + k];
          for (let j = 0; j < r; j++) v += dh[m * r + j] * as[j * K + k];
          dx[m * K + k] = v;
        }
      const dA = new Float64Array(r * K);
      for (let j = 0; j < r; j++) for (let k = 0; k < K; k++) for (let m = 0; m < M; m++) dA[j * K + k] += dh[m * r + j] * xs[m * K + k];
      const dB = new Float64Array(N * r);
      for (let n = 0; n < N; n++) for (let j = 0; j < r; j++) for (let m = 0; m < M; m++) dB[n * r + j] += Rw[m * N + n] * h[m * r + j];
      expectClose(out, y, TOL, 'y');
      expectClose(grads[0]!, dx, TOL, 'dx');
      expectClose(grads[1]!, dA, TOL, 'dA');
      expectClose(grads[2]!, dB, TOL, 'dB');
      [x, w, bias, a, b].forEach((v) => v.dispose());
    });
  }
});
