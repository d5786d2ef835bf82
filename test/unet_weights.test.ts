// Loading UNet checkpoints and LoRA files that do not fit: missing, unexpected and mis-shaped keys are reported
// together and by name; a truncated safetensors file is a clear error; unsupported configs are refused naming the key.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { bytesSource } from '../src/io/byte_source.js';
import { parseLora } from '../src/io/lora_format.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { numel } from '../src/tensor.js';
import type { UNetConfigJson } from '../src/unet/config.js';
import { LoraError } from '../src/unet/lora.js';
import { UNet2DConditionModel } from '../src/unet/unet.js';
import { type StateDictEntry, StateDictError } from '../src/unet/weights.js';
import { testGpu } from './helpers.js';
import { microUNetConfig } from './micro_unet.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

const CONFIG = microUNetConfig();

function zerosFor(unet: UNet2DConditionModel): Map<string, StateDictEntry> {
  return new Map([...unet.parameters].map(([k, p]) => [k, { data: new Float32Array(numel(p.shape)), shape: p.shape }]));
}

async function loadError(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the load to fail');
}

describe('UNet checkpoint loading', () => {
  it('a complete state dict loads, from a map and from safetensors bytes', async () => {
    const unet = new UNet2DConditionModel(gpu, CONFIG);
    const sd = zerosFor(unet);
    await unet.loadWeights(sd);
    expect(unet.parameters.get('conv_in.weight')!.var!.shape).toEqual([8, 4, 3, 3]);
    const bytes = encodeSafetensors(Object.fromEntries([...sd].map(([k, e]) => [k, { dtype: 'F16' as const, ...e }])));
    await unet.loadWeights(bytesSource(bytes, 'tiny.safetensors'));
    unet.dispose();
  });

  it('missing, unexpected and mis-shaped keys are listed by name in one error', async () => {
    const unet = new UNet2DConditionModel(gpu, CONFIG);
    const sd = zerosFor(unet);
    sd.delete('conv_in.weight');
    sd.delete('down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight');
    sd.set('model.diffusion_model.extra', { data: new Float32Array(3), shape: [3] });
    sd.set('conv_out.bias', { data: new Float32Array(5), shape: [5] });
    const e = await loadError(unet.loadWeights(sd));
    expect(e).toBeInstanceOf(StateDictError);
    const err = e as StateDictError;
    expect(err.missing).toEqual(['conv_in.weight [8, 4, 3, 3]', 'down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight [16, 8]']);
    expect(err.unexpected).toEqual(['model.diffusion_model.extra [3]']);
    expect(err.mismatched).toEqual([{ name: 'conv_out.bias', expected: [4], got: [5] }]);
    for (const s of ['missing (2)', 'conv_in.weight', 'attn2.to_k.weight', 'unexpected (1)', 'model.diffusion_model.extra', 'wrong shape (1)', 'conv_out.bias: model [4], checkpoint [5]'])
      expect(err.message).toContain(s);
    // Nothing was uploaded: the check runs before the first tensor is read.
    expect(unet.parameters.get('conv_out.weight')!.var).toBeUndefined();
    expect(() => unet.parameters.get('conv_out.weight')!.v).toThrow(/conv_out\.weight.*not loaded/);
  });

  it('a truncated safetensors file is a clear error naming the file', async () => {
    const unet = new UNet2DConditionModel(gpu, CONFIG);
    const bytes = encodeSafetensors(Object.fromEntries([...zerosFor(unet)].map(([k, e]) => [k, { dtype: 'F32' as const, ...e }])));
    const cut = await loadError(unet.loadWeights(bytesSource(bytes.subarray(0, bytes.length - 100), 'cut.safetensors')));
    expect(cut.message).toMatch(/cut\.safetensors: malformed safetensors: .*(truncated|cover)/);
    const header = await loadError(unet.loadWeights(bytesSource(bytes.subarray(0, 64), 'short.safetensors')));
    expect(header.message).toMatch(/short\.safetensors: .*header length \d+ runs past the end.*truncated/);
  });
});

describe('LoRA loading', () => {
  it('unknown modules, missing halves and wrong shapes are listed by name', async () => {
    const unet = new UNet2DConditionModel(gpu, CONFIG);
    const z = (shape: number[]) => ({ data: new Float32Array(numel(shape)), shape });
    const q = 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q';
    const e = await loadError(
      unet.loadLora(
        new Map([
          [`${q}.lora_A.weight`, z([4, 16])],
          [`${q}.lora_B.weight`, z([16, 3])],
          ['down_blocks.0.resnets.0.conv1.lora_A.weight', z([4, 8, 3, 3])],
          ['mid_block.nothing_here.lora_A.weight', z([4, 8])],
          ['mid_block.nothing_here.lora_B.weight', z([8, 4])],
          ['text_model.something', z([1])],
        ]),
        { scale: 1 },
      ),
    );
    expect(e).toBeInstanceOf(LoraError);
    for (const s of [
      `${q}.lora_B.weight: shape [16, 3], expected [16, 4]`,
      'down_blocks.0.resnets.0.conv1: lora_B.weight is missing',
      'unknown module mid_block.nothing_here',
      'unexpected key text_model.something',
    ])
      expect(e.message).toContain(s);
  });

  it('conv and linear adapters attach with peft shapes (and an optional unet. prefix)', async () => {
    const unet = new UNet2DConditionModel(gpu, CONFIG);
    const z = (shape: number[]) => ({ data: new Float32Array(numel(shape)), shape });
    const adapted = await unet.loadLora(
      new Map([
        ['unet.down_blocks.0.resnets.0.conv1.lora_A.weight', z([2, 8, 3, 3])],
        ['unet.down_blocks.0.resnets.0.conv1.lora_B.weight', z([8, 2, 1, 1])],
        ['up_blocks.0.attentions.0.proj_in.lora_A.weight', z([2, 16])],
        ['up_blocks.0.attentions.0.proj_in.lora_B.weight', z([16, 2])],
      ]),
      { scale: 0.5 },
    );
    expect(adapted).toEqual(['down_blocks.0.resnets.0.conv1', 'up_blocks.0.attentions.0.proj_in']);
    expect(unet.loraParameters().map((p) => [p.name, p.var.requiresGrad])).toEqual([
      ['down_blocks.0.resnets.0.conv1.lora_A.weight', true],
      ['down_blocks.0.resnets.0.conv1.lora_B.weight', true],
      ['up_blocks.0.attentions.0.proj_in.lora_A.weight', true],
      ['up_blocks.0.attentions.0.proj_in.lora_B.weight', true],
    ]);
    const made = unet.initLora({ rank: 4, alpha: 8, targetModules: ['to_q', 'conv2'] });
    expect(made).toContain('down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q');
    expect(made).toContain('up_blocks.1.resnets.1.conv2');
    expect(made.every((m) => m.endsWith('.to_q') || m.endsWith('.conv2'))).toBe(true);
    unet.dispose();
  });
});

