// Whole-model benchmark: the SDXL base UNet (or any UNet config.json) with random weights made on the GPU, timed for
// one forward, one LoRA training step, and one LoRA training step with gradient checkpointing, next to the PyTorch
// H100 figures (bench/anchors.json "model", copied from shared/anchors/pytorch_h100.json), with peak pool memory and
// a per-op-type GPU time breakdown (timestamp queries) that shows which kernels to work on.
//
//   npx tsx bench/sdxl_unet.ts                         # SDXL at 1024² (needs ~10 GiB for weights; an H100)
//   npx tsx bench/sdxl_unet.ts --dry-run               # the same without a GPU: memory plan against H100 limits
//   npx tsx bench/sdxl_unet.ts --config test/fixtures/tiny_unet/config.json --size 64 --rank 4 --steps 1
// GPU machine: node scripts/bundle-gpu.mjs → node .gpu-dist/sdxl_unet.mjs [options].
import { Gpu } from '../runtime/device.js';
import { BENCH_DISABLE_TOGGLES } from '../runtime/host.js';
import { mul, scale, sub, sumAllOp } from '../src/autograd/ops.js';
import { Tape, Var, tidy } from '../src/autograd/tape.js';
import { type AdamWSlot, adamwStep } from '../src/kernels/adamw.js';
import { constantTensor, randomNormal } from '../src/kernels/random.js';
import { Tensor } from '../src/tensor.js';
import type { DType } from '../src/dtype.js';
import { sizeClass } from '../runtime/buffer_pool.js';
import type { UNetConfigJson } from '../src/unet/config.js';
import { UNet2DConditionModel } from '../src/unet/unet.js';
import anchors from './anchors.json' with { type: 'json' };
import type { DryRunHost } from './dry_run_host.js';
import { median } from './measure.js';
import { type Profile, profileRun } from './op_breakdown.js';
import { type Flag, type OptionsOf, UsageError, flagHelp, parseFlags, runMain, switchFlag, unetBenchFlags, unetConfigOf, withBenchGpu } from './options.js';
import { GiB, dryRunPlan, fmtBytes, gib, opTypeTable, textTable, timedProgress, writeJsonReport } from './report.js';

const UNSAFE_TOGGLES = ['disable_robustness', 'skip_validation'];
/** peft target_modules of the LCM / TCD SDXL LoRAs (shared/spec/sdxl.md §5.4): 788 modules on SDXL. */
const LORA_TARGETS = ['to_q', 'to_k', 'to_v', 'to_out.0', 'proj_in', 'proj_out', 'ff.net.0.proj', 'ff.net.2', 'conv1', 'conv2', 'conv_shortcut', 'downsamplers.0.conv', 'upsamplers.0.conv', 'time_emb_proj'];
const SDXL_PARAMS = 2_567_463_684;
const MODES = ['forward', 'train', 'train-ckpt'] as const;
type Mode = (typeof MODES)[number];

const FLAGS = {
  ...unetBenchFlags({
    modes: MODES,
    modesHelp: 'forward | train | train-ckpt | all, or a comma list (default all)',
    steps: 5,
    warmup: 2,
    run: 'run',
    unsafeToggles: UNSAFE_TOGGLES,
    unsafeHelp: ' (faster, no bounds checks)',
  }),
  /** UNet weights and activations (f32 math in the kernels either way), one model per entry. */
  dtypes: {
    name: '--dtype',
    arg: '<list>',
    help:
      'UNet weights and activations: f32, f16 or f32,f16 (both, one model after the other; one table\n' +
      'with a dtype column). Default f32; f16 needs shader-f16: on NVIDIA TCD_ENABLE_TOGGLES=\n' +
      'allow_unsafe_apis,vulkan_enable_f16_on_nvidia)',
    initial: ['f32'],
    parse: (v) => {
      const list = (v ?? '').split(',');
      for (const d of list) if (d !== 'f32' && d !== 'f16') throw new UsageError(`--dtype must be f32, f16 or f32,f16, got '${list.join(',')}'`);
      return [...new Set(list as DType[])];
    },
  } satisfies Flag<DType[]>,
  /** Keep packed conv weights (forward and train; the input-gradient packing in train); false: the defaults. */
  convPack: switchFlag(
    '--conv-pack',
    'keep packed copies of the conv weights (WeightCacheOptions.packConvForward in forward and\n' +
      'train, packConvInputGrad in train; +1.33 GB f32 each for SDXL) instead of packing per call.\n' +
      'Default: the model\'s defaults, one copy of every weight',
  ),
  dryRun: switchFlag(
    '--dry-run',
    'no GPU: run the same code against a recording device with H100 limits and report the memory\n' +
      'plan (pool peaks, largest buffer / binding vs maxStorageBufferBindingSize); times are host-only',
  ),
};
type Options = OptionsOf<typeof FLAGS>;

