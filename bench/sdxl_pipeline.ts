// Whole-pipeline benchmark: prompt → PNG with SDXL base 1.0 (UNet, CLIP ViT-L, OpenCLIP bigG, VAE) built from its
// configs with random weights made on the GPU, through TcdSdxlPipeline.generate (the `tcd sample` code path), TCD 4
// steps, γ 0.3, guidance 0, the real CLIP tokenizer. Reports each stage's time, the buffer pool's peak, and the
// PyTorch H100 fp32 (TF32 off) figures and targets of bench/anchors.json "pipeline".
//
//   npx tsx bench/sdxl_pipeline.ts                       # SDXL at 1024² (~13 GiB of weights: an H100)
//   npx tsx bench/sdxl_pipeline.ts --tiny                # tiny SDXL-shaped models at 64²: a smoke test on any adapter
// GPU machine: npm run bundle:gpu → node .gpu-dist/sdxl_pipeline.mjs [options].
import { Gpu } from '../runtime/device.js';
import { BENCH_DISABLE_TOGGLES } from '../runtime/host.js';
import { writeFileAtomic } from '../src/io/safetensors.js';
import { type OptionsOf, dtypeFlag, flagHelp, intFlag, parseFlags, runMain, sizeFlag, stringFlag, switchFlag, withBenchGpu } from './options.js';
import { dryRunPlan, gib, textTable, timedProgress, writeJsonReport } from './report.js';
import { ANCHOR_PROMPT, type PipelineBenchResult, TARGETS, runPipelineBench } from './pipeline_bench.js';

const FLAGS = {
  size: sizeFlag(undefined, 'image edge, a multiple of 8 (default 1024; --tiny: 64)'),
  steps: intFlag('--steps', '<n>', 1, undefined, 'TCD steps (default 4)'),
  runs: intFlag('--runs', '<n>', 1, undefined, 'timed runs (default 5)'),
  warmup: intFlag('--warmup', '<n>', 0, undefined, 'warm-up runs (default 1)'),
  seed: intFlag('--seed', '<n>', 0, undefined, 'weight and noise seed (default 0)'),
  prompt: stringFlag('--prompt', '<text>', `default '${ANCHOR_PROMPT}' (the PyTorch anchor's)`),
  tiny: switchFlag('--tiny', 'tiny SDXL-shaped models (golden tiny UNet, 16-wide encoders, 4-level VAE): seconds on lavapipe'),
  out: stringFlag('--out', '<file>', "write the last run's image as PNG (atomically)"),
  json: stringFlag('--json', '<file>', 'write the results as JSON (atomically)'),
  dtype: dtypeFlag(undefined, "the UNet's weights and activations (default f32; text encoders and VAE f32)"),
  dryRun: switchFlag(
    '--dry-run',
    'no GPU: the same code against a recording device with H100 limits (read-backs are zeros, times\n' +
      'are host-only): checks the full-size models fit together and reports the memory plan',
  ),
};
type Options = OptionsOf<typeof FLAGS>;

const USAGE = `Usage: npx tsx bench/sdxl_pipeline.ts [options]   (GPU machine: node .gpu-dist/sdxl_pipeline.mjs [options])

Builds the SDXL base 1.0 pipeline (test/fixtures/sdxl_config/: UNet, text_encoder, text_encoder_2, VAE; the
scheduler config of scripts/make_tiny_sdxl.ts) with random weights (N(0, 1/fan_in), norms 1, biases 0, drawn on the
GPU) and the real CLIP tokenizer (test/fixtures/clip_tokenizer), then runs prompt → PNG through
TcdSdxlPipeline.generate: TCD, γ 0.3, guidance 0, batch 1. After --warmup runs it times --runs runs and reports the
median and min of each stage: tokenize + text encode, each UNet evaluation and all of them together, the scheduler steps,
the VAE decode (tiled if the plan says so), readback + PNG encode, and the whole prompt → PNG wall time; plus the
buffer pool's peak (live buffers, weights included, like torch.cuda.max_memory_allocated). Each UNet evaluation is
split from its scheduler step by one extra GPU sync per step. Targets (full SDXL, 1024², 4 steps only):
  UNet evals (4 together) ≤ ${TARGETS.unetEvalsMs.toFixed(1)} ms (1.2 × PyTorch's 4-step TCD loop, fp32, TF32 off)
  prompt → PNG           < ${TARGETS.promptToPngMs} ms

Options:
${flagHelp(FLAGS)}
Dawn toggles always disabled: ${BENCH_DISABLE_TOGGLES.join(', ')}. Env: TCD_ADAPTER, TCD_BACKEND, TCD_ENABLE_TOGGLES,
TCD_DISABLE_TOGGLES; TCD_FIXTURES (the test/fixtures folder, when not found above this file).`;

const progress = timedProgress();

