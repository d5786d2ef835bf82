// Parity of the conv2d kernels with the float64 CPU reference (forward, input / weight / bias gradients, LoRA),
// checks of the fused paths against the same computation composed from primitives, and finite-difference gradients.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { DTypeError, ShapeError } from '../runtime/errors.js';
import {
  CONV_TILES,
  type ConvPlan,
  type ConvTile,
  conv2d,
  conv2dBackward,
  conv2dKernel,
  convTileProblem,
  loraConv2d,
  loraConv2dBackward,
  packConv2dWeight,
} from '../src/kernels/conv2d.js';
import { add, scale } from '../src/kernels/elementwise.js';
import { type ConvRefGeometry, conv2dBackwardRef, conv2dRef, convRefOut, loraConv2dRef } from '../src/reference/conv2d.js';
import { Tensor } from '../src/tensor.js';
import { dot, expectClose, finiteDiff, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// f32 sums of K ≤ 17·9 products of values in [-1, 1] (|y| ≲ 15): rounding stays near 1e-5; 1e-4 leaves margin
// while a wrong tap or a missing channel (errors of order 0.1–1) fails.
const TOL = { atol: 1e-4, rtol: 1e-4 };

// Each tile preset is its own pipeline, which a CPU Vulkan driver takes 5–30 s to build (cold shader cache). There
// the small tile (what the planner picks for test shapes) always runs and the larger presets only with
// TCD_CONV_ALL_TILES=1; on a GPU every preset runs.
const CPU_ADAPTER = /llvmpipe|lavapipe|swiftshader/i;
const allTiles = (tile: ConvTile) =>
  tile === CONV_TILES.small || process.env.TCD_CONV_ALL_TILES === '1' || !CPU_ADAPTER.test(gpu.describe());
// Finite differences: every output is linear in each input, so central differences are exact up to f32 rounding
// of L = Σ y·R (a few hundred terms, eps 0.1).
const FD_TOL = { atol: 3e-3, rtol: 3e-3 };
const FD_EPS = 0.1;

interface Case extends ConvRefGeometry {
  name: string;
  bias: boolean;
}

// (name, B, Cin, Cout, H, W, k, stride, padding, bias?)
const geo = (
  name: string,
  B: number,
  Cin: number,
  Cout: number,
  H: number,
  W: number,
  k: number,
  stride: number,
  pad: number,
  bias = true,
): Case => ({
  name,
  B,
  Cin,
  Cout,
  H,
  W,
  kH: k,
  kW: k,
  stride,
  padY: pad,
  padX: pad,
  bias,
});

const FORWARD_CASES: Case[] = [
  geo('1×1 s1 p0, 3→5, 5×7', 1, 3, 5, 5, 7, 1, 1, 0),
  geo('3×3 s1 p1, B=2, 3→5, 5×7', 2, 3, 5, 5, 7, 3, 1, 1),
  geo('3×3 s1 p0, 17→33, 9×9', 1, 17, 33, 9, 9, 3, 1, 0, false),
  geo('3×3 s2 p1, B=2, 17→33, 9×9', 2, 17, 33, 9, 9, 3, 2, 1),
  geo('3×3 s2 p0, 4→6, 8×10', 1, 4, 6, 8, 10, 3, 2, 0),
  geo('1×1 s2 p0, 5→7, 7×9', 1, 5, 7, 7, 9, 1, 2, 0),
  geo('3×3 s1 p1 on a 1×1 image, 2→3', 1, 2, 3, 1, 1, 3, 1, 1),
  { ...geo('1×3 s1 pad (0, 1), 3→4, 4×6', 1, 3, 4, 4, 6, 1, 1, 0), kW: 3, padX: 1 },
];

const numelOf = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);
const outShape = (g: ConvRefGeometry) => [g.B, g.Cout, ...convRefOut(g)];

interface Data {
  x: Float32Array;
  w: Float32Array;
  b: Float32Array;
}
function data(g: ConvRefGeometry, seed: number): Data {
  return {
    x: seeded(g.B * g.Cin * g.H * g.W, seed),
    w: seeded(g.Cout * g.Cin * g.kH * g.kW, seed + 1),
    b: seeded(g.Cout, seed + 2),
  };
}

