// The f16 numerics suite: every f16 kernel variant (f16 storage, f32 math) against the float64 CPU reference, with
// the tolerances of src/kernels/f16_support.ts (derived from the f16 unit roundoff 2^-11; see there), and the host
// conversions against a float64 reference of IEEE rounding. Inputs are rounded to f16 first, so the reference sees
// exactly the values the GPU holds and the tolerance covers only the kernel's own error. Each test skips itself
// (ctx.skip, by feature detection) on a device without 'shader-f16', e.g. SwiftShader in the browser runner.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { DTypeError } from '../runtime/errors.js';
import { f16BitsToF32, f32ToF16Bits, roundToF16, toF16Bits } from '../src/dtype.js';
import { cast } from '../src/kernels/cast.js';
import { BINARY_OPS, type BinaryOp, UNARY_OPS, type UnaryOp, binary, binaryBackward, unary, unaryBackward } from '../src/kernels/elementwise.js';
import { F16_TOL, f16NormTolerance, f16Tolerance, parseDTypeChoice, probeF16, resolveDType } from '../src/kernels/f16_support.js';
import { softmax, softmaxBackward } from '../src/kernels/softmax.js';
import { attentionBackward, attentionWithLse } from '../src/kernels/attention.js';
import { attentionBackwardRef, attentionRef } from '../src/reference/attention.js';
import { conv2d, conv2dBackward, loraConv2d, loraConv2dBackward } from '../src/kernels/conv2d.js';
import { type ConvRefGeometry, conv2dBackwardRef, conv2dRef, loraConv2dRef } from '../src/reference/conv2d.js';
import { geglu, gegluBackward } from '../src/kernels/geglu.js';
import { concat, split, upsampleNearest, upsampleNearestBackward } from '../src/kernels/resample.js';
import { transpose } from '../src/kernels/transpose.js';
import { gegluBackwardRef, gegluRef } from '../src/reference/geglu.js';
import { concatRef, upsampleNearestBackwardRef, upsampleNearestRef } from '../src/reference/resample.js';
import { layerNorm, layerNormBackward } from '../src/kernels/layer_norm.js';
import { groupNorm, groupNormBackward } from '../src/kernels/group_norm.js';
import { softmaxBackwardRef, softmaxRef } from '../src/reference/softmax.js';
import { layerNormBackwardRef, layerNormRef } from '../src/reference/layer_norm.js';
import { groupNormBackwardRef, groupNormRef } from '../src/reference/group_norm.js';
import { broadcastBinaryRef, unaryGradRef, unaryRef } from '../src/reference/elementwise.js';
import { type Activation, matmul, matmulBackward, matmulWithPre } from '../src/kernels/matmul.js';
import { loraLinearBackward, loraLinearWithH } from '../src/kernels/lora_matmul.js';
import { loraLinearBackwardRef, loraLinearRef, matmulBackwardRef, matmulRef } from '../src/reference/matmul.js';
import { roundF16Ref } from '../src/reference/f16.js';
import { Tensor, numel } from '../src/tensor.js';
import { ELEMENT_PRELUDE, Kernel } from '../src/kernels/kernel.js';
import { KernelLayoutError } from '../runtime/errors.js';
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

type Ctx = { skip(note?: string): never };
/** A test that needs 'shader-f16'; skipped (by feature detection) where the device lacks it. */
function f16it(name: string, fn: (ctx: Ctx) => Promise<void>, timeout?: number): void {
  it(
    name,
    async (ctx: Ctx) => {
      if (!gpu.hasF16) ctx.skip(`no shader-f16 on ${gpu.describe()}`);
      await fn(ctx);
    },
    timeout,
  );
}

const f16 = (data: ArrayLike<number>, shape: number[], label = 'x') => Tensor.fromArray(gpu, data, shape, { dtype: 'f16', label });

