// `tcd sample`, `tcd distill` and `tcd precompute` command lines: flags → checked options, and the help texts. Pure (no file system, no GPU), so usage
// errors come back at once.
import { parseArgs } from 'node:util';
import { type DTypeChoice, parseDTypeChoice } from '../kernels/f16_support.js';
import { SCHEDULER_NAMES, type SchedulerName, isSchedulerName } from '../pipeline/scheduler_choice.js';
import { LR_SCHEDULES, type LrScheduleName, isLrSchedule } from '../trainer/lr_schedule.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface SampleArgs {
  model: string;
  config?: string;
  loras: { path: string; scale: number }[];
  prompt: string;
  negativePrompt?: string;
  steps: number;
  /** Undefined: the scheduler's default (TCD 0.3, else 0). */
  eta?: number;
  guidanceScale: number;
  /** Undefined: a random seed (printed). */
  seed?: number;
  /** Undefined: the model's (UNet sample_size × the VAE's scale factor). */
  width?: number;
  height?: number;
  batch: number;
  scheduler: SchedulerName;
  out: string;
  variant?: 'fp16';
  /** The UNet's storage type ('auto': f16 where the device passes the f16 probe). */
  dtype: DTypeChoice;
  originalInferenceSteps?: number;
  strength?: number;
  quiet: boolean;
}

export const SAMPLE_HELP = `tcd sample — text to image with SDXL + a TCD LoRA (Trajectory Consistency Distillation) on WebGPU

usage: tcd sample --model <folder|file.safetensors> --prompt <text> [options]

model
  --model <path>            diffusers SDXL folder (model_index.json, unet/, vae/, text_encoder/, text_encoder_2/,
                            tokenizer/, tokenizer_2/, scheduler/), or a single .safetensors checkpoint with --config
  --config <folder>         diffusers folder giving configs + tokenizers for a single-file --model
  --variant fp16            load the *.fp16.safetensors weights
  --dtype <f32|f16|auto>    UNet weights and activations in float32 or float16 (f32 math inside the kernels either
                            way; the text encoders and the VAE decode stay float32, as diffusers upcasts the SDXL
                            VAE). auto: f16 where the device has shader-f16 and passes the f16 probe, else f32
                            with the reason printed. f16 on a device that fails it runs f32 and says why
                            (default auto)
  --lora <path[:scale]>     a UNet LoRA (peft / diffusers / kohya), applied unfused; repeat for several
                            (scale multiplies the file's alpha/rank; default 1)

sampling
  --prompt <text>           what to draw (required)
  --negative-prompt <text>  used only with --guidance-scale > 1
  --steps <n>               denoising steps (default 4)
  --eta, --gamma <γ>        TCD gamma in [0, 1]: 0 deterministic, higher = more stochastic (default 0.3;
                            other samplers: DDIM eta, default 0)
  --guidance-scale <g>      classifier-free guidance when > 1 (default 0: TCD is used without guidance)
  --scheduler <name>        ${SCHEDULER_NAMES.join(' | ')} (default tcd)
  --seed <n>                random seed (default: random, printed); image i of a batch uses seed + i
  --width <px>, --height <px>   image size, multiples of 8 (default: the UNet config's sample_size × the VAE's
                                scale factor, as diffusers; SDXL 1024 × 1024)
  --batch <n>               images per run (default 1)
  --original-inference-steps <n>   TCD/LCM distillation grid (default 50 from the scheduler config)
  --strength <s>            TCD/LCM: start at strength·T (0, 1] (default 1)

output
  --out <file.png>          where to write (default tcd.png); with several images: file-0.png, file-1.png, …
  --quiet                   no progress output
  -h, --help                this help

example
  tcd sample --model ./stable-diffusion-xl-base-1.0 --lora ./TCD-SDXL-LoRA/pytorch_lora_weights.safetensors \\
    --prompt "a photo of a red fox in the snow, detailed" --steps 4 --gamma 0.3 --seed 7 --out fox.png
`;

export const MAIN_HELP = `tcd — SDXL + TCD on WebGPU

usage: tcd <command> [options]

commands
  sample      generate images from a prompt (tcd sample --help)
  distill     train a TCD LoRA for SDXL from captioned images (tcd distill --help)
  precompute  cache VAE latents and text embeddings of an image folder for distill (tcd precompute --help)
`;