describe('LoRA from parseLora (src/io/lora_format.ts)', () => {
  it('kohya-named adapters resolve against the model and attach with alpha / rank × weight', async () => {
    const unet = new UNet2DConditionModel(gpu, CONFIG);
    const f = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Float32Array(numel(shape)) });
    const bytes = encodeSafetensors({
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight': f([2, 8]),
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight': f([16, 2]),
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.alpha': { dtype: 'F32', shape: [], data: Float32Array.of(1) },
      'lora_unet_up_blocks_1_resnets_0_conv_shortcut.lora_down.weight': f([2, 24, 1, 1]),
      'lora_unet_up_blocks_1_resnets_0_conv_shortcut.lora_up.weight': f([8, 2, 1, 1]),
    });
    const set = await parseLora(bytesSource(bytes, 'kohya.safetensors'), { modules: unet.loraModules() });
    const attached = unet.attachLora(set, { weight: 0.5 });
    expect(attached).toEqual(['down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k', 'up_blocks.1.resnets.0.conv_shortcut']);
    // Each adapter's own scale (alpha 1 / rank 2 for to_k) × the weight.
    const scale = (m: string) => unet.ctx.loraTargets.get(m)!.lora!.scale;
    expect(scale(attached[0])).toBe(0.25);
    expect(attached.map(scale)).toEqual(attached.map((m) => set.adapters.find((a) => a.module === m)!.scale * 0.5));
    expect(unet.loraParameters().every((p) => p.var.requiresGrad)).toBe(true);
    unet.dispose();
  });
});

describe('UNet config', () => {
  it('unsupported settings are refused naming the key', () => {
    expect(() => new UNet2DConditionModel(gpu, { ...CONFIG, down_block_types: ['DownBlock2D', 'SimpleCrossAttnDownBlock2D'] })).toThrow(
      /down_block_types\[1\] = "SimpleCrossAttnDownBlock2D"/,
    );
    expect(() => new UNet2DConditionModel(gpu, { ...CONFIG, resnet_time_scale_shift: 'scale_shift' })).toThrow(/resnet_time_scale_shift/);
    expect(() => new UNet2DConditionModel(gpu, { ...CONFIG, attention_head_dim: [2, 3] })).toThrow(/16 channels do not split into 3 heads/);
  });

  it('the SDXL base config has 1680 tensors and 2,567,463,684 parameters (spec §2.8)', () => {
    const sdxl: UNetConfigJson = {
      block_out_channels: [320, 640, 1280],
      down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
      up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
      attention_head_dim: [5, 10, 20],
      transformer_layers_per_block: [1, 2, 10],
      cross_attention_dim: 2048,
      use_linear_projection: true,
      addition_embed_type: 'text_time',
      addition_time_embed_dim: 256,
      projection_class_embeddings_input_dim: 2816,
      norm_num_groups: 32,
      layers_per_block: 2,
    };
    const unet = new UNet2DConditionModel(gpu, sdxl);
    let n = 0;
    for (const p of unet.parameters.values()) n += numel(p.shape);
    expect(unet.parameters.size).toBe(1680);
    expect(n).toBe(2_567_463_684);
    const a = unet.downBlocks[1].attentions[0].blocks[0].attn1;
    expect([a.heads, a.headDim]).toEqual([10, 64]);
    expect(unet.parameters.get('up_blocks.0.resnets.2.conv1.weight')!.shape).toEqual([1280, 1920, 3, 3]);
  });

  it('an SD 1.5 config (conv projections, 8 heads everywhere, no add embedding) has 686 tensors, 859,520,964 parameters', () => {
    const unet = new UNet2DConditionModel(gpu, {
      block_out_channels: [320, 640, 1280, 1280],
      down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
      up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
      attention_head_dim: 8,
      cross_attention_dim: 768,
      layers_per_block: 2,
      norm_num_groups: 32,
    });
    let n = 0;
    for (const p of unet.parameters.values()) n += numel(p.shape);
    expect([unet.parameters.size, n]).toEqual([686, 859_520_964]);
    expect(unet.parameters.get('down_blocks.0.attentions.0.proj_in.weight')!.shape).toEqual([320, 320, 1, 1]);
  });
});