describe('host conversion f32 ↔ f16', () => {
  it('round to nearest even agrees with the float64 reference on every f16 value, midpoint and neighbour', () => {
    let checked = 0;
    for (let h = 0; h < 0x7c00; h++) {
      const v = f16BitsToF32(h);
      const next = f16BitsToF32(h + 1); // 0x7c00 is Infinity: the midpoint above 65504 is 65520
      const mid = (v + (h + 1 === 0x7c00 ? 65536 : next)) / 2;
      // The value, the midpoint and doubles just either side of it (no f32 holds those: double rounding would bite).
      for (const x of [v, mid, mid * (1 + 2 ** -40), mid * (1 - 2 ** -40), Math.fround(mid * (1 + 2 ** -20))]) {
        for (const s of [1, -1]) {
          const want = roundF16Ref(s * x);
          const got = f16BitsToF32(f32ToF16Bits(s * x));
          if (!Object.is(got, want)) throw new Error(`f32ToF16Bits(${s * x}) = ${got}, reference ${want}`);
          checked++;
        }
      }
    }
    expect(checked).toBe(0x7c00 * 10);
    expect(f16BitsToF32(f32ToF16Bits(65519.99))).toBe(65504);
    expect(f16BitsToF32(f32ToF16Bits(65520))).toBe(Infinity);
    expect(f16BitsToF32(f32ToF16Bits(-1e6))).toBe(-Infinity);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
    expect(f16BitsToF32(f32ToF16Bits(2 ** -25))).toBe(0); // a tie at the smallest subnormal rounds to even (0)
    expect(f16BitsToF32(f32ToF16Bits(2 ** -25 * 1.0001))).toBe(2 ** -24);
  });

  f16it('upload, GPU cast and readback round-trip exactly; raw F16 bits upload unchanged', async () => {
    const xs = seeded(1001, 3, -70000, 70000); // odd length; values past ±65520 become ±Infinity
    const t = f16(xs, [1001]);
    const got = await t.toArray();
    const want = Array.from(xs, roundF16Ref);
    expect(want.filter((v) => !Number.isFinite(v)).length).toBeGreaterThan(0);
    expect(Array.from(got)).toEqual(want);
    const bits = toF16Bits(xs);
    const raw = Tensor.fromF16Bits(gpu, bits, [1001], { label: 'raw' });
    expect(Array.from(await raw.toArray())).toEqual(Array.from(got));
    // GPU casts: f32 → f16 rounds as the host does (RNE, ±Infinity past the range); f16 → f32 is exact.
    const x32 = Tensor.fromArray(gpu, xs, [1001], { label: 'x32' });
    const h = cast(x32, 'f16');
    expect(h.dtype).toBe('f16');
    expect(Array.from(await h.toArray())).toEqual(want);
    const back = cast(h, 'f32');
    expect(Array.from(await back.toArray())).toEqual(Array.from(roundToF16(xs), Math.fround));
    [t, raw, x32, h, back].forEach((x) => x.release());
  });

  f16it('operands of different dtypes are refused by name', async () => {
    const a = f16([1, 2], [2], 'a16');
    const b = Tensor.fromArray(gpu, [1, 2], [2], { label: 'b32' });
    expect(() => binary('add', a, b)).toThrow(DTypeError);
    expect(() => binary('add', a, b)).toThrow(/b32.*f32, expected f16/);
    a.release();
    b.release();
  });
});

describe('the dtype variant mechanism (src/kernels/kernel.ts)', () => {
  const src = `struct Params { n: u32, };
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { if (g.x < params.n) { y[g.x] = toT(f32(y[g.x]) * 2.0); } }`;
  const spec = { name: 'dtype_probe', entryPoints: ['main'], bindings: [{ name: 'params', kind: 'uniform' as const }, { name: 'y', kind: 'read_write' as const }], uniforms: [['n', 'u32']] as const, source: src };
  it('one WGSL source serves f32 and f16; the f32 prelude is the identity alias; a kernel without dtypes refuses f16', async (ctx) => {
    expect(ELEMENT_PRELUDE.f32).toMatch(/^alias T = f32;/);
    expect(ELEMENT_PRELUDE.f16).toMatch(/^enable f16; alias T = f16;/);
    // A kernel that does not list f16 refuses an f16 variant at pipeline build, naming its dtypes.
    const f32Only = new Kernel<{ dtype: string }>({ ...spec, source: src.replace(/array<T>/, 'array<f32>').replace('toT(f32(y[g.x]) * 2.0)', 'y[g.x] * 2.0') });
    expect(() => f32Only.pipeline(gpu, 'main', { dtype: 'f16' })).toThrow(KernelLayoutError);
    const both = new Kernel<{ dtype: 'f32' | 'f16' }>({ ...spec, dtypes: ['f32', 'f16'] });
    const k32 = both.pipeline(gpu, 'main', { dtype: 'f32' });
    expect(k32).toBeTruthy();
    if (!gpu.hasF16) {
      expect(() => both.pipeline(gpu, 'main', { dtype: 'f16' })).toThrow(/shader-f16/);
      ctx.skip(`no shader-f16 on ${gpu.describe()}`);
    }
    for (const dtype of ['f32', 'f16'] as const) {
      const t = Tensor.fromArray(gpu, [1.5, -3, 40000], [3], { dtype, label: `y-${dtype}` });
      both.run(gpu, { entry: 'main', variant: { dtype }, params: { n: 3 }, buffers: { y: t }, workgroups: [1] });
      // 80000 overflows f16 to Infinity (toT), f32 keeps it.
      expect(Array.from(await t.toArray())).toEqual([3, -6, dtype === 'f16' ? Infinity : 80000]);
      t.release();
    }
  });
});

