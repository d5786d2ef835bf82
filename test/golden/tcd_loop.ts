// tcd_loop.*: the full TCD sampling loop against diffusers: the tiny UNet of tiny_unet/ beside it with its LoRA
// attached unfused the way the pipeline attaches LoRAs (parseLora → stackLoras → attachLora) at the scale
// lora_config.json documents, TCDScheduler from the scheduler config the golden used, the step count and γ of
// tcd_loop.json, the recorded initial latents and the recorded noise of every re-noising step, run through the
// pipeline's own loop (src/pipeline/denoise.ts). Every step's model output, pred_noised_sample and prev_sample and the
// final latents are compared with max|got − want| / max|want|; each step starts from our previous step's output, so
// errors compound as in real use. Layouts: tcd_loop.json + tcd_loop.safetensors in the root (scheduler config: the
// root's scheduler.json "base_config"), or a tcd_loop/ folder holding them (with scheduler_config.json).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../runtime/device.js';
import { parseLora } from '../../src/io/lora_format.js';
import { denoise } from '../../src/pipeline/denoise.js';
import { stackLoras } from '../../src/pipeline/lora_stack.js';
import { makeScheduler, setSchedule } from '../../src/pipeline/scheduler_choice.js';
import { Tensor } from '../../src/tensor.js';
import type { UNetConfigJson } from '../../src/unet/config.js';
import { UNet2DConditionModel } from '../../src/unet/unet.js';
import { type GoldenFile, type LoraConfigJson, documentedLoraScale, goldenExists, joinPath, openGolden, readJson, relMaxErr } from '../golden_io.js';
import { type ErrorRow, GOLDEN_DTYPE, type GoldenSuite, goldenGpu, reportRows, requireGoldenDType, skipped, tolFor } from './suite.js';
import { isUNetFolder } from './unet.js';

const NAME = 'tcd_loop';
/**
 * Per tensor, after the chained steps. Measured on lavapipe: worst 1.5e-6 (step 0's model output), the rest
 * ≤ 5e-7, i.e. float32 rounding with no growth along the loop; 2e-5 leaves room for other devices' rounding while
 * still failing on any real error (a wrong scalar, noise or LoRA scale shows up at 1e-2 and above).
 */
const TOL = tolFor(2e-5, 5e-3); // f16 (UNet in f16, scheduler math f32): 1.84e-3 measured on lavapipe

interface LoopMeta {
  timesteps: number[];
  eta_gamma: number;
  num_inference_steps: number;
  steps: { index: number; timestep: number; noise_recorded: boolean }[];
}

/** The folder holding tcd_loop.json + tcd_loop.safetensors: the root itself or its tcd_loop/. */
function loopDir(root: string): string | undefined {
  return [root, joinPath(root, NAME)].find((d) => goldenExists(d, 'tcd_loop.json') && goldenExists(d, 'tcd_loop.safetensors'));
}

export const tcdLoopSuite: GoldenSuite = {
  name: NAME,
  lookedFor: ['tcd_loop.json + tcd_loop.safetensors (or tcd_loop/ holding them), with the tiny_unet/ it was made with beside'],
  present: (root) => loopDir(root) !== undefined,
  define(root) {
    defineLoop(root, loopDir(root)!);
  },
};

/** The scheduler config the golden used: scheduler_config.json beside the loop, or the root's scheduler.json base_config. */
function schedulerConfig(root: string, dir: string): Record<string, unknown> | undefined {
  return (
    readJson<Record<string, unknown>>(dir, 'scheduler_config.json') ??
    readJson<{ base_config?: Record<string, unknown> }>(root, 'scheduler.json')?.base_config
  );
}

