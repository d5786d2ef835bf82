// TcdDistiller with the base UNet in f16 (issue 13's trainer part): LoRA masters, gradients and AdamW state in f32,
// the backward loss-scaled by LossScaler. On the tiny SDXL folder with in-memory examples (UNet only): the loss falls
// on a fixed batch; a run interrupted after a checkpoint and resumed writes byte-identical LoRA / optimizer files and
// the same loss-scaler state (growth interval 2: the scale doubles after the checkpoint's update 2, so the resumed update 3 needs it restored); an overflow (a scale of 2^40
// overflows f16 in the backward) skips the update, leaves the LoRA and AdamW untouched, halves the scale, and the
// checkpoint after it resumes with the scaler state. Each test skips itself on a device without 'shader-f16'.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { LORA_FILE, OPTIMIZER_FILE, STATE_FILE } from '../src/trainer/checkpoint.js';
import { type DistillModels, type TcdDistillerOptions, TcdDistiller, loadDistillModels } from '../src/trainer/distiller.js';
import { ArraySource, type TrainingExample } from '../src/trainer/examples.js';
import { makeTinySdxl } from '../scripts/make_tiny_sdxl.js';
import { seeded, testGpu } from './helpers.js';

let gpu: Gpu;
let dir: string;
let model: string;
let models: DistillModels | undefined;
let examples: TrainingExample[];

beforeAll(async () => {
  gpu = await testGpu();
  dir = await mkdtemp(join(tmpdir(), 'tcd-f16-'));
  model = join(dir, 'model');
  await makeTinySdxl(model);
  if (!gpu.hasF16) return;
  models = await loadDistillModels(gpu, model, { vae: 'none', textEncoders: false, dtype: 'f16' });
  const cfg = JSON.parse(await readFile(join(model, 'unet', 'config.json'), 'utf8')) as { cross_attention_dim: number; projection_class_embeddings_input_dim: number; addition_time_embed_dim: number };
  const pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim;
  // 32 px images: 4 × 4 latents, 8 prompt tokens.
  examples = [0, 1, 2].map((i) => ({
    latents: Float32Array.from(seeded(4 * 4 * 4, 10 + i, -1, 1)),
    latentShape: [4, 4, 4] as const,
    promptEmbeds: Float32Array.from(seeded(8 * cfg.cross_attention_dim, 20 + i, -1, 1)),
    promptShape: [8, cfg.cross_attention_dim] as const,
    pooled: Float32Array.from(seeded(pooled, 30 + i, -1, 1)),
    timeIds: [32, 32, 0, 0, 32, 32],
  }));
});