describe('elementwise f16', () => {
  for (const op of Object.keys(UNARY_OPS) as UnaryOp[]) {
    f16it(`${op}: forward and backward`, async () => {
      const n = 777;
      // exp is tested up to 12 (e^12 > 65504: overflow must give Infinity, not a clamp or garbage).
      const xs = roundToF16(seeded(n, 7, -6, op === 'exp' ? 12 : 6));
      const dys = roundToF16(seeded(n, 8));
      const x = f16(xs, [n]);
      const dy = f16(dys, [n], 'dy');
      const y = unary(op, x, { alpha: -0.75 });
      expect(y.dtype).toBe('f16');
      const want = Array.from(xs, (v) => roundF16Ref(unaryRef(op, v, -0.75)));
      const got = await y.toArray();
      if (op === 'exp') {
        const overflows = want.filter((v) => v === Infinity).length;
        expect(overflows).toBeGreaterThan(0);
        expect(got.filter((v) => v === Infinity).length).toBe(overflows);
      }
      const finite = (a: ArrayLike<number>) => Array.from(a, (v, i) => (Number.isFinite(want[i]) ? v : 0));
      expectClose(finite(got), finite(want), F16_TOL.elementwise, `${op} f16`);
      const dx = await unaryBackward(op, x, dy, { alpha: 1.5 }).toArray();
      const wantDx = Array.from(xs, (v, i) => roundF16Ref(dys[i] * unaryGradRef(op, v, 1.5)));
      expectClose(finite(dx), finite(wantDx), F16_TOL.elementwise, `${op} f16 dx`);
      [x, dy, y].forEach((t) => t.release());
    });
  }
  const cases: [number[], number[]][] = [
    [[3, 5], [3, 5]],
    [[2, 3, 4], [4]],
    [[2, 1, 4], [3, 1]],
  ];
  for (const op of Object.keys(BINARY_OPS) as BinaryOp[]) {
    for (const [as, bs] of cases) {
      f16it(`${op} ${JSON.stringify(as)} ∘ ${JSON.stringify(bs)}: forward and backward (broadcast sums in f32)`, async () => {
        const na = as.reduce((p, d) => p * d, 1);
        const nb = bs.reduce((p, d) => p * d, 1);
        const av = roundToF16(seeded(na, 3));
        const bv = roundToF16(op === 'div' ? seeded(nb, 4, 0.5, 2) : seeded(nb, 4));
        const a = f16(av, as, 'a');
        const b = f16(bv, bs, 'b');
        const y = binary(op, a, b);
        const [want, outShape] = broadcastBinaryRef(op, av, as, bv, bs);
        expect(y.dtype).toBe('f16');
        expectClose(await y.toArray(), want, F16_TOL.elementwise, `${op} f16`);
        const dyv = roundToF16(seeded(want.length, 5));
        const dy = f16(dyv, outShape, 'dy');
        const { da, db } = binaryBackward(op, a, b, dy);
        // Reference gradients: per output element, then summed over the broadcast dims (float64).
        const eps = 1e-6;
        const gradRef = (wrt: 0 | 1) => {
          const base = wrt ? bv : av;
          const g = new Float64Array(base.length);
          for (let i = 0; i < base.length; i++) {
            const p = Float64Array.from(base);
            const m = Float64Array.from(base);
            p[i] += eps;
            m[i] -= eps;
            const [yp] = wrt ? broadcastBinaryRef(op, av, as, p, bs) : broadcastBinaryRef(op, p, as, bv, bs);
            const [ym] = wrt ? broadcastBinaryRef(op, av, as, m, bs) : broadcastBinaryRef(op, m, as, bv, bs);
            for (let k = 0; k < yp.length; k++) g[i] += (dyv[k] * (yp[k] - ym[k])) / (2 * eps);
          }
          return g;
        };
        const terms = want.length / Math.min(na, nb);
        expectClose(await da.toArray(), gradRef(0), f16Tolerance(terms, 4, 1), `${op} f16 da`);
        expectClose(await db.toArray(), gradRef(1), f16Tolerance(terms, 4, 1), `${op} f16 db`);
        [a, b, y, dy, da, db].forEach((t) => t.release());
      });
    }
  }
});