function defineLoop(root: string, dir: string): void {
  // tiny_unet/ in the root; for a root that is a tcd_loop/ folder itself (TCD_GOLDEN=test/fixtures/tcd_loop), the one
  // beside it.
  const beside = /\/tcd_loop\/?$/.test(root) && !isUNetFolder(joinPath(root, 'tiny_unet'));
  const unetDir = beside ? joinPath(root, '../tiny_unet') : joinPath(root, 'tiny_unet');
  const meta = readJson<LoopMeta>(dir, 'tcd_loop.json')!;
  let gpu: Gpu;
  let loop: GoldenFile;
  let weights: GoldenFile | undefined;
  let lora: GoldenFile | undefined;

  describe(`${NAME}: TCD sampling loop vs diffusers (tiny UNet + LoRA unfused, ${meta.num_inference_steps} steps, γ ${meta.eta_gamma}, recorded noise)`, () => {
    beforeAll(async () => {
      gpu = await goldenGpu();
      loop = (await openGolden(dir, 'tcd_loop.safetensors'))!;
      weights = await openGolden(unetDir, 'weights.safetensors');
      lora = await openGolden(unetDir, 'lora.safetensors');
      console.log(`[golden ${NAME}] loop ${dir}, unet ${unetDir}`);
    });

    afterAll(async () => {
      for (const f of [loop, weights, lora]) await f?.close();
    });

    it('every step: model output, pred_noised_sample, prev_sample; final latents', async () => {
      // The loop is only meaningful with the UNet and LoRA it was made with: their absence is an error, not a skip.
      expect(isUNetFolder(unetDir) && !!lora, `${NAME} needs the tiny UNet and LoRA it was made with: looked for ${unetDir}/config.json, weights.safetensors, lora.safetensors`).toBe(true);
      expect(meta.steps.length, 'tcd_loop.json steps vs num_inference_steps').toBe(meta.num_inference_steps);
      let sched = schedulerConfig(root, dir);
      if (!sched) {
        skipped(NAME, `scheduler config (no ${dir}/scheduler_config.json nor ${root}/scheduler.json): using the SDXL noise schedule defaults`);
        sched = {};
      }
      const unetConfig = readJson<UNetConfigJson>(unetDir, 'config.json')!;
      const unet = new UNet2DConditionModel(gpu, unetConfig, { dtype: GOLDEN_DTYPE });
      requireGoldenDType(gpu);
      await unet.loadWeights(weights!.src);
      const loraConfig = readJson<LoraConfigJson>(unetDir, 'lora_config.json');
      const set = await parseLora(lora!.src, { component: 'unet', modules: unet.loraModules(), config: loraConfig });
      // parseLora gives each adapter lora_alpha / r (or the file's alphas); a documented `scale` is the multiplier itself.
      if (loraConfig?.scale !== undefined) {
        const scale = documentedLoraScale(loraConfig, `${unetDir}/lora_config.json`);
        for (const a of set.adapters) a.scale = scale;
      }
      const adapted = unet.attachLora(stackLoras([{ set, weight: 1 }]), { trainable: false });
      console.log(`  LoRA: ${adapted.length} adapted modules, scale ${[...new Set(set.adapters.map((a) => a.scale))].join(', ')}`);

      const scheduler = makeScheduler('tcd', sched);
      setSchedule(scheduler, meta.num_inference_steps);
      expect([...scheduler.timesteps], 'timesteps').toEqual(meta.timesteps);

      const t = async (name: string) => Tensor.fromArray(gpu, await loop.f32(name), loop.shape(name), { label: name });
      const [latents, promptEmbeds, textEmbeds, timeIds] = await Promise.all(['init_latents', 'encoder_hidden_states', 'text_embeds', 'time_ids'].map(t));
      const noiseByStep = new Map<number, Float32Array>();
      for (const s of meta.steps) if (s.noise_recorded) noiseByStep.set(s.index, await loop.f32(`step${s.index}.noise`));
      const asked: number[] = [];

      const rows: ErrorRow[] = [];
      const t0 = performance.now();
      const final = await denoise({
        unet,
        scheduler,
        latents,
        cond: { promptEmbeds, textEmbeds, timeIds },
        eta: meta.eta_gamma,
        noise: (i) => {
          asked.push(i);
          const z = noiseByStep.get(i);
          if (!z) throw new Error(`step ${i} drew noise, but diffusers recorded none for it`);
          return Tensor.fromArray(gpu, z, latents.shape, { label: `step${i}.noise` });
        },
        onStep: async (v) => {
          const p = `step${v.index}`;
          expect(v.timestep, `${p} timestep`).toBe(meta.timesteps[v.index]);
          rows.push([`${p}.model_output`, relMaxErr(await v.modelOutput.toArray(), await loop.read(`${p}.model_output`))]);
          rows.push([`${p}.pred_noised_sample`, relMaxErr(await v.denoised!.toArray(), await loop.read(`${p}.pred_noised_sample`))]);
          rows.push([`${p}.prev_sample`, relMaxErr(await v.prevSample.toArray(), await loop.read(`${p}.prev_sample`))]);
        },
      });
      const ran = rows.length / 3;
      console.log(`  ${ran} steps, γ ${meta.eta_gamma}: ${(performance.now() - t0).toFixed(0)} ms (with readbacks; first run includes pipeline compilation)`);
      rows.push(['final_latents', relMaxErr(await final.toArray(), await loop.read('final_latents'))]);

      expect(asked, 'steps that drew noise (none on the last step)').toEqual(meta.steps.filter((s) => s.noise_recorded).map((s) => s.index));
      expect(ran, 'steps run').toBe(meta.steps.length);
      reportRows(NAME, `${ran} steps, γ ${meta.eta_gamma}`, rows, TOL);
      for (const x of [latents, promptEmbeds, textEmbeds, timeIds, final]) x.release();
      unet.dispose();
    });
  });
}
