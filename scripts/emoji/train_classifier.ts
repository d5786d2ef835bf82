// Trains the evaluation classifier (src/eval/classifier.ts) on the emoji training split and reports its held-out
// category accuracy (the ceiling for the Table-1 text–image agreement). See --help.
import { mkdir, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Gpu } from '../../runtime/device.js';
import { EMOJI_CATEGORIES } from '../../src/datasets/emoji/catalog.js';
import { loadEmojiSplit } from '../../src/datasets/emoji/files.js';
import { EMOJI_CLASSIFIER_CONFIG, ImageClassifier, argmaxRows, trainClassifier } from '../../src/eval/classifier.js';
import { writeSafetensors } from '../../src/io/safetensors.js';

const HELP = `usage: npx tsx scripts/emoji/train_classifier.ts [options]

Trains the category classifier whose features the Table-1 Fréchet distance uses, on <data>/train, and prints its
accuracy on <data>/heldout. Writes <out>/config.json and <out>/model.safetensors.

  --data <dir>     exported dataset (default out/emoji)
  --out <dir>      default runs/emoji-classifier
  --steps <n>      default 3000
  --batch <n>      default 128
  --lr <x>         default 1e-3
  --limit <n>      first n training images only (smoke runs)
  --seed <n>       default 0
  -h, --help       this help`;
const { values } = parseArgs({
  options: {
    data: { type: 'string', default: 'out/emoji' },
    out: { type: 'string', default: 'runs/emoji-classifier' },
    steps: { type: 'string', default: '3000' },
    batch: { type: 'string', default: '128' },
    lr: { type: 'string', default: '1e-3' },
    limit: { type: 'string' },
    seed: { type: 'string', default: '0' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const int = (k: 'steps' | 'batch' | 'seed' | 'limit') => {
  const v = Number(values[k]);
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${k}: expected a non-negative integer, got '${values[k]}'`);
    process.exit(2);
  }
  return v;
};
const train = await loadEmojiSplit(`${values.data}/train`, values.limit ? int('limit') : Infinity);
const held = await loadEmojiSplit(`${values.data}/heldout`);
const gpu = await Gpu.create();
console.log(`adapter: ${gpu.describe()}; ${train.shape[0]} training, ${held.shape[0]} held-out images`);
const model = new ImageClassifier(gpu, EMOJI_CLASSIFIER_CONFIG);
model.initRandom({ seed: int('seed') });
const t0 = performance.now();
await trainClassifier(model, train.images, train.shape, train.categories, {
  steps: int('steps'),
  batch: int('batch'),
  lr: Number(values.lr),
  seed: int('seed'),
  logEvery: 100,
  onLog: (s, ce, acc) => console.log(`[${((performance.now() - t0) / 1000).toFixed(0)} s] step ${s}: cross-entropy ${ce.toFixed(4)}, batch accuracy ${(100 * acc).toFixed(1)} %`),
});
const accuracy = async (d: typeof held) => {
  const { probabilities } = await model.evaluate(d.images, d.shape);
  const pred = argmaxRows(probabilities, EMOJI_CATEGORIES.length);
  return pred.filter((p, i) => p === d.categories[i]).length / pred.length;
};
const heldAcc = await accuracy(held);
console.log(`held-out category accuracy ${(100 * heldAcc).toFixed(1)} % (${held.shape[0]} images; chance by majority class ${(100 * Math.max(...EMOJI_CATEGORIES.map((_, c) => held.categories.filter((x) => x === c).length)) / held.shape[0]).toFixed(1)} %)`);
await mkdir(values.out!, { recursive: true });
const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
for (const [name, p] of model.parameters) tensors[name] = { dtype: 'F32', shape: [...p.shape], data: await p.v.value.toArray() };
await writeSafetensors(`${values.out}/model.safetensors`, tensors, { format: 'pt' });
await writeFile(`${values.out}/config.json`, JSON.stringify({ ...EMOJI_CLASSIFIER_CONFIG, categories: EMOJI_CATEGORIES, heldout_accuracy: heldAcc, steps: int('steps') }, null, 2) + '\n');
console.log(`wrote ${values.out}/model.safetensors`);
await gpu.destroy();
