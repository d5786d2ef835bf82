// The paper's Table 1 and Fig. 6 on the emoji teacher: samplers × steps on held-out captions with fixed seeds, scored
// by Fréchet distance (classifier features vs the held-out real images), image complexity (edge density; PNG bytes
// per pixel) and text–image agreement (classifier category accuracy), plus TCD's γ sweep. See --help.
import { mkdir, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Gpu } from '../../runtime/device.js';
import { EMOJI_CATEGORIES } from '../../src/datasets/emoji/catalog.js';
import { type EmojiArrays, loadEmojiSplit } from '../../src/datasets/emoji/files.js';
import { type ClassifierConfig, ImageClassifier, argmaxRows } from '../../src/eval/classifier.js';
import { edgeDensity } from '../../src/eval/complexity.js';
import { frechetDistanceOf } from '../../src/eval/frechet.js';
import { fileSource } from '../../src/io/byte_source.js';
import { encodePng, writePng } from '../../src/pipeline/png.js';
import type { SchedulerName } from '../../src/pipeline/scheduler_choice.js';
import { TcdSdxlPipeline } from '../../src/pipeline/tcd_sdxl_pipeline.js';
import type { RgbImage } from '../../src/vae/image.js';

const HELP = `usage: npx tsx scripts/emoji/table1.ts --model <teacher folder> [--classifier <dir>] [options]

For each method and step count, samples one image per held-out caption (seed = --seed + caption index, the same
for every method) and reports:
  FD        Fréchet distance between classifier features of the samples and of the held-out real images
  edges     mean edge density (Sobel on luminance, threshold 0.1; src/eval/complexity.ts)
  png       mean PNG bytes per pixel (compressed size, the other complexity measure)
  accuracy  share of samples the classifier puts in their caption's category (text–image agreement)
Methods: DDIM, Euler, DPM-Solver++(2S) on the teacher (with --teacher-guidance), LCM with --lcm-lora, TCD with
--tcd-lora (γ = --gamma), both without guidance; and the γ sweep of TCD at --sweep-steps steps (Fig. 6).
A method whose LoRA is not given is listed as not run. Writes <out>/table1.json, table1.md, table1.html, grid.png
(rows: method × steps, columns: the first --grid captions) and gamma_grid.png.

  --model <dir>             teacher folder (a diffusers SDXL folder, e.g. runs/emoji-teacher/checkpoint)
  --classifier <dir>        from scripts/emoji/train_classifier.ts (config.json + model.safetensors); without it
                            FD and accuracy are left out (a quick look at samples: --methods ddim --steps 50)
  --tcd-lora <file>         TCD LoRA (safetensors); --lcm-lora <file> LCM LoRA
  --data <dir>              exported dataset (default out/emoji)
  --out <dir>               default out/table1
  --steps <list>            default 2,4,8,20
  --methods <list>          subset of ddim,euler,dpmpp2s,lcm,tcd (default all)
  --captions <n>            first n held-out captions (default all)
  --seed <n>                default 0
  --gamma <γ>               TCD's γ in the table (default 0.3)
  --gammas <list>           γ sweep (default 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1; 'none' to skip)
  --sweep-steps <n>         steps of the γ sweep (default 4)
  --teacher-guidance <g>    CFG scale of the teacher's samplers (default 5)
  --batch <n>               captions per generate call (default 32)
  --grid <n>                captions per grid row (default 8)
  -h, --help                this help`;

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    classifier: { type: 'string' },
    'tcd-lora': { type: 'string' },
    'lcm-lora': { type: 'string' },
    data: { type: 'string', default: 'out/emoji' },
    out: { type: 'string', default: 'out/table1' },
    steps: { type: 'string', default: '2,4,8,20' },
    methods: { type: 'string', default: 'ddim,euler,dpmpp2s,lcm,tcd' },
    captions: { type: 'string' },
    seed: { type: 'string', default: '0' },
    gamma: { type: 'string', default: '0.3' },
    gammas: { type: 'string', default: '0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1' },
    'sweep-steps': { type: 'string', default: '4' },
    'teacher-guidance': { type: 'string', default: '5' },
    batch: { type: 'string', default: '32' },
    grid: { type: 'string', default: '8' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const fail = (msg: string): never => {
  console.error(msg);
  process.exit(2);
};
if (!values.model) fail('--model is required (see --help)');
const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);
const nums = (flag: string, s: string) => list(s).map((x) => (Number.isFinite(Number(x)) ? Number(x) : fail(`--${flag}: '${x}' is not a number`)));

