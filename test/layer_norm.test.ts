// Parity of layer norm (with / without affine terms) with the float64 CPU reference, numerical soundness on rows
// with a large mean, and finite-difference gradient checks for x, weight and bias.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { DTypeError, ShapeError } from '../runtime/errors.js';
import { layerNorm, layerNormBackward, planLayerNorm } from '../src/kernels/layer_norm.js';
import { layerNormBackwardRef, layerNormRef } from '../src/reference/layer_norm.js';
import { Tensor, numel } from '../src/tensor.js';
import { type Tolerance, dot, expectClose, finiteDiff, seeded, seededNormal as normal, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// Outputs are O(1); f32 row means / variances of O(1) inputs carry relative errors ~1e-6.
const TOL: Tolerance = { atol: 1e-5, rtol: 1e-5 };
const GRAD_TOL: Tolerance = { atol: 2e-5, rtol: 1e-4 };

interface Case {
  shape: number[];
  weight: boolean;
  bias: boolean;
  eps: number;
  plan?: { T?: number; chunkRows?: number };
  why: string;
}

const CASES: Case[] = [
  { shape: [1, 1], weight: true, bias: true, eps: 1e-5, why: 'D = 1: var 0, y = b' },
  { shape: [3, 5], weight: true, bias: true, eps: 1e-5, why: 'tiny rows' },
  { shape: [7, 320], weight: false, bias: false, eps: 1e-6, why: 'no affine' },
  { shape: [2, 3, 1000], weight: true, bias: false, eps: 1e-5, why: 'rank 3, weight only, D not a power of two' },
  { shape: [5, 2048], weight: false, bias: true, eps: 1e-5, why: 'bias only, D = 2048' },
  { shape: [300, 7], weight: true, bias: true, eps: 1e-6, why: 'one thread per row, last workgroup part full' },
  { shape: [9, 1280], weight: true, bias: true, eps: 1e-6, plan: { T: 4, chunkRows: 2 }, why: '4 threads per row, row chunks of 2' },
  { shape: [1, 640], weight: true, bias: true, eps: 1e-5, why: 'single row' },
];

const release = (...ts: (Tensor | undefined)[]) => ts.forEach((t) => t?.release());

function inputs(k: Case, seed: number) {
  const D = k.shape[k.shape.length - 1];
  return {
    xs: seeded(numel(k.shape), seed, -2, 2),
    ws: k.weight ? seeded(D, seed + 1, 0.5, 1.5) : null,
    bs: k.bias ? seeded(D, seed + 2, -0.5, 0.5) : null,
  };
}

function upload(xs: Float32Array, ws: Float32Array | null, bs: Float32Array | null, shape: number[]) {
  const D = shape[shape.length - 1];
  return {
    x: Tensor.fromArray(gpu, xs, shape, { label: 'x' }),
    weight: ws ? Tensor.fromArray(gpu, ws, [D], { label: 'weight' }) : undefined,
    bias: bs ? Tensor.fromArray(gpu, bs, [D], { label: 'bias' }) : undefined,
  };
}

const label = (k: Case) => `${JSON.stringify(k.shape)}${k.weight ? ' +w' : ''}${k.bias ? ' +b' : ''} eps=${k.eps} (${k.why})`;

describe('layer_norm forward', () => {
  CASES.forEach((k, i) => {
    it(label(k), async () => {
      const { xs, ws, bs } = inputs(k, 10 + i);
      const { x, weight, bias } = upload(xs, ws, bs, k.shape);
      const D = k.shape[k.shape.length - 1];
      const M = xs.length / D;
      const { y, mean, rstd } = layerNorm(x, { weight, bias, eps: k.eps, plan: k.plan });
      expect(y.shape).toEqual(k.shape);
      expect(mean.shape).toEqual(k.shape.slice(0, -1));
      const want = layerNormRef(xs, M, D, ws, bs, k.eps);
      expectClose(await y.toArray(), want.y, TOL, 'y');
      expectClose(await mean.toArray(), want.mean, { atol: 1e-6, rtol: 1e-5 }, 'mean');
      expectClose(await rstd.toArray(), want.rstd, { atol: 0, rtol: 2e-5 }, 'rstd');
      release(x, weight, bias, y, mean, rstd);
    });
  });

  it('plans a thread segment per row sized to the row', () => {
    const p = planLayerNorm(gpu, 4096, 640);
    expect(p.T * p.R).toBe(p.wg);
    expect(p.T).toBeGreaterThanOrEqual(64);
    expect(planLayerNorm(gpu, 300, 7).T).toBe(1);
    expect(planLayerNorm(gpu, 4096, 640).chunks).toBeGreaterThan(1);
    expect(() => planLayerNorm(gpu, 4, 4, { T: 3 })).toThrow(ShapeError);
  });

  it('large mean 1000 + N(0, 1), rows of 1280', async () => {
    const M = 16;
    const D = 1280;
    const xs = normal(M * D, 3, 1000, 1);
    const ws = seeded(D, 4, 0.5, 1.5);
    const bs = seeded(D, 5, -0.5, 0.5);
    const { x, weight, bias } = upload(xs, ws, bs, [M, D]);
    const { y, mean, rstd } = layerNorm(x, { weight, bias, eps: 1e-6 });
    const want = layerNormRef(xs, M, D, ws, bs, 1e-6);
    // f32 x − μ near 1000 has an ulp of 6e-5: a few of them, far below the naive formula's error (checked).
    expectClose(await y.toArray(), want.y, { atol: 3e-4, rtol: 1e-4 }, 'y');
    expectClose(await rstd.toArray(), want.rstd, { atol: 0, rtol: 1e-4 }, 'rstd');
    const f = Math.fround;
    let worst = 0;
    for (let m = 0; m < M; m++) {
      let s = 0;
      let s2 = 0;
      for (let d = 0; d < D; d++) {
        s = f(s + xs[m * D + d]);
        s2 = f(s2 + f(xs[m * D + d] ** 2));
      }
      const mu = f(s / D);
      const naive = 1 / Math.sqrt(Math.max(0, f(f(s2 / D) - f(mu * mu))) + 1e-6);
      worst = Math.max(worst, Math.abs(naive / want.rstd[m] - 1));
    }
    expect(worst).toBeGreaterThan(1e-2);
    release(x, weight, bias, y, mean, rstd);
  });

  it('empty leading dim gives empty outputs', async () => {
    const x = Tensor.empty(gpu, [0, 8]);
    const { y, mean, rstd } = layerNorm(x);
    expect(y.shape).toEqual([0, 8]);
    expect(mean.shape).toEqual([0]);
    await gpu.sync();
    release(x, y, mean, rstd);
  });

  it('rejects bad shapes and dtypes, naming expected and received', () => {
    const x = Tensor.zeros(gpu, [4, 6]);
    const w5 = Tensor.zeros(gpu, [5]);
    const w6 = Tensor.zeros(gpu, [6]);
    expect(() => layerNorm(x, { weight: w5 })).toThrow(ShapeError);
    expect(() => layerNorm(x, { weight: w5 })).toThrow(/shape \[5\], expected \[6\]/);
    expect(() => layerNorm(x, { bias: w5 })).toThrow(ShapeError);
    expect(() => layerNorm(x, { eps: Number.NaN })).toThrow(ShapeError);
    const m3 = Tensor.zeros(gpu, [3]);
    const m4 = Tensor.zeros(gpu, [4]);
    expect(() => layerNormBackward(x, x, { mean: m3, rstd: m4 })).toThrow(/shape \[3\], expected \[4\]/);
    expect(() => layerNormBackward(w6, x, { mean: m4, rstd: m4 })).toThrow(ShapeError);
    if (gpu.hasF16) {
      const h = Tensor.zeros(gpu, [4, 6], 'f16');
      // f16 is a supported dtype (test/f16_numerics.test.ts); mixing dtypes is refused.
      expect(() => layerNorm(h, { weight: w6 })).toThrow(DTypeError);
      expect(() => layerNorm(x, { weight: Tensor.zeros(gpu, [6], 'f16') })).toThrow(/dtype f16, expected f32/);
      h.release();
    }
    release(x, w5, w6, m3, m4);
  });
});

describe('layer_norm backward', () => {
  CASES.forEach((k, i) => {
    it(`${label(k)} matches the float64 gradients`, async () => {
      const { xs, ws, bs } = inputs(k, 40 + i);
      const dys = seeded(xs.length, 70 + i);
      const { x, weight, bias } = upload(xs, ws, bs, k.shape);
      const dy = Tensor.fromArray(gpu, dys, k.shape, { label: 'dy' });
      const D = k.shape[k.shape.length - 1];
      const M = xs.length / D;
      const fwd = layerNorm(x, { weight, bias, eps: k.eps, plan: k.plan });
      const g = layerNormBackward(dy, x, fwd, { weight, bias, plan: k.plan });
      const want = layerNormBackwardRef(dys, xs, M, D, ws, k.eps);
      expectClose(await g.dx.toArray(), want.dx, GRAD_TOL, 'dx');
      expect(g.dweight === undefined).toBe(!k.weight);
      expect(g.dbias === undefined).toBe(!k.bias);
      // Column sums over M rows of O(1) terms.
      const sumTol = { atol: 1e-6 * M + 1e-5, rtol: 1e-4 };
      if (g.dweight) expectClose(await g.dweight.toArray(), want.dweight, sumTol, 'dweight');
      if (g.dbias) expectClose(await g.dbias.toArray(), want.dbias, sumTol, 'dbias');
      release(x, weight, bias, dy, fwd.y, fwd.mean, fwd.rstd, g.dx, g.dweight, g.dbias);
    });
  });

  it('large mean 1000 + N(0, 1): gradients keep f32 accuracy', async () => {
    const M = 8;
    const D = 640;
    const xs = normal(M * D, 13, 1000, 1);
    const ws = seeded(D, 14, 0.5, 1.5);
    const dys = seeded(M * D, 15);
    const { x, weight } = upload(xs, ws, null, [M, D]);
    const dy = Tensor.fromArray(gpu, dys, [M, D]);
    const fwd = layerNorm(x, { weight, eps: 1e-6 });
    const g = layerNormBackward(dy, x, fwd, { weight });
    const want = layerNormBackwardRef(dys, xs, M, D, ws, 1e-6);
    expectClose(await g.dx.toArray(), want.dx, { atol: 5e-4, rtol: 1e-3 }, 'dx');
    expectClose(await g.dweight!.toArray(), want.dweight, { atol: 2e-3, rtol: 1e-3 }, 'dweight');
    release(x, weight, dy, fwd.y, fwd.mean, fwd.rstd, g.dx, g.dweight);
  });

  it('finite differences of L = sum(y·R) for x, weight, bias', async () => {
    const shape = [4, 37];
    const D = 37;
    const xs = seeded(numel(shape), 81, -2, 2);
    const ws = seeded(D, 82, 0.5, 1.5);
    const bs = seeded(D, 83, -0.5, 0.5);
    const R = seeded(xs.length, 84);
    const { x, weight, bias } = upload(xs, ws, bs, shape);
    const dy = Tensor.fromArray(gpu, R, shape);
    const fwd = layerNorm(x, { weight, bias });
    const g = layerNormBackward(dy, x, fwd, { weight, bias });
    const loss = async ([x0, w0, b0]: Float32Array[]) => {
      const t = upload(x0, w0, b0, shape);
      const out = layerNorm(t.x, { weight: t.weight, bias: t.bias });
      const l = dot(await out.y.toArray(), R);
      release(t.x, t.weight, t.bias, out.y, out.mean, out.rstd);
      return l;
    };
    const all = [xs, ws, bs];
    const xi = [0, 17, 36, 37, 100, xs.length - 1];
    const di = [0, 11, 36];
    const fdTol = { atol: 5e-3, rtol: 5e-3 };
    const gx = await g.dx.toArray();
    const gw = await g.dweight!.toArray();
    const gb = await g.dbias!.toArray();
    expectClose(xi.map((i) => gx[i]), await finiteDiff(loss, all, 0, xi), fdTol, 'dx vs FD');
    expectClose(di.map((i) => gw[i]), await finiteDiff(loss, all, 1, di), fdTol, 'dweight vs FD');
    expectClose(di.map((i) => gb[i]), await finiteDiff(loss, all, 2, di), fdTol, 'dbias vs FD');
    release(x, weight, bias, dy, fwd.y, fwd.mean, fwd.rstd, g.dx, g.dweight, g.dbias);
  });
});