const USAGE = `Usage: npx tsx bench/sdxl_unet.ts [options]   (GPU machine: node .gpu-dist/sdxl_unet.mjs [options])

Builds a UNet2DConditionModel from a diffusers config.json with random weights (N(0, 1/fan_in), norms 1, biases 0,
drawn on the GPU), then times, batch 1, timestep 999, text context [1, 77, cross_attention_dim]:
  forward      one forward (no autograd)
  train        one LoRA training step: forward + MSE loss vs a random target + backward + AdamW on the adapters
  train-ckpt   the same with gradient checkpointing of resnets and transformer blocks
LoRA: rank r on ${LORA_TARGETS.join(', ')} (alpha = r).
Reports the median wall time of --steps runs (gpu.sync() around each), the buffer pool's peak (live pooled buffers,
weights included, like torch.cuda.max_memory_allocated), a per-op-type GPU time breakdown of one more run (timestamp
queries; one compute pass per dispatch), and the PyTorch 2.11 H100 fp32 (TF32 off) figures with the ratio.

Options:
${flagHelp(FLAGS)}
Dawn toggles always disabled: ${BENCH_DISABLE_TOGGLES.join(', ')}. Env: TCD_ADAPTER, TCD_BACKEND, TCD_ENABLE_TOGGLES,
TCD_DISABLE_TOGGLES.`;

const progress = timedProgress();

interface ModeResult {
  mode: Mode;
  dtype: DType;
  what: string;
  median_ms: number | null;
  min_ms: number | null;
  all_ms: number[];
  /** Per run: host recording time, until the JS had recorded, encoded and submitted the whole run (no GPU wait). */
  host_ms: number[];
  timing: string;
  /** Pool bytes live before the timed runs (weights, inputs, adapters, optimizer moments). */
  baseline_bytes: number;
  /** Pool peak over the timed runs (live pooled buffers by size class, weights included). */
  peak_bytes: number;
  /** What the owners of the buffers live at the peak asked for (peak_bytes − this: the size-class rounding). */
  peak_requested_bytes: number;
  /** Peak of live + cached pool bytes over the timed runs: what the device held at most. */
  peak_held_bytes: number;
  /** Training: pool bytes of the AdamW moments (live for the whole step; part of baseline and peak). */
  optimizer_state_bytes?: number;
  /** Bind groups per timed run: created vs reused from the cache. */
  bind_groups?: { created: number; reused: number };
  /** Live + cached pool bytes after the runs: what the device holds. */
  footprint_bytes: number;
  output_finite: boolean | null;
  loss?: number;
  profile?: Profile;
  /** Dry run: the largest storage binding of the timed runs. */
  largest_binding?: { bytes: number; label: string };
  /** Dispatches per kernel entry of one run (dry run: from the recording device). */
  dispatches_by_kernel?: Record<string, number>;
  error?: string;
}

// --- PyTorch anchors ------------------------------------------------------------------------------------------------

interface Anchor {
  ms: number;
  GiB: number;
}
const ANCHOR_KEYS: Record<Mode, { ms: () => number; mem: () => number }> = {
  forward: { ms: () => anchors.model.unet_forward_ms.fp32_tf32off, mem: () => anchors.model.unet_forward_peak_mem_GiB.fp32_tf32off },
  train: { ms: () => anchors.model.unet_lora_train_step_ms.fp32_tf32off_nockpt, mem: () => anchors.model.unet_lora_train_step_peak_mem_GiB.fp32_tf32off_nockpt },
  'train-ckpt': { ms: () => anchors.model.unet_lora_train_step_ms.fp32_tf32off_ckpt, mem: () => anchors.model.unet_lora_train_step_peak_mem_GiB.fp32_tf32off_ckpt },
};
const ANCHOR_SOURCE = `PyTorch ${anchors.torch} + diffusers, fp32 TF32 off, ${anchors.gpu}, random weights, batch 1, 1024² (128² latent), LoRA r64 on the same 14 module types; median of 5 (CUDA events), peak torch.cuda.max_memory_allocated (bench/anchors.json "model", from shared/anchors/pytorch_h100.json)`;

