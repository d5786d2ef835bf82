// Dynamic loss scaling (src/autograd/loss_scaler.ts): gradients that underflow f16 come back with the scale, an
// overflowing step is detected and skipped with the scale backed off, and the scale grows after finite steps.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { LossScaler } from '../src/autograd/loss_scaler.js';
import { castOp, mul, sumAllOp } from '../src/autograd/ops.js';
import { Tape, Var } from '../src/autograd/tape.js';
import { Tensor } from '../src/tensor.js';
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

const n = 64;
// loss = Σ R ⊙ f32(f16(x)): d loss / dx = R, but the backward passes R through an f16 cast, where 1e-9 is below the
// smallest f16 subnormal (2^-24 ≈ 6e-8) and flushes to 0 unless scaled.
const R = Array.from(seeded(n, 5, 0.5e-9, 2e-9));

async function gradOfX(seedScale: LossScaler | undefined): Promise<{ grad: Tensor; scaler?: LossScaler }> {
  const x = new Var(Tensor.fromArray(gpu, seeded(n, 4), [n], { label: 'x' }), true, 'x');
  const r = new Var(Tensor.fromArray(gpu, R, [n], { label: 'R' }));
  const tape = new Tape();
  const loss = tape.record(() => sumAllOp(mul(castOp(castOp(x, 'f16'), 'f32'), r)));
  const seed = seedScale ? seedScale.seed(gpu) : Tensor.fromArray(gpu, [1], [1]);
  tape.backward(loss, seed);
  seed.release();
  const grad = x.grad!.reshape([n]);
  [loss, r, x].forEach((v) => v.dispose());
  return { grad };
}

describe('LossScaler', () => {
  it('keeps f16 gradients that underflow without it; unscaled they match the float64 gradient', async (ctx) => {
    if (!gpu.hasF16) ctx.skip(`no shader-f16 on ${gpu.describe()}`);
    const plain = await gradOfX(undefined);
    expect(Array.from(await plain.grad.toArray()).every((v) => v === 0), 'unscaled: every gradient flushed to 0 in f16').toBe(true);
    plain.grad.release();
    const scaler = new LossScaler({ initScale: 2 ** 20 });
    const scaled = await gradOfX(scaler);
    const r = await scaler.unscale([scaled.grad]);
    expect(r.finite).toBe(true);
    // Each gradient is R·2^20 rounded once to f16, then divided by 2^20 in f32 (exact): relative error ≤ 2^-11.
    expectClose(await r.grads![0].toArray(), R, { atol: 0, rtol: 2 ** -11 }, 'unscaled gradient');
    const normRef = Math.sqrt(R.reduce((s, v) => s + v * v, 0));
    expect(Math.abs(r.norm - normRef), 'norm of the unscaled gradients').toBeLessThanOrEqual(2 ** -11 * normRef);
    expect(scaler.scale).toBe(2 ** 20);
    r.grads!.forEach((g) => g.release());
    scaled.grad.release();
  });

  it('an overflowing step is reported non-finite, skipped, and the scale backs off', async (ctx) => {
    if (!gpu.hasF16) ctx.skip(`no shader-f16 on ${gpu.describe()}`);
    // R·2^60 ≈ 1e9 > 65504: the f16 gradient is Infinity.
    const scaler = new LossScaler({ initScale: 2 ** 60 });
    const { grad } = await gradOfX(scaler);
    const r = await scaler.unscale([grad]);
    expect(r.finite).toBe(false);
    expect(r.grads).toBeUndefined();
    expect(scaler.scale).toBe(2 ** 59);
    expect(scaler.skipped).toBe(1);
    grad.release();
  });

  it('grows the scale after growthInterval finite steps, never backs off below minScale, rejects bad options', () => {
    const s = new LossScaler({ initScale: 8, growthInterval: 2, minScale: 4 });
    s.update(true);
    expect(s.scale).toBe(8);
    s.update(true);
    expect(s.scale).toBe(16);
    s.update(false);
    s.update(false);
    s.update(false);
    expect(s.scale).toBe(4);
    expect(s.skipped).toBe(3);
    expect(() => new LossScaler({ backoffFactor: 1 })).toThrow(/backoffFactor must be in \(0, 1\), got 1/);
    expect(() => new LossScaler({ initScale: 0 })).toThrow(/initScale must be a positive finite number, got 0/);
  });
});
