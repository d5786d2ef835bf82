// `tcd distill` and `tcd precompute`: thin shells over TcdDistiller (src/trainer/distiller.ts) and precomputeDataset
// (src/trainer/data). Folders are checked before the GPU opens; progress goes to stderr, results to stdout.
import { resolve } from 'node:path';
import { Gpu } from '../../runtime/device.js';
import { dirSource } from '../io/model_source.js';
import { resolveLayout } from '../pipeline/model_folder.js';
import { listCaptionedImages, loadPrecomputeModels, modelFingerprint, precomputeDataset } from '../trainer/data/index.js';
import { assertWritableFolder, listCheckpoints } from '../trainer/checkpoint.js';
import { type StepReport, TcdDistiller } from '../trainer/distiller.js';
import type { DistillArgs, PrecomputeArgs } from './args.js';
import type { CliIo } from './main.js';
import { CountProgress } from './progress.js';

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

function stepDetail(r: StepReport): string {
  const scale = r.lossScale === undefined ? '' : ` scale ${r.lossScale}${r.skipped ? ' (overflow: update skipped, scale lowered)' : ''}`;
  return `loss ${r.loss.toExponential(3)} lr ${r.lr.toExponential(2)} |g| ${r.gradNorm.toExponential(2)}${scale} ${r.imagesPerSecond.toFixed(2)} img/s gpu ${mib(r.gpuBytes)}`;
}

export async function distill(args: DistillArgs, io: CliIo): Promise<void> {
  await resolveLayout(args.model);
  if (args.data) await listCaptionedImages(args.data, { manifest: args.manifest }); // a bad folder fails before the GPU opens
  await assertWritableFolder(args.output, '--output');
  const progress = new CountProgress('distill', io.stderr, !args.quiet);
  // --resume latest: the newest checkpoint in --output, or a fresh start when there is none yet.
  let resume = args.resume;
  if (resume === 'latest') {
    resume = (await listCheckpoints(args.output)).length ? args.output : undefined;
    if (!resume) progress.note(`no checkpoint in ${args.output} yet: starting from update 0`);
  }
  // Ctrl-C / SIGTERM: finish the update in flight, save a checkpoint, exit; a second signal a second later kills at
  // once (bin/tcd.mjs forwards the terminal's SIGINT, which the child also gets itself: those two are one request).
  const stop = new AbortController();
  let firstSignal = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (stop.signal.aborted) {
      if (performance.now() - firstSignal > 1000) process.exit(130);
      return;
    }
    firstSignal = performance.now();
    progress.note(`${sig}: saving a checkpoint after the current update (again to quit at once)`);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const gpu = await Gpu.create();
  let d: TcdDistiller | undefined;
  try {
    if (!args.quiet) io.stderr.write(`device: ${gpu.describe()}\n`);
    d = await TcdDistiller.create(gpu, {
      model: args.model,
      data: args.data,
      manifest: args.manifest,
      cache: args.cache,
      output: args.output,
      maxSteps: args.maxSteps,
      resolution: args.resolution,
      centerCrop: args.centerCrop,
      randomFlip: args.randomFlip,
      rank: args.rank,
      alpha: args.alpha,
      numDdimTimesteps: args.numDdimTimesteps,
      wMin: args.wMin,
      wMax: args.wMax,
      loss: args.loss,
      huberC: args.huberC,
      lr: args.lr,
      lrSchedule: args.lrSchedule,
      warmupSteps: args.warmupSteps,
      beta1: args.beta1,
      beta2: args.beta2,
      weightDecay: args.weightDecay,
      adamEps: args.adamEps,
      maxGradNorm: args.maxGradNorm,
      batchSize: args.batchSize,
      gradAccum: args.gradAccum,
      gradientCheckpointing: args.gradientCheckpointing,
      dtype: args.dtype,
      log: (line) => progress.note(line),
      seed: args.seed,
      checkpointEvery: args.checkpointEvery,
      maxCheckpoints: args.maxCheckpoints,
      resume,
      emaDecay: args.emaDecay,
      sampleEvery: args.sampleEvery,
      samplePrompts: args.samplePrompts,
      sampleSteps: args.sampleSteps,
      sampleEta: args.sampleEta,
      logFile: args.log,
    });
    if (!args.quiet) io.stderr.write(`UNet dtype: ${d.models.unet.dtype}${d.scaler ? ` (LoRA, gradients and AdamW in f32; loss scale ${d.scaler.scale})` : ''}\n`);
    if (d.step > 0) progress.note(`resumed at update ${d.step} (${d.samplesSeen} samples seen)`);
    if (d.step >= args.maxSteps) progress.note(`already at --max-steps ${args.maxSteps}: writing the LoRA only`);
    const res = await d.train({
      signal: stop.signal,
      onStep: (r) => {
        progress.update(r.step, r.maxSteps, stepDetail(r));
        if (r.checkpoint) progress.note(`checkpoint ${r.checkpoint}`);
        if (r.samples) progress.note(`samples ${r.samples}`);
      },
    });
    progress.stop();
    if (res.interrupted) {
      io.stdout.write(`interrupted after update ${d.step}: checkpoint ${res.interrupted} (continue with --resume latest)\n`);
      return;
    }
    io.stdout.write(`wrote ${res.lora} after ${d.step} updates (${res.steps} in this run); log ${resolve(args.log ?? `${args.output}/train_log.jsonl`)}\n`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    progress.stop();
    d?.dispose();
    await gpu.destroy();
  }
}

export async function precompute(args: PrecomputeArgs, io: CliIo): Promise<void> {
  await resolveLayout(args.model);
  const items = await listCaptionedImages(args.data, { manifest: args.manifest });
  const progress = new CountProgress('precompute', io.stderr, !args.quiet);
  const gpu = await Gpu.create();
  try {
    if (!args.quiet) io.stderr.write(`device: ${gpu.describe()}\n${items.length} images in ${args.data}\n`);
    const source = dirSource(args.model);
    const models = await loadPrecomputeModels(gpu, source);
    try {
      const res = await precomputeDataset({
        gpu,
        vae: models.vae,
        tokenizers: models.tokenizers,
        textEncoders: models.textEncoders,
        modelId: models.modelId ?? (await modelFingerprint(source)),
        items,
        outDir: args.out,
        resolution: args.resolution,
        centerCrop: args.centerCrop,
        randomFlip: args.randomFlip,
        seed: args.seed,
        copiesPerImage: args.copies,
        batchSize: args.batchSize,
        shardSize: args.shardSize,
        overwrite: args.overwrite,
        onProgress: (p) => progress.update(p.done, p.total, `${p.shardsWritten} shards written, ${p.shardsSkipped} kept`),
      });
      progress.stop();
      io.stdout.write(`wrote ${res.count} examples to ${res.dir} (${res.shardsWritten} shards written, ${res.shardsSkipped} kept from an earlier run)\n`);
    } finally {
      models.dispose();
    }
  } finally {
    progress.stop();
    await gpu.destroy();
  }
}
