// Trains the emoji teacher (VAE, then text encoders + UNet) from scratch on the GPU; resumable. See --help.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Gpu } from '../../runtime/device.js';
import {
  EMOJI_MODEL_INDEX,
  EMOJI_SCHEDULER_CONFIG,
  EMOJI_TEXT_ENCODER_2_CONFIG,
  EMOJI_TEXT_ENCODER_CONFIG,
  EMOJI_TIME_IDS,
  EMOJI_UNET_CONFIG,
  EMOJI_VAE_CONFIG,
  emojiTokenizers,
} from '../../src/datasets/emoji/configs.js';
import { loadEmojiSplit } from '../../src/datasets/emoji/files.js';
import { SDXL_NOISE_SCHEDULE } from '../../src/schedulers/noise_schedule.js';
import { type LogRecord, trainTeacher } from '../../src/teacher/trainer.js';

const HELP = `usage: npx tsx scripts/emoji/train_teacher.ts [options]

Trains the emoji teacher from scratch with this library's autograd and kernels, in two stages:
  1. vae        AutoencoderKL 64²×3 → 16²×4 (MSE + KL), then scaling_factor = 1 / std of the latents
  2. diffusion  both CLIP text encoders + the UNet (ε-prediction, SDXL's scaled_linear schedule, captions
                zeroed with probability --cfg-dropout), VAE frozen
Resumes from <run>/checkpoint (a diffusers SDXL folder + train/) whenever one exists; checkpoints every
--checkpoint-every steps, when --max-minutes is reached and at the end of each stage. Logs one JSON line per
--log-every steps to <run>/log.jsonl (stage, step, loss, lr, seconds, images/s) and a line to stdout.

data
  --data <dir>              exported dataset (npx tsx scripts/emoji/export.ts; default out/emoji): reads <dir>/train
  --limit <n>               use only the first n training images (smoke runs)
  --tokenizer <dir>         CLIP vocab.json + merges.txt to cut to 4096 tokens (default test/fixtures/clip_tokenizer)
run
  --run <dir>               run folder (default runs/emoji-teacher)
  --seed <n>                default 0
  --max-minutes <m>         stop (after a checkpoint) once this much time has passed in this process
  --vae-only                stop after the VAE stage
  --checkpoint-every <n>    default 500
  --log-every <n>           default 50
vae stage
  --vae-steps <n>           default 4000
  --vae-batch <n>           default 64
  --vae-lr <x>              default 2e-4
  --kl-weight <x>           weight of mean KL vs mean squared error (default 1e-4)
diffusion stage
  --steps <n>               default 30000
  --batch <n>               default 128
  --lr <x>                  default 2e-4 (AdamW, weight decay 0.01, grad norm clipped to 1)
  --warmup <n>              linear warm-up steps of both stages (default 500)
  --cfg-dropout <p>         default 0.1
  -h, --help                this help

example (GPU machine, in stretches of 9 minutes; rerun the same command to continue)
  npx tsx scripts/emoji/train_teacher.ts --data out/emoji --run runs/emoji-teacher --max-minutes 9`;

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: 'out/emoji' },
    limit: { type: 'string' },
    tokenizer: { type: 'string', default: 'test/fixtures/clip_tokenizer' },
    run: { type: 'string', default: 'runs/emoji-teacher' },
    seed: { type: 'string', default: '0' },
    'max-minutes': { type: 'string' },
    'vae-only': { type: 'boolean' },
    'checkpoint-every': { type: 'string', default: '500' },
    'log-every': { type: 'string', default: '50' },
    'vae-steps': { type: 'string', default: '4000' },
    'vae-batch': { type: 'string', default: '64' },
    'vae-lr': { type: 'string', default: '2e-4' },
    'kl-weight': { type: 'string', default: '1e-4' },
    steps: { type: 'string', default: '30000' },
    batch: { type: 'string', default: '128' },
    lr: { type: 'string', default: '2e-4' },
    warmup: { type: 'string', default: '500' },
    'cfg-dropout': { type: 'string', default: '0.1' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
function num(flag: string, int: boolean, min: number, max = Infinity): number {
  const raw = values[flag as keyof typeof values] as string;
  const v = Number(raw);
  if (!Number.isFinite(v) || (int && !Number.isInteger(v)) || v < min || v > max) {
    console.error(`--${flag}: expected ${int ? 'an integer' : 'a number'} in [${min}, ${max}], got '${raw}'`);
    process.exit(2);
  }
  return v;
}
const warmup = num('warmup', true, 0);
const opts = {
  vae: { steps: num('vae-steps', true, 1), batch: num('vae-batch', true, 1), lr: num('vae-lr', false, 0), klWeight: num('kl-weight', false, 0), warmupSteps: warmup },
  diffusion: { steps: num('steps', true, 1), batch: num('batch', true, 1), lr: num('lr', false, 0), cfgDropout: num('cfg-dropout', false, 0, 1), warmupSteps: warmup },
  checkpointEvery: num('checkpoint-every', true, 1),
  logEvery: num('log-every', true, 1),
  seed: num('seed', true, 0),
  maxSeconds: values['max-minutes'] === undefined ? undefined : num('max-minutes', false, 0) * 60,
};

const train = await loadEmojiSplit(`${values.data}/train`, values.limit === undefined ? Infinity : num('limit', true, 1));
const vocab = JSON.parse(await readFile(`${values.tokenizer}/vocab.json`, 'utf8'));
const tok = emojiTokenizers(vocab, await readFile(`${values.tokenizer}/merges.txt`, 'utf8'));
const gpu = await Gpu.create();
console.log(`adapter: ${gpu.describe()}`);
console.log(`data: ${train.shape[0]} training images ${train.shape.slice(1).join('×')} from ${values.data}/train; run folder ${values.run}`);
const fmt = (r: LogRecord) =>
  r.checkpoint
    ? `[${r.seconds.toFixed(0)} s] ${r.stage} step ${r.step}: checkpoint ${r.checkpoint}${r.scalingFactor ? ` (scaling_factor ${r.scalingFactor.toPrecision(5)})` : ''}`
    : `[${r.seconds.toFixed(0)} s] ${r.stage} step ${r.step}: loss ${r.loss.toPrecision(4)}${r.reconstruction !== undefined ? ` (mse ${r.reconstruction.toPrecision(4)}, kl ${r.kl!.toPrecision(4)})` : ''} lr ${r.lr.toExponential(2)} ${r.imagesPerSecond.toPrecision(3)} img/s`;
const state = await trainTeacher(gpu, { images: train.images, imageShape: train.shape, captions: train.captions }, {
  ...opts,
  runDir: values.run!,
  vaeOnly: values['vae-only'],
  configs: {
    vae: EMOJI_VAE_CONFIG,
    textEncoder: EMOJI_TEXT_ENCODER_CONFIG,
    textEncoder2: EMOJI_TEXT_ENCODER_2_CONFIG,
    unet: EMOJI_UNET_CONFIG,
    scheduler: EMOJI_SCHEDULER_CONFIG,
    noise: SDXL_NOISE_SCHEDULE,
    modelIndex: EMOJI_MODEL_INDEX,
    timeIds: EMOJI_TIME_IDS,
  },
  tokenizers: tok.tokenizers,
  tokenizerFiles: tok.files,
  onLog: (r) => console.log(fmt(r)),
});
console.log(`stopped at stage '${state.stage}', step ${state.step} (${state.seconds.toFixed(0)} s of training in all runs); model folder: ${values.run}/checkpoint`);
await gpu.destroy();
