// GPU random fills (kernels/random.wgsl) vs the CPU reference (same hash bits, float64 transforms), their statistics,
// and random init of a UNet's parameters (rules per name, determinism, finite forward; the SDXL config's size).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { DTypeError } from '../runtime/errors.js';
import { Var } from '../src/autograd/tape.js';
import { constantTensor, fillNormal, fillUniform, randomKey, randomNormal, randomUniform } from '../src/kernels/random.js';
import { initRandomParameters, initRule, nameStream } from '../src/nn/init.js';
import { normalRef, uniformRef } from '../src/reference/random.js';
import { Tensor, numel } from '../src/tensor.js';
import type { UNetConfigJson } from '../src/unet/config.js';
import { UNet2DConditionModel } from '../src/unet/unet.js';
import sdxlConfig from './fixtures/sdxl_config/unet_config.json' with { type: 'json' };
import tinyConfig from './fixtures/tiny_unet/config.json' with { type: 'json' };
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

async function values(t: Tensor): Promise<Float32Array> {
  const v = await t.toArray();
  t.release();
  return v;
}

function meanVar(x: ArrayLike<number>): { mean: number; variance: number } {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  const mean = s / x.length;
  let q = 0;
  for (let i = 0; i < x.length; i++) q += (x[i] - mean) ** 2;
  return { mean, variance: q / x.length };
}

describe('random fills vs the CPU reference', () => {
  // 1000 elements: several workgroups with a partial last one.
  const N = 1000;

  it('uniform [0, 1): the bits of every element match the reference exactly (two seeds × two streams)', async () => {
    for (const key of [{ seed: 0 }, { seed: 0, stream: 1 }, { seed: 12345, stream: 7 }, { seed: 0xffffffff, stream: 0xffffffff }]) {
      const got = await values(randomUniform(gpu, [N], key));
      const want = uniformRef(N, randomKey(key));
      // u = k / 2^24 is exact in f32, so equality is the right check.
      expect(Array.from(got), JSON.stringify(key)).toEqual(Array.from(want));
    }
  });

  it('uniform [low, high) and normal (mean, std) match the reference (f32 rounding; WGSL log/cos error)', async () => {
    const key = { seed: 3, stream: 42 };
    const u = await values(randomUniform(gpu, [4, 250], key, -2, 5));
    // a + (b − a)·u in f32: a few ulp of the range (7) near 0, where the sum cancels.
    expectClose(u, uniformRef(N, randomKey(key), -2, 5), { atol: 1e-6, rtol: 1e-6 }, 'uniform');
    const z = await values(randomNormal(gpu, [N], key, 0.5, 3));
    // Hardware cos is good to ~2^-21 absolute on [−π, π] (times √(−2 ln u1) <= 5.8, times std 3); ln is kept accurate
    // near u1 = 1 by the kernel's series (the built-in log alone gave 1e-4 there). Measured on lavapipe: 1.4e-6 max
    // absolute error over 2^21 samples of N(0, 1).
    expectClose(z, normalRef(N, randomKey(key), 0.5, 3), { atol: 3e-5, rtol: 1e-5 }, 'normal');
  });

  it('element i depends only on (seed, stream, i): a short tensor is the prefix of a long one', async () => {
    const key = { seed: 9, stream: 2 };
    const short = await values(randomNormal(gpu, [37], key));
    const long = await values(randomNormal(gpu, [N], key));
    expect(Array.from(short)).toEqual(Array.from(long.subarray(0, 37)));
  });

  it('fills in place and overwrites what the (pooled) buffer held; constant fill', async () => {
    const t = Tensor.fromArray(gpu, seeded(N, 5), [N]);
    fillUniform(t, { seed: 1 });
    expect(Array.from(await t.toArray())).toEqual(Array.from(uniformRef(N, randomKey({ seed: 1 }))));
    fillNormal(t, { seed: 1 }, 0, 0);
    expect((await t.toArray()).every((x) => x === 0)).toBe(true);
    t.release();
    const c = await values(constantTensor(gpu, [3, 5, 7], -1.25));
    expect(c.length).toBe(105);
    expect(c.every((x) => x === -1.25)).toBe(true);
  });
});

