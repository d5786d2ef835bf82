// Smoke test of the whole-pipeline benchmark (bench/sdxl_pipeline.ts) at tiny size: random-weight pipeline from the
// four configs, the real CLIP tokenizer, prompt → PNG through TcdSdxlPipeline.generate with every stage timed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { decodePng } from '../src/pipeline/png.js';
import { TINY_CONFIGS, runPipelineBench } from '../bench/pipeline_bench.js';
import { testGpu } from './helpers.js';

let gpu: Gpu;

beforeAll(async () => {
  gpu = await testGpu();
});

afterAll(async () => {
  await gpu?.destroy();
});

describe('sdxl pipeline bench', () => {
  it('tiny prompt → PNG: image not constant, every stage timed, pool peak above the weights', async () => {
    const lines: string[] = [];
    const r = await runPipelineBench(gpu, { tiny: true, size: 32, steps: 2, runs: 1, warmup: 1, onProgress: (l) => lines.push(l) });
    console.log(`  ${r.adapter}\n  ${r.stages.map((s) => `${s.stage.trim()} ${s.median_ms.toFixed(1)} ms`).join('; ')}`);
    expect(r.adapter).toBe(gpu.describe());
    expect(r.config).toBe('tiny');
    expect(r.comparable, 'PyTorch ratios only for full SDXL at 1024²').toBe(false);

    // Random weights for all four parts, with the shapes the configs imply.
    expect(r.parts.text_encoder.tensors).toBeGreaterThan(0);
    expect(r.parts.text_encoder_2.params).toBeGreaterThan(r.parts.text_encoder.params);
    expect(r.parts.unet.tensors).toBeGreaterThan(0);
    expect(r.parts.vae.tensors).toBeGreaterThan(0);
    expect(r.parts.text_encoder.params).toBeGreaterThan(49408 * TINY_CONFIGS.textEncoder.hidden_size);

    // The image is the generated one: right size, not constant, a decodable PNG.
    expect([r.image.width, r.image.height]).toEqual([32, 32]);
    expect(r.image.distinctBytes, 'distinct byte values').toBeGreaterThan(10);
    expect(r.image.max).toBeGreaterThan(r.image.min);
    const png = decodePng(r.png);
    expect([png.width, png.height]).toEqual([32, 32]);

    // Every stage timed, once per step where per-step.
    expect(r.timesteps).toHaveLength(2);
    const run = r.runs[0];
    expect(run.unetMs).toHaveLength(2);
    expect(run.schedulerMs).toHaveLength(2);
    for (const [name, ms] of Object.entries({ text: run.textMs, vae: run.vaeDecodeMs, readback: run.readbackMs, png: run.pngMs, unet0: run.unetMs[0], unet1: run.unetMs[1] }))
      expect(ms, name).toBeGreaterThan(0);
    const parts = run.textMs + run.unetMs.reduce((a, b) => a + b) + run.schedulerMs.reduce((a, b) => a + b) + run.vaeDecodeMs + run.readbackMs + run.pngMs;
    expect(parts).toBeLessThanOrEqual(run.wallMs + 1);
    expect(run.wallMs).toBeGreaterThanOrEqual(run.generateMs);
    for (const stage of ['tokenize + text encode', 'UNet eval 1 (t=999)', 'UNet evals (2 together)', 'scheduler steps (2 together)', 'VAE decode', 'readback + PNG encode', 'prompt → PNG (wall)'])
      expect(r.stages.map((s) => s.stage)).toContain(stage);
    expect(r.stages.every((s) => s.meets_target === undefined && s.pytorch_ms === undefined)).toBe(true);

    // Memory: the weights stay live, the runs allocate on top of them.
    expect(r.baselineBytes).toBeGreaterThanOrEqual(r.weightBytes);
    expect(r.peakBytes).toBeGreaterThan(r.baselineBytes);
    expect(r.peakByStage.denoise).toBeGreaterThan(r.weightBytes);
    expect(lines.some((l) => l.startsWith('run 1/1:')), 'progress per run').toBe(true);
  });
});