const t = (v: Float32Array, shape: number[], label: string) => Tensor.fromArray(gpu, v, shape, { label });
const xShape = (g: ConvRefGeometry) => [g.B, g.Cin, g.H, g.W];
const wShape = (g: ConvRefGeometry) => [g.Cout, g.Cin, g.kH, g.kW];
const opts = (g: ConvRefGeometry) => ({ stride: g.stride, padding: [g.padY, g.padX] as [number, number] });

async function gpuForward(g: ConvRefGeometry, d: Data, withBias: boolean, plan?: Partial<ConvPlan>): Promise<Float32Array> {
  const x = t(d.x, xShape(g), 'x');
  const w = t(d.w, wShape(g), 'w');
  const b = withBias ? t(d.b, [g.Cout], 'bias') : undefined;
  const y = conv2d(x, w, { ...opts(g), bias: b, plan });
  expect(y.shape).toEqual(outShape(g));
  const out = await y.toArray();
  [x, w, b, y].forEach((v) => v?.release());
  return out;
}

/** Indices to probe by finite differences: first, last, middle and a few seeded ones. */
function pick(n: number, count = 4): number[] {
  const r = seeded(count, n, 0, 1);
  return [...new Set([0, n - 1, Math.floor(n / 2), ...Array.from(r, (v) => Math.floor(v * n))])];
}

describe('conv2d forward', () => {
  for (const c of FORWARD_CASES) {
    it(`${c.name} matches the CPU reference`, async () => {
      const d = data(c, 3);
      const got = await gpuForward(c, d, c.bias);
      expectClose(got, conv2dRef(d.x, d.w, c, c.bias ? d.b : undefined), TOL, c.name);
    });
  }

  // Every tile preset that runs here, on a shape that leaves partial tiles in M, N and K (33 channels, 9·9·2 pixels).
  const g = geo('3×3 s1 p1, B=2, 17→33, 9×9', 2, 17, 33, 9, 9, 3, 1, 1);
  for (const [name, tile] of Object.entries(CONV_TILES) as [string, ConvTile][]) {
    it(`tile ${name} (partial tiles) matches the CPU reference`, async () => {
      const problem = convTileProblem(gpu, tile);
      if (problem) {
        // Only the workgroup-memory limit may rule a preset out (bk 16 on 32 KiB devices).
        expect(problem).toMatch(/maxComputeWorkgroupStorageSize/);
        return;
      }
      if (!allTiles(tile)) return;
      const d = data(g, 5);
      expectClose(await gpuForward(g, d, true, { tile, splitK: 1 }), conv2dRef(d.x, d.w, g, d.b), TOL, name);
    });
  }

  it('split-K (2 and 5 splits, with bias and residual) equals the unsplit kernel and the reference', async () => {
    const c = geo('3×3 s2 p1', 2, 17, 33, 9, 9, 3, 2, 1);
    const d = data(c, 7);
    const res = seeded(numelOf(outShape(c)), 8);
    const want = conv2dRef(d.x, d.w, c, d.b, res);
    const x = t(d.x, xShape(c), 'x');
    const w = t(d.w, wShape(c), 'w');
    const b = t(d.b, [c.Cout], 'bias');
    const r = t(res, outShape(c), 'residual');
    const outs: Float32Array[] = [];
    for (const splitK of [1, 2, 5]) {
      const y = conv2d(x, w, { ...opts(c), bias: b, residual: r, plan: { tile: CONV_TILES.small, splitK } });
      outs.push(await y.toArray());
      y.release();
    }
    for (const o of outs) expectClose(o, want, TOL, 'split-K');
    expectClose(outs[1], outs[0], TOL, 'split 2 vs 1');
    [x, w, b, r].forEach((v) => v.release());
  });

  it('the fused bias + residual epilogue equals conv, then elementwise adds', async () => {
    const c = geo('3×3 s1 p1', 2, 5, 6, 6, 5, 3, 1, 1);
    const d = data(c, 9);
    const x = t(d.x, xShape(c), 'x');
    const w = t(d.w, wShape(c), 'w');
    const b = t(d.b, [c.Cout], 'bias');
    const r = t(seeded(numelOf(outShape(c)), 10), outShape(c), 'residual');
    const fused = conv2d(x, w, { ...opts(c), bias: b, residual: r });
    const plain = conv2d(x, w, opts(c));
    const b4 = b.reshape([1, c.Cout, 1, 1]);
    const withBias = add(plain, b4);
    const composed = add(withBias, r);
    expectClose(await fused.toArray(), await composed.toArray(), TOL, 'fused vs composed');
    [x, w, b, r, fused, plain, b4, withBias, composed].forEach((v) => v.release());
  });

  it('a packed frozen weight gives the same output, and a packed weight of the wrong role is refused', async () => {
    const c = geo('3×3 s1 p1', 1, 4, 8, 6, 6, 3, 1, 1);
    const d = data(c, 11);
    const x = t(d.x, xShape(c), 'x');
    const w = t(d.w, wShape(c), 'w');
    const pw = packConv2dWeight(w);
    const a = conv2d(x, w, { padding: 1 });
    const b = conv2d(x, w, { padding: 1, packed: pw });
    expectClose(await b.toArray(), await a.toArray(), { atol: 0, rtol: 0 }, 'packed');
    const pT = packConv2dWeight(w, 'inputGrad');
    expect(() => conv2d(x, w, { padding: 1, packed: pT })).toThrow(ShapeError);
    [x, w, pw, pT, a, b].forEach((v) => v.release());
  });
});