function anchorFor(mode: Mode): Anchor {
  return { ms: ANCHOR_KEYS[mode].ms(), GiB: ANCHOR_KEYS[mode].mem() };
}

// --- the benchmark ---------------------------------------------------------------------------------------------------

interface Bench {
  gpu: Gpu;
  unet: UNet2DConditionModel;
  inputs: { sample: Var; encoderHiddenStates: Var; textEmbeds?: Var; timeIds?: Var };
  target: Var;
  one: Tensor;
  dry?: DryRunHost;
  adamStep: number;
  /** Trainable LoRA parameters, once attached. */
  loraParams?: number;
  moments?: { m: Tensor; v: Tensor }[];
}

function makeInputs(gpu: Gpu, cfg: UNetConfigJson, size: number, seed: number): Bench['inputs'] {
  const latent = size / 8;
  const cross = Array.isArray(cfg.cross_attention_dim) ? cfg.cross_attention_dim[0] : (cfg.cross_attention_dim ?? 1280);
  const inC = cfg.in_channels ?? 4;
  const v = (t: Tensor) => new Var(t);
  const inputs: Bench['inputs'] = {
    sample: v(randomNormal(gpu, [1, inC, latent, latent], { seed, stream: 1 }, 0, 1, 'sample')),
    encoderHiddenStates: v(randomNormal(gpu, [1, 77, cross], { seed, stream: 2 }, 0, 1, 'encoder_hidden_states')),
  };
  if (cfg.addition_embed_type === 'text_time') {
    const textDim = (cfg.projection_class_embeddings_input_dim ?? 0) - 6 * (cfg.addition_time_embed_dim ?? 0);
    inputs.textEmbeds = v(randomNormal(gpu, [1, textDim], { seed, stream: 3 }, 0, 1, 'text_embeds'));
    inputs.timeIds = v(Tensor.fromArray(gpu, [size, size, 0, 0, size, size], [1, 6], { label: 'time_ids' }));
  }
  return inputs;
}

function forward(b: Bench): Var {
  return b.unet.forward({ ...b.inputs, timestep: 999 } as Parameters<UNet2DConditionModel['forward']>[0]);
}

/** mean((y − target)²) as a [1] Var. */
function mseLoss(y: Var, target: Var): Var {
  const d = sub(y, target);
  return scale(sumAllOp(mul(d, d)), 1 / y.value.size);
}

/** One LoRA training step: forward + loss + backward + AdamW on the adapters. Returns the loss (dispose it). */
function trainStep(b: Bench): Var {
  const params = b.unet.loraParameters();
  const moments = b.moments!;
  const tape = new Tape();
  let loss: Var;
  try {
    loss = tape.record(() => tidy(() => mseLoss(forward(b), b.target)));
    tape.backward(loss, b.one);
  } catch (e) {
    tape.discard();
    throw e;
  }
  const slots: AdamWSlot[] = [];
  params.forEach((p, i) => {
    if (p.var.grad) slots.push({ param: p.var.value, grad: p.var.grad, m: moments[i].m, v: moments[i].v });
  });
  adamwStep(slots, ++b.adamStep, { lr: 1e-4, weightDecay: 1e-2 });
  for (const p of params) p.var.zeroGrad();
  return loss;
}

async function attachLora(b: Bench, o: Options): Promise<void> {
  const t = performance.now();
  const adapted = b.unet.initLora({ rank: o.rank, alpha: o.rank, targetModules: LORA_TARGETS, seed: o.seed });
  const params = b.unet.loraParameters();
  b.loraParams = params.reduce((s, p) => s + p.var.value.size, 0);
  // AdamW moments (torch creates them at the first step; here before timing, so every timed step is alike).
  b.moments = params.map((p) => ({
    m: constantTensor(b.gpu, p.var.shape, 0, `${p.name}.exp_avg`),
    v: constantTensor(b.gpu, p.var.shape, 0, `${p.name}.exp_avg_sq`),
  }));
  await b.gpu.sync();
  progress(`LoRA r${o.rank}: ${adapted.length} modules, ${b.loraParams.toLocaleString('en-US')} trainable parameters + AdamW moments (${((performance.now() - t) / 1000).toFixed(1)} s)`);
}