describe('matmul f16 (f32 tiles and accumulators)', () => {
  const cases: { name: string; aShape: number[]; bShape: number[]; transA?: boolean; transB?: boolean; act?: Activation; bias?: boolean; scalar?: boolean }[] = [
    { name: 'vec4 37×40 · 40×24 + bias, gelu_erf', aShape: [37, 40], bShape: [40, 24], bias: true, act: 'gelu_erf' },
    { name: 'scalar 19×33 · (23×33)ᵀ, silu', aShape: [19, 33], bShape: [23, 33], transB: true, act: 'silu' },
    { name: 'batched (2×12×5)ᵀ · 2×12×8', aShape: [2, 12, 5], bShape: [2, 12, 8], transA: true, scalar: true },
    { name: 'folded batch 2×5×12 · 12×8, vec4', aShape: [2, 5, 12], bShape: [12, 8], bias: true },
  ];
  for (const c of cases) {
    f16it(`${c.name}: forward and backward vs float64`, async () => {
      const av = roundToF16(seeded(numel(c.aShape), 1));
      const bv = roundToF16(seeded(numel(c.bShape), 2));
      const N = c.transB ? c.bShape.at(-2)! : c.bShape.at(-1)!;
      const K = c.transA ? c.aShape.at(-2)! : c.aShape.at(-1)!;
      const biasV = c.bias ? roundToF16(seeded(N, 3)) : undefined;
      const opts = { transA: c.transA, transB: c.transB, activation: c.act ?? ('none' as const), alpha: 0.75 };
      const a = f16(av, c.aShape, 'a');
      const b = f16(bv, c.bShape, 'b');
      const bias = biasV ? f16(biasV, [N], 'bias') : undefined;
      const { y, pre } = matmulWithPre(a, b, { ...opts, bias, scalar: c.scalar });
      expect(y.dtype).toBe('f16');
      const want = matmulRef(av, c.aShape, bv, c.bShape, { ...opts, bias: biasV });
      // Exact f16 inputs, f32 accumulation over K terms of magnitude ≤ alpha, then one rounding.
      expectClose(await y.toArray(), want.y, f16Tolerance(K, 1), 'y');
      expectClose(await pre.toArray(), want.pre, f16Tolerance(K, 1), 'pre');
      const dyv = roundToF16(seeded(want.y.length, 4));
      const dy = f16(dyv, want.shape, 'dy');
      const g = matmulBackward(a, b, dy, { ...opts, bias, pre, scalar: c.scalar });
      const wantG = matmulBackwardRef(av, c.aShape, bv, c.bShape, dyv, { ...opts, bias: biasV });
      // dZ = dY·act'(Z) is stored in f16 (from the f16 Z): two roundings of each term; sums over M·batch or N terms.
      const M = numel(want.shape) / N;
      expectClose(await g.da!.toArray(), wantG.da, f16Tolerance(N, 1.2, 3), 'da');
      expectClose(await g.db!.toArray(), wantG.db, f16Tolerance(M, 1.2, 3), 'db');
      if (bias) expectClose(await g.dbias!.toArray(), wantG.dbias!, f16Tolerance(M, 1.2, 3), 'dbias');
      [a, b, y, pre, dy, g.da!, g.db!, ...(bias ? [bias, g.dbias!] : [])].forEach((t) => t.release());
    });
  }

  f16it('residual epilogue and f32 results unchanged by the f16 variant existing', async () => {
    const av = roundToF16(seeded(8 * 12, 5));
    const bv = roundToF16(seeded(12 * 16, 6));
    const rv = roundToF16(seeded(8 * 16, 7));
    const want = matmulRef(av, [8, 12], bv, [12, 16]).y.map((v, i) => v + rv[i]);
    const y16 = matmul(f16(av, [8, 12]), f16(bv, [12, 16]), { residual: f16(rv, [8, 16]) });
    expectClose(await y16.toArray(), want, f16Tolerance(12 + 1, 1), 'y16 + residual');
    const y32 = matmul(Tensor.fromArray(gpu, av, [8, 12]), Tensor.fromArray(gpu, bv, [12, 16]), { residual: Tensor.fromArray(gpu, rv, [8, 16]) });
    expect(y32.dtype).toBe('f32');
    expectClose(await y32.toArray(), want, { atol: 1e-5, rtol: 1e-5 }, 'y32 + residual');
  });

  f16it('LoRA linear (f16 x, W, A, B): forward and backward vs float64', async () => {
    const rows = 6, K = 16, N = 12, r = 4, scale = 0.5;
    const xv = roundToF16(seeded(rows * K, 11));
    const Wv = roundToF16(seeded(N * K, 12));
    const bv = roundToF16(seeded(N, 13));
    const Av = roundToF16(seeded(r * K, 14));
    const Bv = roundToF16(seeded(N * r, 15));
    const dyv = roundToF16(seeded(rows * N, 16));
    const [x, W, bias, A, B, dy] = [f16(xv, [rows, K]), f16(Wv, [N, K]), f16(bv, [N]), f16(Av, [r, K]), f16(Bv, [N, r]), f16(dyv, [rows, N])];
    const { y, h } = loraLinearWithH(x, W, bias, A, B, scale);
    expect(y.dtype).toBe('f16');
    // h = scale·x·Aᵀ is stored in f16 before its second GEMM: one rounding of the r low-rank terms.
    expectClose(await y.toArray(), loraLinearRef(xv, rows, K, Wv, N, bv, Av, Bv, r, scale), f16Tolerance(K + r, 1 + scale * K, 1), 'y');
    const g = loraLinearBackward(x, W, A, B, scale, dy, { h, bias: true });
    const want = loraLinearBackwardRef(xv, rows, K, Wv, N, Av, Bv, r, scale, dyv);
    expectClose(await g.dx.toArray(), want.dx, f16Tolerance(N + r, 1 + scale * N, 1), 'dx');
    expectClose(await g.dA.toArray(), want.dA, f16Tolerance(rows, scale * N, 1), 'dA');
    expectClose(await g.dB.toArray(), want.dB, f16Tolerance(rows, scale * K, 1), 'dB');
    expectClose(await g.db!.toArray(), want.db, f16Tolerance(rows, 1), 'db');
  });
});

