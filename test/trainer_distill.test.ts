// TcdDistiller end to end on a tiny SDXL-shaped folder (scripts/make_tiny_sdxl.ts) and a handful of generated
// captioned images: the loss falls on a fixed batch; a run interrupted after a checkpoint and resumed writes
// byte-identical LoRA and optimizer files to an uninterrupted run; --max-checkpoints pruning; the written LoRA loads
// in the sampler and changes its output; gradient accumulation, the EMA target, pseudo-Huber and sample grids.
// The step's numbers against diffusers are in test/golden/tcd_train_step.ts.
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { loadLoraFile } from '../src/io/lora_format.js';
import { decodePng, encodePng } from '../src/pipeline/png.js';
import { TcdSdxlPipeline } from '../src/pipeline/tcd_sdxl_pipeline.js';
import { LORA_FILE, OPTIMIZER_FILE, listCheckpoints } from '../src/trainer/checkpoint.js';
import { type DistillModels, type TcdDistillerOptions, TcdDistiller, loadDistillModels } from '../src/trainer/distiller.js';
import { type TeacherBatching, tcdDistillStep } from '../src/trainer/tcd_distill_step.js';
import { makeTinySdxl } from '../scripts/make_tiny_sdxl.js';
import { expectClose, maxAbs, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
let dir: string;
let model: string;
let data: string;
let models: DistillModels;

/** A smooth coloured pattern (so the VAE sees structure), h × w. */
function pattern(w: number, h: number, seed: number) {
  const r = seeded(6, seed, 0, 1);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++)
        out[(y * w + x) * 3 + c] = Math.round(127.5 + 127 * Math.sin((x / w) * 6.28 * (1 + r[c]) + (y / h) * 6.28 * r[c + 3] + c));
  return { data: out, width: w, height: h, channels: 3 };
}

beforeAll(async () => {
  gpu = await testGpu();
  dir = await mkdtemp(join(tmpdir(), 'tcd-distill-'));
  model = join(dir, 'model');
  await makeTinySdxl(model);
  data = join(dir, 'images');
  await mkdir(data);
  const captions = ['a red fox in the snow', 'a bowl of fruit', 'a city at night', 'a cat on a sofa'];
  for (const [i, caption] of captions.entries()) {
    await writeFile(join(data, `img${i}.png`), encodePng(pattern(40 + 8 * i, 48, i + 1)));
    await writeFile(join(data, `img${i}.txt`), caption);
  }
  models = await loadDistillModels(gpu, model);
});

