// The fused LoRA linear layer against the float64 reference and against the same computation composed from
// primitives (matmul + elementwise add / scale), its backward against the reference and finite differences, and
// the guarantee that W (frozen) never gets a gradient. All shapes run vec4 access (the GPU path): every contiguous dim
// a multiple of 4 (M is free); the scalar access code is shared with the matmul tests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { add, scale as scaleOp } from '../src/kernels/elementwise.js';
import { loraLinear, loraLinearBackward, loraLinearWithH } from '../src/kernels/lora_matmul.js';
import { matmul } from '../src/kernels/matmul.js';
import { loraLinearBackwardRef, loraLinearRef } from '../src/reference/matmul.js';
import { Tensor } from '../src/tensor.js';
import { dot, expectClose, finiteDiff, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// f32 sums of ≤ K + r products of values in [-1, 1] (see test/matmul.test.ts).
const TOL = { atol: 1e-5, rtol: 1e-4 };

interface Dims {
  lead: number[];
  K: number;
  N: number;
  r: number;
}

function setup(d: Dims, seed: number) {
  const M = d.lead.reduce((p, v) => p * v, 1);
  const xv = seeded(M * d.K, seed);
  const Wv = seeded(d.N * d.K, seed + 1);
  const bv = seeded(d.N, seed + 2);
  const Av = seeded(d.r * d.K, seed + 3);
  const Bv = seeded(d.N * d.r, seed + 4);
  const t = (v: Float32Array, s: number[], label: string) => Tensor.fromArray(gpu, v, s, { label });
  return {
    M,
    xv,
    Wv,
    bv,
    Av,
    Bv,
    x: t(xv, [...d.lead, d.K], 'x'),
    W: t(Wv, [d.N, d.K], 'W'),
    b: t(bv, [d.N], 'bias'),
    A: t(Av, [d.r, d.K], 'A'),
    B: t(Bv, [d.N, d.r], 'B'),
  };
}

describe('loraLinear forward', () => {
  const cases: [string, Dims][] = [
    ['rows [2, 5]', { lead: [2, 5], K: 8, N: 12, r: 4 }],
    ['rows [13]', { lead: [13], K: 16, N: 20, r: 8 }],
    // K = 1024 into 12 outputs: y and h run split over K (4 slices; bias and the low-rank pair in slice 0 only).
    ['rows [6], split-K', { lead: [6], K: 1024, N: 12, r: 4 }],
  ];
  for (const [name, d] of cases) {
    it(`${name}: x ${JSON.stringify([...d.lead, d.K])}, rank ${d.r}, matches the reference and the composed primitives`, async () => {
      const s = setup(d, 21);
      const sc = 0.75;
      const { y, h } = loraLinearWithH(s.x, s.W, s.b, s.A, s.B, sc);
      expect(y.shape).toEqual([...d.lead, d.N]);
      expect(h.shape).toEqual([s.M, d.r]);
      const want = loraLinearRef(s.xv, s.M, d.K, s.Wv, d.N, s.bv, s.Av, s.Bv, d.r, sc);
      const got = await y.toArray();
      expectClose(got, want, TOL, 'y vs reference');

      // y = (x·Wᵀ + b) + scale·((x·Aᵀ)·Bᵀ), one primitive at a time.
      const xW = matmul(s.x, s.W, { transB: true });
      const base = add(xW, s.b);
      const xA = matmul(s.x, s.A, { transB: true });
      const low = matmul(xA, s.B, { transB: true });
      const scaled = scaleOp(low, sc);
      const composed = add(base, scaled);
      expectClose(got, await composed.toArray(), TOL, 'y vs composed primitives');
      // Without a bias.
      const y0 = loraLinear(s.x, s.W, null, s.A, s.B, sc);
      expectClose(await y0.toArray(), loraLinearRef(s.xv, s.M, d.K, s.Wv, d.N, undefined, s.Av, s.Bv, d.r, sc), TOL, 'y without bias');
      [y, h, y0, xW, base, xA, low, scaled, composed, s.x, s.W, s.b, s.A, s.B].forEach((t) => t.release());
    });
  }

  it('rejects mismatched shapes with a ShapeError naming both', () => {
    const z = (sh: number[]) => Tensor.zeros(gpu, sh);
    const [x, W, A, B, b] = [z([3, 8]), z([5, 8]), z([2, 8]), z([5, 2]), z([5])];
    expect(() => loraLinear(x, z([5, 7]), b, A, B, 1)).toThrow(ShapeError);
    expect(() => loraLinear(x, z([5, 7]), b, A, B, 1)).toThrow(/W \[5, 7\].*x \[3, 8\]/);
    expect(() => loraLinear(x, W, b, z([2, 6]), B, 1)).toThrow(/A \[2, 6\].*x \[3, 8\]/);
    expect(() => loraLinear(x, W, b, A, z([5, 3]), 1)).toThrow(/B \[5, 3\].*W \[5, 8\].*A \[2, 8\]/);
    expect(() => loraLinear(x, W, z([4]), A, B, 1)).toThrow(/bias \[4\]/);
    expect(() => loraLinearBackward(x, W, A, B, 1, z([3, 4]))).toThrow(/dy \[3, 4\].*\[3, 5\]/);
    [x, W, A, B, b].forEach((t) => t.release());
  });
});

describe('loraLinear backward', () => {
  // N·K = 96 elements is unlike every other buffer size here (80, 32, 48, 40, 120, 12), so an allocation of that
  // size would be a dW.
  const d: Dims = { lead: [2, 5], K: 8, N: 12, r: 4 };

  it('matches the reference and finite differences for dx, dA, dB, db', async () => {
    const s = setup(d, 31);
    const sc = 0.5;
    const R = seeded(s.M * d.N, 36);
    const dy = Tensor.fromArray(gpu, R, [...d.lead, d.N], { label: 'dy' });
    const { y, h } = loraLinearWithH(s.x, s.W, s.b, s.A, s.B, sc);
    const g1 = loraLinearBackward(s.x, s.W, s.A, s.B, sc, dy, { h, bias: true });
    const g2 = loraLinearBackward(s.x, s.W, s.A, s.B, sc, dy); // recomputes h, no db
    const want = loraLinearBackwardRef(s.xv, s.M, d.K, s.Wv, d.N, s.Av, s.Bv, d.r, sc, R);
    expect(g1.dx.shape).toEqual(s.x.shape);
    expect(g1.dA.shape).toEqual([d.r, d.K]);
    expect(g1.dB.shape).toEqual([d.N, d.r]);
    for (const g of [g1, g2]) {
      expectClose(await g.dx.toArray(), want.dx, TOL, 'dx');
      expectClose(await g.dA.toArray(), want.dA, TOL, 'dA');
      expectClose(await g.dB.toArray(), want.dB, TOL, 'dB');
    }
    expectClose(await g1.db!.toArray(), want.db, TOL, 'db');
    expect(g2.db).toBeUndefined();

    // L = sum(y · R) by central differences of the GPU forward.
    const loss = async ([xv, Av, Bv, bv]: Float32Array[]) => {
      const ts = [Tensor.fromArray(gpu, xv, s.x.shape), Tensor.fromArray(gpu, Av, [d.r, d.K]), Tensor.fromArray(gpu, Bv, [d.N, d.r]), Tensor.fromArray(gpu, bv, [d.N])];
      const yy = loraLinear(ts[0], s.W, ts[3], ts[1], ts[2], sc);
      const l = dot(await yy.toArray(), R);
      [...ts, yy].forEach((t) => t.release());
      return l;
    };
    const inputs = [s.xv, s.Av, s.Bv, s.bv];
    const pick = (n: number) => [...new Set([0, n - 1, Math.floor(n / 3), Math.floor((2 * n) / 3)])];
    const fdTol = { atol: 2e-2, rtol: 2e-2 };
    const grads = [await g1.dx.toArray(), await g1.dA.toArray(), await g1.dB.toArray(), await g1.db!.toArray()];
    for (const [i, name] of ['dx', 'dA', 'dB', 'db'].entries()) {
      const idx = pick(inputs[i].length);
      expectClose(idx.map((j) => grads[i][j]), await finiteDiff(loss, inputs, i, idx), fdTol, `${name} vs FD`);
    }
    for (const t of [y, h, dy, g1.dx, g1.dA, g1.dB, g1.db, g2.dx, g2.dA, g2.dB, s.x, s.W, s.b, s.A, s.B]) t?.release();
  });

  it('never computes a gradient for W', async () => {
    const s = setup(d, 41);
    const dy = Tensor.fromArray(gpu, seeded(s.M * d.N, 42), [...d.lead, d.N]);
    const sizes: number[] = [];
    const pool = gpu.pool as unknown as { acquire: (bytes: number, label: string) => unknown };
    const acquire = pool.acquire.bind(pool);
    pool.acquire = (bytes: number, label: string) => {
      sizes.push(bytes);
      return acquire(bytes, label);
    };
    let grads;
    try {
      grads = loraLinearBackward(s.x, s.W, s.A, s.B, 0.5, dy, { bias: true });
    } finally {
      pool.acquire = acquire;
    }
    expect(Object.keys(grads).sort()).toEqual(['dA', 'dB', 'db', 'dx']);
    expect(sizes.length).toBeGreaterThan(0);
    expect(sizes, 'no buffer the size of W').not.toContain(d.N * d.K * 4);
    Object.values(grads).forEach((t) => t?.release());
    [dy, s.x, s.W, s.b, s.A, s.B].forEach((t) => t.release());
  });
});
