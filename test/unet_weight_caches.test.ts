// Derived weight copies (WeightCacheOptions: fused self-attention QKV, cross-attention K/V batched over blocks,
// packed conv weights) change the kernels a forward runs, not its result: outputs and gradients with every cache on
// match those with every cache off (random weights, tiny config), with and without gradient checkpointing, and the
// caches follow a weight reload.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { sizeClass } from '../runtime/buffer_pool.js';
import { sumAllOp } from '../src/autograd/ops.js';
import { Tape, Var } from '../src/autograd/tape.js';
import { DEFAULT_WEIGHT_CACHES } from '../src/nn/module.js';
import { Tensor, numel } from '../src/tensor.js';
import { UNet2DConditionModel } from '../src/unet/unet.js';
import { relMaxErr } from './golden_io.js';
import { seeded, testGpu } from './helpers.js';
import { microUNetConfig } from './micro_unet.js';

let gpu: Gpu;
let unet: UNet2DConditionModel;

const CONFIG = microUNetConfig([1, 2]);
const [B, H, W, TOKENS] = [2, 4, 4, 3];
const OFF = { fuseQkv: false, batchCrossKv: false, packConvForward: false, packConvInputGrad: false };
const ON = { fuseQkv: true, batchCrossKv: true, packConvForward: true, packConvInputGrad: true };
// Same kernels on the same values; only the GEMM shapes (and so partial-tile padding) differ: f32 rounding only.
const TOL = 1e-5;

async function load(seed: number, trainable?: (name: string) => boolean): Promise<void> {
  let s = seed;
  await unet.loadWeights(new Map([...unet.parameters].map(([k, p]) => [k, { data: seeded(numel(p.shape), s++, -0.3, 0.3), shape: p.shape }])), { trainable });
}

/** Whether the named weights lie back to back in one buffer, in this order (loaded packed). */
function packed(names: string[]): boolean {
  const t = names.map((n) => unet.parameters.get(n)!.v.value);
  return t.every((x, i) => i === 0 || t[i - 1].isFollowedBy(x));
}

beforeAll(async () => {
  gpu = await testGpu();
  unet = new UNet2DConditionModel(gpu, CONFIG);
  await load(100);
});
afterAll(async () => {
  unet?.dispose();
  await gpu?.destroy();
});

/** Output and d(sum of outputs)/d sample; the text context needs no gradient (so its K/V may be batched). */
async function step(): Promise<{ out: Float32Array; dSample: Float32Array }> {
  const sample = new Var(Tensor.fromArray(gpu, seeded(B * 4 * H * W, 1), [B, 4, H, W]), true, 'sample');
  const ctx = new Var(Tensor.fromArray(gpu, seeded(B * TOKENS * 8, 2), [B, TOKENS, 8]));
  const textEmbeds = new Var(Tensor.fromArray(gpu, seeded(B * 8, 3), [B, 8]));
  const timeIds = new Var(Tensor.fromArray(gpu, Float32Array.from({ length: B * 6 }, (_, i) => 64 * (i + 1)), [B, 6]));
  const tape = new Tape();
  const y = tape.record(() => unet.forward({ sample, encoderHiddenStates: ctx, textEmbeds, timeIds, timestep: 500 }));
  const loss = tape.record(() => sumAllOp(y));
  const out = await y.value.toArray();
  const seed = Tensor.fromArray(gpu, [1], [1]);
  tape.backward(loss, seed);
  seed.release();
  const dSample = await sample.grad!.toArray();
  for (const v of [sample, ctx, textEmbeds, timeIds, y, loss]) v.dispose();
  return { out, dSample };
}

