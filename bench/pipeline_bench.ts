// The core of bench/sdxl_pipeline.ts: prompt → PNG through TcdSdxlPipeline.generate (the code path of `tcd sample`)
// with random weights, timed stage by stage over warm-up + timed runs. The CLI wrapper parses flags and prints; the
// smoke test (test/sdxl_pipeline_bench.test.ts) calls runPipelineBench at tiny size.
import type { DType } from '../src/dtype.js';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Gpu } from '../runtime/device.js';
import { encodePng } from '../src/pipeline/png.js';
import { type RandomPart, type SdxlConfigs, randomSdxlPipeline } from '../src/pipeline/random_pipeline.js';
import type { GenerateResult, TcdSdxlPipeline } from '../src/pipeline/tcd_sdxl_pipeline.js';
import type { RandomInitSummary } from '../src/nn/init.js';
import { ClipTokenizer } from '../src/text/clip_tokenizer.js';
import type { ClipTextConfigJson } from '../src/text/clip_config.js';
import type { UNetConfigJson } from '../src/unet/config.js';
import type { VaePlan } from '../src/vae/autoencoder_kl.js';
import type { VaeConfigJson } from '../src/vae/config.js';
import { SDXL_SCHEDULER_CONFIG, TINY_TEXT_CONFIGS, TINY_VAE_CONFIG } from '../scripts/make_tiny_sdxl.js';
import sdxlUnet from '../test/fixtures/sdxl_config/unet_config.json' with { type: 'json' };
import sdxlVae from '../test/fixtures/sdxl_config/vae_config.json' with { type: 'json' };
import sdxlText from '../test/fixtures/sdxl_config/text_encoder_config.json' with { type: 'json' };
import sdxlText2 from '../test/fixtures/sdxl_config/text_encoder_2_config.json' with { type: 'json' };
import tinyUnet from '../test/fixtures/tiny_unet/config.json' with { type: 'json' };
import anchors from './anchors.json' with { type: 'json' };
import { median } from './measure.js';

/** SDXL base 1.0 for every part (test/fixtures/sdxl_config/, spec sdxl.md §1, §6, §7.1, §8.1). */
export const SDXL_CONFIGS: SdxlConfigs = {
  unet: sdxlUnet as UNetConfigJson,
  vae: sdxlVae as VaeConfigJson,
  textEncoder: sdxlText as ClipTextConfigJson,
  textEncoder2: sdxlText2 as ClipTextConfigJson,
  schedulerConfig: SDXL_SCHEDULER_CONFIG,
};

/**
 * A tiny SDXL-shaped set that runs on a CPU adapter in seconds: the golden tiny UNet, scripts/make_tiny_sdxl.ts's
 * encoders (hidden 16) and 4-level VAE, with the full 49408-token vocabulary so the real CLIP tokenizer fits.
 */
export const TINY_CONFIGS: SdxlConfigs = {
  unet: tinyUnet as UNetConfigJson,
  vae: TINY_VAE_CONFIG,
  textEncoder: { ...TINY_TEXT_CONFIGS.text_encoder, vocab_size: 49408, bos_token_id: 0, eos_token_id: 2 },
  textEncoder2: { ...TINY_TEXT_CONFIGS.text_encoder_2, vocab_size: 49408, bos_token_id: 0, eos_token_id: 2 },
  schedulerConfig: SDXL_SCHEDULER_CONFIG,
};

/** The PyTorch anchor's prompt (shared/anchors/pytorch_h100_pipeline.json meta.workload). */
export const ANCHOR_PROMPT = 'a photo of an astronaut riding a horse';
const PT = anchors.pipeline.fp32_tf32off;
export const TARGETS = { unetEvalsMs: anchors.pipeline.targets.unet_4_evals_ms.value, promptToPngMs: anchors.pipeline.targets.prompt_to_png_ms.value };

export interface PipelineBenchOptions {
  tiny?: boolean;
  /** Image edge in pixels (default 1024; tiny 64). */
  size?: number;
  steps?: number;
  /** Timed runs (default 5) after warmup runs (default 1). */
  runs?: number;
  warmup?: number;
  /** Weight and noise seed (default 0). */
  seed?: number;
  prompt?: string;
  /** TCD gamma (default 0.3). */
  eta?: number;
  guidanceScale?: number;
  /** Recording device (bench/dry_run_host.ts): no PyTorch ratios or targets. */
  dryRun?: boolean;
  /** The UNet's storage type (default f32). */
  dtype?: DType;
  /** Progress lines (init, each run). */
  onProgress?: (line: string) => void;
}