const maxAbs = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};

describe('softmax f16', () => {
  for (const [R, C] of [[5, 77], [3, 300]]) {
    f16it(`rows ${R}×${C}: forward and backward`, async () => {
      const xs = roundToF16(seeded(R * C, 21, -8, 8));
      const x = f16(xs, [R, C]);
      const y = softmax(x);
      expect(y.dtype).toBe('f16');
      const want = softmaxRef(xs, C);
      expectClose(await y.toArray(), want, f16NormTolerance(C, 1), 'y');
      // The backward reads the f16 y; the reference uses those same values (what the GPU holds).
      const yv = await y.toArray();
      const dyv = roundToF16(seeded(R * C, 22));
      const dx = softmaxBackward(y, f16(dyv, [R, C], 'dy'));
      expectClose(await dx.toArray(), softmaxBackwardRef(yv, dyv, C), f16NormTolerance(C, 2), 'dx');
    });
  }
  f16it('inputs near the f16 limits (±65504, -Infinity masks) stay finite: max-subtracted in f32', async () => {
    const C = 8;
    const xs = [65504, 65504, -65504, 0, 60000, -Infinity, 1, 65000];
    const y = await softmax(f16(xs, [1, C])).toArray();
    expect(y.every(Number.isFinite)).toBe(true);
    expectClose(y, softmaxRef(xs.map((v) => (v === -Infinity ? -1e300 : v)), C), f16NormTolerance(C, 1), 'y');
  });
});

describe('layer norm f16', () => {
  f16it('7×96 with weight and bias: forward and backward', async () => {
    const M = 7, D = 96, eps = 1e-5;
    const xs = roundToF16(seeded(M * D, 31, -2, 3));
    const wv = roundToF16(seeded(D, 32, 0.5, 1.5));
    const bv = roundToF16(seeded(D, 33));
    const dyv = roundToF16(seeded(M * D, 34));
    const [x, weight, bias, dy] = [f16(xs, [M, D]), f16(wv, [D], 'w'), f16(bv, [D], 'b'), f16(dyv, [M, D], 'dy')];
    const r = layerNorm(x, { weight, bias, eps });
    expect(r.y.dtype).toBe('f16');
    expect(r.mean.dtype).toBe('f32');
    const want = layerNormRef(xs, M, D, wv, bv, eps);
    expectClose(await r.y.toArray(), want.y, f16NormTolerance(D, maxAbs(want.y)), 'y');
    expectClose(await r.mean.toArray(), want.mean, { atol: 1e-5, rtol: 1e-5 }, 'mean (f32)');
    const g = layerNormBackward(dy, x, r, { weight, bias });
    const wantG = layerNormBackwardRef(dyv, xs, M, D, wv, eps);
    expectClose(await g.dx.toArray(), wantG.dx, f16NormTolerance(D, 4 * maxAbs(wantG.dx)), 'dx');
    expectClose(await g.dweight!.toArray(), wantG.dweight, f16Tolerance(M, 3), 'dweight');
    expectClose(await g.dbias!.toArray(), wantG.dbias, f16Tolerance(M, 1), 'dbias');
  });
});

describe('group norm f16', () => {
  for (const silu of [false, true]) {
    f16it(`[2, 8, 5, 6], 4 groups${silu ? ', fused silu' : ''}: forward and backward`, async () => {
      const shape = [2, 8, 5, 6];
      const G = 4, eps = 1e-5;
      const n = 2 * 8 * 30;
      const xs = roundToF16(seeded(n, 41, -2, 3));
      const gv = roundToF16(seeded(8, 42, 0.5, 1.5));
      const bv = roundToF16(seeded(8, 43));
      const dyv = roundToF16(seeded(n, 44));
      const [x, gamma, beta, dy] = [f16(xs, shape), f16(gv, [8], 'gamma'), f16(bv, [8], 'beta'), f16(dyv, shape, 'dy')];
      const r = groupNorm(x, gamma, beta, { groups: G, eps, silu });
      expect(r.y.dtype).toBe('f16');
      const want = groupNormRef(xs, shape, gv, bv, G, eps, silu);
      const N = (8 / G) * 30;
      expectClose(await r.y.toArray(), want.y, f16NormTolerance(N, maxAbs(want.y)), 'y');
      const g = groupNormBackward(dy, x, gamma, beta, r, { groups: G, silu });
      const wantG = groupNormBackwardRef(dyv, xs, shape, gv, bv, G, eps, silu);
      expectClose(await g.dx.toArray(), wantG.dx, f16NormTolerance(N, 4 * maxAbs(wantG.dx)), 'dx');
      expectClose(await g.dgamma.toArray(), wantG.dgamma, f16Tolerance(2 * 30, 3), 'dgamma');
      expectClose(await g.dbeta.toArray(), wantG.dbeta, f16Tolerance(2 * 30, 1), 'dbeta');
    });
  }
});

