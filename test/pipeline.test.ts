// TcdSdxlPipeline on a tiny SDXL-shaped folder (scripts/make_tiny_sdxl.ts: seeded text encoders and VAE, the golden
// tiny UNet and its LoRA): images, determinism per seed, the UNet's conditioning (add_time_ids, latent shape, CFG
// batches), guidance rules, every sampler, LoRA stacking, memory, and the errors for bad sizes, folders and LoRAs.
// The loop's numbers against diffusers are in the golden tcd_loop suite (test/golden/tcd_loop.ts).
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { loraDelta, loraTerm, LoraFormatError, loadLoraFile } from '../src/io/lora_format.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { PipelineError } from '../src/pipeline/errors.js';
import { stackLoras } from '../src/pipeline/lora_stack.js';
import { PipelineLayoutError } from '../src/pipeline/model_folder.js';
import { type SchedulerName, type TimestepOptions, makeScheduler, setSchedule } from '../src/pipeline/scheduler_choice.js';
import { decodePng, encodePng } from '../src/pipeline/png.js';
import { type GenerateOptions, type GenerateResult, TcdSdxlPipeline, addTimeIds } from '../src/pipeline/tcd_sdxl_pipeline.js';
import type { Tensor } from '../src/tensor.js';
import type { UNetInputs } from '../src/unet/unet.js';
import { makeTinySdxl } from '../scripts/make_tiny_sdxl.js';
import { probeF16 } from '../src/kernels/f16_support.js';
import { testGpu } from './helpers.js';

const LORA = 'test/fixtures/tiny_unet/lora.safetensors';
/** Small and short: lavapipe runs every dispatch on the CPU. */
const BASE: GenerateOptions = { prompt: 'a photo of a cat', width: 32, height: 32, seed: 3, steps: 2 };

let gpu: Gpu;
let dir: string;
let pipe: TcdSdxlPipeline;

beforeAll(async () => {
  gpu = await testGpu();
  dir = await mkdtemp(join(tmpdir(), 'tcd-pipeline-'));
  await makeTinySdxl(join(dir, 'model'));
  const t0 = performance.now();
  pipe = await TcdSdxlPipeline.fromPretrained(gpu, join(dir, 'model'), { loras: [{ path: LORA }] });
  console.log(`  fromPretrained ${(performance.now() - t0).toFixed(0)} ms`);
});

