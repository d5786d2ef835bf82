// Whole-model benchmark of one TCD distillation step (issue 12) on the SDXL base UNet (or any UNet config.json) with
// random weights made on the GPU, batch 1, LoRA rank 64 on the recipe's target modules, with and without gradient
// checkpointing. Two definitions of "a step":
//   distill   the trainer's own update, TcdDistiller.trainStep on a fixed batch: tcdDistillStep (teacher cond + uncond
//             with adapters off, target pass, student forward/backward, host scheduler math and its read-backs),
//             loss-scale unscaling in f16, LoraAdamW.update (clip + AdamW)
//   anchor    what shared/tools/anchors/pt_anchor.py `distill_item` times for PyTorch's tcd_distill_step: 3 no-grad
//             UNet passes (base cond and zero-uncond at t 999 with adapters off, LoRA at t 499), target = tgt +
//             0.5·(eps_c − eps_u), LoRA forward at t 999 + MSE + backward, AdamW (lr 1e-4, weight decay 1e-2, no clip)
// Reports the median seconds per step, images/s, the buffer-pool peak (live pooled buffers incl. weights and
// size-class rounding) and a per-op-type GPU time breakdown (timestamp queries). A benchmark, not a test.
//
//   npx tsx bench/sdxl_distill.ts                      # SDXL at 1024² (an H100/H200)
//   npx tsx bench/sdxl_distill.ts --dry-run            # no GPU: the memory plan against H100 limits
//   npx tsx bench/sdxl_distill.ts --config test/fixtures/tiny_unet/config.json --size 64 --rank 4 --steps 1
// GPU machine: node scripts/bundle-gpu.mjs → node .gpu-dist/sdxl_distill.mjs [options].
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpu } from '../runtime/device.js';
import { BENCH_DISABLE_TOGGLES } from '../runtime/host.js';
import { sizeClass } from '../runtime/buffer_pool.js';
import { add, mul, scale, sub, sumAllOp } from '../src/autograd/ops.js';
import { Tape, Var, noGrad, tidy } from '../src/autograd/tape.js';
import type { DType } from '../src/dtype.js';
import { type AdamWSlot, adamwStep } from '../src/kernels/adamw.js';
import { constantTensor, randomNormal } from '../src/kernels/random.js';
import { initRandomParameters } from '../src/nn/init.js';
import { Tensor } from '../src/tensor.js';
import { SeededRng } from '../src/trainer/data/rng.js';
import { type DistillModels, SDXL_LORA_TARGET_MODULES, TcdDistiller } from '../src/trainer/distiller.js';
import { ArraySource, normalArray } from '../src/trainer/examples.js';
import { type TcdBatch, withAdapters } from '../src/trainer/tcd_distill_step.js';
import type { UNetConfigJson } from '../src/unet/config.js';
import { UNet2DConditionModel } from '../src/unet/unet.js';
import anchors from './anchors.json' with { type: 'json' };
import type { DryRunHost } from './dry_run_host.js';
import { median } from './measure.js';
import { type Profile, profileRun } from './op_breakdown.js';
import { type OptionsOf, dtypeFlag, flagHelp, parseFlags, runMain, switchFlag, unetBenchFlags, unetConfigOf, withBenchGpu } from './options.js';
import { dryRunPlan, gib, opTypeTable, textTable, timedProgress, writeJsonReport } from './report.js';

