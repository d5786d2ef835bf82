// The full SDXL UNet's memory plan without a GPU: the library's ordinary code path run against the recording device of
// bench/dry_run_host.ts (H100 limits), so binding-limit checks, the buffer pool and the autograd lifetimes are the real
// ones. Also the dispatch-label grouping of bench/op_breakdown.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '../runtime/device.js';
import { LimitError } from '../runtime/errors.js';
import { mul, sumAllOp } from '../src/autograd/ops.js';
import { Tape, Var, tidy } from '../src/autograd/tape.js';
import { constantTensor, randomNormal } from '../src/kernels/random.js';
import { initRandomParameters } from '../src/nn/init.js';
import { Tensor } from '../src/tensor.js';
import type { UNetConfigJson } from '../src/unet/config.js';
import { UNet2DConditionModel } from '../src/unet/unet.js';
import { H100_LIMITS, dryRunHost } from '../bench/dry_run_host.js';
import { isBackward, labelKind, opType, summarize } from '../bench/op_breakdown.js';
import sdxlConfig from './fixtures/sdxl_config/unet_config.json' with { type: 'json' };

const SDXL_PARAMS = 2_567_463_684;
const host = dryRunHost();
let gpu: Gpu;
let unet: UNet2DConditionModel;
let inputs: { sample: Var; encoderHiddenStates: Var; textEmbeds: Var; timeIds: Var; timestep: number };

beforeAll(async () => {
  gpu = await Gpu.create({ host });
  unet = new UNet2DConditionModel(gpu, sdxlConfig as UNetConfigJson);
  initRandomParameters(gpu, unet.parameters, { seed: 0 });
  const v = (t: Tensor) => new Var(t);
  inputs = {
    sample: v(randomNormal(gpu, [1, 4, 128, 128], { seed: 1 })),
    encoderHiddenStates: v(randomNormal(gpu, [1, 77, 2048], { seed: 2 })),
    textEmbeds: v(randomNormal(gpu, [1, 1280], { seed: 3 })),
    timeIds: v(Tensor.fromArray(gpu, [1024, 1024, 0, 0, 1024, 1024], [1, 6])),
    timestep: 999,
  };
});
afterAll(() => gpu?.destroy());

const GiB = 2 ** 30;

/** Pool peak above what was live before one run of fn (bytes). */
function peakOf(fn: () => void): number {
  gpu.pool.resetPeak();
  const base = gpu.pool.report().currentBytes;
  fn();
  return gpu.pool.report().peakBytes - base;
}

describe('SDXL UNet at 1024² on the dry-run device (H100 limits)', () => {
  it('weights: 1680 tensors, 2,567,463,684 f32 parameters; the largest weight binding fits', () => {
    expect(unet.parameters.size).toBe(1680);
    const bytes = [...unet.parameters.values()].reduce((s, p) => s + p.v.value.bytes, 0);
    expect(bytes).toBe(4 * SDXL_PARAMS);
    // up_blocks.0.resnets.0.conv1.weight [1280, 2560, 3, 3] is the largest tensor (shared/spec/sdxl.md §10.2).
    expect(host.stats.largestBinding.bytes).toBe(1280 * 2560 * 9 * 4);
  });

  it('forward: every binding within maxStorageBufferBindingSize; activation peak reported', () => {
    host.stats.windowBinding = { bytes: 0, label: '' };
    // The first forward builds the weight caches (fused QKV, batched cross-attention K/V, packed convs: ~3.9 GB for
    // SDXL, kept until the weights change); the second one's peak is activations alone.
    unet.forward(inputs).dispose();
    const peak = peakOf(() => unet.forward(inputs).dispose());
    console.log(`[plan] forward: pool peak above weights ${(peak / 2 ** 20).toFixed(1)} MiB; largest binding ${(host.stats.windowBinding.bytes / 2 ** 20).toFixed(1)} MiB (${host.stats.windowBinding.label})`);
    expect(host.stats.windowBinding.bytes).toBeLessThanOrEqual(H100_LIMITS.maxStorageBufferBindingSize);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(4 * GiB);
  });

  it('LoRA training step: gradient checkpointing lowers the activation peak', () => {
    unet.initLora({ rank: 4, targetModules: ['to_q', 'to_k', 'to_v', 'to_out.0', 'proj_in', 'proj_out', 'ff.net.0.proj', 'ff.net.2', 'conv1', 'conv2', 'conv_shortcut', 'downsamplers.0.conv', 'upsamplers.0.conv', 'time_emb_proj'] });
    const one = constantTensor(gpu, [1], 1);
    const step = () => {
      const tape = new Tape();
      const loss = tape.record(() =>
        tidy(() => {
          const y = unet.forward(inputs);
          return sumAllOp(mul(y, y));
        }),
      );
      tape.backward(loss, one);
      loss.dispose();
      for (const p of unet.loraParameters()) p.var.zeroGrad();
    };
    host.stats.windowBinding = { bytes: 0, label: '' };
    const plain = peakOf(step);
    unet.gradientCheckpointing = { resnets: true, transformerBlocks: true };
    const ckpt = peakOf(step);
    unet.gradientCheckpointing = {};
    console.log(`[plan] train step (LoRA r4): peak above baseline ${(plain / GiB).toFixed(2)} GiB, with checkpointing ${(ckpt / GiB).toFixed(2)} GiB`);
    expect(host.stats.windowBinding.bytes).toBeLessThanOrEqual(H100_LIMITS.maxStorageBufferBindingSize);
    expect(ckpt).toBeLessThan(plain / 2);
    one.release();
    unet.clearLora();
  });

  it('the binding check is live: with a 64 MiB limit the forward fails naming the tensor', async () => {
    const small = await Gpu.create({ host: dryRunHost({ limits: { maxStorageBufferBindingSize: 64 * 2 ** 20 } }) });
    const w = randomNormal(small, [1280, 2560], { seed: 0 });
    expect(() => randomNormal(small, [1280, 2560, 3, 3], { seed: 0 }, 0, 1, 'up_blocks.0.resnets.0.conv1.weight')).toThrow(LimitError);
    expect(() => randomNormal(small, [1280, 2560, 3, 3], { seed: 0 }, 0, 1, 'up_blocks.0.resnets.0.conv1.weight')).toThrow(/up_blocks\.0\.resnets\.0\.conv1\.weight/);
    w.release();
    small.destroy();
  });
});

