// The tape: gradients of a small composite network vs finite differences, frozen weights get none, checkpointing
// gives the same gradients, and activations return to the pool after backward.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { MissingBackwardError } from '../runtime/errors.js';
import { add, linear, mul, silu, sumAllOp } from '../src/autograd/ops.js';
import { Tape, Var, checkpoint, tidy, track } from '../src/autograd/tape.js';
import { Tensor } from '../src/tensor.js';
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

const X = seeded(4 * 6, 1);
const W1 = seeded(5 * 6, 2, -0.5, 0.5);
const B1 = seeded(5, 3);
const W2 = seeded(3 * 5, 4, -0.5, 0.5);
const R = seeded(4 * 3, 5);

/** loss = sum((W2 · silu(W1·x + b1) + skip) · R), skip = first 3 columns of x·1. */
function forward(x: Var, w1: Var, b1: Var, w2: Var, r: Var, useCheckpoint: boolean): Var {
  return tidy(() => {
    const block = (ins: Var[]) => silu(linear(ins[0], w1, b1));
    const h = useCheckpoint ? checkpoint('block', block, [x]) : block([x]);
    const y = linear(h, w2);
    return sumAllOp(mul(add(y, y), r));
  });
}

async function run(useCheckpoint: boolean, values = [X, W1, B1, W2]) {
  const x = new Var(Tensor.fromArray(gpu, values[0], [4, 6], { label: 'x' }), true);
  const w1 = new Var(Tensor.fromArray(gpu, values[1], [5, 6], { label: 'w1' }), true);
  const b1 = new Var(Tensor.fromArray(gpu, values[2], [5], { label: 'b1' }), true);
  const w2 = new Var(Tensor.fromArray(gpu, values[3], [3, 5], { label: 'w2 (frozen)' }), false);
  const r = new Var(Tensor.fromArray(gpu, R, [4, 3], { label: 'R' }));
  const tape = new Tape();
  const loss = tape.record(() => forward(x, w1, b1, w2, r, useCheckpoint));
  const lossValue = (await loss.value.toArray())[0];
  const seed = Tensor.fromArray(gpu, [1], [1]);
  tape.backward(loss, seed);
  seed.release();
  const out = {
    loss: lossValue,
    dx: await x.grad!.toArray(),
    dw1: await w1.grad!.toArray(),
    db1: await b1.grad!.toArray(),
    w2HasGrad: w2.grad !== undefined,
  };
  [x, w1, b1, w2, r, loss].forEach((v) => v.dispose());
  return out;
}

async function lossOnly(values: Float32Array[]): Promise<number> {
  const vars = [
    new Var(Tensor.fromArray(gpu, values[0], [4, 6])),
    new Var(Tensor.fromArray(gpu, values[1], [5, 6])),
    new Var(Tensor.fromArray(gpu, values[2], [5])),
    new Var(Tensor.fromArray(gpu, values[3], [3, 5])),
    new Var(Tensor.fromArray(gpu, R, [4, 3])),
  ];
  const loss = forward(vars[0], vars[1], vars[2], vars[3], vars[4], false);
  const v = (await loss.value.toArray())[0];
  [...vars, loss].forEach((t) => t.dispose());
  return v;
}

describe('autograd tape', () => {
  it('gradients match finite differences; frozen weights get none', async () => {
    const g = await run(false);
    expect(g.w2HasGrad).toBe(false);
    const eps = 1e-2;
    const inputs = [X, W1, B1, W2];
    for (const [which, grad] of [
      [0, g.dx],
      [1, g.dw1],
      [2, g.db1],
    ] as const) {
      const idx = [0, 3, inputs[which].length - 1];
      const fd: number[] = [];
      for (const i of idx) {
        const p = inputs.map((a) => a.slice());
        const m = inputs.map((a) => a.slice());
        p[which][i] += eps;
        m[which][i] -= eps;
        fd.push(((await lossOnly(p)) - (await lossOnly(m))) / (p[which][i] - m[which][i]));
      }
      expectClose(idx.map((i) => grad[i]), fd, { atol: 2e-2, rtol: 2e-2 }, `input ${which} vs finite differences`);
    }
  });

  it('checkpointing gives the same gradients', async () => {
    const a = await run(false);
    const b = await run(true);
    expect(b.loss).toBe(a.loss);
    expectClose(b.dx, a.dx, { atol: 1e-6, rtol: 1e-6 });
    expectClose(b.dw1, a.dw1, { atol: 1e-6, rtol: 1e-6 });
    expectClose(b.db1, a.db1, { atol: 1e-6, rtol: 1e-6 });
  });

  it('returns every activation to the pool after backward', async () => {
    await run(false); // warm the pool's size classes
    const before = gpu.pool.report().currentBytes;
    await run(false);
    await run(true);
    expect(gpu.pool.report().currentBytes).toBe(before);
  });

  it('an op without a backward is a named error when a gradient is needed', () => {
    const x = new Var(Tensor.zeros(gpu, [2]), true);
    const tape = new Tape();
    expect(() => tape.record(() => track(Tensor.zeros(gpu, [2]), { op: 'mystery_op', inputs: [x] }))).toThrow(MissingBackwardError);
    expect(() => tape.record(() => track(Tensor.zeros(gpu, [2]), { op: 'mystery_op', inputs: [x] }))).toThrow(/mystery_op/);
    // Without a gradient to propagate it is fine.
    const frozen = new Var(Tensor.zeros(gpu, [2]));
    expect(() => tape.record(() => track(Tensor.zeros(gpu, [2]), { op: 'mystery_op', inputs: [frozen] }))).not.toThrow();
  });
});
