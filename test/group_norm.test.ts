// Parity of group norm (± fused SiLU) with the float64 CPU reference, the fused SiLU against group norm then
// elementwise silu, numerical soundness on groups with a large mean, and finite-difference gradient checks.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { DTypeError, ShapeError } from '../runtime/errors.js';
import { silu as siluOp, unaryBackward } from '../src/kernels/elementwise.js';
import { groupNorm, groupNormBackward, planGroupNorm } from '../src/kernels/group_norm.js';
import { groupNormBackwardRef, groupNormRef } from '../src/reference/group_norm.js';
import { Tensor, numel } from '../src/tensor.js';
import { type Tolerance, dot, expectClose, finiteDiff, seeded, seededNormal as normal, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// Outputs are O(1) (normalized, γ in [0.5, 1.5]); f32 mean / variance of inputs of magnitude ≲ 1 carry relative
// errors ~1e-6, and exp in SiLU a few ulp.
const TOL: Tolerance = { atol: 1e-5, rtol: 1e-5 };
// Gradients: sums over a group of O(1) terms, compared with float64.
const GRAD_TOL: Tolerance = { atol: 2e-5, rtol: 1e-4 };

interface Case {
  shape: number[];
  G: number;
  eps: number;
  silu: boolean;
  plan?: { chunkLen?: number; rowChunkLen?: number };
  why: string;
}

const CASES: Case[] = [
  { shape: [1, 6, 5, 7], G: 3, eps: 1e-5, silu: false, why: 'odd H, W; C = 6, G = 3' },
  { shape: [2, 64, 5, 7], G: 32, eps: 1e-6, silu: true, why: 'B = 2, 32 groups of 2 channels, SiLU' },
  { shape: [2, 64, 5, 7], G: 32, eps: 1e-5, silu: false, why: 'B = 2, 32 groups, no SiLU' },
  { shape: [3, 10, 9, 11], G: 5, eps: 1e-6, silu: true, why: 'B = 3, group of 198 (not a multiple of the workgroup)' },
  { shape: [2, 4, 1, 1], G: 2, eps: 1e-5, silu: false, why: 'H = W = 1: groups of 2 elements' },
  { shape: [1, 1, 1, 1], G: 1, eps: 1e-5, silu: false, why: 'one element: var 0, y = β' },
  { shape: [4, 8], G: 4, eps: 1e-5, silu: true, why: 'rank 2 (no spatial dims)' },
  { shape: [2, 6, 3], G: 6, eps: 1e-6, silu: false, why: 'rank 3, one channel per group' },
  { shape: [1, 12, 37, 29], G: 1, eps: 1e-5, silu: true, why: 'G = 1: one group of 12876, several chunks' },
  { shape: [2, 8, 33, 31], G: 2, eps: 1e-5, silu: false, plan: { chunkLen: 7, rowChunkLen: 5 }, why: 'tiny chunks: 585 partials a group (> workgroup)' },
  { shape: [2, 300, 1, 3], G: 30, eps: 1e-5, silu: true, why: 'C = 300 > workgroup: several bwd_params workgroups' },
];

function makeInputs(shape: number[], seed: number) {
  const C = shape[1];
  return {
    xs: seeded(numel(shape), seed, -2, 2),
    gs: seeded(C, seed + 1, 0.5, 1.5),
    bs: seeded(C, seed + 2, -0.5, 0.5),
  };
}

function upload(xs: Float32Array, gs: Float32Array, bs: Float32Array, shape: number[]) {
  return {
    x: Tensor.fromArray(gpu, xs, shape, { label: 'x' }),
    gamma: Tensor.fromArray(gpu, gs, [shape[1]], { label: 'gamma' }),
    beta: Tensor.fromArray(gpu, bs, [shape[1]], { label: 'beta' }),
  };
}

const release = (...ts: Tensor[]) => ts.forEach((t) => t.release());

describe('group_norm forward', () => {
  CASES.forEach((k, i) => {
    it(`${JSON.stringify(k.shape)} G=${k.G} eps=${k.eps}${k.silu ? ' +silu' : ''} (${k.why})`, async () => {
      const { xs, gs, bs } = makeInputs(k.shape, 100 + i);
      const { x, gamma, beta } = upload(xs, gs, bs, k.shape);
      const { y, mean, rstd } = groupNorm(x, gamma, beta, { groups: k.G, eps: k.eps, silu: k.silu, plan: k.plan });
      expect(y.shape).toEqual(k.shape);
      expect(mean.shape).toEqual([k.shape[0], k.G]);
      const want = groupNormRef(xs, k.shape, gs, bs, k.G, k.eps, k.silu);
      expectClose(await y.toArray(), want.y, TOL, 'y');
      expectClose(await mean.toArray(), want.mean, { atol: 1e-6, rtol: 1e-5 }, 'mean');
      expectClose(await rstd.toArray(), want.rstd, { atol: 0, rtol: 2e-5 }, 'rstd');
      release(x, gamma, beta, y, mean, rstd);
    });
  });

  it('plans several workgroups per group for the SDXL shape, and many partials for tiny chunks', () => {
    const p = planGroupNorm(gpu, 1, 320, 128 * 128, 32);
    expect(p.chunks).toBeGreaterThanOrEqual(16);
    expect(p.chunks * p.chunkLen).toBeGreaterThanOrEqual(10 * 128 * 128);
    expect(p.rowChunks).toBeGreaterThan(1);
    const t = planGroupNorm(gpu, 2, 8, 33 * 31, 2, { chunkLen: 7, rowChunkLen: 5 });
    expect(t.chunks).toBe(Math.ceil((4 * 33 * 31) / 7));
    expect(t.chunks).toBeGreaterThan(t.wg);
  });

  it('fused SiLU equals group norm then elementwise silu', async () => {
    const shape = [2, 64, 9, 7];
    const { xs, gs, bs } = makeInputs(shape, 7);
    const { x, gamma, beta } = upload(xs, gs, bs, shape);
    const fused = groupNorm(x, gamma, beta, { groups: 32, eps: 1e-6, silu: true });
    const plain = groupNorm(x, gamma, beta, { groups: 32, eps: 1e-6 });
    const composed = siluOp(plain.y);
    // Same arithmetic up to the compiler's contraction of the affine and the sigmoid: a couple of ulp.
    expectClose(await fused.y.toArray(), await composed.toArray(), { atol: 1e-6, rtol: 1e-6 }, 'fused vs composed');
    release(x, gamma, beta, fused.y, fused.mean, fused.rstd, plain.y, plain.mean, plain.rstd, composed);
  });

  // Mean 1000, std 1: E[x²] − E[x]² in f32 loses the variance (ulp of 1e6 is 0.06), a two-pass/Welford method
  // keeps it. 1×32×64×64 with G = 32 has groups of 4096 elements over several chunks; G = 1 one group of 131072.
  for (const G of [32, 1]) {
    it(`large mean 1000 + N(0, 1), 1x32x64x64, G=${G}`, async () => {
      const shape = [1, 32, 64, 64];
      const xs = normal(numel(shape), 21 + G, 1000, 1);
      const gs = seeded(32, 5, 0.5, 1.5);
      const bs = seeded(32, 6, -0.5, 0.5);
      const { x, gamma, beta } = upload(xs, gs, bs, shape);
      const { y, mean, rstd } = groupNorm(x, gamma, beta, { groups: G, eps: 1e-6 });
      const want = groupNormRef(xs, shape, gs, bs, G, 1e-6);
      // f32 x − μ near 1000 has an ulp of 6e-5; the tolerance allows a few of them, and nothing like the naive
      // formula's error (checked below so this test can fail).
      const tol: Tolerance = { atol: 3e-4, rtol: 1e-4 };
      expectClose(await y.toArray(), want.y, tol, 'y');
      expectClose(await rstd.toArray(), want.rstd, { atol: 0, rtol: 1e-4 }, 'rstd');
      expectClose(await mean.toArray(), want.mean, { atol: 0, rtol: 1e-6 }, 'mean');
      // The naive single-pass f32 formula on the same data misses the tolerance.
      const f = Math.fround;
      const N = xs.length / G;
      let worst = 0;
      for (let g = 0; g < G; g++) {
        let s = 0;
        let s2 = 0;
        for (let i = g * N; i < (g + 1) * N; i++) {
          s = f(s + xs[i]);
          s2 = f(s2 + f(xs[i] * xs[i]));
        }
        const mu = f(s / N);
        const naiveRstd = 1 / Math.sqrt(Math.max(0, f(f(s2 / N) - f(mu * mu))) + 1e-6);
        worst = Math.max(worst, Math.abs(naiveRstd / want.rstd[g] - 1));
      }
      expect(worst).toBeGreaterThan(1e-2);
      release(x, gamma, beta, y, mean, rstd);
    });
  }

  it('empty batch gives empty outputs', async () => {
    const x = Tensor.empty(gpu, [0, 4, 3, 3]);
    const gamma = Tensor.zeros(gpu, [4]);
    const beta = Tensor.zeros(gpu, [4]);
    const { y, mean, rstd } = groupNorm(x, gamma, beta, { groups: 2 });
    expect(y.shape).toEqual([0, 4, 3, 3]);
    expect(mean.shape).toEqual([0, 2]);
    await gpu.sync();
    release(x, gamma, beta, y, mean, rstd);
  });

  it('rejects bad shapes and dtypes, naming expected and received', () => {
    const x = Tensor.zeros(gpu, [2, 6, 3, 3]);
    const g6 = Tensor.zeros(gpu, [6]);
    const g5 = Tensor.zeros(gpu, [5]);
    expect(() => groupNorm(x, g6, g6, { groups: 4 })).toThrow(ShapeError);
    expect(() => groupNorm(x, g6, g6, { groups: 4 })).toThrow(/C = 6.*groups = 4/);
    expect(() => groupNorm(x, g5, g6, { groups: 3 })).toThrow(/shape \[5\], expected \[6\]/);
    expect(() => groupNorm(x, g6, g5, { groups: 3 })).toThrow(ShapeError);
    const v = Tensor.zeros(gpu, [6]);
    expect(() => groupNorm(v, g6, g6, { groups: 3 })).toThrow(/rank >= 2/);
    expect(() => groupNorm(x, g6, g6, { groups: 3, eps: -1 })).toThrow(ShapeError);
    const m = Tensor.zeros(gpu, [2, 3]);
    const bad = Tensor.zeros(gpu, [2, 2]);
    expect(() => groupNormBackward(x, x, g6, g6, { mean: bad, rstd: m }, { groups: 3 })).toThrow(/shape \[2, 2\], expected \[2, 3\]/);
    expect(() => groupNormBackward(g6, x, g6, g6, { mean: m, rstd: m }, { groups: 3 })).toThrow(ShapeError);
    if (gpu.hasF16) {
      const h = Tensor.zeros(gpu, [2, 6, 3, 3], 'f16');
      expect(() => groupNorm(h, g6, g6, { groups: 3 })).toThrow(DTypeError);
      // f16 is a supported dtype (test/f16_numerics.test.ts); mixing dtypes is refused.
      expect(() => groupNorm(h, g6, g6, { groups: 3 })).toThrow(/dtype f32, expected f16/);
      h.release();
    }
    release(x, g6, g5, v, m, bad);
  });
});

describe('group_norm backward', () => {
  CASES.forEach((k, i) => {
    it(`${JSON.stringify(k.shape)} G=${k.G}${k.silu ? ' +silu' : ''} matches the float64 gradients (${k.why})`, async () => {
      const { xs, gs, bs } = makeInputs(k.shape, 200 + i);
      const dys = seeded(xs.length, 300 + i);
      const { x, gamma, beta } = upload(xs, gs, bs, k.shape);
      const dy = Tensor.fromArray(gpu, dys, k.shape, { label: 'dy' });
      const fwd = groupNorm(x, gamma, beta, { groups: k.G, eps: k.eps, silu: k.silu, plan: k.plan });
      const g = groupNormBackward(dy, x, gamma, beta, fwd, { groups: k.G, silu: k.silu, plan: k.plan });
      const want = groupNormBackwardRef(dys, xs, k.shape, gs, bs, k.G, k.eps, k.silu);
      expectClose(await g.dx.toArray(), want.dx, GRAD_TOL, 'dx');
      const sumTol = { atol: 1e-6 * (xs.length / k.shape[1]) + 1e-5, rtol: 1e-4 };
      expectClose(await g.dgamma.toArray(), want.dgamma, sumTol, 'dgamma');
      expectClose(await g.dbeta.toArray(), want.dbeta, sumTol, 'dbeta');
      release(x, gamma, beta, dy, fwd.y, fwd.mean, fwd.rstd, g.dx, g.dgamma, g.dbeta);
    });
  });

  it('large mean 1000 + N(0, 1): gradients keep f32 accuracy', async () => {
    const shape = [1, 32, 32, 32];
    const xs = normal(numel(shape), 77, 1000, 1);
    const gs = seeded(32, 8, 0.5, 1.5);
    const bs = seeded(32, 9, -0.5, 0.5);
    const dys = seeded(xs.length, 10);
    const { x, gamma, beta } = upload(xs, gs, bs, shape);
    const dy = Tensor.fromArray(gpu, dys, shape);
    const fwd = groupNorm(x, gamma, beta, { groups: 32, eps: 1e-6, silu: true });
    const g = groupNormBackward(dy, x, gamma, beta, fwd, { groups: 32, silu: true });
    const want = groupNormBackwardRef(dys, xs, shape, gs, bs, 32, 1e-6, true);
    expectClose(await g.dx.toArray(), want.dx, { atol: 5e-4, rtol: 1e-3 }, 'dx');
    expectClose(await g.dgamma.toArray(), want.dgamma, { atol: 5e-3, rtol: 1e-3 }, 'dgamma');
    expectClose(await g.dbeta.toArray(), want.dbeta, { atol: 1e-3, rtol: 1e-4 }, 'dbeta');
    release(x, gamma, beta, dy, fwd.y, fwd.mean, fwd.rstd, g.dx, g.dgamma, g.dbeta);
  });

  it('fused-SiLU backward equals silu backward then plain group-norm backward', async () => {
    const shape = [2, 12, 6, 5];
    const { xs, gs, bs } = makeInputs(shape, 31);
    const dys = seeded(xs.length, 32);
    const { x, gamma, beta } = upload(xs, gs, bs, shape);
    const dy = Tensor.fromArray(gpu, dys, shape);
    const fused = groupNorm(x, gamma, beta, { groups: 4, eps: 1e-5, silu: true });
    const gf = groupNormBackward(dy, x, gamma, beta, fused, { groups: 4, silu: true });
    const plain = groupNorm(x, gamma, beta, { groups: 4, eps: 1e-5 });
    const dz = unaryBackward('silu', plain.y, dy);
    const gp = groupNormBackward(dz, x, gamma, beta, plain, { groups: 4 });
    const tol = { atol: 1e-5, rtol: 1e-5 };
    expectClose(await gf.dx.toArray(), await gp.dx.toArray(), tol, 'dx');
    expectClose(await gf.dgamma.toArray(), await gp.dgamma.toArray(), tol, 'dgamma');
    expectClose(await gf.dbeta.toArray(), await gp.dbeta.toArray(), tol, 'dbeta');
    release(x, gamma, beta, dy, dz, ...Object.values(fused), ...Object.values(gf), ...Object.values(plain), ...Object.values(gp));
  });

  for (const silu of [false, true]) {
    it(`finite differences of L = sum(y·R) for x, gamma, beta${silu ? ' (+silu)' : ''}`, async () => {
      const shape = [2, 6, 4, 3];
      const G = 3;
      const { xs, gs, bs } = makeInputs(shape, silu ? 41 : 51);
      const R = seeded(xs.length, 61);
      const { x, gamma, beta } = upload(xs, gs, bs, shape);
      const dy = Tensor.fromArray(gpu, R, shape);
      const fwd = groupNorm(x, gamma, beta, { groups: G, eps: 1e-5, silu });
      const g = groupNormBackward(dy, x, gamma, beta, fwd, { groups: G, silu });
      const loss = async ([x0, g0, b0]: Float32Array[]) => {
        const t = upload(x0, g0, b0, shape);
        const out = groupNorm(t.x, t.gamma, t.beta, { groups: G, eps: 1e-5, silu });
        const l = dot(await out.y.toArray(), R);
        release(t.x, t.gamma, t.beta, out.y, out.mean, out.rstd);
        return l;
      };
      const inputs = [xs, gs, bs];
      const xi = [0, 13, 47, 71, 95, xs.length - 1];
      const ci = [0, 2, 5];
      const fdTol = { atol: 5e-3, rtol: 5e-3 };
      const gx = await g.dx.toArray();
      const gg = await g.dgamma.toArray();
      const gb = await g.dbeta.toArray();
      expectClose(xi.map((i) => gx[i]), await finiteDiff(loss, inputs, 0, xi), fdTol, 'dx vs FD');
      expectClose(ci.map((i) => gg[i]), await finiteDiff(loss, inputs, 1, ci), fdTol, 'dgamma vs FD');
      expectClose(ci.map((i) => gb[i]), await finiteDiff(loss, inputs, 2, ci), fdTol, 'dbeta vs FD');
      release(x, gamma, beta, dy, fwd.y, fwd.mean, fwd.rstd, g.dx, g.dgamma, g.dbeta);
    });
  }
});