describe('random fills: statistics', () => {
  const N = 1 << 16;

  it('normal: mean, variance, tails and the 3σ rule on 65536 samples', async () => {
    const z = await values(randomNormal(gpu, [N], { seed: 77 }));
    const { mean, variance } = meanVar(z);
    // Standard error of the mean 1/256; of the variance √(2/N) ≈ 0.0055: 5σ bounds.
    expect(Math.abs(mean)).toBeLessThan(5 / 256);
    expect(Math.abs(variance - 1)).toBeLessThan(0.03);
    const beyond3 = z.filter((x) => Math.abs(x) > 3).length / N;
    expect(beyond3).toBeGreaterThan(0.0027 - 0.0012);
    expect(beyond3).toBeLessThan(0.0027 + 0.0012);
    expect(z.every((x) => Math.abs(x) <= 5.8)).toBe(true);
  });

  it('uniform: χ² over 64 bins, lag-1 and cross-stream correlation near 0', async () => {
    const u = await values(randomUniform(gpu, [N], { seed: 78 }));
    const bins = new Array<number>(64).fill(0);
    for (const x of u) bins[Math.floor(x * 64)]++;
    const e = N / 64;
    const chi2 = bins.reduce((s, b) => s + (b - e) ** 2 / e, 0);
    // 63 degrees of freedom: the 99.9th percentile is 103.4.
    expect(chi2).toBeLessThan(103.4);
    const corr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      const ma = meanVar(a);
      const mb = meanVar(b);
      let c = 0;
      for (let i = 0; i < a.length; i++) c += (a[i] - ma.mean) * (b[i] - mb.mean);
      return c / a.length / Math.sqrt(ma.variance * mb.variance);
    };
    // Standard error of a correlation ≈ 1/√N = 0.004: 5σ bound.
    expect(Math.abs(corr(u.subarray(1), u.subarray(0, N - 1)))).toBeLessThan(0.02);
    const other = await values(randomUniform(gpu, [N], { seed: 78, stream: 1 }));
    const nextSeed = await values(randomUniform(gpu, [N], { seed: 79 }));
    expect(Math.abs(corr(u, other))).toBeLessThan(0.02);
    expect(Math.abs(corr(u, nextSeed))).toBeLessThan(0.02);
  });
});

describe('random fills: bad input', () => {
  it('refuses bad seeds, ranges and dtypes, naming them', () => {
    const t = Tensor.empty(gpu, [4]);
    expect(() => fillNormal(t, { seed: -1 })).toThrow(/seed must be an integer in \[0, 2\^32\), got -1/);
    expect(() => fillNormal(t, { seed: 1.5 })).toThrow(/seed/);
    expect(() => fillUniform(t, { seed: 0, stream: 2 ** 32 })).toThrow(/stream/);
    expect(() => fillUniform(t, { seed: 0 }, 1, 0)).toThrow(/low <= high/);
    expect(() => fillNormal(t, { seed: 0 }, 0, -1)).toThrow(/std >= 0/);
    t.release();
    if (gpu.hasF16) {
      const h = Tensor.empty(gpu, [4], 'f16');
      expect(() => fillNormal(h, { seed: 0 })).toThrow(DTypeError);
      h.release();
    }
  });
});