afterAll(async () => {
  models?.dispose();
  await gpu?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** 32 px images: 4 × 4 latents; batches of 2; rank 4 keeps it small. */
const BASE = (output: string): TcdDistillerOptions => ({
  model: '',
  data: '',
  output,
  maxSteps: 4,
  resolution: 32,
  randomFlip: true,
  rank: 4,
  alpha: 4,
  batchSize: 2,
  lr: 1e-2,
  seed: 11,
  checkpointEvery: 2,
  gradientCheckpointing: false,
});

function opts(output: string, extra: Partial<TcdDistillerOptions> = {}): TcdDistillerOptions {
  return { ...BASE(output), model, data, ...extra };
}

describe('TcdDistiller', () => {
  it('the loss falls on a fixed batch (same samples, n, m, w and noise every update)', async () => {
    const d = await TcdDistiller.create(gpu, opts(join(dir, 'fixed'), { lr: 3e-3 }), models);
    const batch = await d.batch(0);
    console.log(`  batch: latents [${batch.latentShape.join(', ')}], n ${batch.index}, m ${batch.endIndex}, w ${batch.w.map((w) => w.toFixed(2))}`);
    const losses: number[] = [];
    for (let s = 0; s < 6; s++) {
      const r = await tcdDistillStep(models.unet, d.solver, batch, { loss: 'l2' });
      losses.push(r.loss);
      await d.optimizer.update(3e-3);
    }
    console.log(`  losses ${losses.map((l) => l.toExponential(3)).join(' ')}`);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[0]).toBeGreaterThan(0);
    expect(losses.at(-1)!, 'last loss vs first').toBeLessThan(0.8 * losses[0]);
    d.dispose();
  });

  it('interrupted after a checkpoint and resumed: byte-identical LoRA and optimizer files; pruning; log without lost steps', async () => {
    const full = join(dir, 'full');
    const t0 = performance.now();
    // The teacher as one 2B forward here (the default 'separate' runs in the other tests): also deterministic.
    const teacherBatching = 'batched';
    const a = await TcdDistiller.create(gpu, opts(full, { maxCheckpoints: 1, teacherBatching }), models);
    const reports: number[] = [];
    const res = await a.train({ onStep: (r) => reports.push(r.loss) });
    a.dispose();
    console.log(`  uninterrupted 4 updates ${(performance.now() - t0).toFixed(0)} ms, losses ${reports.map((l) => l.toExponential(3)).join(' ')}`);
    expect(res.steps).toBe(4);
    expect((await listCheckpoints(full)).map((c) => c.step), 'newest checkpoint only (maxCheckpoints 1)').toEqual([4]);

    const part = join(dir, 'part');
    const b = await TcdDistiller.create(gpu, opts(part, { teacherBatching }), models);
    await b.train({ stopAfter: 3 }); // checkpoint at 2; update 3 is "lost" with the kill
    b.dispose();
    expect((await listCheckpoints(part)).map((c) => c.step)).toEqual([2]);
    const c = await TcdDistiller.create(gpu, opts(part, { resume: part, teacherBatching }), models);
    expect(c.step).toBe(2);
    await c.train();
    c.dispose();

    for (const f of [LORA_FILE, OPTIMIZER_FILE]) {
      const x = await readFile(join(full, 'checkpoint-4', f));
      const y = await readFile(join(part, 'checkpoint-4', f));
      expect(x.length).toBeGreaterThan(1000);
      expect(Buffer.compare(x, y), `${f} of the resumed run vs the uninterrupted one`).toBe(0);
    }
    expect(Buffer.compare(await readFile(join(full, LORA_FILE)), await readFile(join(part, LORA_FILE))), 'final LoRA').toBe(0);
    const log = (await readFile(join(part, 'train_log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(log.map((l) => l.step), 'one log line per update (the lost update 3 dropped on resume)').toEqual([1, 2, 3, 4]);
    for (const k of ['loss', 'lr', 'gradNorm', 'imagesPerSecond', 'gpuBytes']) expect(typeof log[0][k], k).toBe('number');
    const logFull = (await readFile(join(full, 'train_log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(log.map((l) => l.loss), 'losses of the resumed run').toEqual(logFull.map((l) => l.loss));
    console.log(`  GPU pool bytes after each update: ${logFull.map((l) => l.gpuBytes).join(', ')}`);
    expect(new Set(logFull.slice(1).map((l) => l.gpuBytes)).size, 'no GPU memory growth from update to update').toBe(1);
  });

  it('refuses bad options and a resume with other settings, naming each; ignores a half-written checkpoint', async () => {
    await expect(TcdDistiller.create(gpu, opts(join(dir, 'bad'), { rank: 0, wMin: 5, wMax: 2, loss: 'l1' as 'l2', resolution: 30, teacherBatching: 'both' as 'batched' }), models)).rejects.toThrow(
      /rank must be an integer ≥ 1[\s\S]*resolution must be a multiple of 8[\s\S]*wMin ≤ wMax[\s\S]*loss must be 'l2' or 'huber'[\s\S]*teacherBatching must be 'batched' or 'separate', got "both"/,
    );
    await expect(TcdDistiller.create(gpu, { ...opts(join(dir, 'bad')), data: undefined }, models)).rejects.toThrow(/exactly one of data .* got none/);
    const part = join(dir, 'part');
    // A checkpoint folder cut off while being written (its temporary name) is not a checkpoint.
    await mkdir(join(part, 'checkpoint-9.tmp-1'));
    await writeFile(join(part, 'checkpoint-9.tmp-1', LORA_FILE), 'partial');
    expect((await listCheckpoints(part)).map((c) => c.step)).toEqual([2, 4]);
    await expect(TcdDistiller.create(gpu, opts(part, { resume: part, rank: 8, batchSize: 1 }), models)).rejects.toThrow(
      /different settings:[\s\S]*rank: checkpoint 4, now 8[\s\S]*batchSize: checkpoint 2, now 1/,
    );
    await expect(TcdDistiller.create(gpu, opts(part, { resume: part, seed: 12 }), models)).rejects.toThrow(/seed 11, this run's seed is 12/);
    await expect(TcdDistiller.create(gpu, opts(part, { resume: join(dir, 'nothing-here') }), models)).rejects.toThrow(/neither a checkpoint folder/);
  });

  it('the written LoRA loads in the sampler and changes its output', async () => {
    const lora = join(dir, 'full', LORA_FILE);
    const gen = { prompt: 'a red fox in the snow', width: 32, height: 32, seed: 5, steps: 2 };
    const plain = await TcdSdxlPipeline.fromPretrained(gpu, model);
    const base = (await plain.generate(gen)).images[0];
    plain.dispose();
    const withLora = await TcdSdxlPipeline.fromPretrained(gpu, model, { loras: [{ path: lora }] });
    const file = await loadLoraFile(lora);
    expect(file.formats).toEqual(['peft']);
    expect(withLora.unet.loraParameters().length, 'every adapter of the file attached').toBe(2 * file.adapters.length);
    const adapted = (await withLora.generate(gen)).images[0];
    withLora.dispose();
    let diff = 0;
    for (let i = 0; i < base.data.length; i++) diff = Math.max(diff, Math.abs(base.data[i] - adapted.data[i]));
    console.log(`  max pixel difference with the LoRA: ${diff} levels`);
    expect(diff).toBeGreaterThan(0);
  });

  it('gradient accumulation, EMA target, pseudo-Huber loss, a sample grid; an abort saves a checkpoint and stops', async () => {
    const out = join(dir, 'extras');
    const d = await TcdDistiller.create(
      gpu,
      opts(out, { maxSteps: 3, checkpointEvery: 0, gradAccum: 2, emaDecay: 0.5, loss: 'huber', sampleEvery: 1, samplePrompts: ['a fox', 'a cat'], sampleSteps: 2 }),
      models,
    );
    const stop = new AbortController();
    const res = await d.train({ signal: stop.signal, onStep: (r) => r.step === 1 && stop.abort() });
    d.dispose();
    expect(res.interrupted, 'the abort saved a checkpoint').toBe(join(out, 'checkpoint-1'));
    expect(res.lora, 'no final LoRA for an interrupted run').toBeUndefined();
    expect(res.steps).toBe(1);
    const files = await readdir(join(out, 'checkpoint-1'));
    expect(files.sort()).toEqual(['ema_lora.safetensors', 'optimizer.safetensors', 'pytorch_lora_weights.safetensors', 'training_state.json']);
    const grid = decodePng(await readFile(join(out, 'samples', 'step-000001.png')));
    expect([grid.width, grid.height]).toEqual([64, 32]);
    expect(new Set(grid.data).size, 'a non-constant image').toBeGreaterThan(4);
    const [line] = (await readFile(join(out, 'train_log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(line.loss, 'the Huber loss is the optimised one').toBe(line.lossHuber);
    const state = JSON.parse(await readFile(join(out, 'checkpoint-1', 'training_state.json'), 'utf8')) as { samplesSeen: number };
    expect(state.samplesSeen, '2 micro-batches of 2').toBe(4);
  });
  it("teacher guidance: one 2B forward (batched) = two B forwards (separate); adapters off; weight caches on = off", async () => {
    const d = await TcdDistiller.create(gpu, opts(join(dir, 'teacher'), { checkpointEvery: 0 }), models);
    const batch = await d.batch(0);
    const step = async (teacherBatching: TeacherBatching) =>
      (await tcdDistillStep(models.unet, d.solver, batch, { loss: 'l2', teacherBatching, keepTensors: true })).tensors!;
    // Batched GEMMs over 2B rows may tile the sums differently: f32 rounding only.
    const tol = { atol: 1e-5, rtol: 1e-4 };
    const sep = await step('separate');
    const bat = await step('batched');
    console.log(`  batched vs separate: eps_c ${maxAbs(bat.epsCond, sep.epsCond).toExponential(2)}, eps_u ${maxAbs(bat.epsUncond, sep.epsUncond).toExponential(2)}`);
    expect(maxAbs(sep.epsCond, sep.epsUncond), 'the prompt changes the teacher (eps_c ≠ eps_u)').toBeGreaterThan(1e-3);
    expectClose(bat.epsCond, sep.epsCond, tol, 'eps_c batched vs separate');
    expectClose(bat.epsUncond, sep.epsUncond, tol, 'eps_u batched vs separate');
    expectClose(bat.xPrev, sep.xPrev, tol, 'x_prev batched vs separate');

    // After an update the LoRA changes the student, but the teacher (adapters off) stays the base model.
    await d.optimizer.update(1e-1);
    const after = await step('batched');
    expect(maxAbs(after.epsStudent, after.epsCond), 'the updated LoRA changes the student').toBeGreaterThan(1e-4);
    expectClose(after.epsCond, bat.epsCond, tol, 'teacher eps_c after a LoRA update');
    expectClose(after.epsUncond, bat.epsUncond, tol, 'teacher eps_u after a LoRA update');

    // The frozen-weight caches (fused QKV, batched cross-attention K / V) the adapter-free teacher uses vs none.
    const caches = models.unet.weightCaches;
    models.unet.weightCaches = { fuseQkv: false, batchCrossKv: false };
    try {
      const plain = await step('batched');
      console.log(`  caches on vs off: eps_c ${maxAbs(after.epsCond, plain.epsCond).toExponential(2)}, eps_u ${maxAbs(after.epsUncond, plain.epsUncond).toExponential(2)}`);
      expectClose(plain.epsCond, after.epsCond, tol, 'teacher eps_c without weight caches');
      expectClose(plain.epsUncond, after.epsUncond, tol, 'teacher eps_u without weight caches');
    } finally {
      models.unet.weightCaches = caches;
      d.dispose();
    }
  });
});