describe('conv2d rejects bad operands, naming expected and received', () => {
  it('channel mismatch, bias shape, kernel larger than the padded input, unequal strides', () => {
    const x = Tensor.zeros(gpu, [1, 3, 4, 4]);
    const w = Tensor.zeros(gpu, [5, 4, 3, 3]);
    expect(() => conv2d(x, w)).toThrow(ShapeError);
    expect(() => conv2d(x, w)).toThrow(/Cin = 4.*Cin = 3/);
    const w2 = Tensor.zeros(gpu, [5, 3, 3, 3]);
    const b = Tensor.zeros(gpu, [4]);
    expect(() => conv2d(x, w2, { bias: b })).toThrow(/bias .*\[4\].*must be \[5\]/);
    const w5 = Tensor.zeros(gpu, [5, 3, 5, 5]);
    expect(() => conv2d(x, w5)).toThrow(/does not fit input 4×4/);
    expect(() => conv2d(x, w2, { stride: [1, 2] })).toThrow(ShapeError);
    const x3 = Tensor.zeros(gpu, [3, 4, 4]);
    expect(() => conv2d(x3, w2)).toThrow(/\[B, Cin, H, W\]/);
    [x, w, w2, b, w5, x3].forEach((v) => v.release());
  });

  it('mixed-dtype operands throw DTypeError (f16 itself runs: test/f16_numerics.test.ts)', () => {
    // f16 tensors exist only where the device offers 'shader-f16' (lavapipe does; NVIDIA Vulkan only with toggles).
    if (!gpu.hasF16) return;
    const x = Tensor.zeros(gpu, [1, 3, 4, 4], 'f16');
    const w = Tensor.zeros(gpu, [5, 3, 3, 3]);
    expect(() => conv2d(x, w)).toThrow(DTypeError);
    expect(() => conv2d(x, w)).toThrow(/f32, expected f16/);
    [x, w].forEach((v) => v.release());
  });
});

const BACKWARD_CASES: Case[] = [
  geo('3×3 s1 p1, B=2, 3→5, 5×7', 2, 3, 5, 5, 7, 3, 1, 1),
  geo('3×3 s2 p1, 5→4, 9×9', 1, 5, 4, 9, 9, 3, 2, 1),
  geo('3×3 s2 p0, B=2, 3→4, 8×7', 2, 3, 4, 8, 7, 3, 2, 0),
  geo('1×1 s1 p0, 17→33, 5×7', 1, 17, 33, 5, 7, 1, 1, 0),
  geo('1×1 s2 p0, 4→3, 7×6', 1, 4, 3, 7, 6, 1, 2, 0),
];