const UNSAFE_TOGGLES = ['disable_robustness', 'skip_validation'];
const MODES = ['distill', 'distill-ckpt', 'anchor', 'anchor-ckpt'] as const;
type Mode = (typeof MODES)[number];
/** SDXL's scheduler_config.json (what the trainer reads its noise schedule from). */
const SDXL_SCHEDULER = { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', prediction_type: 'epsilon' };

const FLAGS = {
  ...unetBenchFlags({ modes: MODES, steps: 3, warmup: 1, run: 'step', unsafeToggles: UNSAFE_TOGGLES }),
  dtype: dtypeFlag(
    'f32',
    "the UNet's weights and activations (LoRA masters, gradients and AdamW state stay f32; f16 needs\n" +
      'shader-f16: on NVIDIA TCD_ENABLE_TOGGLES=allow_unsafe_apis,vulkan_enable_f16_on_nvidia)',
  ),
  teacherBatched: switchFlag(
    '--teacher-batched',
    "distill modes: the teacher's guidance as one forward over 2B (TcdDistiller teacherBatching 'batched')\n" +
      "instead of two over B (the default, 'separate')",
  ),
  dryRun: switchFlag(
    '--dry-run',
    'no GPU: the same code against a recording device with H100 limits; reports the memory plan\n' +
      '(pool peaks, largest binding); read-backs are zeros, times are host-only',
  ),
};
type Options = OptionsOf<typeof FLAGS>;

const USAGE = `Usage: npx tsx bench/sdxl_distill.ts [options]   (GPU machine: node .gpu-dist/sdxl_distill.mjs [options])

One TCD distillation step on a UNet2DConditionModel with random weights, batch 1, LoRA rank r (alpha r) on
${SDXL_LORA_TARGET_MODULES.join(', ')}. Modes:
  distill        the trainer's update, TcdDistiller.trainStep on a fixed batch (n 49, m 24, w 8): tcdDistillStep,
                 f16 loss-scale unscaling, LoraAdamW.update (clip 1, AdamW lr 1e-4, weight decay 1e-2)
  distill-ckpt   the same with gradient checkpointing of resnets and transformer blocks
  anchor         as PyTorch's tcd_distill_step (pt_anchor.py distill_item): 3 no-grad UNet passes + 1 LoRA
                 forward/backward (MSE) + AdamW (lr 1e-4, weight decay 1e-2)
  anchor-ckpt    the same with gradient checkpointing
Reports the median seconds per step of --steps runs after --warmup (gpu.sync() around each), images/s, the
buffer-pool peak (live pooled buffers incl. weights and size-class rounding, like torch.cuda.max_memory_allocated),
and a per-op-type GPU time breakdown of one more run.

Options:
${flagHelp(FLAGS)}`;

const progress = timedProgress();

interface ModeResult {
  mode: Mode;
  what: string;
  median_s: number | null;
  images_per_s: number | null;
  all_s: number[];
  timing: string;
  /** Pool bytes live before the timed steps (weights, LoRA, inputs, AdamW moments). */
  baseline_bytes: number;
  /** Pool peak over the timed steps (live pooled buffers incl. weights, size-class rounded). */
  peak_bytes: number;
  optimizer_state_bytes: number;
  /** distill in f16: steps the loss scaler skipped for overflow (random weights can overflow f16 gradients). */
  skipped_steps?: number;
  loss?: number;
  loss_finite?: boolean;
  profile?: Profile;
  largest_binding?: { bytes: number; label: string };
  error?: string;
}

/** PyTorch's tcd_distill_step figure for a mode, when bench/anchors.json has one (key model.tcd_distill_step_*). */
function anchorFor(mode: Mode, dtype: DType): { ms: number; GiB: number } | undefined {
  const model = anchors.model as Record<string, Record<string, number> | unknown>;
  const key = `${dtype === 'f16' ? 'fp16_autocast_base_fp16' : 'fp32_tf32off'}_${mode.endsWith('ckpt') ? 'ckpt' : 'nockpt'}`;
  const ms = (model.tcd_distill_step_ms as Record<string, number> | undefined)?.[key];
  const mem = (model.tcd_distill_step_peak_mem_GiB as Record<string, number> | undefined)?.[key];
  return ms !== undefined && mem !== undefined ? { ms, GiB: mem } : undefined;
}

interface Bench {
  gpu: Gpu;
  unet: UNet2DConditionModel;
  cfg: UNetConfigJson;
  size: number;
  models: DistillModels;
  batch: TcdBatch;
  /** An empty folder for the distiller's output (it checks writability; the bench writes no checkpoint). */
  scratch: string;
  dry?: DryRunHost;
}

/** Host inputs of the trainer's step: one random latent / prompt, SDXL micro-conditioning at size². */
function makeBatch(cfg: UNetConfigJson, size: number, seed: number): TcdBatch {
  const rng = new SeededRng(seed);
  const latent = size / 8;
  const C = cfg.in_channels ?? 4;
  const cross = Array.isArray(cfg.cross_attention_dim) ? cfg.cross_attention_dim[0] : (cfg.cross_attention_dim ?? 1280);
  const pooled = Math.max(1, (cfg.projection_class_embeddings_input_dim ?? 0) - 6 * (cfg.addition_time_embed_dim ?? 0));
  return {
    latents: normalArray(rng, C * latent * latent),
    latentShape: [1, C, latent, latent],
    noise: normalArray(rng, C * latent * latent),
    encoderHiddenStates: normalArray(rng, 77 * cross),
    tokens: 77,
    textEmbeds: normalArray(rng, pooled),
    timeIds: Float32Array.from([size, size, 0, 0, size, size]),
    index: [49],
    endIndex: [24],
    w: [8],
  };
}

/** The batch as the one example of the distiller's (unused) data source. */
function exampleOf(batch: TcdBatch) {
  const [, C, h, w] = batch.latentShape;
  return {
    latents: batch.latents,
    latentShape: [C, h, w] as const,
    promptEmbeds: batch.encoderHiddenStates,
    promptShape: [batch.tokens, batch.encoderHiddenStates.length / batch.tokens] as const,
    pooled: batch.textEmbeds,
    timeIds: [...batch.timeIds],
  };
}

/** One mode: its own optimizer state (freed after), warm-up, timed steps, peak, profile. */
async function runMode(b: Bench, mode: Mode, o: Options): Promise<ModeResult> {
  const { gpu, unet } = b;
  const anchorMode = mode.startsWith('anchor');
  const res: ModeResult = {
    mode,
    what: anchorMode ? `PyTorch-defined step: 3 no-grad passes + LoRA fwd/bwd + AdamW${mode.endsWith('ckpt') ? ' + checkpointing' : ''}` : `trainer step (TcdDistiller.trainStep: tcdDistillStep + LoraAdamW)${mode.endsWith('ckpt') ? ' + checkpointing' : ''}`,
    median_s: null,
    images_per_s: null,
    all_s: [],
    timing: o.dryRun ? 'host only (dry run: nothing runs on a GPU)' : 'wall clock around gpu.sync(), one step at a time',
    baseline_bytes: 0,
    peak_bytes: 0,
    optimizer_state_bytes: 0,
  };
  unet.gradientCheckpointing = mode.endsWith('ckpt') ? { resnets: true, transformerBlocks: true } : {};
  let distiller: TcdDistiller | undefined;
  let moments: { m: Tensor; v: Tensor }[] | undefined;
  let adamStep = 0;
  const gpuInputs: Var[] = [];
  let step: () => Promise<number>;
  if (!anchorMode) {
    // The trainer itself (it attaches a fresh LoRA; its dispose() takes the LoRA off again).
    distiller = await TcdDistiller.create(
      gpu,
      {
        model: '',
        examples: new ArraySource([exampleOf(b.batch)]),
        output: b.scratch,
        maxSteps: 1e9,
        resolution: o.size,
        rank: o.rank,
        alpha: o.rank,
        seed: o.seed,
        lr: 1e-4,
        weightDecay: 1e-2,
        checkpointEvery: 0,
        gradientCheckpointing: mode.endsWith('ckpt'),
        teacherBatching: o.teacherBatched ? 'batched' : undefined,
      },
      b.models,
    );
    res.optimizer_state_bytes = unet.loraParameters().reduce((n, p) => n + 2 * sizeClass(4 * p.var.value.size), 0);
    res.skipped_steps = 0;
    step = async () => {
      const r = await distiller!.trainStep([b.batch]);
      if (r.skipped) res.skipped_steps!++;
      return r.loss;
    };
  } else {
    if (!unet.loraParameters().length) unet.initLora({ rank: o.rank, alpha: o.rank, targetModules: SDXL_LORA_TARGET_MODULES, seed: o.seed });
    const params = unet.loraParameters();
    moments = params.map((p) => ({ m: constantTensor(gpu, p.var.shape, 0, `${p.name}.exp_avg`), v: constantTensor(gpu, p.var.shape, 0, `${p.name}.exp_avg_sq`) }));
    res.optimizer_state_bytes = moments.reduce((n, m) => n + sizeClass(m.m.bytes) + sizeClass(m.v.bytes), 0);
    const B = b.batch;
    const up = (data: Float32Array, shape: number[], label: string) => {
      const v = new Var(Tensor.fromArray(gpu, data, shape, { label }), false, label);
      gpuInputs.push(v);
      return v;
    };
    const sample = up(B.latents, [...B.latentShape], 'sample');
    const ehs = up(B.encoderHiddenStates, [1, 77, B.encoderHiddenStates.length / 77], 'encoder_hidden_states');
    const textEmbeds = up(B.textEmbeds, [1, B.textEmbeds.length], 'text_embeds');
    const timeIds = up(B.timeIds, [1, 6], 'time_ids');
    const zeroEhs = up(new Float32Array(B.encoderHiddenStates.length), [1, 77, B.encoderHiddenStates.length / 77], 'encoder_hidden_states.zeros');
    const zeroText = up(new Float32Array(B.textEmbeds.length), [1, B.textEmbeds.length], 'text_embeds.zeros');
    const one = constantTensor(gpu, [1], 1, 'dloss');
    gpuInputs.push(new Var(one));
    const fwd = (e: Var, te: Var, t: number) => unet.forward({ sample, timestep: t, encoderHiddenStates: e, textEmbeds: te, timeIds });
    step = async () => {
      const target = noGrad(() =>
        tidy(() => {
          const [epsC, epsU] = withAdapters(unet, undefined, () => [fwd(ehs, textEmbeds, 999), fwd(zeroEhs, zeroText, 999)]);
          const tgt = fwd(ehs, textEmbeds, 499);
          return add(tgt, scale(sub(epsC, epsU), 0.5));
        }),
      );
      const tape = new Tape();
      let loss: Var;
      try {
        loss = tape.record(() =>
          tidy(() => {
            const d = sub(fwd(ehs, textEmbeds, 999), target);
            return scale(sumAllOp(mul(d, d)), 1 / d.value.size);
          }),
        );
        tape.backward(loss, one);
      } catch (e) {
        tape.discard();
        target.dispose();
        throw e;
      }
      target.dispose();
      const slots: AdamWSlot[] = [];
      params.forEach((p, i) => p.var.grad && slots.push({ param: p.var.value, grad: p.var.grad, m: moments![i].m, v: moments![i].v }));
      adamwStep(slots, ++adamStep, { lr: 1e-4, weightDecay: 1e-2 });
      for (const p of params) p.var.zeroGrad();
      await gpu.sync();
      const l = o.dryRun ? 0 : (await loss.value.toArray())[0];
      loss.dispose();
      return l;
    };
  }
  const once = async () => {
    const t = performance.now();
    const loss = await step();
    await gpu.sync();
    return { loss, s: (performance.now() - t) / 1000 };
  };
  try {
    for (let i = 0; i < o.warmup; i++) {
      const { loss, s } = await once();
      if (i === 0) [res.loss, res.loss_finite] = [loss, Number.isFinite(loss)];
      progress(`${mode}: warm-up ${i + 1}/${o.warmup} ${s.toFixed(2)} s`);
    }
    gpu.pool.resetPeak();
    res.baseline_bytes = gpu.pool.report().currentBytes;
    if (b.dry) b.dry.stats.windowBinding = { bytes: 0, label: '' };
    for (let i = 0; i < o.steps; i++) {
      const { loss, s } = await once();
      if (res.loss === undefined) [res.loss, res.loss_finite] = [loss, Number.isFinite(loss)];
      res.all_s.push(s);
      progress(`${mode}: step ${i + 1}/${o.steps} ${s.toFixed(3)} s`);
    }
    res.peak_bytes = gpu.pool.report().peakBytes;
    res.median_s = median(res.all_s);
    res.images_per_s = b.batch.latentShape[0] / res.median_s;
    if (b.dry) res.largest_binding = { ...b.dry.stats.windowBinding };
    if (o.profile && !o.dryRun) res.profile = await profileRun(gpu, mode, async () => void (await once()), progress);
  } catch (e) {
    res.error = (e as Error).message;
    progress(`${mode}: FAILED: ${res.error.split('\n')[0]}`);
    for (const p of unet.loraParameters()) p.var.zeroGrad();
    await gpu.sync().catch(() => {});
  } finally {
    unet.gradientCheckpointing = {};
    distiller?.dispose();
    for (const m of moments ?? []) [m.m, m.v].forEach((t) => t.release());
    for (const v of gpuInputs) v.dispose();
  }
  await gpu.sync().catch(() => {});
  gpu.pool.trim();
  return res;
}

function report(results: ModeResult[], o: Options, comparable: boolean, weightBytes: number, header: string): string {
  const lines = [header];
  lines.push(
    textTable(
      ['mode', o.dryRun ? 's/step (host only)' : 's/step (median)', 'images/s', 'peak GiB', 'GPU sum ms', 'PyTorch s', 'PyTorch GiB', 'loss'],
      results.map((r) => {
        const a = comparable ? anchorFor(r.mode, o.dtype) : undefined;
        return [
          r.mode,
          r.error ? 'FAILED' : (r.median_s?.toFixed(3) ?? '-'),
          r.images_per_s?.toFixed(3) ?? '-',
          r.error ? '-' : gib(r.peak_bytes),
          r.profile ? r.profile.gpu_ms.toFixed(1) : '-',
          a ? (a.ms / 1000).toFixed(3) : '-',
          a ? a.GiB.toFixed(2) : '-',
          r.loss === undefined ? '-' : r.loss_finite ? r.loss.toPrecision(4) : `${r.loss} (NOT FINITE)`,
        ];
      }),
    ),
  );
  lines.push(
    comparable && results.some((r) => anchorFor(r.mode, o.dtype))
      ? 'PyTorch: bench/anchors.json model.tcd_distill_step_* (pt_anchor.py distill_item: the anchor modes are its definition).'
      : 'PyTorch: no tcd_distill_step figure in bench/anchors.json for this setting (pt_anchor.py distill_item measures it on the GPU machine; the anchor modes mirror it).',
  );
  lines.push(`Peak GiB = buffer-pool peak of live buffers incl. weights (${gib(weightBytes)} GiB), LoRA, AdamW moments and size-class rounding.`);
  for (const r of results) {
    lines.push(`\n${r.mode}: ${r.what}`);
    if (r.error) lines.push(`  FAILED: ${r.error}`);
    if (r.skipped_steps) lines.push(`  ${r.skipped_steps} of ${o.warmup + r.all_s.length} steps skipped by the loss scaler (f16 gradient overflow; the scale halves each time)`);
    lines.push(
      `  baseline ${gib(r.baseline_bytes)} GiB (AdamW moments ${gib(r.optimizer_state_bytes)} GiB); peak above baseline ${gib(r.peak_bytes - r.baseline_bytes)} GiB; steps [${r.all_s.map((s) => s.toFixed(3)).join(', ')}] s`,
    );
    if (r.largest_binding?.bytes) lines.push(`  largest binding ${(r.largest_binding.bytes / 2 ** 20).toFixed(1)} MiB (${r.largest_binding.label})`);
    if (r.profile) {
      const p = r.profile;
      lines.push(`  GPU time by op type (one more step, ${p.dispatches} dispatches, sum ${p.gpu_ms.toFixed(1)} ms):`);
      lines.push(
        opTypeTable(p)
          .split('\n')
          .map((l) => `  ${l}`)
          .join('\n'),
      );
    }
  }
  return lines.join('\n');
}

async function main(o: Options): Promise<number> {
  const { cfg, name: configName } = unetConfigOf(o.config);
  const enableToggles = o.unsafe ? UNSAFE_TOGGLES : [];
  return withBenchGpu('sdxl_distill', { dryRun: o.dryRun, f16: o.dtype === 'f16', enableToggles }, async (gpu, dry) => {
    let code = 0;
    const adapter = gpu.describe();
    progress(`adapter: ${adapter}`);
    const unet = new UNet2DConditionModel(gpu, cfg, { dtype: o.dtype });
    let nParams = 0;
    for (const p of unet.parameters.values()) nParams += p.shape.reduce((a, d) => a * d, 1);
    const init = initRandomParameters(gpu, unet.parameters, { seed: o.seed, dtype: o.dtype });
    await gpu.sync();
    progress(`${configName}: ${nParams.toLocaleString('en-US')} parameters, ${gib(init.bytes)} GiB ${o.dtype} on the GPU`);
    const adapted = unet.initLora({ rank: o.rank, alpha: o.rank, targetModules: SDXL_LORA_TARGET_MODULES, seed: o.seed });
    const loraParams = unet.loraParameters().reduce((s, p) => s + p.var.value.size, 0);
    progress(`LoRA r${o.rank}: ${adapted.length} modules, ${loraParams.toLocaleString('en-US')} trainable parameters (f32)`);
    unet.clearLora(); // each mode attaches its own
    const b: Bench = {
      gpu,
      unet,
      cfg,
      size: o.size,
      models: { unet, schedulerConfig: SDXL_SCHEDULER, forceZerosForEmptyPrompt: true, dispose: () => unet.dispose() },
      batch: makeBatch(cfg, o.size, o.seed),
      scratch: mkdtempSync(join(tmpdir(), 'sdxl-distill-bench-')),
      dry,
    };
    const results: ModeResult[] = [];
    for (const mode of o.modes) {
      progress(`${mode}: start`);
      results.push(await runMode(b, mode, o));
    }
    const comparable = o.config === undefined && o.size === 1024 && o.rank === 64;
    const latent = o.size / 8;
    const header = [
      '',
      `TCD distillation step benchmark: ${configName}, random weights, UNet ${o.dtype}; latent [1, ${cfg.in_channels ?? 4}, ${latent}, ${latent}] (${o.size}²), batch 1, LoRA r${o.rank} (${adapted.length} modules)`,
      `adapter: ${adapter}${o.unsafe ? ` (unsafe: ${UNSAFE_TOGGLES.join(', ')})` : ''}; ${o.warmup} warm-up + ${o.steps} timed steps per mode`,
      '',
    ].join('\n');
    console.log(report(results, o, comparable, init.bytes, header));
    if (dry) console.log(dryRunPlan(dry, gpu.limits.maxStorageBufferBindingSize, 'Dry-run memory plan (no GPU; Dawn-on-H100 limits):'));
    if (results.some((r) => r.error)) code = 1;
    if (o.json) {
      const doc = {
        date: new Date().toISOString(),
        adapter,
        summary: gpu.summary(),
        config: configName,
        parameters: nParams,
        weight_bytes: init.bytes,
        lora_parameters: loraParams,
        options: { size: o.size, latent, modes: o.modes, rank: o.rank, steps: o.steps, warmup: o.warmup, seed: o.seed, dtype: o.dtype, unsafe: o.unsafe, dry_run: o.dryRun },
        results,
        pytorch: Object.fromEntries(MODES.map((m) => [m, comparable ? (anchorFor(m, o.dtype) ?? null) : null])),
        ...(dry ? { dry_run: { ...dry.stats, dispatchesByKernel: undefined } } : {}),
      };
      await writeJsonReport(o.json, doc);
      progress(`wrote ${o.json}`);
    }
    rmSync(b.scratch, { recursive: true, force: true });
    unet.dispose();
    return code;
  });
}

runMain('sdxl_distill', USAGE, (argv) => parseFlags(argv, FLAGS), main);
