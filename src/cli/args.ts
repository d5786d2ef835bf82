// `tcd sample` command line: flags → checked options, and the help text. Pure (no file system, no GPU), so usage
// errors come back at once.
import { parseArgs } from 'node:util';
import { type DTypeChoice, parseDTypeChoice } from '../kernels/f16_support.js';
import { SCHEDULER_NAMES, type SchedulerName, isSchedulerName } from '../pipeline/scheduler_choice.js';

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
  width: number;
  height: number;
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
                            VAE). auto: f16 where the device passes the f16 probe. f16 on a device that fails it
                            runs f32 and says why (default f32)
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
  --width <px>, --height <px>   image size, multiples of 8 (default 1024 × 1024)
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
  sample    generate images from a prompt (tcd sample --help)
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
    const x = num(flag, s, { int: true, min: 8 }) ?? 1024;
    if (x % 8 !== 0) throw new UsageError(`${flag} ${x} is not a multiple of 8 (SDXL latents are 1/8 of the image size); try ${Math.round(x / 8) * 8}`);
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
    return parseDTypeChoice(v ?? 'f32', '--dtype');
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Output file of image i of n: the name itself for one image, else name-i.png. */
export function outputPath(out: string, i: number, n: number): string {
  return n === 1 ? out : `${out.slice(0, -'.png'.length)}-${i}.png`;
}