describe('UNet weight caches', () => {
  it('defaults: fused QKV, batched cross K/V on (views, no copies); conv packing off (it would copy)', () => {
    expect(unet.weightCaches).toEqual(DEFAULT_WEIGHT_CACHES);
    expect(DEFAULT_WEIGHT_CACHES).toEqual({ ...ON, packConvForward: false, packConvInputGrad: false });
  });

  it('every cache on vs off: same output and input gradient, also checkpointed; caches follow a reload', async () => {
    unet.weightCaches = OFF;
    const ref = await step();
    unet.weightCaches = ON;
    const before = gpu.pool.report().currentBytes;
    const on = await step();
    const cached = gpu.pool.report().currentBytes - before;
    console.log(`  derived weights: ${cached} bytes; output ${relMaxErr(on.out, ref.out).toExponential(2)}, d sample ${relMaxErr(on.dSample, ref.dSample).toExponential(2)}`);
    expect(cached, 'derived copies were built').toBeGreaterThan(0);
    expect(relMaxErr(on.out, ref.out)).toBeLessThan(TOL);
    expect(relMaxErr(on.dSample, ref.dSample)).toBeLessThan(TOL);

    unet.gradientCheckpointing = { resnets: true, transformerBlocks: true };
    const ckpt = await step();
    unet.gradientCheckpointing = {};
    expect(gpu.pool.report().currentBytes - before, 'a checkpointed step leaves only the caches').toBe(cached);
    expect(relMaxErr(ckpt.out, ref.out)).toBeLessThan(TOL);
    expect(relMaxErr(ckpt.dSample, ref.dSample)).toBeLessThan(TOL);

    // New weights: the caches are rebuilt, not reused.
    await load(500);
    const reloaded = await step();
    unet.weightCaches = OFF;
    expect(gpu.pool.report().currentBytes, 'turning the caches off frees them').toBe(before);
    const reloadedRef = await step();
    expect(relMaxErr(reloaded.out, ref.out), 'new weights, new output').toBeGreaterThan(1e-3);
    expect(relMaxErr(reloaded.out, reloadedRef.out)).toBeLessThan(TOL);
    expect(relMaxErr(reloaded.dSample, reloadedRef.dSample)).toBeLessThan(TOL);
  });

  it('one copy of each weight: q/k/v and the cross K/V of all blocks load packed, the stacked GEMM weights are views of them', async () => {
    const names = [...unet.parameters.keys()];
    const selfAttn = names.filter((n) => n.endsWith('attn1.to_q.weight')).map((n) => n.replace(/to_q\.weight$/, ''));
    const crossKv = names.filter((n) => /attn2\.to_[kv]\.weight$/.test(n));
    expect(selfAttn.length).toBeGreaterThan(1);
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    // Where the micro shapes put a weight off the binding alignment the pack is skipped (copies, as before).
    const aligned = (rowsBefore: number, K: number) => (rowsBefore * K * 4) % align === 0;
    for (const a of selfAttn) {
      const C = unet.parameters.get(`${a}to_q.weight`)!.shape[0];
      if (aligned(C, C) && aligned(2 * C, C)) expect(packed(['to_q', 'to_k', 'to_v'].map((p) => `${a}${p}.weight`)), a).toBe(true);
    }
    const rows = crossKv.map((n) => unet.parameters.get(n)!.shape[0]);
    const K = unet.parameters.get(crossKv[0])!.shape[1];
    const allAligned = rows.every((_, i) => aligned(rows.slice(0, i).reduce((a, b) => a + b, 0), K));
    expect(allAligned, `micro config off minStorageBufferOffsetAlignment ${align}: the test would check nothing`).toBe(true);
    expect(packed(crossKv), 'the to_k / to_v of every attn2, back to back').toBe(true);

    // Fused QKV and batched cross K/V on, conv packing off: what a forward keeps is the K/V of its context alone.
    unet.weightCaches = { ...ON, packConvForward: false, packConvInputGrad: false };
    const before = gpu.pool.report().currentBytes;
    await step();
    const kept = B * TOKENS * rows.reduce((a, b) => a + b, 0) * 4;
    expect(gpu.pool.report().currentBytes - before, 'no stacked weight copies, only the kept K/V').toBe(sizeClass(kept));
    unet.weightCaches = OFF;
    expect(gpu.pool.report().currentBytes).toBe(before);

    // Trainable base weights load apart (each gets its own gradient and may change every step).
    await load(100, () => true);
    expect(packed(crossKv.slice(0, 2))).toBe(false);
    const on = { ...ON };
    unet.weightCaches = on;
    await load(100);
    expect(packed(crossKv)).toBe(true);
  });

  it('batched cross K/V are reused while the same context tensor comes back unchanged (sampler steps)', async () => {
    unet.weightCaches = ON;
    const ctx = new Var(Tensor.fromArray(gpu, seeded(B * TOKENS * 8, 2), [B, TOKENS, 8]));
    const inputs = (t: number) => ({
      sample: new Var(Tensor.fromArray(gpu, seeded(B * 4 * H * W, 1), [B, 4, H, W])),
      encoderHiddenStates: ctx,
      textEmbeds: new Var(Tensor.fromArray(gpu, seeded(B * 8, 3), [B, 8])),
      timeIds: new Var(Tensor.fromArray(gpu, Float32Array.from({ length: B * 6 }, (_, i) => 64 * (i + 1)), [B, 6])),
      timestep: t,
    });
    // Dispatches recorded per forward, from the submitter's labels (a reused K/V skips the cross_kv GEMM).
    const run = async (t: number) => {
      const inp = inputs(t);
      const before = gpu.queue.dispatchCount;
      const y = unet.forward(inp);
      const n = gpu.queue.dispatchCount - before;
      const out = await y.value.toArray();
      for (const v of [inp.sample, inp.textEmbeds, inp.timeIds, y]) v.dispose();
      return { out, n };
    };
    const first = await run(500);
    const second = await run(500);
    expect(Array.from(second.out)).toEqual(Array.from(first.out));
    expect(second.n, 'the second forward skips the K/V projection').toBeLessThan(first.n);
    // New values in the same tensor: recomputed, equal to a forward that computes them afresh.
    ctx.value.write(seeded(B * TOKENS * 8, 9));
    const rewritten = await run(500);
    expect(rewritten.n, 'rewritten context: the K/V projection runs again').toBeGreaterThan(second.n);
    unet.weightCaches = OFF;
    const fresh = await run(500);
    expect(relMaxErr(rewritten.out, fresh.out)).toBeLessThan(TOL);
    expect(relMaxErr(rewritten.out, first.out), 'new context, new output').toBeGreaterThan(1e-3);
    ctx.dispose();
  });
});
