// Parity of the matmul kernel with the float64 CPU reference (shapes on and off the tile grid, size-1 dims, every
// transpose combination, batches and broadcast, bias + each activation, each tile preset, vec4 and scalar access),
// and matmulBackward against the reference and finite differences.
//
// Each pipeline variant costs seconds of LLVM compile on lavapipe, so the cases share nine variants (small tile
// unless named): plain epilogue in FT/TF/TT scalar (what the backward GEMMs need); one activation + bias per transpose
// combination (silu FF, gelu_erf TT, quick_gelu FT scalar; gelu_tanh TF vec4: the transposed-A vec4 path); the
// large tile (FF vec4 plain: the 4096³ bench path) and the medium tile (FT vec4 + bias: the transposed-B vec4 path).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import {
  type Activation,
  type GemmCall,
  MATMUL_TILES,
  type MatmulTile,
  chooseMatmulTile,
  gemmVariant,
  gemmTile,
  splitKFor,
  matmul,
  matmulBackward,
  matmulWithPre,
  tileProblem,
} from '../src/kernels/matmul.js';
import { matmulBackwardRef, matmulRef } from '../src/reference/matmul.js';
import { Tensor, numel } from '../src/tensor.js';
import { dot, expectClose, finiteDiff, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(async () => {
  // Keep this small: every pipeline is seconds of compile on lavapipe.
  if (gpu) console.log(`[matmul.test] pipelines built: ${gpu.pipelines.size}`);
  await gpu?.destroy();
});

// f32 accumulation over K ≤ 257 products of values in [-1, 1]: error ~ sqrt(K)·ulp·|terms|, plus the f32
// activations (a few ulp, erf < 1.2e-7 abs). 1e-5 abs + 1e-4 rel covers fma and summation-order differences.
const TOL = { atol: 1e-5, rtol: 1e-4 };

interface Case {
  aShape: number[];
  bShape: number[];
  transA?: boolean;
  transB?: boolean;
  bias?: boolean;
  activation?: Activation;
  alpha?: number;
  tile?: MatmulTile;
  /** Also check matmulWithPre's pre-activation. */
  withPre?: boolean;
  splitK?: number;
  /** Add a residual (after the activation). */
  residual?: boolean;
}

function nOf(c: Case): number {
  return c.transB ? c.bShape.at(-2)! : c.bShape.at(-1)!;
}

async function check(c: Case, what: string): Promise<void> {
  const av = seeded(numel(c.aShape), 1);
  const bv = seeded(numel(c.bShape), 2);
  const N = nOf(c);
  const biasV = c.bias ? seeded(N, 3) : undefined;
  const a = Tensor.fromArray(gpu, av, c.aShape, { label: 'a' });
  const b = Tensor.fromArray(gpu, bv, c.bShape, { label: 'b' });
  const bias = biasV ? Tensor.fromArray(gpu, biasV, [N], { label: 'bias' }) : undefined;
  const opts = { transA: c.transA, transB: c.transB, bias, activation: c.activation, alpha: c.alpha, tile: c.tile, splitK: c.splitK };
  const want = matmulRef(av, c.aShape, bv, c.bShape, { ...opts, bias: biasV });
  let residual: Tensor | undefined;
  if (c.residual) {
    // y + r, with r's values computed here from the seeded data and the reference output.
    const rv = seeded(want.y.length, 4);
    residual = Tensor.fromArray(gpu, rv, want.shape, { label: 'residual' });
    Object.assign(opts, { residual });
    want.y = want.y.map((v, i) => v + rv[i]);
  }
  const { y, pre } = c.withPre ? matmulWithPre(a, b, opts) : { y: matmul(a, b, opts), pre: undefined };
  expect(y.shape, `${what}: output shape`).toEqual(want.shape);
  expectClose(await y.toArray(), want.y, TOL, what);
  if (pre) expectClose(await pre.toArray(), want.pre, TOL, `${what} pre-activation`);
  [a, b, y, pre, bias, residual].forEach((t) => t?.release());
}

/** Stored shapes for op(A) [M, K] and op(B) [K, N]. */
const sa = (M: number, K: number, t = false, batch: number[] = []) => [...batch, ...(t ? [K, M] : [M, K])];
const sb = (K: number, N: number, t = false, batch: number[] = []) => [...batch, ...(t ? [N, K] : [K, N])];

const LARGE = MATMUL_TILES.large;
/** The plain shape checks ride on the bias + silu variant (scalar), or the large tile (vec4). */
const SILU = { bias: true, activation: 'silu' as const };

describe('matmul forward', () => {
  // Scalar access (a contiguous dim or N not a multiple of 4), off every tile edge, size-1 dims.
  for (const [M, K, N] of [
    [1, 1, 1],
    [7, 13, 5],
    [65, 33, 129],
    [257, 63, 100],
    [64, 1, 64],
    [64, 64, 1],
    [1, 5, 7],
  ]) {
    it(`${M}x${K}x${N} (M x K x N), bias + silu`, async () => check({ aShape: [M, K], bShape: [K, N], ...SILU }, `${M}x${K}x${N}`));
  }
  // vec4 access, large tile: one tile exactly, and shapes far smaller than one tile.
  for (const [M, K, N] of [
    [128, 128, 128],
    [1, 64, 64],
    [36, 20, 44],
    [4, 4, 4],
  ]) {
    it(`${M}x${K}x${N} aligned, large tile`, async () => check({ aShape: [M, K], bShape: [K, N], tile: LARGE }, `${M}x${K}x${N}`));
  }

  it('transA and transB, scalar', async () => {
    for (const [tA, tB] of [
      [true, true],
      [false, true],
      [true, false],
    ])
      await check({ aShape: sa(33, 17, tA), bShape: sb(17, 21, tB), transA: tA, transB: tB }, `tA=${tA} tB=${tB}`);
  });

  it('batch 3 on both sides', async () => check({ aShape: [3, 19, 12], bShape: [3, 12, 10], ...SILU }, 'batch 3'));
  it('batch [3, 1] with both transposed', async () =>
    check({ aShape: sa(19, 12, true, [3, 1]), bShape: sb(12, 10, true, [3, 1]), transA: true, transB: true }, 'batch [3,1] tA tB'));
  it('a batch of A against one B (folded into M)', async () =>
    check({ aShape: [2, 3, 9, 8], bShape: [8, 12], tile: LARGE }, 'A batch folded'));
  it('a batch of transposed A against one B', async () =>
    check({ aShape: sa(9, 8, true, [3]), bShape: sb(8, 12, false, [1]), transA: true }, 'A batch, tA'));
  it('one A against a batch of B', async () => check({ aShape: [9, 8], bShape: [4, 8, 12], tile: LARGE }, 'B batch'));

  // One activation per transpose combination, each with bias (and alpha somewhere).
  const acts: [Activation, boolean, boolean, Partial<Case>][] = [
    ['silu', false, false, {}],
    ['gelu_erf', true, true, { alpha: 0.5 }],
    ['gelu_tanh', true, false, { withPre: true }],
    ['quick_gelu', false, true, {}],
  ];
  for (const [activation, tA, tB, extra] of acts) {
    it(`bias + ${activation} (tA=${tA} tB=${tB})`, async () => {
      // gelu_tanh runs vec4 (M, K, N multiples of 4), the others scalar.
      const [M, K, N] = activation === 'gelu_tanh' ? [36, 24, 20] : [37, 23, 19];
      await check({ aShape: sa(M, K, tA), bShape: sb(K, N, tB), transA: tA, transB: tB, bias: true, activation, ...extra }, activation);
    });
  }

  it('large tile (128x128, 8x8 per thread) on a partial grid, vec4', async () => {
    // Past one tile in M, past two in N; K past two BK steps.
    await check({ aShape: [140, 20], bShape: [20, 260], tile: LARGE }, 'large');
  });
  it('medium tile (64x128, 8x8 per thread) with bias, transB, vec4', async () => {
    const tile = MATMUL_TILES.medium;
    await check({ aShape: [76, 20], bShape: sb(20, 132, true), transB: true, bias: true, tile }, 'medium');
  });

  it('residual after the activation, vec4 and scalar, with the pre-activation stored', async () => {
    await check({ aShape: [36, 24], bShape: sb(24, 20, true), transB: true, bias: true, activation: 'gelu_tanh', residual: true, withPre: true }, 'residual vec4');
    await check({ aShape: [37, 23], bShape: sb(23, 19, true), transB: true, residual: true }, 'residual scalar');
  });

  it('K = 0 gives act(bias)', async () => {
    await check({ aShape: sa(3, 0, true), bShape: sb(0, 5, true), transA: true, transB: true, bias: true, activation: 'gelu_erf' }, 'K=0');
  });

  it('splits K for long reductions into small outputs (weight-gradient and LoRA rank-r shapes)', async () => {
    const t = MATMUL_TILES.small;
    const call = (M: number, K: number, N: number): GemmCall => {
      const z = undefined as unknown as Tensor;
      return { M, N, K, batch: 1, a: { t: z, trans: true, batchStride: 0 }, b: { t: z, trans: false, batchStride: 0 }, outShape: [M, N], label: 's' };
    };
    expect(splitKFor(call(7, 1024, 9), t)).toBe(8); // slices of 128 rows
    expect(splitKFor(call(7, 600, 9), t)).toBe(2);
    expect(splitKFor(call(7, 601, 9), t)).toBe(1); // K odd: no even split
    expect(splitKFor(call(7, 128, 9), t)).toBe(1); // slices would be shorter than 128
    expect(splitKFor(call(512, 1024, 1024), t)).toBe(1); // enough tiles already
    expect(splitKFor({ ...call(7, 1024, 9), b: { ...call(7, 1024, 9).b, trans: true } }, t)).toBe(8); // B K-contiguous
    expect(splitKFor({ ...call(7, 1024, 9), activation: 'silu' }, t)).toBe(1); // a nonlinear epilogue: no split
    expect(splitKFor({ ...call(7, 1024, 9), bias: {} as Tensor }, t)).toBe(8); // the bias goes into slice 0
    // Linear layers (x·Wᵀ): SDXL's 1024×1280×1280 takes the large tile in 8 slices, 1024×5120×1280 in 8; 240 large
    // tiles (1024×1280×3840) are not split; 77 rows keep the small tile.
    const linear = (M: number, K: number, N: number): GemmCall => ({
      ...call(M, K, N),
      a: { ...call(M, K, N).a, trans: false },
      b: { ...call(M, K, N).b, trans: true },
    });
    const L = MATMUL_TILES.large;
    expect([gemmTile(gpu, linear(1024, 1280, 1280)), splitKFor(linear(1024, 1280, 1280), L)]).toEqual([L, 8]);
    expect([gemmTile(gpu, linear(1024, 5120, 1280)), splitKFor(linear(1024, 5120, 1280), L)]).toEqual([L, 8]);
    expect([gemmTile(gpu, linear(1024, 1280, 3840)), splitKFor(linear(1024, 1280, 3840), L)]).toEqual([L, 1]);
    expect(gemmTile(gpu, linear(77, 2048, 1280))).toEqual(t);
    // Aᵀ·B over 1024 rows, scalar (M = 7, N = 9): runs as 4 slices and one sum.
    await check({ aShape: sa(7, 1024, true), bShape: sb(1024, 9), transA: true }, 'split-K 4');
    // LoRA's h = alpha·x·Aᵀ (A [M, K] and B [N, K] K-contiguous: slices are column ranges of full-length rows), vec4
    // and scalar, and g = dY·B (B [K, N]).
    await check({ aShape: [36, 1024], bShape: sb(1024, 8, true), transB: true, alpha: 0.25 }, 'split-K x·Aᵀ vec4');
    await check({ aShape: [37, 1024], bShape: sb(1024, 7, true), transB: true, alpha: 0.25 }, 'split-K x·Aᵀ scalar');
    await check({ aShape: [12, 1024], bShape: sb(1024, 8, false) }, 'split-K dY·B');
    // A linear layer with bias, split in 4 (forced) on the large tile: the bias is added once; likewise a residual.
    await check({ aShape: [20, 512], bShape: sb(512, 12, true), transB: true, bias: true, splitK: 4, tile: LARGE }, 'split-K 4 + bias');
    await check({ aShape: [20, 512], bShape: sb(512, 12, true), transB: true, bias: true, residual: true, splitK: 4 }, 'split-K 4 + bias + residual');
  });

  it('uses vec4 access exactly where every contiguous dim and N are multiples of 4', () => {
    const t = Tensor.zeros(gpu, [4]);
    const call = (M: number, K: number, N: number, tA: boolean, tB: boolean, K2?: number): GemmCall => ({
      M,
      N,
      K,
      batch: 1,
      a: { t, trans: tA, batchStride: 0 },
      b: { t, trans: tB, batchStride: 0 },
      pair2: K2 === undefined ? undefined : { K2, a: { t, trans: false, batchStride: 0 }, b: { t, trans: true, batchStride: 0 } },
      outShape: [M, N],
      label: 'v',
    });
    const vec4 = (c: GemmCall) => gemmVariant(gpu, c).vec4;
    expect(vec4(call(7, 8, 12, false, false))).toBe(true); // M is free when A is not transposed
    expect(vec4(call(7, 8, 12, true, false))).toBe(false); // ... and contiguous when it is
    expect(vec4(call(8, 6, 12, false, false))).toBe(false);
    expect(vec4(call(8, 6, 12, true, false))).toBe(true);
    expect(vec4(call(8, 8, 6, false, true))).toBe(false); // N must be aligned for the stores
    expect(vec4(call(8, 8, 8, false, true, 4))).toBe(true);
    expect(vec4(call(8, 8, 8, false, true, 3))).toBe(false);
    expect(vec4(call(8, 0, 8, false, false))).toBe(false); // empty buffers cannot bind as vec4
    t.release();
  });

  it('rejects mismatched shapes with a ShapeError naming both', () => {
    const z = (s: number[]) => Tensor.zeros(gpu, s);
    const [a, b, c, d, bias, e] = [z([4, 5]), z([6, 3]), z([2, 4, 5]), z([3, 5, 3]), z([4]), z([5, 3])];
    expect(() => matmul(a, b)).toThrow(ShapeError);
    expect(() => matmul(a, b)).toThrow(/\[4, 5\].*\[6, 3\]/);
    expect(() => matmul(a, b, { transA: true })).toThrow(/K 4 vs 6/);
    expect(() => matmul(c, d)).toThrow(/\[2, 4, 5\].*\[3, 5, 3\]/);
    expect(() => matmul(a, e, { bias })).toThrow(/bias \[4\] must be \[3\]/);
    expect(() => matmul(z([5]), e)).toThrow(/rank ≥ 2/);
    [a, b, c, d, bias, e].forEach((t) => t.release());
  });

  it('chooses a tile per shape within the device limits', () => {
    for (const [M, N] of [
      [4096, 4096],
      [4096, 640],
      [77, 1280],
      [7, 5],
    ])
      expect(tileProblem(gpu, chooseMatmulTile(gpu, M, N))).toBeNull();
    expect(chooseMatmulTile(gpu, 4096, 4096)).toEqual(MATMUL_TILES.large);
    expect(chooseMatmulTile(gpu, 4096, 5120)).toEqual(MATMUL_TILES.large);
    // Fewer than 160 large tiles: the small tile was faster on the H100.
    expect(chooseMatmulTile(gpu, 1024, 1280)).toEqual(MATMUL_TILES.small);
    expect(chooseMatmulTile(gpu, 77, 1280)).toEqual(MATMUL_TILES.small);
    expect(chooseMatmulTile(gpu, 1024, 1280, 2)).toEqual(MATMUL_TILES.large);
    // A tile that does not fit 256 invocations or the workgroup storage is refused, naming the limit.
    if (gpu.maxInvocations <= 256) expect(tileProblem(gpu, { ...MATMUL_TILES.large, tm: 4, tn: 4 })).toMatch(/Invocations/);
  });
});

describe('matmul backward', () => {
  // Forward variants come from the activation cases above; the dA / dB GEMMs from the plain scalar ones.
  const configs: Case[] = [
    { aShape: [9, 7], bShape: [7, 6], bias: true, activation: 'silu' },
    { aShape: sa(9, 7, true), bShape: sb(7, 6, true), transA: true, transB: true, bias: true, activation: 'gelu_erf', alpha: 0.7 },
    { aShape: [2, 5, 7], bShape: [7, 6], bias: true, activation: 'silu' },
    { aShape: sa(5, 7, true, [2]), bShape: sb(7, 6, true), transA: true, transB: true },
    { aShape: sa(5, 7, true), bShape: sb(7, 3, true, [3]), transA: true, transB: true },
  ];
  for (const c of configs) {
    const name =
      `${JSON.stringify(c.aShape)}${c.transA ? 'ᵀ' : ''}·${JSON.stringify(c.bShape)}${c.transB ? 'ᵀ' : ''}` +
      ` ${c.activation ?? 'none'}${c.bias ? ' +bias' : ''}`;
    it(`${name}: matches the reference and finite differences`, async () => {
      const av = seeded(numel(c.aShape), 11);
      const bv = seeded(numel(c.bShape), 12);
      const N = nOf(c);
      const biasV = seeded(N, 13);
      const refOpts = { ...c, bias: c.bias ? biasV : undefined };
      const fwd = matmulRef(av, c.aShape, bv, c.bShape, refOpts);
      const R = seeded(fwd.y.length, 14);
      const a = Tensor.fromArray(gpu, av, c.aShape, { label: 'a' });
      const b = Tensor.fromArray(gpu, bv, c.bShape, { label: 'b' });
      const bias = c.bias ? Tensor.fromArray(gpu, biasV, [N], { label: 'bias' }) : undefined;
      const dy = Tensor.fromArray(gpu, R, fwd.shape, { label: 'dy' });
      const opts = { transA: c.transA, transB: c.transB, activation: c.activation, alpha: c.alpha, bias };
      // Once with the stored pre-activation, once recomputing it.
      const { y, pre } = matmulWithPre(a, b, opts);
      const g1 = matmulBackward(a, b, dy, { ...opts, pre });
      const g2 = matmulBackward(a, b, dy, opts);
      const want = matmulBackwardRef(av, c.aShape, bv, c.bShape, R, refOpts);
      expect(g1.da!.shape).toEqual(c.aShape);
      expect(g1.db!.shape).toEqual(c.bShape);
      for (const g of [g1, g2]) {
        expectClose(await g.da!.toArray(), want.da, TOL, 'da');
        expectClose(await g.db!.toArray(), want.db, TOL, 'db');
        if (c.bias) expectClose(await g.dbias!.toArray(), want.dbias, TOL, 'dbias');
        else expect(g.dbias).toBeUndefined();
      }

      // L = sum(y · R), central differences of the GPU forward at a few elements of each input.
      const loss = async ([x0, x1, x2]: Float32Array[]) => {
        const ta = Tensor.fromArray(gpu, x0, c.aShape);
        const tb = Tensor.fromArray(gpu, x1, c.bShape);
        const tbias = c.bias ? Tensor.fromArray(gpu, x2, [N]) : undefined;
        const ty = matmul(ta, tb, { ...opts, bias: tbias });
        const l = dot(await ty.toArray(), R);
        [ta, tb, tbias, ty].forEach((t) => t?.release());
        return l;
      };
      const pick = (n: number) => [...new Set([0, n - 1, Math.floor(n / 3), Math.floor((2 * n) / 3)])];
      const inputs = [av, bv, biasV];
      // f32 forward, eps 1e-2: truncation O(eps²·f''') and rounding O(ulp·|L|/eps) stay below 1e-2 here.
      const fdTol = { atol: 2e-2, rtol: 2e-2 };
      const gA = await g1.da!.toArray();
      const gB = await g1.db!.toArray();
      expectClose(pick(av.length).map((i) => gA[i]), await finiteDiff(loss, inputs, 0, pick(av.length)), fdTol, 'da vs FD');
      expectClose(pick(bv.length).map((i) => gB[i]), await finiteDiff(loss, inputs, 1, pick(bv.length)), fdTol, 'db vs FD');
      if (c.bias) {
        const gBias = await g1.dbias!.toArray();
        expectClose(pick(N).map((i) => gBias[i]), await finiteDiff(loss, inputs, 2, pick(N)), fdTol, 'dbias vs FD');
      }
      for (const t of [a, b, bias, dy, y, pre, g1.da, g1.db, g1.dbias, g2.da, g2.db, g2.dbias]) t?.release();
    });
  }

  it('computes only the gradients asked for, and checks dy', () => {
    const z = (s: number[]) => Tensor.zeros(gpu, s);
    const [a, b, dy] = [z([4, 5]), z([5, 3]), z([4, 3])];
    const g = matmulBackward(a, b, dy, { needB: false });
    expect(g.db).toBeUndefined();
    expect(g.da!.shape).toEqual([4, 5]);
    const bad = z([3, 4]);
    expect(() => matmulBackward(a, b, bad)).toThrow(ShapeError);
    expect(() => matmulBackward(a, b, bad)).toThrow(/dy \[3, 4\].*\[4, 3\]/);
    [a, b, dy, bad, g.da].forEach((t) => t?.release());
  });
});