interface Method {
  key: 'ddim' | 'euler' | 'dpmpp2s' | 'lcm' | 'tcd';
  label: string;
  scheduler: SchedulerName;
  lora?: string;
  guidance: number;
}
const teacherGuidance = Number(values['teacher-guidance']);
const ALL: Method[] = [
  { key: 'ddim', label: 'DDIM', scheduler: 'ddim', guidance: teacherGuidance },
  { key: 'euler', label: 'Euler', scheduler: 'euler', guidance: teacherGuidance },
  { key: 'dpmpp2s', label: 'DPM-Solver++(2S)', scheduler: 'dpmpp2s', guidance: teacherGuidance },
  { key: 'lcm', label: 'LCM (LoRA)', scheduler: 'lcm', lora: values['lcm-lora'], guidance: 0 },
  { key: 'tcd', label: 'TCD (LoRA)', scheduler: 'tcd', lora: values['tcd-lora'], guidance: 0 },
];
const wanted = list(values.methods!);
for (const m of wanted) if (!ALL.some((a) => a.key === m)) fail(`--methods: unknown '${m}' (expected ddim, euler, dpmpp2s, lcm, tcd)`);
const methods = ALL.filter((m) => wanted.includes(m.key));
const stepsList = nums('steps', values.steps!);
const gammas = values.gammas === 'none' ? [] : nums('gammas', values.gammas!);
const seed = Number(values.seed);

const held = await loadEmojiSplit(`${values.data}/heldout`, values.captions ? Number(values.captions) : Infinity);
const N = held.shape[0];
const gpu = await Gpu.create();
console.log(`adapter: ${gpu.describe()}; ${N} held-out captions`);

const { readFile } = await import('node:fs/promises');
let classifier: ImageClassifier | undefined;
let clsConfig: ClassifierConfig = { channels: [0], classes: EMOJI_CATEGORIES.length, groups: 1 };
if (values.classifier) {
  clsConfig = JSON.parse(await readFile(`${values.classifier}/config.json`, 'utf8')) as ClassifierConfig;
  classifier = new ImageClassifier(gpu, clsConfig);
  await classifier.loadWeights(await fileSource(`${values.classifier}/model.safetensors`));
}
/** Features and probabilities, or NaN-free empties without a classifier. */
const evaluate = async (images: Float32Array, shape: readonly [number, number, number, number]) =>
  classifier ? classifier.evaluate(images, shape) : { features: new Float32Array(0), probabilities: new Float32Array(0) };

/** Images (RGB bytes) → [N, 3, H, W] in [-1, 1]. */
function toArray(images: readonly RgbImage[]): { data: Float32Array; shape: [number, number, number, number] } {
  const { width: W, height: H } = images[0];
  const data = new Float32Array(images.length * 3 * H * W);
  images.forEach((img, n) => {
    for (let c = 0; c < 3; c++) for (let p = 0; p < H * W; p++) data[n * 3 * H * W + c * H * W + p] = (2 * img.data[img.channels * p + c]) / 255 - 1;
  });
  return { data, shape: [images.length, 3, H, W] };
}
function realImages(d: EmojiArrays): RgbImage[] {
  const [n, , H, W] = d.shape;
  return Array.from({ length: n }, (_, i) => {
    const data = new Uint8Array(H * W * 3);
    for (let c = 0; c < 3; c++) for (let p = 0; p < H * W; p++) data[3 * p + c] = Math.round(((d.images[i * 3 * H * W + c * H * W + p] + 1) * 255) / 2);
    return { width: W, height: H, channels: 3, data };
  });
}

const realHeld = await evaluate(held.images, held.shape);
// The reference floor of the FD column: real training images vs the held-out ones.
const realTrain = classifier ? await evaluate(...(await loadEmojiSplit(`${values.data}/train`).then((t) => [t.images, t.shape] as const))) : realHeld;
const D = classifier?.featureDim ?? 0;
const K = clsConfig.classes;