async function isFinite(t: Tensor): Promise<boolean> {
  return (await t.toArray()).every(Number.isFinite);
}

async function runMode(b: Bench, mode: Mode, o: Options, dtype: DType): Promise<ModeResult> {
  const { gpu } = b;
  const what = mode === 'forward' ? 'forward' : `LoRA r${o.rank} train step${mode === 'train-ckpt' ? ' + checkpointing' : ''}`;
  const res: ModeResult = {
    mode,
    dtype,
    what,
    median_ms: null,
    min_ms: null,
    all_ms: [],
    host_ms: [],
    timing: o.dryRun ? 'host only (dry run: nothing runs on a GPU)' : 'wall clock around gpu.sync(), one run at a time',
    baseline_bytes: 0,
    peak_bytes: 0,
    peak_requested_bytes: 0,
    peak_held_bytes: 0,
    footprint_bytes: 0,
    output_finite: null,
  };
  b.unet.gradientCheckpointing = mode === 'train-ckpt' ? { resnets: true, transformerBlocks: true } : {};
  // Default: one copy of every weight (conv weights packed per call). --conv-pack: packed copies as before (+1.33 GB
  // for SDXL each), except under checkpointing, the memory-lean mode; the plain training step also keeps the
  // input-gradient packing (244 packing dispatches a step less).
  b.unet.weightCaches = { packConvForward: o.convPack && mode !== 'train-ckpt', packConvInputGrad: o.convPack && mode === 'train' };
  const once = async (): Promise<{ out: Var; ms: number; hostMs: number }> => {
    const t = performance.now();
    const out = mode === 'forward' ? forward(b) : trainStep(b);
    // Host recording: JS time to record, encode and submit the whole run (the last batch too), no GPU wait.
    gpu.flush();
    const hostMs = performance.now() - t;
    await gpu.sync();
    return { out, ms: performance.now() - t, hostMs };
  };
  try {
    for (let i = 0; i < o.warmup; i++) {
      const { out, ms } = await once();
      if (i === 0 && !o.dryRun) {
        res.output_finite = await isFinite(out.value);
        if (mode !== 'forward') res.loss = (await out.value.toArray())[0];
      }
      out.dispose();
      progress(`${mode}: warm-up ${i + 1}/${o.warmup} ${ms.toFixed(0)} ms`);
    }
    await gpu.sync();
    gpu.pool.resetPeak();
    res.baseline_bytes = gpu.pool.report().currentBytes;
    const bg0 = { hits: gpu.bindGroups.hits, misses: gpu.bindGroups.misses };
    const before = b.dry ? new Map(b.dry.stats.dispatchesByKernel) : undefined;
    if (b.dry) b.dry.stats.windowBinding = { bytes: 0, label: '' };
    for (let i = 0; i < o.steps; i++) {
      const { out, ms, hostMs } = await once();
      res.host_ms.push(hostMs);
      if (o.warmup === 0 && i === 0 && !o.dryRun) {
        res.output_finite = await isFinite(out.value);
        if (mode !== 'forward') res.loss = (await out.value.toArray())[0];
      }
      out.dispose();
      res.all_ms.push(ms);
      progress(`${mode}: run ${i + 1}/${o.steps} ${ms.toFixed(1)} ms (host recording ${hostMs.toFixed(1)} ms)`);
    }
    res.bind_groups = {
      created: Math.round((gpu.bindGroups.misses - bg0.misses) / o.steps),
      reused: Math.round((gpu.bindGroups.hits - bg0.hits) / o.steps),
    };
    const rep = gpu.pool.report();
    res.peak_bytes = rep.peakBytes;
    res.peak_requested_bytes = rep.requestedAtPeakBytes;
    res.peak_held_bytes = rep.peakHeldBytes;
    if (mode !== 'forward' && b.moments) res.optimizer_state_bytes = b.moments.reduce((n, m) => n + sizeClass(m.m.bytes) + sizeClass(m.v.bytes), 0);
    res.footprint_bytes = rep.currentBytes + rep.cachedBytes;
    res.median_ms = median(res.all_ms);
    res.min_ms = Math.min(...res.all_ms);
    if (before && b.dry) {
      const per: Record<string, number> = {};
      for (const [k, n] of b.dry.stats.dispatchesByKernel) {
        const d = (n - (before.get(k) ?? 0)) / o.steps;
        if (d) per[k] = d;
      }
      res.dispatches_by_kernel = per;
      res.largest_binding = { ...b.dry.stats.windowBinding };
    }
    if (o.profile && !o.dryRun) res.profile = await profileRun(gpu, mode, async () => {
          const { out } = await once();
          out.dispose();
          await gpu.sync();
        }, progress);
  } catch (e) {
    res.error = (e as Error).message;
    for (const p of b.unet.loraParameters()) p.var.zeroGrad();
    progress(`${mode}: FAILED: ${res.error.split('\n')[0]}`);
    try {
      await gpu.sync();
    } catch {
      // The error was already reported.
    }
  } finally {
    b.unet.gradientCheckpointing = {};
  }
  // Free the cached buffers of this mode so the next starts from the weights alone.
  await gpu.sync().catch(() => {});
  gpu.pool.trim();
  return res;
}