afterAll(async () => {
  pipe?.dispose();
  await gpu?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Largest per-byte difference of two images' pixels. */
function maxByteDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function distinctValues(a: Uint8Array): number {
  return new Set(a).size;
}

interface Captured {
  sample: number[];
  timestep: number;
  timeIds: Tensor;
  encoderHiddenStates: Tensor;
}

/** Runs generate with the UNet's inputs recorded (views, read after the run). */
async function withUnetInputs(opts: GenerateOptions): Promise<{ result: GenerateResult; calls: Captured[] }> {
  const calls: Captured[] = [];
  const unet = pipe.unet;
  const forward = unet.forward;
  unet.forward = (inputs: UNetInputs, o) => {
    const view = (t: Tensor) => t.reshape(t.shape);
    calls.push({
      sample: [...inputs.sample.shape],
      timestep: inputs.timestep as number,
      timeIds: view(inputs.timeIds!.value),
      encoderHiddenStates: view(inputs.encoderHiddenStates.value),
    });
    return forward.call(unet, inputs, o);
  };
  try {
    return { result: await pipe.generate(opts), calls };
  } finally {
    unet.forward = forward;
  }
}

describe('TcdSdxlPipeline: images', () => {
  it('64×64 RGB images, 4 TCD steps, timings per stage; a batch image equals the single run with its seed; GPU memory returned', async () => {
    const r = await pipe.generate({ ...BASE, width: 64, height: 64, steps: 4, batch: 2 });
    expect(r.timesteps).toEqual([999, 759, 499, 259]);
    expect(r.scheduler).toBe('tcd');
    expect(r.eta).toBe(0.3);
    expect(r.images.map((i) => [i.width, i.height, i.channels, i.data.length, i.seed])).toEqual([
      [64, 64, 3, 64 * 64 * 3, 3],
      [64, 64, 3, 64 * 64 * 3, 4],
    ]);
    for (const img of r.images) expect(distinctValues(img.data), 'distinct byte values (not one flat colour)').toBeGreaterThan(20);
    const t = r.timings;
    console.log(`  timings ms: load ${t.loadMs.toFixed(0)}, text ${t.textEncodeMs.toFixed(0)}, steps ${t.stepMs.map((x) => x.toFixed(0)).join(' / ')}, decode ${t.decodeMs.toFixed(0)}, total ${t.totalMs.toFixed(0)}`);
    expect(t.stepMs).toHaveLength(4);
    for (const ms of [t.loadMs, t.textEncodeMs, ...t.stepMs, t.decodeMs]) expect(ms).toBeGreaterThan(0);
    expect(t.totalMs).toBeGreaterThanOrEqual(t.textEncodeMs + t.stepMs.reduce((a, b) => a + b, 0) + t.decodeMs);

    // The first run leaves per-device caches (matmul's scratch binding, timestep_embedding's frequency tables, a few
    // hundred bytes); later runs must return everything they take.
    const before = gpu.pool.report().currentBytes;
    const single = await pipe.generate({ ...BASE, width: 64, height: 64, steps: 4, seed: 4 });
    expect(gpu.pool.report().currentBytes, 'pool bytes in use after generate').toBe(before);
    const d = maxByteDiff(single.images[0].data, r.images[1].data);
    console.log(`  batch image 1 (seed 4) vs single run with seed 4: max byte difference ${d}`);
    expect(d).toBeLessThanOrEqual(1);
    expect(maxByteDiff(r.images[0].data, r.images[1].data), 'different seeds, different images').toBeGreaterThan(10);
  });

  it('conditions the UNet as SDXL does: latents [B, 4, h/8, w/8], add_time_ids [h, w, 0, 0, h, w], one batch without guidance', async () => {
    const { result, calls } = await withUnetInputs({ ...BASE, width: 64, height: 48 });
    expect(result.images[0].width).toBe(64);
    expect(result.images[0].height).toBe(48);
    expect(calls.map((c) => c.timestep)).toEqual(result.timesteps);
    for (const c of calls) {
      expect(c.sample).toEqual([1, 4, 6, 8]);
      expect(c.encoderHiddenStates.shape).toEqual([1, 77, 32]);
      expect(Array.from(await c.timeIds.toArray())).toEqual(addTimeIds(48, 64));
      c.timeIds.release();
      c.encoderHiddenStates.release();
    }
    expect(addTimeIds(48, 64)).toEqual([48, 64, 0, 0, 48, 64]);
  });
});

describe('TcdSdxlPipeline: classifier-free guidance', () => {
  it('same options, same image; guidance 1 is no guidance; guidance 3 runs [zeros; prompt] (force_zeros_for_empty_prompt) and changes the image', async () => {
    const none = await pipe.generate(BASE);
    const one = await pipe.generate({ ...BASE, guidanceScale: 1, negativePrompt: 'ignored without guidance' });
    expect(maxByteDiff(one.images[0].data, none.images[0].data)).toBe(0);
    const { result, calls } = await withUnetInputs({ ...BASE, guidanceScale: 3 });
    expect(calls[0].sample).toEqual([2, 4, 4, 4]);
    const ehs = await calls[0].encoderHiddenStates.toArray();
    const row = ehs.length / 2;
    expect(ehs.subarray(0, row).every((v) => v === 0), 'negative row: zeros').toBe(true);
    expect(ehs.subarray(row).some((v) => v !== 0), 'prompt row').toBe(true);
    for (const c of calls) [c.timeIds, c.encoderHiddenStates].forEach((t) => t.release());
    expect(maxByteDiff(result.images[0].data, none.images[0].data), 'guided vs unguided').toBeGreaterThan(10);
  });

  it('guidance with negative prompt = prompt gives the unguided image (ε̂_u + g·(ε̂_c − ε̂_u) = ε̂_c)', async () => {
    const none = await pipe.generate(BASE);
    const same = await pipe.generate({ ...BASE, guidanceScale: 5, negativePrompt: BASE.prompt as string });
    const d = maxByteDiff(same.images[0].data, none.images[0].data);
    console.log(`  guided (negative = prompt) vs unguided: max byte difference ${d}`);
    expect(d).toBeLessThanOrEqual(1);
  });
});

describe('TcdSdxlPipeline: samplers', () => {
  /** The timesteps the scheduler itself gives (its values are checked against diffusers in schedulers.test.ts). */
  const scheduleOf = (name: SchedulerName, steps: number, opts: TimestepOptions = {}) => {
    const s = makeScheduler(name, pipe.schedulerConfig);
    setSchedule(s, steps, opts);
    return [...s.timesteps];
  };

  for (const scheduler of ['lcm', 'ddim', 'euler', 'dpmpp2s'] as const)
    it(`${scheduler}: 2 steps to a valid image, on the scheduler's own timesteps`, async () => {
      const r = await pipe.generate({ ...BASE, scheduler });
      expect(r.scheduler).toBe(scheduler);
      expect(r.timesteps).toEqual(scheduleOf(scheduler, 2));
      expect(r.eta).toBe(0);
      expect(distinctValues(r.images[0].data)).toBeGreaterThan(20);
    });

  it('TCD: gamma 0 is deterministic in the step noise; gamma changes the image; strength / originalInferenceSteps change the schedule', async () => {
    const a = await pipe.generate({ ...BASE, eta: 0 });
    // With γ = 0 no step draws noise: injected step noise must never be asked for.
    const b = await pipe.generate({ ...BASE, eta: 0, noise: { step: (i) => { throw new Error(`step ${i} asked for noise`); } } });
    expect(maxByteDiff(a.images[0].data, b.images[0].data)).toBe(0);
    const c = await pipe.generate({ ...BASE, eta: 1 });
    expect(maxByteDiff(a.images[0].data, c.images[0].data)).toBeGreaterThan(10);
    const halfway = scheduleOf('tcd', 2, { strength: 0.5 });
    expect(halfway[0]).toBeLessThan(500);
    expect((await pipe.generate({ ...BASE, strength: 0.5 })).timesteps).toEqual(halfway);
    const dense = scheduleOf('tcd', 4, { originalInferenceSteps: 50 });
    expect(dense).not.toEqual(scheduleOf('tcd', 4));
    expect((await pipe.generate({ ...BASE, steps: 4, originalInferenceSteps: 50 })).timesteps).toEqual(dense);
    await expect(pipe.generate({ ...BASE, scheduler: 'ddim', strength: 0.5 })).rejects.toThrow(/apply to the tcd and lcm schedulers only/);
    await expect(pipe.generate({ ...BASE, eta: 1.5 })).rejects.toThrow(/eta \(gamma\) must be in \[0, 1\], got 1.5/);
  });
});

describe('TcdSdxlPipeline: weights', () => {
  it('the fp16 variant (F16 files, computed in f32) gives the f32 image to within a byte or two', async () => {
    const fp16 = join(dir, 'model_fp16');
    await makeTinySdxl(fp16, { fp16: true });
    await expect(TcdSdxlPipeline.fromPretrained(gpu, fp16, { variant: 'default' })).rejects.toThrow(/no text_encoder weights in .*looked for model\.safetensors/);
    const half = await TcdSdxlPipeline.fromPretrained(gpu, fp16, { variant: 'fp16', loras: [{ path: LORA }] });
    try {
      const d = maxByteDiff((await half.generate(BASE)).images[0].data, (await pipe.generate(BASE)).images[0].data);
      console.log(`  fp16 weights vs f32: max byte difference ${d}`);
      expect(d).toBeLessThanOrEqual(2);
    } finally {
      half.dispose();
    }
  });
});

describe('TcdSdxlPipeline: LoRAs', () => {
  it('stacking two LoRAs on a layer is exact: B·A deltas of [0.25, 0.75] × L equal 1 × L', async () => {
    const set = await loadLoraFile(LORA);
    const single = stackLoras([{ set, weight: 1 }]);
    const stacked = stackLoras([{ set, weight: 0.25 }, { set, weight: 0.75 }]);
    expect(stacked.map((a) => a.module)).toEqual(single.map((a) => a.module));
    let worst = 0;
    for (const [i, ad] of stacked.entries()) {
      expect(ad.rank).toBe(2 * single[i].rank);
      const shape = [ad.B.shape[0], ...ad.A.shape.slice(1)];
      const want = loraDelta(shape, [loraTerm(single[i])]);
      const got = loraDelta(shape, [loraTerm(ad)]);
      let ref = 0;
      for (let k = 0; k < want.length; k++) {
        worst = Math.max(worst, Math.abs(got[k] - want[k]));
        ref = Math.max(ref, Math.abs(want[k]));
      }
      expect(ref).toBeGreaterThan(0);
    }
    console.log(`  ${stacked.length} stacked modules, max |Δ stacked − Δ single| ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-6);
  });

  it('two LoRA entries with scales 0.25 + 0.75 give the image of one at scale 1; scale 0 gives the base model', async () => {
    const stacked = await TcdSdxlPipeline.fromPretrained(gpu, join(dir, 'model'), { loras: [{ path: LORA, scale: 0.25 }, { path: LORA, scale: 0.75 }] });
    const base = await TcdSdxlPipeline.fromPretrained(gpu, join(dir, 'model'));
    const zero = await TcdSdxlPipeline.fromPretrained(gpu, join(dir, 'model'), { loras: [{ path: LORA, scale: 0 }] });
    try {
      const want = (await pipe.generate(BASE)).images[0].data;
      const d = maxByteDiff((await stacked.generate(BASE)).images[0].data, want);
      console.log(`  stacked vs single LoRA: max byte difference ${d}`);
      expect(d).toBeLessThanOrEqual(1);
      const plain = (await base.generate(BASE)).images[0].data;
      expect(maxByteDiff((await zero.generate(BASE)).images[0].data, plain)).toBe(0);
      expect(maxByteDiff(plain, want), 'the LoRA changes the image').toBeGreaterThan(10);
    } finally {
      [stacked, base, zero].forEach((p) => p.dispose());
    }
  });
});

describe('TcdSdxlPipeline: defaults from the model and the device', () => {
  it('no width / height: the UNet config\'s sample_size × the VAE\'s scale factor (as diffusers); dtype auto: f16 where the probe passes', async () => {
    const unetCfg = JSON.parse(await readFile(join(dir, 'model', 'unet', 'config.json'), 'utf8'));
    const vaeCfg = JSON.parse(await readFile(join(dir, 'model', 'vae', 'config.json'), 'utf8'));
    const side = unetCfg.sample_size * 2 ** (vaeCfg.block_out_channels.length - 1);
    const r = await pipe.generate({ prompt: BASE.prompt, seed: 3, steps: 1 });
    expect([r.images[0].width, r.images[0].height]).toEqual([side, side]);
    expect(distinctValues(r.images[0].data)).toBeGreaterThan(20);
    const probe = gpu.hasF16 ? await probeF16(gpu) : { ok: false };
    expect(pipe.unet.dtype, 'fromPretrained without dtype: auto').toBe(probe.ok ? 'f16' : 'f32');
  });
});

describe('TcdSdxlPipeline: errors', () => {
  it('sizes that are not multiples of 8, bad counts and seeds: PipelineError naming the option', async () => {
    await expect(pipe.generate({ ...BASE, width: 100 })).rejects.toThrow(PipelineError);
    await expect(pipe.generate({ ...BASE, width: 100 })).rejects.toThrow(/width 100 is not a multiple of 8/);
    await expect(pipe.generate({ ...BASE, height: 60 })).rejects.toThrow(/height 60 is not a multiple of 8/);
    await expect(pipe.generate({ ...BASE, steps: 0 })).rejects.toThrow(/steps must be an integer ≥ 1, got 0/);
    await expect(pipe.generate({ ...BASE, batch: 1.5 })).rejects.toThrow(/batch must be an integer ≥ 1, got 1.5/);
    await expect(pipe.generate({ ...BASE, seed: -1 })).rejects.toThrow(/seed must be an integer ≥ 0, got -1/);
    await expect(pipe.generate({ ...BASE, prompt: [] })).rejects.toThrow(/prompt must be a string or a non-empty list/);
    await expect(pipe.generate({ ...BASE, scheduler: 'heun' as never })).rejects.toThrow(/unknown scheduler 'heun'; expected one of tcd, lcm, ddim, euler, dpmpp2s/);
  });

  it('a folder missing components names every one; a single file needs a config folder', async () => {
    const broken = join(dir, 'broken');
    await cp(join(dir, 'model'), broken, { recursive: true });
    await rm(join(broken, 'text_encoder_2'), { recursive: true });
    await rm(join(broken, 'tokenizer', 'merges.txt'));
    await rm(join(broken, 'scheduler'), { recursive: true });
    const err = await TcdSdxlPipeline.fromPretrained(gpu, broken).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PipelineLayoutError);
    const msg = (err as Error).message;
    for (const part of ['scheduler/scheduler_config.json', 'text_encoder_2/config.json', 'tokenizer/merges.txt', 'text_encoder_2/ weights'])
      expect(msg).toContain(part);
    expect(msg).toMatch(/is not a complete SDXL diffusers folder/);
    await expect(TcdSdxlPipeline.fromPretrained(gpu, join(dir, 'nowhere'))).rejects.toThrow(/no such file or folder/);
    const file = join(dir, 'model', 'unet', 'diffusion_pytorch_model.safetensors');
    await expect(TcdSdxlPipeline.fromPretrained(gpu, file)).rejects.toThrow(/single checkpoint file: also pass a diffusers SDXL folder/);
  });

  it("LoRAs: a missing file, a file that is no LoRA and one for other layers fail with the loader's error before weights load", async () => {
    const model = join(dir, 'model');
    await expect(TcdSdxlPipeline.fromPretrained(gpu, model, { loras: [{ path: join(dir, 'none.safetensors') }] })).rejects.toThrow(/LoRA .*none\.safetensors: no such file/);
    const notLora = join(dir, 'not_lora.safetensors');
    await writeFile(notLora, encodeSafetensors({ 'conv_in.weight': { dtype: 'F32', shape: [2], data: [1, 2] } }));
    const e1 = await TcdSdxlPipeline.fromPretrained(gpu, model, { loras: [{ path: notLora }] }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(LoraFormatError);
    expect((e1 as Error).message).toMatch(/unknown LoRA format/);
    const otherModel = join(dir, 'other_lora.safetensors');
    await writeFile(
      otherModel,
      encodeSafetensors({
        'down_blocks.7.attentions.0.proj_in.lora_A.weight': { dtype: 'F32', shape: [1, 4], data: [1, 2, 3, 4] },
        'down_blocks.7.attentions.0.proj_in.lora_B.weight': { dtype: 'F32', shape: [4, 1], data: [1, 2, 3, 4] },
      }),
    );
    await expect(TcdSdxlPipeline.fromPretrained(gpu, model, { loras: [{ path: otherModel }] })).rejects.toThrow(/not found in the unet model: 'down_blocks\.7/);
  });
});

describe('PNG', () => {
  it('encodes RGB losslessly (decoded back as RGBA with opaque alpha)', () => {
    const w = 5;
    const h = 3;
    const data = Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 37) % 256);
    const back = decodePng(encodePng({ width: w, height: h, channels: 3, data }));
    expect([back.width, back.height, back.channels]).toEqual([w, h, 4]);
    const rgb = Array.from({ length: w * h * 3 }, (_, i) => back.data[Math.floor(i / 3) * 4 + (i % 3)]);
    expect(rgb).toEqual(Array.from(data));
    expect(Array.from({ length: w * h }, (_, p) => back.data[p * 4 + 3]).every((a) => a === 255)).toBe(true);
    expect(() => encodePng({ width: 2, height: 2, channels: 3, data: new Uint8Array(5) })).toThrow(/5 bytes for 2×2×3/);
  });
});
