// AdamW and gradient-norm clipping vs torch (one clipped step of the TCD LoRA training golden), vs a float64 CPU
// AdamW over several steps, and fused clipping vs clip-then-step.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { type AdamWSlot, adamwStep, clipCoefficient, clipGradNorm, scaleByClipCoef } from '../src/kernels/adamw.js';
import { adamwRef, clipCoefRef } from '../src/reference/adamw.js';
import { Tensor } from '../src/tensor.js';
import golden from './fixtures/adamw_step.json' with { type: 'json' };
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

function slot(p: ArrayLike<number>, g: ArrayLike<number>, label = 'p'): AdamWSlot {
  const n = p.length;
  return {
    param: Tensor.fromArray(gpu, p, [n], { label }),
    grad: Tensor.fromArray(gpu, g, [n], { label: `${label}.grad` }),
    m: Tensor.zeros(gpu, [n], 'f32', `${label}.m`),
    v: Tensor.zeros(gpu, [n], 'f32', `${label}.v`),
  };
}

const release = (s: AdamWSlot) => [s.param, s.grad, s.m, s.v].forEach((t) => t.release());

describe('clipping vs torch.nn.utils.clip_grad_norm_', () => {
  it('clip coefficient and clipped grads are bit-identical to torch (golden norm 1.4457 → coef 0.6917)', async () => {
    const norm = Tensor.fromArray(gpu, [golden.grad_norm_preclip], [], { label: 'norm' });
    const coef = clipCoefficient(norm, golden.max_norm);
    expect((await coef.toArray())[0]).toBe(Math.fround(golden.clip_coef));
    // torch scales in float32: g · coef rounded once (the golden records clipped − grad·coef = 0).
    const grads = golden.tensors.map((t) => Tensor.fromArray(gpu, t.grad, [t.grad.length]));
    scaleByClipCoef(grads, norm, golden.max_norm);
    for (const [k, t] of golden.tensors.entries()) {
      const want = Float32Array.from(t.grad, (g) => Math.fround(Math.fround(g) * Math.fround(golden.clip_coef)));
      expect(Array.from(await grads[k].toArray())).toEqual(Array.from(want));
    }
    [norm, coef, ...grads].forEach((t) => t.release());
  });

  for (const maxNorm of [0.5, 100]) {
    it(`clipGradNorm over several tensors (incl. size 1), maxNorm ${maxNorm}: norm and scaled grads`, async () => {
      const gs = [seeded(1000, 51), seeded(1, 52, 2, 3), seeded(37, 53, -5, 5)];
      const ts = gs.map((g) => Tensor.fromArray(gpu, g, [g.length]));
      const norm = clipGradNorm(ts, maxNorm);
      const ref = clipCoefRef(gs, maxNorm);
      expect(ref.coef < 1).toBe(maxNorm < ref.norm);
      expectClose(await norm.toArray(), [ref.norm], { atol: 0, rtol: 2e-6 }, 'norm');
      for (const [k, t] of ts.entries())
        expectClose(await t.toArray(), Array.from(gs[k], (g) => g * ref.coef), { atol: 1e-7, rtol: 2e-6 }, `grad ${k}`);
      [norm, ...ts].forEach((t) => t.release());
    });
  }
});