export interface RunTimings {
  /** Tokenize + both text encoders + add_time_ids (generate's text stage). */
  textMs: number;
  /** Each UNet evaluation (input scaling, UNet, guidance) and each scheduler step. */
  unetMs: number[];
  schedulerMs: number[];
  /** VAE decode (tiled when the plan says so) until the image is on the GPU. */
  vaeDecodeMs: number;
  /** GPU image → 8-bit RGB on the host. */
  readbackMs: number;
  pngMs: number;
  /** generate() as it measured itself. */
  generateMs: number;
  /** prompt → PNG bytes: generate() + PNG encode, wall clock. */
  wallMs: number;
  /** Buffer-pool peak of the run (live buffers, weights included), and of its stages. */
  peakBytes: number;
  peakByStage: { text: number; denoise: number; decode: number };
}

export interface StageSummary {
  stage: string;
  median_ms: number;
  min_ms: number;
  pytorch_ms?: number;
  target_ms?: number;
  /** median ≤ target (UNet evals) / < target (prompt → PNG); undefined without a target or when not comparable. */
  meets_target?: boolean;
}

export interface PipelineBenchResult {
  adapter: string;
  config: 'sdxl' | 'tiny';
  /** Full SDXL at 1024², 4 steps, batch 1: the settings of the PyTorch anchor. */
  comparable: boolean;
  size: number;
  steps: number;
  prompt: string;
  timesteps: number[];
  eta: number;
  guidanceScale: number;
  parts: Record<RandomPart, RandomInitSummary>;
  weightBytes: number;
  initMs: number;
  vaePlan: VaePlan;
  warmupRuns: RunTimings[];
  runs: RunTimings[];
  stages: StageSummary[];
  /** Host tokenization of the prompt by both tokenizers alone (median over the timed runs). */
  tokenizeOnlyMs: number;
  /** Pool bytes live before the timed runs (weights + derived weight caches) and the peak over them. */
  baselineBytes: number;
  peakBytes: number;
  peakByStage: RunTimings['peakByStage'];
  image: { width: number; height: number; distinctBytes: number; min: number; max: number; mean: number };
  /** The last timed run's PNG. */
  png: Uint8Array;
  pytorch: typeof PT;
  pytorchSource: string;
}

/** test/fixtures/<name>, found upwards from this file (the bundles in .gpu-dist/ sit one level below the repo root). */
export function fixtureDir(name: string): string {
  const env = process.env.TCD_FIXTURES;
  if (env) return join(env, name);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'test', 'fixtures', name);
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new Error(`test/fixtures/${name} not found above ${fileURLToPath(import.meta.url)}; set TCD_FIXTURES to the fixtures folder`);
    dir = up;
  }
}

/** SDXL's two tokenizers from the real CLIP BPE files (test/fixtures/clip_tokenizer); tokenizer_2 pads with '!'. */
export async function sdxlTokenizers(): Promise<[ClipTokenizer, ClipTokenizer]> {
  const dir = fixtureDir('clip_tokenizer');
  return [await ClipTokenizer.fromFolder(dir), await ClipTokenizer.fromFolder(dir, { padToken: '!' })];
}

const sum = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0);

