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
import { dryRunHost } from './dry_run_host.js';
import { ANCHOR_PROMPT, type PipelineBenchOptions, type PipelineBenchResult, TARGETS, runPipelineBench } from './pipeline_bench.js';

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
  --size <px>        image edge, a multiple of 8 (default 1024; --tiny: 64)
  --steps <n>        TCD steps (default 4)
  --runs <n>         timed runs (default 5)
  --warmup <n>       warm-up runs (default 1)
  --seed <n>         weight and noise seed (default 0)
  --prompt <text>    default '${ANCHOR_PROMPT}' (the PyTorch anchor's)
  --tiny             tiny SDXL-shaped models (golden tiny UNet, 16-wide encoders, 4-level VAE): seconds on lavapipe
  --out <file>       write the last run's image as PNG (atomically)
  --json <file>      write the results as JSON (atomically)
  --dtype <f32|f16>  the UNet's weights and activations (default f32; text encoders and VAE f32)
  --dry-run          no GPU: the same code against a recording device with H100 limits (read-backs are zeros, times
                     are host-only): checks the full-size models fit together and reports the memory plan
  --help             this text
Dawn toggles always disabled: ${BENCH_DISABLE_TOGGLES.join(', ')}. Env: TCD_ADAPTER, TCD_BACKEND, TCD_ENABLE_TOGGLES,
TCD_DISABLE_TOGGLES; TCD_FIXTURES (the test/fixtures folder, when not found above this file).`;

class UsageError extends Error {}

interface Options extends PipelineBenchOptions {
  out?: string;
  json?: string;
  dryRun: boolean;
  help: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { help: false, dryRun: false };
  const int = (flag: string, v: string | undefined, min: number) => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min) throw new UsageError(`${flag} needs an integer >= ${min}, got ${v ?? 'nothing'}`);
    return n;
  };
  const str = (flag: string, v: string | undefined) => {
    if (v === undefined || v === '') throw new UsageError(`${flag} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--size':
        o.size = int(a, next(), 8);
        if (o.size % 8) throw new UsageError(`--size must be a multiple of 8 (the VAE factor), got ${o.size}`);
        break;
      case '--steps':
        o.steps = int(a, next(), 1);
        break;
      case '--runs':
        o.runs = int(a, next(), 1);
        break;
      case '--warmup':
        o.warmup = int(a, next(), 0);
        break;
      case '--seed':
        o.seed = int(a, next(), 0);
        break;
      case '--prompt':
        o.prompt = str(a, next());
        break;
      case '--tiny':
        o.tiny = true;
        break;
      case '--out':
        o.out = str(a, next());
        break;
      case '--json':
        o.json = str(a, next());
        break;
      case '--dry-run':
        o.dryRun = true;
        break;
      case '--dtype': {
        const v = next();
        if (v !== 'f32' && v !== 'f16') throw new UsageError(`--dtype must be f32 or f16, got ${v ?? 'nothing'}`);
        o.dtype = v;
        break;
      }
      case '--help':
      case '-h':
        o.help = true;
        break;
      default:
        throw new UsageError(`unknown option '${a}'`);
    }
  }
  return o;
}

const t0 = performance.now();
const progress = (s: string) => console.error(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${s}`);
const GiB = 2 ** 30;
const gib = (b: number) => (b / GiB).toFixed(2);

function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(header), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

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
    table(['stage', 'median ms', 'min ms', 'PyTorch ms', 'ratio', 'target ms', 'target'], rows),
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

async function main(): Promise<number> {
  let o: Options;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`sdxl_pipeline: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  const dry = o.dryRun ? dryRunHost(o.dtype === 'f16' ? { features: ['subgroups', 'shader-f16'] } : {}) : undefined;
  const gpu = await Gpu.create(dry ? { host: dry } : { disableToggles: BENCH_DISABLE_TOGGLES });
  try {
    progress(`adapter: ${gpu.describe()}`);
    progress(`dtype: ${o.dtype ?? 'f32'} (UNet; text encoders and VAE f32)`);
    const r = await runPipelineBench(gpu, { ...o, onProgress: progress });
    console.log(report(r));
    if (dry) {
      const s = dry.stats;
      const maxBinding = gpu.limits.maxStorageBufferBindingSize;
      console.log(
        [
          '',
          'DRY RUN: nothing ran on a GPU; times above are host recording only and the image is blank.',
          `  largest buffer:  ${(s.largestBuffer.bytes / 2 ** 20).toFixed(1)} MiB ('${s.largestBuffer.label}')`,
          `  largest binding: ${(s.largestBinding.bytes / 2 ** 20).toFixed(1)} MiB (${s.largestBinding.label}) — maxStorageBufferBindingSize ${(maxBinding / 2 ** 20).toFixed(0)} MiB: ${s.largestBinding.bytes <= maxBinding ? 'fits' : 'DOES NOT FIT'}`,
          `  dispatches recorded: ${s.dispatches} (all runs)`,
        ].join('\n'),
      );
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
      await writeFileAtomic(o.json, new TextEncoder().encode(JSON.stringify(doc, null, 1) + '\n'));
      progress(`wrote ${o.json}`);
    }
    const missed = r.stages.filter((s) => s.meets_target === false);
    if (missed.length) progress(`targets missed: ${missed.map((s) => s.stage).join(', ')}`);
    return 0;
  } catch (e) {
    console.error(`sdxl_pipeline: ${(e as Error).stack ?? e}`);
    return 1;
  } finally {
    await gpu.destroy();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