describe('per-op-type breakdown of dispatch labels', () => {
  it('groups layer and kernel labels by op type and phase', () => {
    const cases: [string, string, boolean][] = [
      ['up_blocks.0.attentions.1.transformer_blocks.3.attn1.forward', 'attention', false],
      ['mid_block.attentions.0.transformer_blocks.9.attn2 backward.dkdv', 'attention', true],
      ['down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q', 'linear (matmul)', false],
      ['down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_out.0 backward.dA', 'linear (matmul)', true],
      ['up_blocks.1.attentions.2.transformer_blocks.0.ff.net.0.proj.h', 'linear (matmul)', false],
      ['up_blocks.0.resnets.2.time_emb_proj', 'linear (matmul)', false],
      ['up_blocks.0.resnets.0.conv_shortcut backward.dx', 'conv2d', true],
      ['down_blocks.0.downsamplers.0.conv', 'conv2d', false],
      ['conv_in', 'conv2d', false],
      ['conv2d.pack_weight', 'conv2d weight packing', false],
      ['matmul', 'linear (matmul)', false],
      ['group_norm.bwd_reduce', 'group_norm', true],
      ['group_norm.apply+silu', 'group_norm', false],
      ['layer_norm.bwd_dx', 'layer_norm', true],
      ['geglu_grad_vec4', 'geglu', true],
      ['binary.add', 'elementwise', false],
      ['unary_grad.silu', 'elementwise', true],
      ['resample.concat', 'resample / concat', false],
      ['adamw.adamw', 'adamw', false],
    ];
    for (const [label, type, bwd] of cases) {
      expect(opType(label), label).toBe(type);
      expect(isBackward(label), label).toBe(bwd);
    }
    expect(labelKind('up_blocks.1.attentions.2.transformer_blocks.1.attn1.forward')).toBe('up_blocks.1.attentions.#.transformer_blocks.#.attn1.forward');
    const p = summarize([
      { label: 'up_blocks.1.attentions.0.transformer_blocks.0.attn1.forward', ms: 2 },
      { label: 'up_blocks.1.attentions.1.transformer_blocks.1.attn1.forward', ms: 3 },
      { label: 'up_blocks.1.attentions.1.transformer_blocks.1.attn1 backward.dq', ms: 4 },
      { label: 'binary.add', ms: 1 },
    ]);
    expect(p.gpu_ms).toBe(10);
    expect(p.groups[0]).toEqual({ group: 'attention', ms: 9, backward_ms: 4, dispatches: 3 });
    expect(p.top[0]).toEqual({ label: 'up_blocks.1.attentions.#.transformer_blocks.#.attn1.forward', ms: 5, dispatches: 2 });
  });
});