/** One prompt → PNG run. */
async function runOnce(pipe: TcdSdxlPipeline, o: Required<Omit<PipelineBenchOptions, 'onProgress' | 'tiny' | 'dryRun' | 'dtype'>>): Promise<{ t: RunTimings; result: GenerateResult; png: Uint8Array }> {
  const gpu = pipe.gpu;
  gpu.pool.resetPeak();
  // Stage ends come after a sync: the peak since the last boundary belongs to the stage that just ended.
  const peakByStage = { text: 0, denoise: 0, decode: 0 };
  const boundary = (stage: keyof typeof peakByStage) => {
    peakByStage[stage] = gpu.pool.report().peakBytes;
    gpu.pool.resetPeak();
  };
  const t0 = performance.now();
  const result = await pipe.generate({
    prompt: o.prompt,
    steps: o.steps,
    eta: o.eta,
    guidanceScale: o.guidanceScale,
    seed: o.seed,
    width: o.size,
    height: o.size,
    stageTimings: true,
    onProgress: (e) => {
      if (e.stage === 'text' && e.done === e.total) boundary('text');
      else if (e.stage === 'decode' && e.done === 0) boundary('denoise');
      else if (e.stage === 'decode' && e.done === e.total && e.detail === undefined) boundary('decode');
    },
  });
  const tPng = performance.now();
  const png = encodePng(result.images[0]);
  const end = performance.now();
  const tm = result.timings;
  return {
    result,
    png,
    t: {
      textMs: tm.textEncodeMs,
      unetMs: tm.unetMs ?? [],
      schedulerMs: tm.schedulerMs ?? [],
      vaeDecodeMs: tm.vaeDecodeMs,
      readbackMs: tm.readbackMs,
      pngMs: end - tPng,
      generateMs: tm.totalMs,
      wallMs: end - t0,
      peakBytes: Math.max(peakByStage.text, peakByStage.denoise, peakByStage.decode, gpu.pool.report().peakBytes),
      peakByStage,
    },
  };
}

function imageStats(data: Uint8Array) {
  let min = 255;
  let max = 0;
  let total = 0;
  const seen = new Set<number>();
  for (const v of data) {
    if (v < min) min = v;
    if (v > max) max = v;
    total += v;
    seen.add(v);
  }
  return { distinctBytes: seen.size, min, max, mean: total / data.length };
}

const fmtMs = (ms: number) => `${ms.toFixed(1)} ms`;

/** Builds the random-weight pipeline, runs warm-up + timed prompt → PNG runs, and summarises every stage. */
export async function runPipelineBench(gpu: Gpu, opts: PipelineBenchOptions = {}): Promise<PipelineBenchResult> {
  const tiny = opts.tiny ?? false;
  const o = {
    size: opts.size ?? (tiny ? 64 : 1024),
    steps: opts.steps ?? 4,
    runs: opts.runs ?? 5,
    warmup: opts.warmup ?? 1,
    seed: opts.seed ?? 0,
    prompt: opts.prompt ?? ANCHOR_PROMPT,
    eta: opts.eta ?? 0.3,
    guidanceScale: opts.guidanceScale ?? 0,
  };
  if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error(`runs must be an integer ≥ 1, got ${o.runs}`);
  if (!Number.isInteger(o.warmup) || o.warmup < 0) throw new Error(`warmup must be an integer ≥ 0, got ${o.warmup}`);
  const say = opts.onProgress ?? (() => {});
  const configs = tiny ? TINY_CONFIGS : SDXL_CONFIGS;

  const tokenizers = await sdxlTokenizers();
  const tInit = performance.now();
  const shown = new Map<RandomPart, number>();
  const { pipe, parts } = await randomSdxlPipeline(gpu, configs, tokenizers, {
    seed: o.seed,
    // Benchmarks name their dtype (no probe: a dry run has no GPU to probe).
    dtype: opts.dtype ?? 'f32',
    onProgress: (part, done, total) => {
      // About every 10 % of a part, and its end.
      if (done === total || done - (shown.get(part) ?? 0) >= Math.ceil(total / 10)) {
        shown.set(part, done);
        say(`random init ${part}: ${done}/${total} tensors`);
      }
    },
  });
  try {
    await gpu.sync();
    const initMs = performance.now() - tInit;
    const weightBytes = sum(Object.values(parts).map((p) => p.bytes));
    say(`random weights ready in ${(initMs / 1000).toFixed(1)} s: ${(weightBytes / 2 ** 30).toFixed(2)} GiB`);
    const latent = o.size / pipe.vae.config.downscale;
    const vaePlan = pipe.vae.planDecode([1, pipe.vae.config.latentChannels, latent, latent]);
    say(`VAE decode plan at ${o.size}²: ${vaePlan.mode}${vaePlan.tiles ? ` (${vaePlan.tiles} tiles of ${vaePlan.tileSampleSize} px)` : ''}`);

    const warmupRuns: RunTimings[] = [];
    for (let i = 0; i < o.warmup; i++) {
      const { t } = await runOnce(pipe, o);
      warmupRuns.push(t);
      say(`warm-up ${i + 1}/${o.warmup}: ${fmtMs(t.wallMs)} prompt → PNG`);
    }
    await gpu.sync();
    const baselineBytes = gpu.pool.report().currentBytes;
    const runs: RunTimings[] = [];
    const tokenizeMs: number[] = [];
    let last: { result: GenerateResult; png: Uint8Array } | undefined;
    for (let i = 0; i < o.runs; i++) {
      const tt = performance.now();
      for (const tok of tokenizers) tok.encode(o.prompt);
      tokenizeMs.push(performance.now() - tt);
      const r = await runOnce(pipe, o);
      runs.push(r.t);
      last = r;
      const t = r.t;
      say(
        `run ${i + 1}/${o.runs}: ${fmtMs(t.wallMs)} prompt → PNG (text ${t.textMs.toFixed(1)}, UNet ${t.unetMs.map((x) => x.toFixed(1)).join(' + ')}, ` +
          `scheduler ${sum(t.schedulerMs).toFixed(1)}, VAE ${t.vaeDecodeMs.toFixed(1)}, readback ${t.readbackMs.toFixed(1)}, PNG ${t.pngMs.toFixed(1)} ms)`,
      );
    }
    const { result, png } = last!;
    const img = result.images[0];
    const comparable = !opts.dryRun && !tiny && o.size === 1024 && o.steps === 4 && o.guidanceScale <= 1;
    return {
      adapter: gpu.describe(),
      config: tiny ? 'tiny' : 'sdxl',
      comparable,
      size: o.size,
      steps: o.steps,
      prompt: o.prompt,
      timesteps: result.timesteps,
      eta: result.eta,
      guidanceScale: result.guidanceScale,
      parts,
      weightBytes,
      initMs,
      vaePlan,
      warmupRuns,
      runs,
      stages: summarize(runs, result.timesteps, comparable),
      tokenizeOnlyMs: median(tokenizeMs),
      baselineBytes,
      peakBytes: Math.max(...runs.map((r) => r.peakBytes)),
      peakByStage: {
        text: Math.max(...runs.map((r) => r.peakByStage.text)),
        denoise: Math.max(...runs.map((r) => r.peakByStage.denoise)),
        decode: Math.max(...runs.map((r) => r.peakByStage.decode)),
      },
      image: { width: img.width, height: img.height, ...imageStats(img.data) },
      png,
      pytorch: PT,
      pytorchSource: anchors.pipeline.source,
    };
  } finally {
    pipe.dispose();
  }
}