interface Row {
  method: string;
  steps: number;
  gamma?: number;
  fd: number;
  edges: number;
  pngBytesPerPixel: number;
  accuracy: number;
  seconds: number;
}
async function score(images: RgbImage[], label: Omit<Row, 'fd' | 'edges' | 'pngBytesPerPixel' | 'accuracy'>): Promise<Row> {
  const { data, shape } = toArray(images);
  const { features, probabilities } = await evaluate(data, shape);
  const pred = argmaxRows(probabilities, K);
  return {
    ...label,
    fd: classifier && N > 1 ? frechetDistanceOf(features, realHeld.features, D) : NaN,
    edges: images.reduce((s, im) => s + edgeDensity(im), 0) / images.length,
    pngBytesPerPixel: images.reduce((s, im) => s + encodePng(im).length / (im.width * im.height), 0) / images.length,
    accuracy: classifier ? pred.filter((p, i) => p === held.categories[i]).length / N : NaN,
  };
}

const real = realImages(held);
const rows: Row[] = [
  { ...(await score(real, { method: 'real held-out images (FD: training images)', steps: 0, seconds: 0 })), fd: classifier ? frechetDistanceOf(realTrain.features, realHeld.features, D) : NaN },
];
const notRun: string[] = [];
const gridRows: { label: string; images: RgbImage[] }[] = [];
const gammaRows: { label: string; images: RgbImage[] }[] = [];
const gridN = Math.min(Number(values.grid), N);
const batch = Number(values.batch);

async function sampleAll(pipe: TcdSdxlPipeline, m: Method, steps: number, eta?: number): Promise<{ images: RgbImage[]; seconds: number }> {
  const images: RgbImage[] = [];
  const t0 = performance.now();
  for (let i = 0; i < N; i += batch) {
    const prompts = held.captions.slice(i, i + batch);
    const r = await pipe.generate({ prompt: prompts, steps, seed: seed + i, scheduler: m.scheduler, guidanceScale: m.guidance, eta, width: held.shape[3], height: held.shape[2] });
    images.push(...r.images);
  }
  return { images, seconds: (performance.now() - t0) / 1000 };
}

for (const m of methods) {
  if (m.key === 'lcm' || m.key === 'tcd') {
    if (!m.lora) {
      notRun.push(`${m.label}: no --${m.key}-lora given`);
      continue;
    }
  }
  const pipe = await TcdSdxlPipeline.fromPretrained(gpu, values.model!, { loras: m.lora ? [{ path: m.lora }] : [] });
  try {
    for (const steps of stepsList) {
      const eta = m.key === 'tcd' ? Number(values.gamma) : undefined;
      const { images, seconds } = await sampleAll(pipe, m, steps, eta);
      const row = await score(images, { method: m.label, steps, ...(eta !== undefined ? { gamma: eta } : {}), seconds });
      rows.push(row);
      gridRows.push({ label: `${m.label} ${steps}`, images: images.slice(0, gridN) });
      console.log(`${m.label.padEnd(18)} ${String(steps).padStart(2)} steps: FD ${row.fd.toFixed(3)}, edges ${row.edges.toFixed(4)}, png ${row.pngBytesPerPixel.toFixed(3)} B/px, accuracy ${(100 * row.accuracy).toFixed(1)} % (${seconds.toFixed(1)} s)`.replace(/NaN %?/g, '—'));
    }
    if (m.key === 'tcd')
      for (const g of gammas) {
        const steps = Number(values['sweep-steps']);
        const { images, seconds } = await sampleAll(pipe, m, steps, g);
        const row = await score(images, { method: 'TCD γ sweep', steps, gamma: g, seconds });
        rows.push(row);
        gammaRows.push({ label: `γ ${g}`, images: images.slice(0, gridN) });
        console.log(`TCD γ ${g.toFixed(1)} (${steps} steps): FD ${row.fd.toFixed(3)}, edges ${row.edges.toFixed(4)}, accuracy ${(100 * row.accuracy).toFixed(1)} %`);
      }
  } finally {
    pipe.dispose();
  }
}