describe('conv2d backward', () => {
  for (const c of BACKWARD_CASES) {
    it(`${c.name}: dx, dw, dbias match the reference and finite differences`, async () => {
      const d = data(c, 21);
      const R = seeded(numelOf(outShape(c)), 22);
      const x = t(d.x, xShape(c), 'x');
      const w = t(d.w, wShape(c), 'w');
      const b = t(d.b, [c.Cout], 'bias');
      const dy = t(R, outShape(c), 'dy');
      const grads = conv2dBackward(x, w, dy, { ...opts(c), bias: b, needWeight: true, needBias: true });
      expect(grads.dx!.shape).toEqual(xShape(c));
      expect(grads.dw!.shape).toEqual(wShape(c));
      expect(grads.dbias!.shape).toEqual([c.Cout]);
      const ref = conv2dBackwardRef(d.x, d.w, R, c);
      const gx = await grads.dx!.toArray();
      const gw = await grads.dw!.toArray();
      const gb = await grads.dbias!.toArray();
      expectClose(gx, ref.dx, TOL, 'dx');
      expectClose(gw, ref.dw, TOL, 'dw');
      expectClose(gb, ref.dbias, TOL, 'dbias');

      // L = Σ y·R through the GPU forward.
      const loss = async ([xs, ws, bs]: Float32Array[]) => dot(await gpuForward(c, { x: xs, w: ws, b: bs }, true), R);
      const inputs = [d.x, d.w, d.b];
      for (const [which, g, name] of [
        [0, gx, 'dx'],
        [1, gw, 'dw'],
        [2, gb, 'dbias'],
      ] as const) {
        const idx = pick(inputs[which].length);
        const fd = await finiteDiff(loss, inputs, which, idx, FD_EPS);
        expectClose(idx.map((i) => g[i]), fd, FD_TOL, `${name} vs finite differences`);
      }
      [x, w, b, dy, grads.dx, grads.dw, grads.dbias].forEach((v) => v?.release());
    });
  }

  it('weight-gradient split-K and the tile presets agree with the reference', async () => {
    const c = geo('3×3 s2 p1, B=2, 17→33, 9×9', 2, 17, 33, 9, 9, 3, 2, 1);
    const d = data(c, 31);
    const R = seeded(numelOf(outShape(c)), 32);
    const ref = conv2dBackwardRef(d.x, d.w, R, c);
    const x = t(d.x, xShape(c), 'x');
    const w = t(d.w, wShape(c), 'w');
    const dy = t(R, outShape(c), 'dy');
    for (const [name, tile] of Object.entries(CONV_TILES) as [string, ConvTile][]) {
      if (convTileProblem(gpu, tile) || !allTiles(tile)) continue;
      for (const splitK of [1, 3]) {
        const g = conv2dBackward(x, w, dy, { ...opts(c), needWeight: true, plan: { tile, splitK }, wgradPlan: { tile, splitK } });
        expectClose(await g.dw!.toArray(), ref.dw, TOL, `dw ${name} split ${splitK}`);
        expectClose(await g.dx!.toArray(), ref.dx, TOL, `dx ${name} split ${splitK}`);
        g.dw!.release();
        g.dx!.release();
      }
    }
    [x, w, dy].forEach((v) => v.release());
  });

  it('computes dw and dbias only when asked (no weight-gradient dispatch, undefined in the result)', async () => {
    const c = geo('3×3 s1 p1', 1, 3, 4, 5, 5, 3, 1, 1);
    const d = data(c, 41);
    const x = t(d.x, xShape(c), 'x');
    const w = t(d.w, wShape(c), 'w');
    const dy = t(seeded(numelOf(outShape(c)), 42), outShape(c), 'dy');
    const entries: string[] = [];
    const run = conv2dKernel.run;
    conv2dKernel.run = function (g, args) {
      entries.push(args.entry);
      return run.call(this, g, args);
    };
    try {
      const g = conv2dBackward(x, w, dy, { padding: 1 });
      expect(g.dw).toBeUndefined();
      expect(g.dbias).toBeUndefined();
      expect(g.dx).toBeDefined();
      expect(entries).not.toContain('conv_wgrad');
      g.dx!.release();
      entries.length = 0;
      const g2 = conv2dBackward(x, w, dy, { padding: 1, needInput: false, needWeight: true });
      expect(g2.dx).toBeUndefined();
      expect(entries).toContain('conv_wgrad');
      expect(entries).not.toContain('conv');
      g2.dw!.release();
    } finally {
      conv2dKernel.run = run;
    }
    [x, w, dy].forEach((v) => v.release());
  });

  it('rejects a dy of the wrong shape', () => {
    const x = Tensor.zeros(gpu, [1, 3, 5, 5]);
    const w = Tensor.zeros(gpu, [4, 3, 3, 3]);
    const dy = Tensor.zeros(gpu, [1, 4, 5, 5]);
    expect(() => conv2dBackward(x, w, dy)).toThrow(/dy .*\[1, 4, 5, 5\].*\[1, 4, 3, 3\]/);
    [x, w, dy].forEach((v) => v.release());
  });
});