function num(flag: string, v: string | undefined, opts: { int?: boolean; min?: number; max?: number; minExclusive?: boolean } = {}): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  const kind = opts.int ? 'an integer' : 'a number';
  if (v.trim() === '' || !Number.isFinite(x) || (opts.int && !Number.isInteger(x))) throw new UsageError(`${flag}: expected ${kind}, got '${v}'`);
  if (opts.min !== undefined && (opts.minExclusive ? x <= opts.min : x < opts.min))
    throw new UsageError(`${flag}: must be ${opts.minExclusive ? '>' : '≥'} ${opts.min}, got ${v}`);
  if (opts.max !== undefined && x > opts.max) throw new UsageError(`${flag}: must be ≤ ${opts.max}, got ${v}`);
  return x;
}

/** `path[:scale]`: a trailing `:number` is the scale (so Windows drive letters and odd names still work). */
export function parseLoraFlag(v: string): { path: string; scale: number } {
  const m = /^(.+):([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)$/i.exec(v);
  const path = m ? m[1] : v;
  const scale = m ? Number(m[2]) : 1;
  if (!path) throw new UsageError(`--lora: empty path in '${v}'`);
  return { path, scale };
}

/** Parses `tcd sample` flags (without the subcommand). Returns undefined for --help. */
export function parseSampleArgs(argv: readonly string[]): SampleArgs | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: false,
      strict: true,
      options: {
        model: { type: 'string' },
        config: { type: 'string' },
        lora: { type: 'string', multiple: true },
        prompt: { type: 'string' },
        'negative-prompt': { type: 'string' },
        steps: { type: 'string' },
        eta: { type: 'string' },
        gamma: { type: 'string' },
        'guidance-scale': { type: 'string' },
        seed: { type: 'string' },
        width: { type: 'string' },
        height: { type: 'string' },
        batch: { type: 'string' },
        scheduler: { type: 'string' },
        out: { type: 'string' },
        variant: { type: 'string' },
        dtype: { type: 'string' },
        'original-inference-steps': { type: 'string' },
        strength: { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return undefined;
  if (!v.model) throw new UsageError('--model is required (a diffusers SDXL folder or a .safetensors checkpoint)');
  if (v.prompt === undefined) throw new UsageError('--prompt is required');
  if (v.eta !== undefined && v.gamma !== undefined && v.eta !== v.gamma) throw new UsageError(`--eta ${v.eta} and --gamma ${v.gamma} disagree (they are the same setting)`);
  const scheduler = v.scheduler ?? 'tcd';
  if (!isSchedulerName(scheduler)) throw new UsageError(`--scheduler: unknown '${scheduler}'; expected one of ${SCHEDULER_NAMES.join(', ')}`);
  if (v.variant !== undefined && v.variant !== 'fp16') throw new UsageError(`--variant: only 'fp16' is known, got '${v.variant}'`);
  const size = (flag: string, s: string | undefined) => {
    const x = num(flag, s, { int: true, min: 8 });
    if (x !== undefined && x % 8 !== 0) throw new UsageError(`${flag} ${x} is not a multiple of 8 (SDXL latents are 1/8 of the image size); try ${Math.round(x / 8) * 8}`);
    return x;
  };
  const out = v.out ?? 'tcd.png';
  if (!out.toLowerCase().endsWith('.png')) throw new UsageError(`--out must name a .png file, got '${out}'`);
  return {
    model: v.model,
    config: v.config,
    loras: (v.lora ?? []).map(parseLoraFlag),
    prompt: v.prompt,
    negativePrompt: v['negative-prompt'],
    steps: num('--steps', v.steps, { int: true, min: 1 }) ?? 4,
    eta: num(v.eta !== undefined ? '--eta' : '--gamma', v.eta ?? v.gamma, { min: 0, max: 1 }),
    guidanceScale: num('--guidance-scale', v['guidance-scale'], { min: 0 }) ?? 0,
    seed: num('--seed', v.seed, { int: true, min: 0, max: 0xffffffff }),
    width: size('--width', v.width),
    height: size('--height', v.height),
    batch: num('--batch', v.batch, { int: true, min: 1 }) ?? 1,
    scheduler,
    out,
    variant: v.variant as 'fp16' | undefined,
    dtype: dtypeFlag(v.dtype),
    originalInferenceSteps: num('--original-inference-steps', v['original-inference-steps'], { int: true, min: 1 }),
    strength: num('--strength', v.strength, { min: 0, max: 1, minExclusive: true }),
    quiet: v.quiet ?? false,
  };
}

function dtypeFlag(v: string | undefined): DTypeChoice {
  try {
    return parseDTypeChoice(v ?? 'auto', '--dtype');
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Output file of image i of n: the name itself for one image, else name-i.png. */
export function outputPath(out: string, i: number, n: number): string {
  return n === 1 ? out : `${out.slice(0, -'.png'.length)}-${i}.png`;
}

// ---------------------------------------------------------------------------------------------------------------
// tcd distill / tcd precompute

export interface DistillArgs {
  model: string;
  data?: string;
  manifest?: string;
  cache?: string;
  output: string;
  maxSteps: number;
  /** Undefined: 1024, or the cache's. */
  resolution?: number;
  centerCrop: boolean;
  randomFlip: boolean;
  rank: number;
  alpha?: number;
  numDdimTimesteps: number;
  wMin: number;
  wMax: number;
  loss: 'l2' | 'huber';
  huberC: number;
  lr: number;
  lrSchedule: LrScheduleName;
  warmupSteps: number;
  beta1: number;
  beta2: number;
  weightDecay: number;
  adamEps: number;
  maxGradNorm: number;
  batchSize: number;
  gradAccum: number;
  gradientCheckpointing: boolean;
  /** The teacher / base UNet's storage type (LoRA masters, gradients and AdamW state stay f32). */
  dtype: DTypeChoice;
  seed: number;
  checkpointEvery: number;
  maxCheckpoints?: number;
  resume?: string;
  emaDecay?: number;
  sampleEvery: number;
  samplePrompts: string[];
  sampleSteps: number;
  sampleEta: number;
  log?: string;
  quiet: boolean;
}

export const DISTILL_HELP = `tcd distill — Trajectory Consistency Distillation of SDXL into a LoRA (the guided TCD loop), on WebGPU

usage: tcd distill --model <sdxl-folder> (--data <image-folder> | --cache <latent-cache>) --output <folder>
                   --max-steps <n> [options]

The teacher is the frozen model (adapters off, classifier-free guidance with w ~ U[w-min, w-max]); the student is the
model with a trainable LoRA; the target is the same LoRA without gradient (or its EMA copy). Each update: DDIM step of
the teacher on the N-step grid, TCF(1) jumps of student and target to a random earlier grid point, l2 or
pseudo-Huber loss, gradient clipping, AdamW.

data
  --model <folder>          diffusers SDXL folder (unet/, vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/,
                            scheduler/): the teacher, and the encoders for --data and sample grids
  --data <folder>           images with captions: x.png|x.jpg + x.txt, or a metadata.jsonl manifest of
                            {"file_name": …, "text": …}; encoded on the fly
  --manifest <file>         a manifest to use instead of looking for one in --data
  --cache <folder>          a latent cache made by \`tcd precompute\` (nothing is re-encoded)
  --resolution <px>         training resolution, multiple of 8 (default 1024)
  --center-crop             centre crop instead of a random crop (with --data)
  --random-flip             mirror half of the images (with --data)

LoRA and distillation
  --rank <r>, --alpha <a>   LoRA rank and alpha (default 64 / the rank: scale alpha/r = 1)
  --num-ddim-timesteps <N>  teacher grid size (default 50: skipping interval k = 1000 / N = 20)
  --w-min <w>, --w-max <w>  guidance range, LCM formulation cond + w·(cond − uncond) (default 3 / 15)
  --loss l2|huber           loss (default l2); --huber-c <c> pseudo-Huber c (default 0.001)
  --ema-decay <d>           keep an EMA copy of the LoRA as the target network (default: none, as the recipe)

optimisation
  --max-steps <n>           optimizer updates in total (a resumed run continues up to this) (required)
  --batch-size <n>          samples per micro-batch (default 1); --grad-accum <n> micro-batches per update (default 1)
  --lr <lr>                 learning rate (default 1e-6, diffusers; the TCD paper used 4.5e-6)
  --lr-scheduler <name>     ${LR_SCHEDULES.join(' | ')} (default constant; constant has no warm-up)
  --lr-warmup-steps <n>     linear warm-up updates (default 0)
  --adam-beta1 <b>, --adam-beta2 <b>, --adam-weight-decay <wd>, --adam-epsilon <e>   (default 0.9, 0.999, 1e-2, 1e-8)
  --max-grad-norm <g>       clip the global gradient norm (default 1; 0: off)
  --no-gradient-checkpointing   keep activations instead of recomputing them (faster, more memory)
  --dtype <f32|f16|auto>    the base UNet's weights and activations (default f32). f16: LoRA master weights,
                            gradients and AdamW state stay f32; the backward is loss-scaled (as torch GradScaler:
                            scale 2^16, an overflowing update is skipped and the scale halves, doubled after 2000
                            finite updates; saved in checkpoints). auto: f16 where the device passes the f16 probe
  --seed <n>                seed of all randomness: data order, crops, flips, n, m, w, noise (default 0)

checkpoints and output
  --output <folder>         checkpoints (checkpoint-<step>/), the final pytorch_lora_weights.safetensors, train_log.jsonl,
                            samples/ (required)
  --checkpoint-every <n>    save LoRA + optimizer + step every n updates, atomically (default 500)
  --max-checkpoints <n>     keep only the newest n checkpoints (default: all)
  --resume <folder|latest>  continue from a checkpoint folder, or the newest one in a folder; 'latest': the newest
                            in --output, or a fresh start if it has none. The continued run is bit-for-bit the
                            uninterrupted one. Ctrl-C saves a checkpoint after the current update.
  --sample-every <n>        write a sample grid (TCD sampler, one image per --sample-prompt) every n updates
  --sample-prompt <text>    repeatable; --sample-steps <n> (default 4), --sample-eta <γ> (default 0.3)
  --log <file>              JSONL log, one line per update: loss, lr, grad norm, images/s, GPU memory
                            (default <output>/train_log.jsonl)
  --quiet                   no progress output
  -h, --help                this help

example
  tcd precompute --model ./stable-diffusion-xl-base-1.0 --data ./images --out ./cache --resolution 1024 --random-flip
  tcd distill --model ./stable-diffusion-xl-base-1.0 --cache ./cache --output ./tcd-run --max-steps 2000 \\
    --lr 4.5e-6 --batch-size 4 --grad-accum 4 --checkpoint-every 200 --max-checkpoints 3 \\
    --sample-every 200 --sample-prompt "a photo of a red fox in the snow"
`;

export interface PrecomputeArgs {
  model: string;
  data: string;
  manifest?: string;
  out: string;
  resolution: number;
  centerCrop: boolean;
  randomFlip: boolean;
  seed: number;
  copies: number;
  batchSize: number;
  shardSize: number;
  overwrite: boolean;
  quiet: boolean;
}

export const PRECOMPUTE_HELP = `tcd precompute — encode a captioned image folder once for tcd distill (VAE latents, both text encoders' outputs)

usage: tcd precompute --model <sdxl-folder> --data <image-folder> --out <cache-folder> [options]

  --model <folder>          diffusers SDXL folder (its VAE, tokenizers and text encoders are used)
  --data <folder>           x.png|x.jpg + x.txt, or a metadata.jsonl manifest; --manifest <file> to name one
  --out <folder>            the cache (sharded safetensors + index.json, written atomically; an interrupted run resumes)
  --resolution <px>         training resolution, multiple of 8 (default 1024)
  --center-crop, --random-flip   as tcd distill (each cached copy has its own crop and flip)
  --copies <n>              augmented copies per image (default 1)
  --seed <n>                seed of crops, flips and the VAE's latent sample (default 0)
  --batch-size <n>          examples per GPU pass (default 1); --shard-size <n> examples per file (default 64)
  --overwrite               replace a cache made with other settings
  --quiet                   no progress output
  -h, --help                this help
`;

function parseFlags<T extends Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>>(argv: readonly string[], options: T) {
  try {
    return parseArgs({ args: [...argv], allowPositionals: false, strict: true, options }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function resolutionFlag(v: string | undefined): number {
  const x = num('--resolution', v, { int: true, min: 8 }) ?? 1024;
  if (x % 8 !== 0) throw new UsageError(`--resolution ${x} is not a multiple of 8 (SDXL latents are 1/8 of the image size); try ${Math.round(x / 8) * 8}`);
  return x;
}

/** Parses `tcd distill` flags (without the subcommand). Returns undefined for --help. */
export function parseDistillArgs(argv: readonly string[]): DistillArgs | undefined {
  const S = { type: 'string' } as const;
  const B = { type: 'boolean' } as const;
  const v = parseFlags(argv, {
    model: S, data: S, manifest: S, cache: S, output: S, 'max-steps': S, resolution: S, 'center-crop': B, 'random-flip': B,
    rank: S, alpha: S, 'num-ddim-timesteps': S, 'w-min': S, 'w-max': S, loss: S, 'huber-c': S, lr: S, 'lr-scheduler': S,
    'lr-warmup-steps': S, 'adam-beta1': S, 'adam-beta2': S, 'adam-weight-decay': S, 'adam-epsilon': S, 'max-grad-norm': S,
    'batch-size': S, 'grad-accum': S, 'no-gradient-checkpointing': B, dtype: S, seed: S, 'checkpoint-every': S, 'max-checkpoints': S,
    resume: S, 'ema-decay': S, 'sample-every': S, 'sample-prompt': { type: 'string', multiple: true }, 'sample-steps': S,
    'sample-eta': S, log: S, quiet: B, help: { type: 'boolean', short: 'h' },
  });
  if (v.help) return undefined;
  if (!v.model) throw new UsageError('--model is required (a diffusers SDXL folder: the teacher)');
  if (!v.data && !v.cache) throw new UsageError('give --data <image folder> or --cache <latent cache from tcd precompute>');
  if (v.data && v.cache) throw new UsageError('--data and --cache exclude each other (the cache already holds the encoded data)');
  if (v.manifest && !v.data) throw new UsageError('--manifest goes with --data');
  if (v.cache && (v['center-crop'] || v['random-flip'])) throw new UsageError('--center-crop / --random-flip are fixed when the cache is made (tcd precompute)');
  if (!v.output) throw new UsageError('--output is required (where checkpoints and the LoRA go)');
  const maxSteps = num('--max-steps', v['max-steps'], { int: true, min: 1 });
  if (maxSteps === undefined) throw new UsageError('--max-steps is required');
  const loss = v.loss ?? 'l2';
  if (loss !== 'l2' && loss !== 'huber') throw new UsageError(`--loss: expected l2 or huber, got '${loss}'`);
  const lrSchedule = v['lr-scheduler'] ?? 'constant';
  if (!isLrSchedule(lrSchedule)) throw new UsageError(`--lr-scheduler: unknown '${lrSchedule}'; expected one of ${LR_SCHEDULES.join(', ')}`);
  const wMin = num('--w-min', v['w-min'], { min: 0 }) ?? 3;
  const wMax = num('--w-max', v['w-max'], { min: 0 }) ?? 15;
  if (wMin > wMax) throw new UsageError(`--w-min ${wMin} is above --w-max ${wMax}`);
  const sampleEvery = num('--sample-every', v['sample-every'], { int: true, min: 0 }) ?? 0;
  const samplePrompts = v['sample-prompt'] ?? [];
  if (sampleEvery > 0 && !samplePrompts.length) throw new UsageError('--sample-every needs at least one --sample-prompt');
  const emaDecay = num('--ema-decay', v['ema-decay'], { min: 0 });
  if (emaDecay !== undefined && emaDecay >= 1) throw new UsageError(`--ema-decay must be < 1, got ${emaDecay}`);
  return {
    model: v.model,
    data: v.data,
    manifest: v.manifest,
    cache: v.cache,
    output: v.output,
    maxSteps,
    resolution: v.resolution === undefined ? undefined : resolutionFlag(v.resolution),
    centerCrop: v['center-crop'] ?? false,
    randomFlip: v['random-flip'] ?? false,
    rank: num('--rank', v.rank, { int: true, min: 1 }) ?? 64,
    alpha: num('--alpha', v.alpha, { min: 0, minExclusive: true }),
    numDdimTimesteps: num('--num-ddim-timesteps', v['num-ddim-timesteps'], { int: true, min: 1 }) ?? 50,
    wMin,
    wMax,
    loss,
    huberC: num('--huber-c', v['huber-c'], { min: 0, minExclusive: true }) ?? 0.001,
    lr: num('--lr', v.lr, { min: 0 }) ?? 1e-6,
    lrSchedule,
    warmupSteps: num('--lr-warmup-steps', v['lr-warmup-steps'], { int: true, min: 0 }) ?? 0,
    beta1: num('--adam-beta1', v['adam-beta1'], { min: 0, max: 0.999999 }) ?? 0.9,
    beta2: num('--adam-beta2', v['adam-beta2'], { min: 0, max: 0.999999999 }) ?? 0.999,
    weightDecay: num('--adam-weight-decay', v['adam-weight-decay'], { min: 0 }) ?? 1e-2,
    adamEps: num('--adam-epsilon', v['adam-epsilon'], { min: 0 }) ?? 1e-8,
    maxGradNorm: num('--max-grad-norm', v['max-grad-norm'], { min: 0 }) ?? 1,
    batchSize: num('--batch-size', v['batch-size'], { int: true, min: 1 }) ?? 1,
    gradAccum: num('--grad-accum', v['grad-accum'], { int: true, min: 1 }) ?? 1,
    gradientCheckpointing: !v['no-gradient-checkpointing'],
    dtype: dtypeFlag(v.dtype),
    seed: num('--seed', v.seed, { int: true, min: 0, max: 0xffffffff }) ?? 0,
    checkpointEvery: num('--checkpoint-every', v['checkpoint-every'], { int: true, min: 0 }) ?? 500,
    maxCheckpoints: num('--max-checkpoints', v['max-checkpoints'], { int: true, min: 1 }),
    resume: v.resume,
    emaDecay,
    sampleEvery,
    samplePrompts,
    sampleSteps: num('--sample-steps', v['sample-steps'], { int: true, min: 1 }) ?? 4,
    sampleEta: num('--sample-eta', v['sample-eta'], { min: 0, max: 1 }) ?? 0.3,
    log: v.log,
    quiet: v.quiet ?? false,
  };
}

/** Parses `tcd precompute` flags (without the subcommand). Returns undefined for --help. */
export function parsePrecomputeArgs(argv: readonly string[]): PrecomputeArgs | undefined {
  const S = { type: 'string' } as const;
  const B = { type: 'boolean' } as const;
  const v = parseFlags(argv, {
    model: S, data: S, manifest: S, out: S, resolution: S, 'center-crop': B, 'random-flip': B, seed: S, copies: S,
    'batch-size': S, 'shard-size': S, overwrite: B, quiet: B, help: { type: 'boolean', short: 'h' },
  });
  if (v.help) return undefined;
  if (!v.model) throw new UsageError('--model is required (a diffusers SDXL folder)');
  if (!v.data) throw new UsageError('--data is required (an image folder with captions)');
  if (!v.out) throw new UsageError('--out is required (the cache folder)');
  return {
    model: v.model,
    data: v.data,
    manifest: v.manifest,
    out: v.out,
    resolution: resolutionFlag(v.resolution),
    centerCrop: v['center-crop'] ?? false,
    randomFlip: v['random-flip'] ?? false,
    seed: num('--seed', v.seed, { int: true, min: 0, max: 0xffffffff }) ?? 0,
    copies: num('--copies', v.copies, { int: true, min: 1 }) ?? 1,
    batchSize: num('--batch-size', v['batch-size'], { int: true, min: 1 }) ?? 1,
    shardSize: num('--shard-size', v['shard-size'], { int: true, min: 1 }) ?? 64,
    overwrite: v.overwrite ?? false,
    quiet: v.quiet ?? false,
  };
}