function report(results: ModeResult[], o: Options, comparable: boolean, weightBytes: Partial<Record<DType, number>>, header: string): string {
  const lines: string[] = [header];
  const rows = results.map((r) => {
    const a = anchorFor(r.mode);
    const ms = r.median_ms;
    const peak = r.peak_bytes / GiB;
    const ok = comparable && (r.mode === 'forward' || o.rank === 64);
    return [
      r.what,
      r.dtype,
      r.error ? 'FAILED' : ms === null ? '-' : ms.toFixed(1),
      r.host_ms.length ? median(r.host_ms).toFixed(1) : '-',
      r.profile ? r.profile.gpu_ms.toFixed(1) : '-',
      r.profile && r.host_ms.length ? `${((100 * median(r.host_ms)) / r.profile.gpu_ms).toFixed(1)} %` : '-',
      r.error ? '-' : peak.toFixed(2),
      r.error ? '-' : gib(r.peak_held_bytes),
      a.ms.toFixed(1),
      a.GiB.toFixed(1),
      ok && ms !== null && !r.error && !o.dryRun ? `${(ms / a.ms).toFixed(2)}×` : '-',
      ok && !r.error ? `${(peak / a.GiB).toFixed(2)}×` : '-',
      r.output_finite === null ? '-' : r.output_finite ? 'yes' : 'NO',
    ];
  });
  lines.push(
    textTable(
      ['mode', 'dtype', o.dryRun ? 'ms (host only)' : 'ms (median)', 'host ms', 'GPU sum ms', 'host / GPU', 'peak GiB', 'held GiB', 'PyTorch ms', 'PyTorch GiB', 'time ratio', 'memory ratio', 'finite'],
      rows,
    ),
  );
  lines.push(`PyTorch: ${ANCHOR_SOURCE}.`);
  if (!comparable) lines.push('Ratios: only for the SDXL config at --size 1024 (and --rank 64 for training), which the PyTorch figures are for.');
  lines.push(
    'ms = wall clock of a run incl. gpu.sync(); host ms = host recording: JS time from the first dispatch call to the last submit (no GPU wait inside: the GPU works meanwhile); ' +
      "GPU sum = the profiled run's dispatch times added up (timestamp queries, one pass per dispatch); host / GPU = host ms as a share of GPU sum (target < 15 % for the f16 forward).",
  );
  lines.push(
    `Ratio = this / PyTorch (time: > 1 is slower). Peak GiB = buffer-pool peak of live buffers as allocated (size classes), incl. weights (${Object.entries(weightBytes).map(([d, n]) => `${d} ${gib(n!)} GiB`).join(', ')}); ` +
      'held GiB = peak of live + cached pool buffers (all the device held).',
  );
  for (const r of results) {
    const wb = weightBytes[r.dtype] ?? 0;
    if (r.error) lines.push(`\n${r.what} (${r.dtype}): FAILED: ${r.error}`);
    const extra = [
      `baseline ${fmtBytes(r.baseline_bytes)}`,
      `peak above baseline ${fmtBytes(r.peak_bytes - r.baseline_bytes)}`,
      `peak as requested ${fmtBytes(r.peak_requested_bytes)} (size-class rounding ${fmtBytes(r.peak_bytes - r.peak_requested_bytes)})`,
      r.optimizer_state_bytes !== undefined
        ? `peak without the AdamW moments ${fmtBytes(r.peak_bytes - r.optimizer_state_bytes)} (moments ${fmtBytes(r.optimizer_state_bytes)}; ` +
          `PyTorch's ${anchorFor(r.mode).GiB.toFixed(2)} GiB is below weights + LoRA params + their gradients + moments, ` +
          `${gib(wb + r.optimizer_state_bytes * 2)} GiB, all live when a backward ends, so it cannot include AdamW state)`
        : '',
      `pool footprint after (live + cached) ${fmtBytes(r.footprint_bytes)}`,
      r.loss !== undefined ? `loss ${r.loss.toPrecision(5)}` : '',
      r.all_ms.length ? `runs [${r.all_ms.map((x) => x.toFixed(1)).join(', ')}] ms` : '',
      r.host_ms.length ? `host recording + submit ${median(r.host_ms).toFixed(1)} ms (median; the GPU works meanwhile)` : '',
      r.bind_groups ? `bind groups per run: ${r.bind_groups.created} created, ${r.bind_groups.reused} reused` : '',
    ].filter(Boolean);
    lines.push(`\n${r.what} (${r.dtype}): ${extra.join('; ')}`);
    if (r.profile) {
      const p = r.profile;
      lines.push(`GPU time by op type (one more run, ${p.dispatches} dispatches, sum ${p.gpu_ms.toFixed(1)} ms; one timed pass per dispatch):`);
      lines.push(opTypeTable(p));
      lines.push('Costliest dispatch kinds (repeated attentions / transformer blocks / resnets of a level folded into #):');
      lines.push(textTable(['label', 'ms', 'dispatches'], p.top.map((t) => [t.label, t.ms.toFixed(2), String(t.dispatches)])));
      lines.push('Costliest roles (every level and block index dropped):');
      lines.push(textTable(['role', 'ms', 'dispatches'], p.roles.map((t) => [t.label, t.ms.toFixed(2), String(t.dispatches)])));
    }
    if (r.dispatches_by_kernel) {
      const entries = Object.entries(r.dispatches_by_kernel).sort((a, b) => b[1] - a[1]);
      const total = entries.reduce((s, [, n]) => s + n, 0);
      if (r.largest_binding) lines.push(`Largest binding: ${fmtBytes(r.largest_binding.bytes)} (${r.largest_binding.label})`);
      lines.push(`Dispatches per run: ${total} (${entries.slice(0, 12).map(([k, n]) => `${k} ${n}`).join(', ')}${entries.length > 12 ? ', …' : ''})`);
    }
  }
  return lines.join('\n');
}