interface LoraCase extends Case {
  r: number;
}
const LORA_CASES: LoraCase[] = [
  { ...geo('3×3 s1 p1, B=2, 5→6, r=3, 5×7', 2, 5, 6, 5, 7, 3, 1, 1), r: 3 },
  { ...geo('3×3 s2 p1, 4→5, r=2, 9×9', 1, 4, 5, 9, 9, 3, 2, 1), r: 2 },
  { ...geo('1×1 s1 p0, 17→9, r=4, 4×3', 1, 17, 9, 4, 3, 1, 1, 0), r: 4 },
];
const LORA_SCALE = 0.75;

interface LoraData extends Data {
  a: Float32Array;
  bUp: Float32Array;
}

describe('LoRA conv2d', () => {
  const loraData = (c: LoraCase, seed: number): LoraData => ({
    ...data(c, seed),
    a: seeded(c.r * c.Cin * c.kH * c.kW, seed + 5),
    bUp: seeded(c.Cout * c.r, seed + 6),
  });
  const upload = (c: LoraCase, d: LoraData) => ({
    x: t(d.x, xShape(c), 'x'),
    w: t(d.w, wShape(c), 'w'),
    bias: c.bias ? t(d.b, [c.Cout], 'bias') : undefined,
    a: t(d.a, [c.r, c.Cin, c.kH, c.kW], 'lora_A'),
    b: t(d.bUp, [c.Cout, c.r, 1, 1], 'lora_B'),
  });
  type Up = ReturnType<typeof upload>;
  const params = (u: Up) => ({ w: u.w, bias: u.bias, a: u.a, b: u.b, scale: LORA_SCALE });
  const release = (u: Up) => Object.values(u).forEach((v) => v?.release());

  async function forward(c: LoraCase, d: LoraData): Promise<Float32Array> {
    const u = upload(c, d);
    const { y, h } = loraConv2d(u.x, params(u), opts(c));
    const out = await y.toArray();
    [y, h].forEach((v) => v.release());
    release(u);
    return out;
  }

  for (const c of LORA_CASES) {
    it(`${c.name}: forward matches the reference and the unfused composition`, async () => {
      const d = loraData(c, 51);
      const got = await forward(c, d);
      expectClose(got, loraConv2dRef(d.x, d.w, d.a, d.bUp, LORA_SCALE, c.r, c, c.bias ? d.b : undefined), TOL, 'lora y');
      // conv(x, W) + b + scale·conv1x1(conv(x, A), B), from unfused conv calls and elementwise scale / add.
      const u = upload(c, d);
      const base = conv2d(u.x, u.w, { ...opts(c), bias: u.bias });
      const h = conv2d(u.x, u.a, opts(c));
      const up = conv2d(h, u.b);
      const scaled = scale(up, LORA_SCALE);
      const composed = add(base, scaled);
      expectClose(got, await composed.toArray(), TOL, 'lora fused vs composed');
      [base, h, up, scaled, composed].forEach((v) => v.release());
      release(u);
    });

    it(`${c.name}: dx, dA, dB match the reference and finite differences; no dW`, async () => {
      const d = loraData(c, 61);
      const R = seeded(numelOf(outShape(c)), 62);
      const u = upload(c, d);
      const dy = t(R, outShape(c), 'dy');
      const p = params(u);
      const { y, h } = loraConv2d(u.x, p, opts(c));
      const grads = loraConv2dBackward(u.x, p, dy, { ...opts(c), h });
      expect(Object.keys(grads).sort()).toEqual(['da', 'db', 'dx']);
      expect(grads.da!.shape).toEqual([c.r, c.Cin, c.kH, c.kW]);
      expect(grads.db!.shape).toEqual([c.Cout, c.r, 1, 1]);
      const gx = await grads.dx!.toArray();
      const ga = await grads.da!.toArray();
      const gb = await grads.db!.toArray();

      // Reference by the chain rule through the two reference convs: y = conv(x, W) + scale·conv1x1(h, B).
      const [Ho, Wo] = convRefOut(c);
      const gA = { ...c, Cout: c.r };
      const href = conv2dRef(d.x, d.a, gA);
      const gB = { B: c.B, Cin: c.r, H: Ho, W: Wo, Cout: c.Cout, kH: 1, kW: 1, stride: 1, padY: 0, padX: 0 };
      const up = conv2dBackwardRef(href, d.bUp, R, gB);
      const dh = up.dx.map((v) => LORA_SCALE * v);
      const viaA = conv2dBackwardRef(d.x, d.a, dh, gA);
      const viaW = conv2dBackwardRef(d.x, d.w, R, c);
      expectClose(gx, viaW.dx.map((v, i) => v + viaA.dx[i]), TOL, 'lora dx');
      expectClose(ga, viaA.dw, TOL, 'lora dA');
      expectClose(gb, up.dw.map((v) => LORA_SCALE * v), TOL, 'lora dB');

      const loss = async ([xs, as, bs]: Float32Array[]) => dot(await forward(c, { ...d, x: xs, a: as, bUp: bs }), R);
      const inputs = [d.x, d.a, d.bUp];
      for (const [which, g, name] of [
        [0, gx, 'dx'],
        [1, ga, 'dA'],
        [2, gb, 'dB'],
      ] as const) {
        const idx = pick(inputs[which].length);
        const fd = await finiteDiff(loss, inputs, which, idx, FD_EPS);
        expectClose(idx.map((i) => g[i]), fd, FD_TOL, `lora ${name} vs finite differences`);
      }

      // Without h the backward recomputes it; frozen-W packs reused; only what is asked comes back.
      const pw = packConv2dWeight(u.w, 'forward');
      const pwT = packConv2dWeight(u.w, 'inputGrad');
      const frozen = { ...p, packedW: pw, packedWInputGrad: pwT };
      const again = loraConv2dBackward(u.x, frozen, dy, { ...opts(c), needInput: false, needA: false });
      expect(again.dx).toBeUndefined();
      expect(again.da).toBeUndefined();
      expectClose(await again.db!.toArray(), gb, TOL, 'dB with h recomputed');
      [y, h, dy, grads.dx, grads.da, grads.db, again.db, pw, pwT].forEach((v) => v?.release());
      release(u);
    });
  }

  it('K splits that cut through the pair-2 tiles (forward: h with B; input grad: dh with A) give the same results', async () => {
    const c = LORA_CASES[0];
    const d = loraData(c, 71);
    const u = upload(c, d);
    const p = params(u);
    const dy = t(seeded(numelOf(outShape(c)), 72), outShape(c), 'dy');
    const one = { tile: CONV_TILES.small, splitK: 1 };
    const ref = loraConv2d(u.x, p, { ...opts(c), plan: one });
    const refDx = loraConv2dBackward(u.x, p, dy, { ...opts(c), plan: one, needA: false, needB: false }).dx!;
    const want = await ref.y.toArray();
    const wantDx = await refDx.toArray();
    // 5 input + 3 LoRA channels in 8-wide K tiles: forward 9 + 1 tiles, input grad 9 + 9 (3×3 taps each); 4 and 7
    // splits start some shares inside pair 2 and step others across the pair-1 → pair-2 boundary.
    for (const splitK of [4, 7]) {
      const plan = { tile: CONV_TILES.small, splitK };
      const o = loraConv2d(u.x, p, { ...opts(c), plan });
      expectClose(await o.y.toArray(), want, TOL, `lora y split ${splitK}`);
      const g = loraConv2dBackward(u.x, p, dy, { ...opts(c), plan, needA: false, needB: false });
      expectClose(await g.dx!.toArray(), wantDx, TOL, `lora dx split ${splitK}`);
      [o.y, o.h, g.dx].forEach((v) => v?.release());
    }
    [ref.y, ref.h, refDx, dy].forEach((v) => v.release());
    release(u);
  });

  it('rejects LoRA factors of the wrong shape', () => {
    const x = Tensor.zeros(gpu, [1, 3, 4, 4]);
    const w = Tensor.zeros(gpu, [5, 3, 3, 3]);
    const a = Tensor.zeros(gpu, [2, 3, 1, 1]);
    const b = Tensor.zeros(gpu, [5, 2, 1, 1]);
    expect(() => loraConv2d(x, { w, a, b, scale: 1 }, { padding: 1 })).toThrow(/lora A .*\[2, 3, 1, 1\].*\[2, 3, 3, 3\]/);
    const a2 = Tensor.zeros(gpu, [2, 3, 3, 3]);
    const b2 = Tensor.zeros(gpu, [4, 2, 1, 1]);
    expect(() => loraConv2d(x, { w, a: a2, b: b2, scale: 1 }, { padding: 1 })).toThrow(/lora B .*\[5, 2, 1, 1\]/);
    [x, w, a, b, a2, b2].forEach((v) => v.release());
  });
});