/** Rows of images side by side, 2-pixel white gaps. */
function grid(rowsOf: { images: RgbImage[] }[]): RgbImage | undefined {
  if (!rowsOf.length || !rowsOf[0].images.length) return undefined;
  const { width: w, height: h } = rowsOf[0].images[0];
  const cols = Math.max(...rowsOf.map((r) => r.images.length));
  const W = cols * (w + 2);
  const H = rowsOf.length * (h + 2);
  const data = new Uint8Array(W * H * 3).fill(255);
  rowsOf.forEach((r, ri) =>
    r.images.forEach((im, ci) => {
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++)
          for (let c = 0; c < 3; c++) data[3 * ((ri * (h + 2) + y) * W + ci * (w + 2) + x) + c] = im.data[im.channels * (y * w + x) + c];
    }),
  );
  return { width: W, height: H, channels: 3, data };
}

const out = values.out!;
await mkdir(out, { recursive: true });
const g1 = grid([{ images: real.slice(0, gridN) }, ...gridRows]);
if (g1) await writePng(`${out}/grid.png`, g1);
const g2 = grid(gammaRows);
if (g2) await writePng(`${out}/gamma_grid.png`, g2);
const fmt = (r: Row) =>
  `| ${r.method} | ${r.steps || '—'} | ${r.gamma ?? '—'} | ${Number.isFinite(r.fd) ? r.fd.toFixed(3) : '—'} | ${r.edges.toFixed(4)} | ${r.pngBytesPerPixel.toFixed(3)} | ${Number.isFinite(r.accuracy) ? `${(100 * r.accuracy).toFixed(1)} %` : '—'} |`;
const md = [
  `Held-out captions: ${N} (seeds ${seed}…${seed + N - 1}); teacher guidance ${teacherGuidance}; ${classifier ? `FD on ${D}-d classifier features vs the held-out real images; categories: ${EMOJI_CATEGORIES.length}` : 'no --classifier: FD and accuracy not measured'}.`,
  '',
  '| method | steps | γ | FD ↓ | edge density | PNG B/px | category accuracy ↑ |',
  '|---|---|---|---|---|---|---|',
  ...rows.map(fmt),
  ...(notRun.length ? ['', `Not run: ${notRun.join('; ')}.`] : []),
].join('\n');
await writeFile(`${out}/table1.md`, md + '\n');
await writeFile(`${out}/table1.json`, JSON.stringify({ heldout: N, seed, teacherGuidance, rows, notRun, gridCaptions: held.captions.slice(0, gridN), gridRows: ['real', ...gridRows.map((r) => r.label)], gammaRows: gammaRows.map((r) => r.label) }, null, 2) + '\n');
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const html = `<!doctype html><meta charset="utf-8"><title>Table 1 (emoji)</title>
<style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{image-rendering:pixelated;width:${(g1?.width ?? 0) * 2}px}</style>
<h1>TCD vs samplers on the emoji teacher</h1><p>${esc(md.split('\n')[0])}</p>
<table><tr><th>method</th><th>steps</th><th>γ</th><th>FD ↓</th><th>edge density</th><th>PNG B/px</th><th>category accuracy ↑</th></tr>
${rows.map((r) => `<tr><td>${esc(r.method)}</td><td>${r.steps || '—'}</td><td>${r.gamma ?? '—'}</td><td>${Number.isFinite(r.fd) ? r.fd.toFixed(3) : '—'}</td><td>${r.edges.toFixed(4)}</td><td>${r.pngBytesPerPixel.toFixed(3)}</td><td>${Number.isFinite(r.accuracy) ? `${(100 * r.accuracy).toFixed(1)} %` : '—'}</td></tr>`).join('\n')}
</table>${notRun.length ? `<p>Not run: ${esc(notRun.join('; '))}.</p>` : ''}
${g1 ? `<h2>Samples</h2><p>Rows: real, ${esc(gridRows.map((r) => r.label).join(', '))}. Columns: ${esc(held.captions.slice(0, gridN).join(' | '))}</p><img src="grid.png">` : ''}
${g2 ? `<h2>TCD γ sweep</h2><p>Rows: ${esc(gammaRows.map((r) => r.label).join(', '))}</p><img src="gamma_grid.png">` : ''}`;
await writeFile(`${out}/table1.html`, html);
console.log(`\n${md}\n\nwrote ${out}/table1.{json,md,html}${g1 ? ', grid.png' : ''}${g2 ? ', gamma_grid.png' : ''}`);
classifier?.dispose();
await gpu.destroy();