describe('random UNet parameters', () => {
  it('rules: bias 0, norm weight 1, weights N(0, 1/fan_in); streams per name', () => {
    expect(initRule('conv_in.bias', [320])).toEqual({ kind: 'constant', value: 0 });
    expect(initRule('down_blocks.0.resnets.0.norm1.weight', [320])).toEqual({ kind: 'constant', value: 1 });
    expect(initRule('conv_in.weight', [320, 4, 3, 3])).toEqual({ kind: 'normal', std: 1 / 6 });
    expect(initRule('time_embedding.linear_1.weight', [1280, 320], 2)).toEqual({ kind: 'normal', std: 2 / Math.sqrt(320) });
    expect(nameStream('a.weight')).not.toBe(nameStream('b.weight'));
  });

  it('tiny UNet: parameters set by their rule (values checked for one resnet / transformer block / embedding), same seed → same values, forward output finite', async () => {
    const unet = new UNet2DConditionModel(gpu, tinyConfig as UNetConfigJson);
    let progress = 0;
    const summary = initRandomParameters(gpu, unet.parameters, { seed: 4, onProgress: (done) => (progress = done) });
    const count = [...unet.parameters.values()].reduce((s, p) => s + numel(p.shape), 0);
    expect(summary).toEqual({ tensors: unet.parameters.size, params: count, bytes: 4 * count });
    expect(progress).toBe(unet.parameters.size);
    // Every parameter of one resnet, one transformer block and the embeddings (all rules occur there).
    const checked = [...unet.parameters].filter(([n]) => /^(time_embedding|add_embedding|conv_in|down_blocks\.0\.resnets\.0|down_blocks\.1\.attentions\.0\.transformer_blocks\.0)\./.test(n));
    const ruleKey = (n: string, shape: readonly number[]) => {
      const r = initRule(n, shape);
      return r.kind === 'normal' ? 'normal' : `constant ${r.value}`;
    };
    expect(new Set(checked.map(([n, p]) => ruleKey(n, p.shape)))).toEqual(new Set(['normal', 'constant 0', 'constant 1']));
    for (const [name, p] of checked) {
      const v = await p.v.value.toArray();
      const rule = initRule(name, p.shape);
      if (rule.kind === 'constant') expect(v.every((x) => x === rule.value), name).toBe(true);
      else {
        // The exact values: the reference with this parameter's stream.
        expectClose(v, normalRef(v.length, randomKey({ seed: 4, stream: nameStream(name) }), 0, rule.std), { atol: 1e-5 * rule.std, rtol: 1e-5 }, name);
      }
    }
    const w = unet.parameters.get('conv_in.weight')!;
    const before = await w.v.value.toArray();
    initRandomParameters(gpu, unet.parameters, { seed: 4 });
    expect(Array.from(await w.v.value.toArray())).toEqual(Array.from(before));
    initRandomParameters(gpu, unet.parameters, { seed: 5 });
    expect(Array.from(await w.v.value.toArray())).not.toEqual(Array.from(before));

    const C = tinyConfig.cross_attention_dim;
    const v = (t: Tensor) => new Var(t);
    const inputs = {
      sample: v(randomNormal(gpu, [1, 4, 8, 8], { seed: 1 })),
      encoderHiddenStates: v(randomNormal(gpu, [1, 77, C], { seed: 2 })),
      textEmbeds: v(randomNormal(gpu, [1, tinyConfig.projection_class_embeddings_input_dim - 6 * tinyConfig.addition_time_embed_dim], { seed: 3 })),
      timeIds: v(Tensor.fromArray(gpu, [1024, 1024, 0, 0, 1024, 1024], [1, 6])),
    };
    const y = unet.forward({ ...inputs, timestep: 999 });
    const out = await y.value.toArray();
    expect(y.shape).toEqual([1, 4, 8, 8]);
    expect(out.every(Number.isFinite)).toBe(true);
    // A random UNet with variance-keeping weights: the output is O(1), neither vanishing nor exploding.
    const { variance } = meanVar(out);
    expect(variance).toBeGreaterThan(1e-3);
    expect(variance).toBeLessThan(1e3);
    y.dispose();
    Object.values(inputs).forEach((x) => x.dispose());
    unet.dispose();
  });

  it('SDXL base config: 1680 tensors, 2,567,463,684 parameters (spec/sdxl.md), nothing allocated', () => {
    const before = gpu.pool.report().currentBytes;
    const unet = new UNet2DConditionModel(gpu, sdxlConfig as UNetConfigJson);
    expect(unet.parameters.size).toBe(1680);
    expect([...unet.parameters.values()].reduce((s, p) => s + numel(p.shape), 0)).toBe(2_567_463_684);
    expect(gpu.pool.report().currentBytes).toBe(before);
  });
});
