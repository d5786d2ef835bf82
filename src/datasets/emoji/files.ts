// The emoji dataset on disk (Node only): reading the extracted npm package, exporting the captioned image folders the
// trainers read, and loading an exported split into memory.
//
// Exported layout (`<out>/`):
//   train/<id>.png, train/<id>.txt      RGB 64×64 over the background, caption (one line, no newline at the end)
//   heldout/<id>.png, heldout/<id>.txt  the held-out split (src/datasets/emoji/catalog.ts says how it is chosen)
//   train/metadata.jsonl, heldout/metadata.jsonl
//                                       one {"file_name","text","category","category_index","base","split"} per image
//                                       (Hugging Face imagefolder names), in catalogue order
//   dataset.json                        counts, background, split options, source package and licences
//   LICENSE-images.txt                  the Apache-2.0 attribution of the Noto images
// <id> is the emoji's code point sequence in lowercase ('1f385-1f3fd'), as in the package's own file names.
import type { RgbImage } from '../../vae/image.js';
import { decodePng, encodePng } from '../../pipeline/png.js';
import { writeFileAtomic } from '../../io/safetensors.js';
import { type CatalogOptions, EMOJI_CATEGORIES, type EmojiItem, type EmojiSplit, buildEmojiCatalog } from './catalog.js';
import { DEFAULT_BACKGROUND, type Rgb, compositeOver } from './image.js';

export const EMOJI_PACKAGE = 'emoji-datasource-google';
export const EMOJI_PACKAGE_VERSION = '16.0.0';
export const IMAGE_ATTRIBUTION =
  'Emoji images: Noto Emoji, Copyright Google Inc., Apache License 2.0 (https://github.com/googlefonts/noto-emoji/blob/main/LICENSE), ' +
  `as packaged in the npm package ${EMOJI_PACKAGE}@${EMOJI_PACKAGE_VERSION} (emoji-data, Copyright (c) 2013 Cal Henderson, MIT).`;

