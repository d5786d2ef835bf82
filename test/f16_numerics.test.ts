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
import { F16_TOL, f16Tolerance } from '../src/kernels/f16_support.js';
import { broadcastBinaryRef, unaryGradRef, unaryRef } from '../src/reference/elementwise.js';
import { roundF16Ref } from '../src/reference/f16.js';
import { Tensor } from '../src/tensor.js';
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

type Ctx = { skip(note?: string): never };
/** A test that needs 'shader-f16'; skipped (by feature detection) where the device lacks it. */
function f16it(name: string, fn: () => Promise<void>, timeout?: number): void {
  it(
    name,
    async (ctx: Ctx) => {
      if (!gpu.hasF16) ctx.skip(`no shader-f16 on ${gpu.describe()}`);
      await fn();
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
        expectClose(await da.toArray(), gradRef(0), f16Tolerance('sum', terms, 4), `${op} f16 da`);
        expectClose(await db.toArray(), gradRef(1), f16Tolerance('sum', terms, 4), `${op} f16 db`);
        [a, b, y, dy, da, db].forEach((t) => t.release());
      });
    }
  }
});
