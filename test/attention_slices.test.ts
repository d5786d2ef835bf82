// Attention on column slices of wider rows (fused projections): a [B, N, 3C] QKV output read in place, and K / V
// at arbitrary 4-aligned offsets of a shared [B, M, W] output, against the float64 reference on host-extracted
// operands; gradients through the autograd op (the fused Var's gradient is [dQ | dK | dV]).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { attention as attentionOp } from '../src/autograd/nn_ops.js';
import { Tape, Var } from '../src/autograd/tape.js';
import { attentionWithLse } from '../src/kernels/attention.js';
import { attentionBackwardRef, attentionRef } from '../src/reference/attention.js';
import { Tensor } from '../src/tensor.js';
import { type Tolerance, expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// As test/attention.test.ts: f32 sums of ≤ 16 terms per dot product, ~1e-6 observed.
const FWD_TOL: Tolerance = { atol: 1e-5, rtol: 1e-4 };
const BWD_TOL: Tolerance = { atol: 3e-5, rtol: 3e-4 };

const B = 2;
const heads = 2;
const hd = 8;
const C = heads * hd;
const dims = (N: number, M: number) => ({ B, N, M, heads, headDim: hd });

/** Columns off .. off + C of every row of a [rows, width] array. */
function columns(x: Float32Array, rows: number, width: number, off: number): Float32Array {
  const out = new Float32Array(rows * C);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * width + off, r * width + off + C), r * C);
  return out;
}

describe('attention slices', () => {
  it('fused QKV [B, N, 3C]: forward and the fused gradient', async () => {
    const N = 6;
    const W = 3 * C;
    const host = seeded(B * N * W, 3, -2, 2);
    const [q, k, v] = [0, C, 2 * C].map((o) => columns(host, B * N, W, o));
    const ref = attentionRef(q, k, v, dims(N, N));
    const dO = seeded(B * N * C, 4);
    const g = attentionBackwardRef(q, k, v, dO, dims(N, N));

    const qkv = new Var(Tensor.fromArray(gpu, host, [B, N, W]), true, 'qkv');
    const tape = new Tape();
    const o = tape.record(() => attentionOp(qkv, qkv, qkv, { heads, slices: { channels: C, q: 0, k: C, v: 2 * C } }));
    expect(o.shape).toEqual([B, N, C]);
    expectClose(await o.value.toArray(), ref.o, FWD_TOL, 'o');
    tape.backward(o, Tensor.fromArray(gpu, dO, [B, N, C]));
    const want = new Float64Array(B * N * W);
    for (let r = 0; r < B * N; r++)
      [g.dq, g.dk, g.dv].forEach((d, i) => want.set(d.subarray(r * C, (r + 1) * C), r * W + i * C));
    expectClose(await qkv.grad!.toArray(), want, BWD_TOL, 'd qkv');
    qkv.dispose();
    o.dispose();
  });

  it('K / V at offsets of a shared wider output (cross-attention batched over blocks)', async () => {
    const N = 5;
    const M = 7;
    const W = 56;
    const [kOff, vOff] = [8, 40];
    const host = seeded(B * M * W, 5, -2, 2);
    const qHost = seeded(B * N * C, 6, -2, 2);
    const k = columns(host, B * M, W, kOff);
    const v = columns(host, B * M, W, vOff);
    const ref = attentionRef(qHost, k, v, dims(N, M));
    const dO = seeded(B * N * C, 7);
    const g = attentionBackwardRef(qHost, k, v, dO, dims(N, M));

    const kv = new Var(Tensor.fromArray(gpu, host, [B, M, W]), false, 'kv');
    const q = new Var(Tensor.fromArray(gpu, qHost, [B, N, C]), true, 'q');
    const slices = { channels: C, k: kOff, v: vOff };
    const tape = new Tape();
    const o = tape.record(() => attentionOp(q, kv, kv, { heads, slices }));
    expectClose(await o.value.toArray(), ref.o, FWD_TOL, 'o');
    tape.backward(o, Tensor.fromArray(gpu, dO, [B, N, C]));
    expectClose(await q.grad!.toArray(), g.dq, BWD_TOL, 'dq');

    // A partial slice of a Var that needs a gradient has no gradient layout: refused up front.
    const kvGrad = new Var(kv.value.reshape(kv.shape), true, 'kv');
    expect(() => new Tape().record(() => attentionOp(q, kvGrad, kvGrad, { heads, slices }))).toThrow(ShapeError);
    for (const x of [kv, q, o, kvGrad]) x.dispose();
  });

  it('rejects misaligned or overflowing slices, naming the operand', () => {
    const t = Tensor.zeros(gpu, [1, 4, 32]);
    const q = Tensor.zeros(gpu, [1, 4, C]);
    expect(() => attentionWithLse(q, t, t, { heads, slices: { channels: C, k: 2, v: 16 } })).toThrow(/k slice at column 2/);
    expect(() => attentionWithLse(q, t, t, { heads, slices: { channels: C, k: 0, v: 20 } })).toThrow(/v slice at column 20/);
    t.release();
    q.release();
  });
});
