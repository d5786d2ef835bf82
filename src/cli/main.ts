// `tcd` command line. `tcd sample …` runs the SDXL TCD pipeline from a prompt to PNG files, with progress on stderr
// and a per-stage timing summary on stdout; `tcd distill …` trains a TCD LoRA (src/cli/distill.ts), `tcd precompute …`
// caches a dataset's latents and text embeddings for it. Arguments, the model folder and LoRA paths are checked before the GPU is
// opened, so mistakes are reported at once. Exit codes: 0 done, 1 failed, 2 bad usage.
//
//   npx tsx src/cli/main.ts sample --model <sdxl-folder> --lora tcd.safetensors --prompt "a cat" --out cat.png
import { randomInt } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../../runtime/device.js';
import { resolveDType } from '../kernels/f16_support.js';
import { resolveLayout } from '../pipeline/model_folder.js';
import { writePng } from '../pipeline/png.js';
import { type GenerateResult, TcdSdxlPipeline } from '../pipeline/tcd_sdxl_pipeline.js';
import {
  DISTILL_HELP,
  MAIN_HELP,
  PRECOMPUTE_HELP,
  SAMPLE_HELP,
  type SampleArgs,
  UsageError,
  outputPath,
  parseDistillArgs,
  parsePrecomputeArgs,
  parseSampleArgs,
} from './args.js';
import { distill, precompute } from './distill.js';
import { StageProgress } from './progress.js';

export interface CliIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

const defaultIo = (): CliIo => ({ stdout: process.stdout, stderr: process.stderr });

/** Runs the command line; resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '-h' || cmd === '--help' || cmd === 'help') {
    io.stdout.write(MAIN_HELP);
    return 0;
  }
  if (cmd === undefined) {
    io.stderr.write(MAIN_HELP);
    return 2;
  }
  if (cmd === 'distill') return command('distill', rest, parseDistillArgs, DISTILL_HELP, (a) => distill(a, io), io);
  if (cmd === 'precompute') return command('precompute', rest, parsePrecomputeArgs, PRECOMPUTE_HELP, (a) => precompute(a, io), io);
  if (cmd !== 'sample') {
    io.stderr.write(`tcd: unknown command '${cmd}'\n\n${MAIN_HELP}`);
    return 2;
  }
  return command('sample', rest, parseSampleArgs, SAMPLE_HELP, (a) => sample(a, io), io);
}

/** Parse (exit 2 on bad usage, help on --help), run (exit 1 with the error's message on failure). */
async function command<A>(
  name: string,
  argv: readonly string[],
  parse: (argv: readonly string[]) => A | undefined,
  help: string,
  run: (args: A) => Promise<void>,
  io: CliIo,
): Promise<number> {
  let args: A | undefined;
  try {
    args = parse(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.stderr.write(`tcd ${name}: ${e.message}\n(see tcd ${name} --help)\n`);
    return 2;
  }
  if (!args) {
    io.stdout.write(help);
    return 0;
  }
  try {
    await run(args);
    return 0;
  } catch (e) {
    const err = e as Error;
    io.stderr.write(`tcd ${name}: error: ${err.message}\n`);
    if (process.env.TCD_DEBUG) io.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

async function sample(args: SampleArgs, io: CliIo): Promise<void> {
  // Everything that needs no GPU first.
  await resolveLayout(args.model, { configFolder: args.config });
  for (const l of args.loras) {
    const st = await stat(l.path).catch(() => null);
    if (!st?.isFile()) throw new Error(`LoRA ${l.path}: no such file`);
  }
  await mkdir(dirname(resolve(args.out)), { recursive: true });
  const seed = args.seed ?? randomInt(0, 2 ** 31 - 1);

  const progress = new StageProgress(io.stderr, !args.quiet);
  const gpu = await Gpu.create();
  let pipe: TcdSdxlPipeline | undefined;
  try {
    if (!args.quiet) io.stderr.write(`device: ${gpu.describe()}\n`);
    const dtype = await resolveDType(gpu, args.dtype, (line) => io.stderr.write(`${line}\n`));
    if (!args.quiet) io.stderr.write(`dtype: ${dtype} (UNet; text encoders and VAE f32)\n`);
    pipe = await TcdSdxlPipeline.fromPretrained(gpu, args.model, {
      configFolder: args.config,
      variant: args.variant,
      dtype,
      loras: args.loras,
      scheduler: args.scheduler,
      onProgress: progress.onEvent,
    });
    const result = await pipe.generate({
      prompt: args.prompt,
      negativePrompt: args.negativePrompt,
      steps: args.steps,
      eta: args.eta,
      guidanceScale: args.guidanceScale,
      seed,
      width: args.width,
      height: args.height,
      batch: args.batch,
      originalInferenceSteps: args.originalInferenceSteps,
      strength: args.strength,
    });
    progress.stop();
    const files: string[] = [];
    for (const [i, img] of result.images.entries()) {
      const file = outputPath(args.out, i, result.images.length);
      await writePng(file, img);
      files.push(file);
    }
    io.stdout.write(summary(result, files));
  } finally {
    progress.stop();
    pipe?.dispose();
    await gpu.destroy();
  }
}

function summary(r: GenerateResult, files: string[]): string {
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  const lines = r.images.map((img, i) => `wrote ${files[i]} (${img.width}×${img.height}, seed ${img.seed})`);
  lines.push(
    `${r.scheduler}, ${r.timesteps.length} steps [${r.timesteps.join(', ')}], eta ${r.eta}, guidance ${r.guidanceScale}`,
    'timings:',
  );
  const t = r.timings;
  const rows: [string, number][] = [
    ['load', t.loadMs],
    ['text encode', t.textEncodeMs],
    ...t.stepMs.map((ms, i): [string, number] => [`step ${i + 1} (t=${r.timesteps[i]})`, ms]),
    ['decode', t.decodeMs],
    ['generate total', t.totalMs],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  for (const [k, ms] of rows) lines.push(`  ${k.padEnd(w)}  ${s(ms).padStart(9)}`);
  return lines.join('\n') + '\n';
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: Error) => {
      process.stderr.write(`tcd: ${e.stack ?? e.message}\n`);
      process.exitCode = 1;
    },
  );
}