/** One model in one dtype: random weights, then every mode; the model is freed before the next dtype. */
async function benchDType(gpu: Gpu, cfg: UNetConfigJson, configName: string, o: Options, dtype: DType, dry?: DryRunHost) {
  const unet = new UNet2DConditionModel(gpu, cfg, { dtype });
  progress(`dtype: ${dtype}`);
  let nParams = 0;
  for (const p of unet.parameters.values()) nParams += p.shape.reduce((a, d) => a * d, 1);
  progress(`built ${configName}: ${unet.parameters.size} tensors, ${nParams.toLocaleString('en-US')} parameters (${gib(4 * nParams)} GiB f32)`);
  const tInit = performance.now();
  let lastShown = 0;
  // unet.initRandom: the weights fused GEMMs read stacked are packed (one copy of each), as a loaded model's.
  const init = unet.initRandom({
    seed: o.seed,
    onProgress: (done, total) => {
      if (done === total || done - lastShown >= Math.ceil(total / 10)) {
        lastShown = done;
        progress(`random init: ${done}/${total} tensors`);
      }
    },
  });
  await gpu.sync();
  progress(`random init done in ${((performance.now() - tInit) / 1000).toFixed(1)} s (${gib(init.bytes)} GiB on the GPU)`);
  const b: Bench = {
    gpu,
    unet,
    inputs: makeInputs(gpu, cfg, o.size, o.seed),
    target: new Var(randomNormal(gpu, [1, cfg.out_channels ?? 4, o.size / 8, o.size / 8], { seed: o.seed, stream: 4 }, 0, 1, 'target')),
    one: constantTensor(gpu, [1], 1, 'dloss'),
    dry,
    adamStep: 0,
  };
  const results: ModeResult[] = [];
  try {
    for (const mode of o.modes) {
      progress(`${dtype} ${mode}: start`);
      // The forward runs first and without adapters, as PyTorch's forward figure was taken.
      if (mode !== 'forward' && !b.loraParams) await attachLora(b, o);
      results.push(await runMode(b, mode, o, dtype));
    }
  } finally {
    for (const v of Object.values(b.inputs)) v?.dispose();
    b.target.dispose();
    b.one.release();
    for (const m of b.moments ?? []) [m.m, m.v].forEach((t) => t.release());
    unet.dispose();
    await gpu.sync().catch(() => {});
    gpu.pool.trim();
  }
  return { results, weightBytes: init.bytes, nParams, nTensors: unet.parameters.size };
}