describe('geglu f16', () => {
  for (const F of [6, 8]) {
    f16it(`F = ${F} (${F % 4 ? 'scalar' : 'vec4'}): forward and backward`, async () => {
      const R = 5;
      const pv = roundToF16(seeded(R * 2 * F, 51, -3, 3));
      const dyv = roundToF16(seeded(R * F, 52));
      const p = f16(pv, [R, 2 * F], 'p');
      const y = geglu(p);
      expect(y.dtype).toBe('f16');
      expectClose(await y.toArray(), gegluRef(pv, R, F), F16_TOL.elementwise, 'y');
      const dp = gegluBackward(p, f16(dyv, [R, F], 'dy'));
      expectClose(await dp.toArray(), gegluBackwardRef(pv, dyv, R, F), F16_TOL.elementwise, 'dp');
    });
  }
});

describe('resample f16', () => {
  f16it('upsample ×2 (and its gradient), concat, split and transpose are exact copies / f32 sums', async () => {
    const shape = [1, 3, 4, 5];
    const xv = roundToF16(seeded(60, 61));
    const x = f16(xv, shape);
    const up = upsampleNearest(x);
    expect(up.dtype).toBe('f16');
    expect(Array.from(await up.toArray())).toEqual(Array.from(upsampleNearestRef(xv, shape, 8, 10)));
    const dyv = roundToF16(seeded(240, 62));
    const dx = upsampleNearestBackward(f16(dyv, [1, 3, 8, 10], 'dy'), shape);
    // Four f16 terms summed in f32, rounded once.
    expectClose(await dx.toArray(), upsampleNearestBackwardRef(dyv, shape, 8, 10), f16Tolerance(4, 1), 'dx');
    const bv = roundToF16(seeded(40, 63));
    const b = f16(bv, [1, 2, 4, 5], 'b');
    const c = concat(x, b, 1);
    expect(Array.from(await c.toArray())).toEqual(Array.from(concatRef(xv, shape, bv, [1, 2, 4, 5], 1)));
    const [s0, s1] = split(c, 3, 1);
    const t = transpose(f16(xv, [3, 4, 5], 't'));
    const tWant = Array.from({ length: 60 }, (_, i) => {
      const [b, c5, r4] = [Math.floor(i / 20), Math.floor(i / 4) % 5, i % 4];
      return xv[b * 20 + r4 * 5 + c5];
    });
    expect(Array.from(await t.toArray())).toEqual(tWant);
    expect(Array.from(await s0.toArray())).toEqual(Array.from(xv));
    expect(Array.from(await s1.toArray())).toEqual(Array.from(bv));
  });
});