function report(r: PipelineBenchResult): string {
  const ms = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));
  const rows = r.stages.map((s) => [
    s.stage,
    ms(s.median_ms),
    ms(s.min_ms),
    ms(s.pytorch_ms),
    s.pytorch_ms ? `${(s.median_ms / s.pytorch_ms).toFixed(2)}×` : '-',
    s.target_ms === undefined ? '-' : `${s.stage.startsWith('prompt') ? '<' : '≤'} ${s.target_ms.toFixed(0)}`,
    s.meets_target === undefined ? '-' : s.meets_target ? 'PASS' : 'FAIL',
  ]);
  const params = Object.entries(r.parts).map(([k, p]) => `${k} ${p.params.toLocaleString('en-US')}`);
  const plan = r.vaePlan;
  const lines = [
    '',
    `SDXL pipeline benchmark (${r.config === 'sdxl' ? 'SDXL base 1.0 configs' : 'tiny SDXL-shaped configs'}, random weights, f32): prompt → PNG, ${r.size}×${r.size}, ` +
      `${r.steps} TCD steps [${r.timesteps.join(', ')}], γ ${r.eta}, guidance ${r.guidanceScale}, batch 1`,
    `adapter: ${r.adapter}`,
    `prompt: '${r.prompt}'`,
    `weights: ${gib(r.weightBytes)} GiB (${params.join(', ')} parameters; VAE decoder only), made in ${(r.initMs / 1000).toFixed(1)} s`,
    `VAE decode: ${plan.mode}${plan.tiles ? `, ${plan.tiles} tiles of ${plan.tileSampleSize} px` : ''} (largest binding of one full pass ${(plan.fullPeakBytes / 2 ** 20).toFixed(0)} MiB, limit ${(plan.limit / 2 ** 20).toFixed(0)} MiB)`,
    `${r.warmupRuns.length} warm-up + ${r.runs.length} timed runs; ms = wall clock with gpu.sync() at stage ends`,
    '',
    textTable(['stage', 'median ms', 'min ms', 'PyTorch ms', 'ratio', 'target ms', 'target'], rows),
    '',
    `tokenize alone (host, both tokenizers): ${r.tokenizeOnlyMs.toFixed(2)} ms median` + (r.comparable ? ` (PyTorch ${r.pytorch.tokenize_only_ms} ms)` : ''),
    `peak GPU memory (buffer pool, live buffers incl. weights): ${gib(r.peakBytes)} GiB (text ${gib(r.peakByStage.text)}, denoise ${gib(r.peakByStage.denoise)}, ` +
      `decode + readback ${gib(r.peakByStage.decode)}); before the runs ${gib(r.baselineBytes)} GiB` +
      (r.comparable ? `; PyTorch ${r.pytorch.full_pipeline_peak_GiB} GiB (weights ${r.pytorch.weights_GiB} GiB)` : ''),
    `image: ${r.image.width}×${r.image.height}, bytes ${r.image.min}..${r.image.max}, mean ${r.image.mean.toFixed(1)}, ${r.image.distinctBytes} distinct values; PNG ${(r.png.length / 1024).toFixed(0)} KiB`,
    `runs (prompt → PNG ms): [${r.runs.map((x) => x.wallMs.toFixed(1)).join(', ')}]`,
    r.comparable
      ? `PyTorch: ${r.pytorchSource} Its full_pipeline stops at a GPU tensor (no readback, no PNG); its denoise loop is UNet + TCD step.`
      : 'PyTorch figures and targets apply to the SDXL configs at --size 1024 with 4 steps only.',
  ];
  return lines.join('\n');
}

async function main(o: Options): Promise<number> {
  return withBenchGpu('sdxl_pipeline', { dryRun: o.dryRun, f16: o.dtype === 'f16' }, async (gpu, dry) => {
    progress(`adapter: ${gpu.describe()}`);
    progress(`dtype: ${o.dtype ?? 'f32'} (UNet; text encoders and VAE f32)`);
    const r = await runPipelineBench(gpu, { ...o, onProgress: progress });
    console.log(report(r));
    if (dry) {
      console.log('\nDRY RUN: nothing ran on a GPU; times above are host recording only and the image is blank.');
      console.log(dryRunPlan(dry, gpu.limits.maxStorageBufferBindingSize, 'Memory plan of all runs (limits of Dawn on an H100):'));
    }
    if (o.out) {
      await writeFileAtomic(o.out, r.png);
      progress(`wrote ${o.out}`);
    }
    if (o.json) {
      const doc = {
        date: new Date().toISOString(),
        summary: gpu.summary(),
        toggles: { disabled: dry ? [] : BENCH_DISABLE_TOGGLES },
        dry_run: o.dryRun,
        ...r,
        png: undefined,
        png_bytes: r.png.length,
      };
      await writeJsonReport(o.json, doc);
      progress(`wrote ${o.json}`);
    }
    const missed = r.stages.filter((s) => s.meets_target === false);
    if (missed.length) progress(`targets missed: ${missed.map((s) => s.stage).join(', ')}`);
    return 0;
  });
}

runMain('sdxl_pipeline', USAGE, (argv) => parseFlags(argv, FLAGS), main);