/** Median and min over the runs of every stage, with the PyTorch figure and target where there is one. */
function summarize(runs: RunTimings[], timesteps: number[], comparable: boolean): StageSummary[] {
  const row = (stage: string, pick: (r: RunTimings) => number, pytorch?: number, target?: { ms: number; strict: boolean }): StageSummary => {
    const xs = runs.map(pick);
    const s: StageSummary = { stage, median_ms: median(xs), min_ms: Math.min(...xs) };
    if (comparable && pytorch !== undefined) s.pytorch_ms = pytorch;
    if (target) {
      s.target_ms = target.ms;
      if (comparable) s.meets_target = target.strict ? s.median_ms < target.ms : s.median_ms <= target.ms;
    }
    return s;
  };
  return [
    row('tokenize + text encode', (r) => r.textMs, PT.prompt_encoding_ms),
    ...timesteps.map((t, i) => row(`UNet eval ${i + 1} (t=${t})`, (r) => r.unetMs[i])),
    row(`UNet evals (${timesteps.length} together)`, (r) => sum(r.unetMs), undefined, { ms: TARGETS.unetEvalsMs, strict: false }),
    row(`scheduler steps (${timesteps.length} together)`, (r) => sum(r.schedulerMs)),
    row(`denoise loop (UNet + scheduler)`, (r) => sum(r.unetMs) + sum(r.schedulerMs), PT.tcd_loop_4steps_ms),
    row('VAE decode', (r) => r.vaeDecodeMs, PT.vae_decode_ms),
    row('readback + PNG encode', (r) => r.readbackMs + r.pngMs),
    row('  readback (GPU → RGB bytes)', (r) => r.readbackMs),
    row('  PNG encode', (r) => r.pngMs),
    row('prompt → PNG (wall)', (r) => r.wallMs, PT.full_pipeline_ms, { ms: TARGETS.promptToPngMs, strict: true }),
  ];
}