describe('adamwStep', () => {
  it('one clipped step of the TCD LoRA training golden matches torch.optim.AdamW (fused and clip-then-step)', async () => {
    const hp = { lr: golden.lr, beta1: golden.beta1, beta2: golden.beta2, eps: golden.eps, weightDecay: golden.weight_decay };
    const norm = Tensor.fromArray(gpu, [golden.grad_norm_preclip], [], { label: 'norm' });
    const fused = golden.tensors.map((t) => slot(t.param, t.grad, t.key));
    adamwStep(fused, golden.step, hp, { norm, maxNorm: golden.max_norm });
    const composed = golden.tensors.map((t) => slot(t.param, t.grad, t.key));
    scaleByClipCoef(composed.map((s) => s.grad), norm, golden.max_norm);
    adamwStep(composed, golden.step, hp);
    for (const [k, t] of golden.tensors.entries()) {
      const got = await fused[k].param.toArray();
      // torch's own float32 vs float64 update differs by up to 6.4e-8 here (train_step.json); params are O(0.1–1)
      // and the update O(1e-4): allow a couple of float32 ulps of the parameter.
      expectClose(got, Float32Array.from(t.updated), { atol: 1e-8, rtol: 3e-7 }, `${t.key} vs torch`);
      // Fused clipping performs exactly the same float32 operations as scaling first.
      expect(Array.from(got), `${t.key}: fused vs clip-then-step`).toEqual(Array.from(await composed[k].param.toArray()));
      expect(Array.from(await fused[k].m.toArray())).toEqual(Array.from(await composed[k].m.toArray()));
      expect(Array.from(await fused[k].v.toArray())).toEqual(Array.from(await composed[k].v.toArray()));
    }
    // The fused path leaves the gradients unscaled.
    expect(Array.from(await fused[0].grad.toArray())).toEqual(Array.from(Float32Array.from(golden.tensors[0].grad)));
    [...fused, ...composed].forEach(release);
    norm.release();
  });

  // Three tensors: the first two go through one adamw_pair dispatch, the third through adamw.
  it('six steps with changing grads match the float64 reference (n = 1000, 1 and 37, one zero grad)', async () => {
    const hp = { lr: 1e-2, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1 };
    const sizes = [1000, 1, 37];
    const p64 = sizes.map((n, k) => Float64Array.from(seeded(n, 60 + k)));
    const m64 = sizes.map((n) => new Float64Array(n));
    const v64 = sizes.map((n) => new Float64Array(n));
    const slots = sizes.map((n, k) => slot(Float32Array.from(p64[k]), new Float32Array(n), `p${k}`));
    for (let step = 1; step <= 6; step++) {
      const gs = sizes.map((n, k) => seeded(n, 100 * step + k, -3, 3));
      gs[0][7] = 0;
      slots.forEach((s, k) => s.grad.write(gs[k]));
      adamwStep(slots, step, hp);
      sizes.forEach((_, k) => adamwRef(p64[k], gs[k], m64[k], v64[k], step, hp));
    }
    for (const [k, s] of slots.entries()) {
      // float32 state over six steps: a few ulps of p, m and v.
      expectClose(await s.param.toArray(), p64[k], { atol: 1e-7, rtol: 1e-6 }, `p${k}`);
      expectClose(await s.m.toArray(), m64[k], { atol: 1e-7, rtol: 1e-6 }, `m${k}`);
      expectClose(await s.v.toArray(), v64[k], { atol: 1e-7, rtol: 1e-6 }, `v${k}`);
    }
    slots.forEach(release);
  });

  it('rejects mismatched or aliased tensors and bad hyperparameters', () => {
    const s = slot(seeded(4, 1), seeded(4, 2));
    const short = Tensor.zeros(gpu, [3]);
    expect(() => adamwStep([{ ...s, m: short }], 1)).toThrow(ShapeError);
    expect(() => adamwStep([{ ...s, m: short }], 1)).toThrow(/m '.*' has shape \[3\], expected 4 elements/);
    expect(() => adamwStep([{ ...s, v: s.m }], 1)).toThrow(/four distinct buffers/);
    expect(() => adamwStep([s], 0)).toThrow(/step must be an integer >= 1/);
    expect(() => adamwStep([s], 1, { beta2: 1 })).toThrow(/beta2/);
    const norm2 = Tensor.zeros(gpu, [2]);
    expect(() => adamwStep([s], 1, {}, { norm: norm2, maxNorm: 1 })).toThrow(/norm '.*' has shape \[2\], expected one element/);
    release(s);
    [short, norm2].forEach((t) => t.release());
  });
});