/** The catalogue of an extracted package folder (the folder that holds emoji.json and img/). */
export async function readEmojiCatalog(packageDir: string, opts: CatalogOptions = {}): Promise<EmojiItem[]> {
  const { readFile } = await import('node:fs/promises');
  const path = `${packageDir}/emoji.json`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as Error).message}); run 'node scripts/emoji/fetch.mjs' to download and extract ${EMOJI_PACKAGE}@${EMOJI_PACKAGE_VERSION}`);
  }
  return buildEmojiCatalog(JSON.parse(text), opts);
}

/** One item's 64×64 image, composited over the background. */
export async function loadEmojiImage(packageDir: string, item: EmojiItem, background: Rgb = DEFAULT_BACKGROUND): Promise<RgbImage> {
  const { readFile } = await import('node:fs/promises');
  const path = `${packageDir}/img/google/64/${item.image}`;
  return compositeOver(decodePng(new Uint8Array(await readFile(path))), background);
}

export interface ExportOptions extends CatalogOptions {
  background?: Rgb;
  /** Called after each image. */
  onProgress?: (done: number, total: number) => void;
}

export interface ExportSummary {
  train: number;
  heldout: number;
  categories: Record<string, { train: number; heldout: number }>;
}

export const fileStem = (item: EmojiItem) => item.id.toLowerCase();

/** Writes the folders described in the header comment (every file atomically). */
export async function exportEmojiDataset(packageDir: string, outDir: string, opts: ExportOptions = {}): Promise<ExportSummary> {
  const { mkdir } = await import('node:fs/promises');
  const background = opts.background ?? DEFAULT_BACKGROUND;
  const items = await readEmojiCatalog(packageDir, opts);
  const summary: ExportSummary = { train: 0, heldout: 0, categories: Object.fromEntries(EMOJI_CATEGORIES.map((c) => [c, { train: 0, heldout: 0 }])) };
  const meta: Record<EmojiSplit, string[]> = { train: [], heldout: [] };
  for (const split of ['train', 'heldout'] as const) await mkdir(`${outDir}/${split}`, { recursive: true });
  const enc = new TextEncoder();
  let done = 0;
  for (const item of items) {
    const img = await loadEmojiImage(packageDir, item, background);
    const stem = fileStem(item);
    const dir = `${outDir}/${item.split}`;
    await writeFileAtomic(`${dir}/${stem}.png`, encodePng(img));
    await writeFileAtomic(`${dir}/${stem}.txt`, enc.encode(item.caption));
    meta[item.split].push(
      JSON.stringify({ file_name: `${stem}.png`, text: item.caption, category: item.category, category_index: item.categoryIndex, base: item.baseId, split: item.split }),
    );
    summary[item.split]++;
    summary.categories[item.category][item.split]++;
    opts.onProgress?.(++done, items.length);
  }
  for (const split of ['train', 'heldout'] as const) await writeFileAtomic(`${outDir}/${split}/metadata.jsonl`, enc.encode(meta[split].join('\n') + '\n'));
  const info = {
    source: `${EMOJI_PACKAGE}@${EMOJI_PACKAGE_VERSION}`,
    image_size: 64,
    background,
    heldout_fraction: opts.heldoutFraction ?? 0.1,
    split_seed: opts.seed ?? 0,
    category_names: EMOJI_CATEGORIES,
    ...summary,
    attribution: IMAGE_ATTRIBUTION,
  };
  await writeFileAtomic(`${outDir}/dataset.json`, enc.encode(JSON.stringify(info, null, 2) + '\n'));
  await writeFileAtomic(`${outDir}/LICENSE-images.txt`, enc.encode(`${IMAGE_ATTRIBUTION}\n`));
  return summary;
}

/** An exported split in memory: images as [N, 3, H, W] float32 in [-1, 1] (the VAE's input range). */
export interface EmojiArrays {
  images: Float32Array;
  shape: [number, number, number, number];
  captions: string[];
  categories: number[];
  files: string[];
}

/**
 * The compact form of an exported split for moving it to the GPU machine: `<out>/metadata.jsonl` and
 * `<out>/images.u8`, the images as raw bytes [N, 3, H, W] (channel planes, no header; H, W in dataset.json's
 * image_size, 64). Raw planes compress about twice as well as the PNGs under xz (7 MB for all 3,786 images).
 */
export async function packEmojiSplit(dir: string, out: string): Promise<number> {
  const { mkdir, readFile } = await import('node:fs/promises');
  const d = await loadEmojiSplit(dir);
  const u8 = new Uint8Array(d.images.length);
  for (let i = 0; i < u8.length; i++) u8[i] = Math.round(((d.images[i] + 1) * 255) / 2);
  await mkdir(out, { recursive: true });
  await writeFileAtomic(`${out}/metadata.jsonl`, new Uint8Array(await readFile(`${dir}/metadata.jsonl`)));
  await writeFileAtomic(`${out}/images.u8`, u8);
  return d.shape[0];
}

/**
 * Loads `<dir>/metadata.jsonl` and its images: `<dir>/images.u8` when present (packEmojiSplit; 64×64), else the
 * PNGs it names (an exported split folder). `limit` keeps the first N.
 */
export async function loadEmojiSplit(dir: string, limit = Infinity): Promise<EmojiArrays> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(`${dir}/metadata.jsonl`, 'utf8').catch((e: Error) => {
    throw new Error(`${dir}/metadata.jsonl: cannot read (${e.message}); expected a split folder written by scripts/emoji/export.ts`);
  });
  const lines = text.split('\n').filter((l) => l.trim());
  const rows = lines.slice(0, limit).map((l, i) => {
    const r = JSON.parse(l) as { file_name?: unknown; text?: unknown; category_index?: unknown };
    if (typeof r.file_name !== 'string' || typeof r.text !== 'string' || typeof r.category_index !== 'number')
      throw new Error(`${dir}/metadata.jsonl line ${i + 1}: expected file_name, text and category_index, got ${l.slice(0, 120)}`);
    return r as { file_name: string; text: string; category_index: number };
  });
  if (!rows.length) throw new Error(`${dir}/metadata.jsonl: no images`);
  const meta = { captions: rows.map((r) => r.text), categories: rows.map((r) => r.category_index), files: rows.map((r) => r.file_name) };
  const raw = await readFile(`${dir}/images.u8`).catch(() => undefined);
  if (raw) {
    const per = 3 * 64 * 64;
    const total = lines.length;
    if (raw.length !== total * per) throw new Error(`${dir}/images.u8: ${raw.length} bytes, expected ${total} images × 3 × 64 × 64 = ${total * per}`);
    const images = new Float32Array(rows.length * per);
    for (let i = 0; i < images.length; i++) images[i] = (2 * raw[i]) / 255 - 1;
    return { images, shape: [rows.length, 3, 64, 64], ...meta };
  }
  let H = 0;
  let W = 0;
  let images = new Float32Array(0);
  for (let n = 0; n < rows.length; n++) {
    const png = decodePng(new Uint8Array(await readFile(`${dir}/${rows[n].file_name}`)));
    if (!n) {
      H = png.height;
      W = png.width;
      images = new Float32Array(rows.length * 3 * H * W);
    } else if (png.height !== H || png.width !== W) throw new Error(`${dir}/${rows[n].file_name}: ${png.width}×${png.height}, expected ${W}×${H} like the first image`);
    const base = n * 3 * H * W;
    for (let c = 0; c < 3; c++) for (let p = 0; p < H * W; p++) images[base + c * H * W + p] = (2 * png.data[4 * p + c]) / 255 - 1;
  }
  return { images, shape: [rows.length, 3, H, W], captions: rows.map((r) => r.text), categories: rows.map((r) => r.category_index), files: rows.map((r) => r.file_name) };
}