describe('conv2d f16 (implicit GEMM, f32 tiles and accumulators)', () => {
  for (const stride of [1, 2]) {
    f16it(`3×3 stride ${stride} pad 1, bias${stride === 1 ? ' + residual' : ''}: forward, input and weight gradients`, async () => {
      const g: ConvRefGeometry = { B: 2, Cin: 3, H: 6, W: 6, Cout: 5, kH: 3, kW: 3, stride, padY: 1, padX: 1 };
      const Ho = Math.floor((6 + 2 - 3) / stride) + 1;
      const xv = roundToF16(seeded(2 * 3 * 36, 71));
      const wv = roundToF16(seeded(5 * 3 * 9, 72));
      const bv = roundToF16(seeded(5, 73));
      const rv = stride === 1 ? roundToF16(seeded(2 * 5 * Ho * Ho, 74)) : undefined;
      const x = f16(xv, [2, 3, 6, 6]);
      const w = f16(wv, [5, 3, 3, 3], 'w');
      const bias = f16(bv, [5], 'bias');
      const residual = rv ? f16(rv, [2, 5, Ho, Ho], 'res') : undefined;
      const y = conv2d(x, w, { stride, padding: 1, bias, residual });
      expect(y.dtype).toBe('f16');
      const want = conv2dRef(xv, wv, g, bv, rv);
      expectClose(await y.toArray(), want, f16Tolerance(27 + 2, 1), 'y');
      const dyv = roundToF16(seeded(want.length, 75));
      const dy = f16(dyv, [2, 5, Ho, Ho], 'dy');
      const gr = conv2dBackward(x, w, dy, { stride, padding: 1, needWeight: true, needBias: true });
      const wantG = conv2dBackwardRef(xv, wv, dyv, g);
      expectClose(await gr.dx!.toArray(), wantG.dx, f16Tolerance(5 * 9, 1), 'dx');
      expectClose(await gr.dw!.toArray(), wantG.dw, f16Tolerance(2 * Ho * Ho, 1), 'dw');
      expectClose(await gr.dbias!.toArray(), wantG.dbias, f16Tolerance(2 * Ho * Ho, 1), 'dbias');
    });
  }

  f16it('LoRA conv 3×3 (r = 2): forward and gradients vs the float64 composition', async () => {
    const g: ConvRefGeometry = { B: 1, Cin: 4, H: 5, W: 5, Cout: 6, kH: 3, kW: 3, stride: 1, padY: 1, padX: 1 };
    const r = 2, scale = 0.5, P = 25;
    const xv = roundToF16(seeded(4 * P, 81));
    const wv = roundToF16(seeded(6 * 4 * 9, 82));
    const av = roundToF16(seeded(r * 4 * 9, 83));
    const bUp = roundToF16(seeded(6 * r, 84));
    const dyv = roundToF16(seeded(6 * P, 85));
    const x = f16(xv, [1, 4, 5, 5]);
    const params = { w: f16(wv, [6, 4, 3, 3], 'w'), a: f16(av, [r, 4, 3, 3], 'A'), b: f16(bUp, [6, r, 1, 1], 'B'), scale };
    const { y, h } = loraConv2d(x, params, { padding: 1 });
    expect(y.dtype).toBe('f16');
    // h is stored in f16 and scale·B is packed in f16 before the second GEMM: one rounding of the r low-rank terms.
    expectClose(await y.toArray(), loraConv2dRef(xv, wv, av, bUp, scale, r, g), f16Tolerance(36 + r, 1 + scale * 36, 1), 'y');
    const gr = loraConv2dBackward(x, params, f16(dyv, [1, 6, 5, 5], 'dy'), { padding: 1, h });
    // Float64 composition: dh = scale·Bᵀ·dy; dx = convᵀ(dy, W) + convᵀ(dh, A); dA = wgrad(dh, x); dB = scale·Σ dy·h.
    const gA: ConvRefGeometry = { ...g, Cout: r };
    const h64 = conv2dRef(xv, av, gA);
    const dh = new Float64Array(r * P);
    for (let j = 0; j < r; j++) for (let p = 0; p < P; p++) for (let co = 0; co < 6; co++) dh[j * P + p] += scale * bUp[co * r + j] * dyv[co * P + p];
    const viaW = conv2dBackwardRef(xv, wv, dyv, g);
    const viaA = conv2dBackwardRef(xv, av, dh, gA);
    const dB = new Float64Array(6 * r);
    for (let co = 0; co < 6; co++) for (let j = 0; j < r; j++) for (let p = 0; p < P; p++) dB[co * r + j] += scale * dyv[co * P + p] * h64[j * P + p];
    expectClose(await gr.dx!.toArray(), viaW.dx.map((v, i) => v + viaA.dx[i]), f16Tolerance(6 * 9 + r * 9, 1 + scale * 6, 1), 'dx');
    expectClose(await gr.da!.toArray(), viaA.dw, f16Tolerance(P, scale * 6, 1), 'dA');
    expectClose(await gr.db!.toArray(), dB, f16Tolerance(P, scale * 36, 1), 'dB');
  });
});