async function main(o: Options): Promise<number> {
  const { cfg, name: configName } = unetConfigOf(o.config);
  const enableToggles = o.unsafe ? UNSAFE_TOGGLES : [];
  return withBenchGpu('sdxl_unet', { dryRun: o.dryRun, f16: o.dtypes.includes('f16'), enableToggles }, async (gpu, dry) => {
    let code = 0;
    const adapter = gpu.describe();
    progress(`adapter: ${adapter}`);
    const results: ModeResult[] = [];
    const weightBytes: Partial<Record<DType, number>> = {};
    let nParams = 0;
    let nTensors = 0;
    for (const dtype of o.dtypes) {
      const r = await benchDType(gpu, cfg, configName, o, dtype, dry);
      results.push(...r.results);
      weightBytes[dtype] = r.weightBytes;
      nParams = r.nParams;
      nTensors = r.nTensors;
    }
    const comparable = nParams === SDXL_PARAMS && o.size === 1024;
    const latent = o.size / 8;
    const header = [
      '',
      `UNet benchmark: ${configName}, random weights, ${o.dtypes.join(' and ')}; sample [1, ${cfg.in_channels ?? 4}, ${latent}, ${latent}] (${o.size}²), timestep 999`,
      `adapter: ${adapter}${o.unsafe ? ` (unsafe: ${UNSAFE_TOGGLES.join(', ')})` : ''}`,
      `weights: ${nTensors} tensors, ${nParams.toLocaleString('en-US')} parameters, ${Object.entries(weightBytes).map(([d, n]) => `${gib(n!)} GiB ${d}`).join(', ')}; ${o.warmup} warm-up + ${o.steps} timed runs per mode`,
      '',
    ].join('\n');
    console.log(report(results, o, comparable, weightBytes, header));
    if (dry) console.log(dryRunPlan(dry, gpu.limits.maxStorageBufferBindingSize, 'Dry-run memory plan (no GPU; limits of Dawn on an H100):'));
    if (results.some((r) => r.error)) code = 1;

    if (o.json) {
      const doc = {
        date: new Date().toISOString(),
        adapter,
        summary: gpu.summary(),
        toggles: { enabled: enableToggles, disabled: dry ? [] : BENCH_DISABLE_TOGGLES },
        config: configName,
        parameters: nParams,
        weight_bytes: weightBytes,
        options: { size: o.size, latent, modes: o.modes, dtypes: o.dtypes, rank: o.rank, steps: o.steps, warmup: o.warmup, seed: o.seed, unsafe: o.unsafe, dry_run: o.dryRun },
        results,
        pytorch: Object.fromEntries(MODES.map((m) => [m, anchorFor(m)])),
        pytorch_source: ANCHOR_SOURCE,
        comparable,
        ...(dry ? { dry_run: { ...dry.stats, dispatchesByKernel: undefined } } : {}),
      };
      await writeJsonReport(o.json, doc);
      progress(`wrote ${o.json}`);
    }
    return code;
  });
}

runMain('sdxl_unet', USAGE, (argv) => parseFlags(argv, FLAGS), main);