afterAll(async () => {
  models?.dispose();
  await gpu?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const opts = (output: string, extra: Partial<TcdDistillerOptions> = {}): TcdDistillerOptions => ({
  model,
  examples: new ArraySource(examples),
  output,
  maxSteps: 3,
  resolution: 32,
  rank: 4,
  batchSize: 2,
  lr: 1e-2,
  seed: 11,
  checkpointEvery: 2,
  gradientCheckpointing: false,
  dtype: 'f16',
  lossScale: { growthInterval: 2 },
  ...extra,
});

type Ctx = { skip(note?: string): never };
const needF16 = (ctx: Ctx) => {
  if (!gpu.hasF16) ctx.skip(`no shader-f16 on ${gpu.describe()}`);
};

describe('TcdDistiller, UNet in f16', () => {
  it('the loss falls on a fixed batch; LoRA and AdamW state stay f32', async (ctx) => {
    needF16(ctx);
    const d = await TcdDistiller.create(gpu, opts(join(dir, 'fixed'), { lr: 3e-3 }), models);
    expect(models!.unet.dtype).toBe('f16');
    expect(d.scaler, 'an f16 run scales its loss').toBeDefined();
    expect(new Set(d.optimizer.parameters.map((p) => p.var.value.dtype))).toEqual(new Set(['f32']));
    const batch = await d.batch(0);
    const reports = [];
    for (let s = 0; s < 4; s++) reports.push(await d.trainStep([batch]));
    console.log(`  losses ${reports.map((r) => `${r.loss.toExponential(3)}${r.skipped ? ' (skipped)' : ''}`).join(' ')}; scales ${reports.map((r) => r.lossScale).join(' ')}`);
    const losses = reports.map((r) => r.loss);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(reports.filter((r) => !r.skipped).length, 'updates applied').toBeGreaterThanOrEqual(3);
    expect(losses.at(-1)!, 'last loss vs first').toBeLessThan(0.8 * losses[0]);
    d.dispose();
  });

  it('interrupted after a checkpoint and resumed: byte-identical LoRA, optimizer and loss-scaler state', async (ctx) => {
    needF16(ctx);
    const full = join(dir, 'full');
    const a = await TcdDistiller.create(gpu, opts(full), models);
    const scales: number[] = [];
    await a.train({ onStep: (r) => scales.push(r.lossScale!) });
    a.dispose();
    console.log(`  loss scale per update: ${scales.join(', ')}`);
    expect(scales).toEqual([2 ** 16, 2 ** 16, 2 ** 17]);

    const part = join(dir, 'part');
    const b = await TcdDistiller.create(gpu, opts(part), models);
    await b.train({ stopAfter: 2 });
    b.dispose();
    const c = await TcdDistiller.create(gpu, opts(part, { resume: part }), models);
    expect(c.step).toBe(2);
    const saved = JSON.parse(await readFile(join(part, 'checkpoint-2', STATE_FILE), 'utf8')) as { dtype: string; lossScaler: { scale: number; goodSteps: number } };
    expect(saved.dtype).toBe('f16');
    expect({ scale: c.scaler!.scale, goodSteps: c.scaler!.goodSteps }, 'scaler restored from the checkpoint').toEqual({ scale: saved.lossScaler.scale, goodSteps: saved.lossScaler.goodSteps });
    await c.train();
    c.dispose();
    for (const f of [LORA_FILE, OPTIMIZER_FILE, STATE_FILE]) {
      const x = await readFile(join(full, 'checkpoint-3', f));
      const y = await readFile(join(part, 'checkpoint-3', f));
      expect(Buffer.compare(x, y), `${f} of the resumed run vs the uninterrupted one`).toBe(0);
    }
    await expect(TcdDistiller.create(gpu, opts(part, { resume: part, dtype: 'f32' }), models)).rejects.toThrow(/dtype f32 asked, but the given models' UNet is f16/);
  });

  it('an overflowing backward skips the update (LoRA and AdamW untouched), halves the scale; the checkpoint resumes', async (ctx) => {
    needF16(ctx);
    const out = join(dir, 'overflow');
    const d = await TcdDistiller.create(gpu, opts(out, { lossScale: { initScale: 2 ** 40 } }), models);
    const before = await d.loraTensors();
    const r = await d.trainStep();
    console.log(`  scale 2^40: skipped ${r.skipped}, grad norm ${r.gradNorm}, next scale 2^${Math.log2(d.scaler!.scale)}`);
    expect(r.skipped).toBe(true);
    expect(r.lossScale).toBe(2 ** 40);
    expect(Number.isFinite(r.gradNorm)).toBe(false);
    expect(d.scaler!.scale).toBe(2 ** 39);
    expect(d.scaler!.skipped).toBe(1);
    expect(d.optimizer.step, 'AdamW did not step').toBe(0);
    expect(d.step, 'the update still counts').toBe(1);
    const after = await d.loraTensors();
    const flat = (ts: typeof before) => ts.flatMap((t) => [...Array.from(t.A.data), ...Array.from(t.B.data)]);
    expect(flat(after), 'LoRA unchanged by the skipped update').toEqual(flat(before));
    expect(flat(after).some((v) => v !== 0), 'LoRA not all zero').toBe(true);
    await d.saveCheckpoint();
    d.dispose();
    const e = await TcdDistiller.create(gpu, opts(out, { lossScale: { initScale: 2 ** 40 }, resume: out }), models);
    expect([e.step, e.optimizer.step, e.scaler!.scale, e.scaler!.skipped]).toEqual([1, 0, 2 ** 39, 1]);
    e.dispose();
  });
});