describe('attention f16 (f32 scores, softmax and accumulators)', () => {
  for (const causal of [false, true]) {
    f16it(`subgroup kernel (headDim 64, forced sg tiles): B 1, 2 heads, N 21, M ${causal ? 21 : 35}${causal ? ', causal' : ''}: forward and backward`, async (ctx) => {
      if (!gpu.hasSubgroups) ctx.skip(`no subgroups on ${gpu.describe()}`);
      const d = { B: 1, N: 21, M: causal ? 21 : 35, heads: 2, headDim: 64, causal };
      const C = d.heads * d.headDim;
      const qv = roundToF16(seeded(d.N * C, 95, -1, 1));
      const kv = roundToF16(seeded(d.M * C, 96, -1, 1));
      const vv = roundToF16(seeded(d.M * C, 97));
      const dov = roundToF16(seeded(d.N * C, 98));
      const [q, k, v, dO] = [f16(qv, [1, d.N, C], 'q'), f16(kv, [1, d.M, C], 'k'), f16(vv, [1, d.M, C], 'v'), f16(dov, [1, d.N, C], 'dO')];
      const sgTiles = { tile: { br: 64, bc: 16, tm: 4, tx: 4, sg: true }, tileDq: { br: 32, bc: 16, tm: 2, tx: 4, sg: true }, tileDkdv: { br: 32, bc: 16, tm: 2, tx: 4, sg: true } };
      const { o, lse } = attentionWithLse(q, k, v, { heads: d.heads, causal, tile: sgTiles.tile });
      expect(o.dtype).toBe('f16');
      const want = attentionRef(qv, kv, vv, d);
      expectClose(await o.toArray(), want.o, f16NormTolerance(d.M + d.headDim, 1), 'o');
      expectClose(await lse.toArray(), want.lse, { atol: 1e-5, rtol: 1e-5 }, 'lse (f32)');
      const g = attentionBackward(q, k, v, o, lse, dO, { heads: d.heads, causal, tileDq: sgTiles.tileDq, tileDkdv: sgTiles.tileDkdv });
      const wantG = attentionBackwardRef(qv, kv, vv, dov, d);
      const s = 1 / Math.sqrt(d.headDim);
      expectClose(await g.dq.toArray(), wantG.dq, f16Tolerance(d.M, 2 * d.headDim * s, 1), 'dq');
      expectClose(await g.dk.toArray(), wantG.dk, f16Tolerance(d.N, 2 * d.headDim * s, 1), 'dk');
      expectClose(await g.dv.toArray(), wantG.dv, f16Tolerance(d.N, 1), 'dv');
    });
  }

  for (const causal of [false, true]) {
    f16it(`B 1, 2 heads × 8, N 9, M ${causal ? 9 : 13}${causal ? ', causal' : ''}: forward and backward`, async () => {
      const d = { B: 1, N: 9, M: causal ? 9 : 13, heads: 2, headDim: 8, causal };
      const C = d.heads * d.headDim;
      const qv = roundToF16(seeded(d.N * C, 91, -2, 2));
      const kv = roundToF16(seeded(d.M * C, 92, -2, 2));
      const vv = roundToF16(seeded(d.M * C, 93));
      const dov = roundToF16(seeded(d.N * C, 94));
      const [q, k, v, dO] = [f16(qv, [1, d.N, C], 'q'), f16(kv, [1, d.M, C], 'k'), f16(vv, [1, d.M, C], 'v'), f16(dov, [1, d.N, C], 'dO')];
      const { o, lse } = attentionWithLse(q, k, v, { heads: d.heads, causal });
      expect(o.dtype).toBe('f16');
      expect(lse.dtype).toBe('f32');
      const want = attentionRef(qv, kv, vv, d);
      // O is a convex combination of V rows (|V| ≤ 1) computed in f32, then rounded once.
      expectClose(await o.toArray(), want.o, f16NormTolerance(d.M + d.headDim, 1), 'o');
      expectClose(await lse.toArray(), want.lse, { atol: 1e-5, rtol: 1e-5 }, 'lse (f32)');
      const g = attentionBackward(q, k, v, o, lse, dO, { heads: d.heads, causal });
      const wantG = attentionBackwardRef(qv, kv, vv, dov, d);
      // D = rowsum(dO ⊙ O) reads the f16 O (one rounding); dQ, dK sum M or N terms of P·(dO·V − D)·K·scale.
      const s = 1 / Math.sqrt(d.headDim);
      expectClose(await g.dq.toArray(), wantG.dq, f16Tolerance(d.M, 2 * 2 * d.headDim * s, 1), 'dq');
      expectClose(await g.dk.toArray(), wantG.dk, f16Tolerance(d.N, 2 * 2 * d.headDim * s, 1), 'dk');
      expectClose(await g.dv.toArray(), wantG.dv, f16Tolerance(d.N, 1), 'dv');
    });
  }
});

describe('the f16 probe (src/kernels/f16_support.ts)', () => {
  it('decides per device: passes where shader-f16 works, else falls back to f32 with a logged reason', async () => {
    const status = await probeF16(gpu);
    const lines: string[] = [];
    const dtype = await resolveDType(gpu, 'f16', (l) => lines.push(l));
    console.log(`[f16 probe] ${gpu.describe()}: ${status.ok ? `passes (${status.checks.join(', ')})` : `fails: ${status.reason}`}`);
    if (!gpu.hasF16) {
      expect(status.ok).toBe(false);
      expect(dtype).toBe('f32');
      expect(lines.join('\n')).toMatch(/f16 requested but running in f32: .*shader-f16/);
      return;
    }
    // lavapipe (CI) offers shader-f16 and must pass; a GPU that fails prints its reason above.
    if (/llvmpipe/i.test(gpu.describe())) expect(status.ok).toBe(true);
    expect(dtype).toBe(status.ok ? 'f16' : 'f32');
    expect(lines.length).toBe(status.ok ? 0 : 1);
    expect(await resolveDType(gpu, 'f32')).toBe('f32');
    expect(() => parseDTypeChoice('bf16', '--dtype')).toThrow(/--dtype must be one of f32, f16, auto; got 'bf16'/);
  });
});
