// Trainer data, host side: listing captioned image folders (and every error), PNG / JPEG decoding, the SDXL training
// transform (PIL-style bilinear resize against a float64 plain-loop reference, crop / flip bookkeeping) and the Rng.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DatasetError,
  ImageDecodeError,
  SeededRng,
  TransformError,
  cropTopLeft,
  decodeImage,
  decodeImageRgba,
  listCaptionedImages,
  nextFloat,
  nextInt,
  parseJpegFrame,
  prepareImage,
  readImageFile,
  resizeShorterSide,
  resizedSize,
  shuffledIndices,
} from '../src/trainer/data/index.js';
import type { RgbImage } from '../src/vae/image.js';
import { seeded } from './helpers.js';

const { PNG } = pngjs;
const FIXTURES = fileURLToPath(new URL('./fixtures/trainer_data/', import.meta.url));

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tcd-data-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let dirCount = 0;
async function folder(files: Record<string, string | Uint8Array>): Promise<string> {
  const dir = join(root, `d${dirCount++}`);
  await mkdir(dir, { recursive: true });
  for (const [rel, body] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true });
    await writeFile(join(dir, rel), body);
  }
  return dir;
}

/** Seeded random bytes. */
function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from(seeded(n, seed, 0, 256), (v) => Math.min(255, Math.floor(v)));
}

function pngBytes(width: number, height: number, rgba: Uint8Array, colorType: 2 | 6 = 6): Uint8Array {
  const png = new PNG({ width, height });
  png.data = Buffer.from(rgba);
  const buf = PNG.sync.write(png, { colorType });
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

const TINY_PNG = pngBytes(2, 2, bytes(16, 1));

describe('listCaptionedImages', () => {
  it('pairs x.png|jpg|jpeg with x.txt, in subfolders too, sorted by id; hidden files and non-images are ignored', async () => {
    const dir = await folder({
      'b.png': TINY_PNG, 'b.txt': 'a red cube\n',
      'a.JPG': TINY_PNG, 'a.txt': '  blue sphere ',
      'sub/c.jpeg': TINY_PNG, 'sub/c.txt': '',
      'README.md': 'notes', 'notes.txt': 'not a caption', '.DS_Store': 'x', '.cache/z.png': TINY_PNG,
    });
    const items = await listCaptionedImages(dir);
    expect(items).toEqual([
      { id: 'a', imagePath: join(dir, 'a.JPG'), caption: 'blue sphere' },
      { id: 'b', imagePath: join(dir, 'b.png'), caption: 'a red cube' },
      { id: 'sub/c', imagePath: join(dir, 'sub/c.jpeg'), caption: '' },
    ]);
  });

  it('reads a metadata.jsonl manifest ("text" or "caption"), in its order, paths relative to it', async () => {
    const dir = await folder({
      'img/x.png': TINY_PNG, 'y.jpg': TINY_PNG, 'y.txt': 'ignored: the manifest wins',
      'metadata.jsonl': '{"file_name": "img/x.png", "text": "first"}\n\n{"file_name": "y.jpg", "caption": "second", "extra": 1}\n',
    });
    expect(await listCaptionedImages(dir)).toEqual([
      { id: 'img/x', imagePath: join(dir, 'img/x.png'), caption: 'first' },
      { id: 'y', imagePath: join(dir, 'y.jpg'), caption: 'second' },
    ]);
    // The folder's only *.jsonl is used too; an explicit manifest option as well.
    const dir2 = await folder({ 'q.png': TINY_PNG, 'train.jsonl': '{"file_name": "q.png", "text": "t"}' });
    expect((await listCaptionedImages(dir2)).map((i) => i.caption)).toEqual(['t']);
    expect((await listCaptionedImages(dir2, { manifest: 'train.jsonl' })).map((i) => i.id)).toEqual(['q']);
  });

  it('names the missing caption file', async () => {
    const dir = await folder({ 'a.png': TINY_PNG, 'a.txt': 'ok', 'b.jpg': TINY_PNG });
    await expect(listCaptionedImages(dir)).rejects.toThrow(DatasetError);
    await expect(listCaptionedImages(dir)).rejects.toThrow(`without a caption file: expected ${join(dir, 'b.txt')}`);
  });

  it('names an image the manifest lists but the folder lacks', async () => {
    const dir = await folder({ 'a.png': TINY_PNG, 'metadata.jsonl': '{"file_name": "a.png", "text": "ok"}\n{"file_name": "gone.png", "text": "x"}\n' });
    await expect(listCaptionedImages(dir)).rejects.toThrow(`line 2: image ${join(dir, 'gone.png')} (file_name "gone.png") does not exist`);
  });

  it('rejects an empty folder, a missing folder and an empty manifest', async () => {
    const empty = await folder({});
    await expect(listCaptionedImages(empty)).rejects.toThrow(`dataset ${empty}: no images found; expected x.png / x.jpg / x.jpeg with a caption file x.txt`);
    await expect(listCaptionedImages(join(root, 'nope'))).rejects.toThrow(`dataset ${join(root, 'nope')}: no such folder`);
    const dir = await folder({ 'metadata.jsonl': '\n' });
    await expect(listCaptionedImages(dir)).rejects.toThrow(/metadata\.jsonl: no entries/);
  });

  it('rejects unsupported extensions, naming the file and the supported ones', async () => {
    const dir = await folder({ 'a.webp': TINY_PNG, 'a.txt': 'x' });
    await expect(listCaptionedImages(dir)).rejects.toThrow(`${join(dir, 'a.webp')} has an unsupported extension '.webp'; expected .png, .jpg, .jpeg`);
    const m = await folder({ 'a.gif': TINY_PNG, 'metadata.jsonl': '{"file_name": "a.gif", "text": "x"}' });
    await expect(listCaptionedImages(m)).rejects.toThrow(`line 1: ${join(m, 'a.gif')} has an unsupported extension '.gif'`);
  });

  it('rejects bad manifest lines, two images for one caption and ambiguous manifests', async () => {
    const bad = await folder({ 'a.png': TINY_PNG, 'metadata.jsonl': '{"file_name": "a.png", "text": "ok"}\n{oops\n' });
    await expect(listCaptionedImages(bad)).rejects.toThrow(/metadata\.jsonl line 2: not valid JSON/);
    const noText = await folder({ 'a.png': TINY_PNG, 'metadata.jsonl': '{"file_name": "a.png"}' });
    await expect(listCaptionedImages(noText)).rejects.toThrow(/line 1: expected a string "text" \(or "caption"\), got undefined/);
    const twice = await folder({ 'a.png': TINY_PNG, 'metadata.jsonl': '{"file_name": "a.png", "text": "1"}\n{"file_name": "a.png", "text": "2"}' });
    await expect(listCaptionedImages(twice)).rejects.toThrow(/line 2: .*a\.png is listed twice/);
    const two = await folder({ 'a.png': TINY_PNG, 'a.jpg': TINY_PNG, 'a.txt': 'x' });
    await expect(listCaptionedImages(two)).rejects.toThrow(/share the caption .*a\.txt; expected one image per caption/);
    const many = await folder({ 'a.png': TINY_PNG, 'x.jsonl': '', 'y.jsonl': '' });
    await expect(listCaptionedImages(many)).rejects.toThrow(/several manifests \(x\.jsonl, y\.jsonl\)/);
  });
});

describe('image decoding', () => {
  it('PNG RGBA: exact pixels; alpha composited over the background in float64 within rounding, or dropped', () => {
    const W = 7, H = 5;
    const rgba = bytes(W * H * 4, 2);
    const file = pngBytes(W, H, rgba);
    const raw = decodeImageRgba(file, 'x.png');
    expect([raw.width, raw.height, raw.channels]).toEqual([W, H, 4]);
    expect(Array.from(raw.data)).toEqual(Array.from(rgba));
    for (const bg of [[255, 255, 255], [10, 200, 30]] as const) {
      const rgb = decodeImage(file, 'x.png', { background: bg });
      expect(rgb.channels).toBe(3);
      for (let p = 0; p < W * H; p++)
        for (let c = 0; c < 3; c++) {
          const a = rgba[4 * p + 3] / 255;
          expect(rgb.data[3 * p + c]).toBe(Math.round(rgba[4 * p + c] * a + bg[c] * (1 - a)));
        }
    }
    const dropped = decodeImage(file, 'x.png', { background: null });
    for (let p = 0; p < W * H; p++) for (let c = 0; c < 3; c++) expect(dropped.data[3 * p + c]).toBe(rgba[4 * p + c]);
  });

  it('PNG RGB (colour type 2): exact pixels', () => {
    const W = 6, H = 3;
    const rgba = bytes(W * H * 4, 3);
    for (let p = 0; p < W * H; p++) rgba[4 * p + 3] = 255;
    const rgb = decodeImage(pngBytes(W, H, rgba, 2), 'rgb.png');
    for (let p = 0; p < W * H; p++) for (let c = 0; c < 3; c++) expect(rgb.data[3 * p + c]).toBe(rgba[4 * p + c]);
  });

  it('JPEG (jpeg-js encoded at quality 95): pixels within JPEG tolerance of the source', () => {
    const W = 32, H = 24;
    const rgba = new Uint8Array(W * H * 4);
    // A smooth asymmetric image (JPEG's error is small on smooth content).
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) rgba.set([40 + 5 * x, 30 + 7 * y, 128 + 2 * (x - y), 255], 4 * (y * W + x));
    const file = new Uint8Array(jpeg.encode({ width: W, height: H, data: rgba }, 95).data);
    const rgb = decodeImage(file, 'x.jpg');
    expect([rgb.width, rgb.height, rgb.channels]).toEqual([W, H, 3]);
    let maxErr = 0, sum = 0;
    for (let p = 0; p < W * H; p++)
      for (let c = 0; c < 3; c++) {
        const e = Math.abs(rgb.data[3 * p + c] - rgba[4 * p + c]);
        maxErr = Math.max(maxErr, e);
        sum += e;
      }
    console.log(`[jpeg q95] max abs err ${maxErr}, mean ${(sum / (W * H * 3)).toFixed(3)}`);
    expect(maxErr).toBeLessThanOrEqual(8);
    expect(sum / (W * H * 3)).toBeLessThan(1.5);
  });

  it('JPEG: jpeg-js decodes Pillow-written files (4:2:0, 4:4:4, progressive, greyscale) close to Pillow\'s libjpeg', async () => {
    const cases = JSON.parse(await readFile(join(FIXTURES, 'cases.json'), 'utf8')) as { jpeg: { jpg: string; pil: string }[] };
    for (const c of cases.jpeg) {
      const got = await readImageFile(join(FIXTURES, c.jpg));
      const want = await readImageFile(join(FIXTURES, c.pil));
      expect([got.width, got.height, got.channels]).toEqual([want.width, want.height, 3]);
      let maxErr = 0, sum = 0;
      for (let i = 0; i < want.data.length; i++) {
        const e = Math.abs(got.data[i] - want.data[i]);
        maxErr = Math.max(maxErr, e);
        sum += e;
      }
      console.log(`[jpeg ${c.jpg}] vs Pillow: max abs ${maxErr}, mean ${(sum / want.data.length).toFixed(3)}`);
      // Upsampling and colour conversion follow libjpeg; the IDCTs differ (jpeg-js: Loeffler, libjpeg: islow).
      // With jpeg-js's own repeat-and-truncate path 4:2:0 was max 11, mean 2.26.
      expect(maxErr, c.jpg).toBeLessThanOrEqual(3);
      expect(sum / want.data.length, c.jpg).toBeLessThan(0.25);
    }
  });

  it('EXIF orientation 1..8: upright as PIL.ImageOps.exif_transpose (what HF datasets\' imagefolder applies)', async () => {
    const cases = JSON.parse(await readFile(join(FIXTURES, 'cases.json'), 'utf8')) as { exif: { jpg: string; pil: string; orientation: number }[] };
    expect(cases.exif.length).toBe(8);
    for (const c of cases.exif) {
      const bytes = new Uint8Array(await readFile(join(FIXTURES, c.jpg)));
      expect(parseJpegFrame(bytes)?.orientation, c.jpg).toBe(c.orientation);
      const got = decodeImage(bytes, c.jpg);
      const want = await readImageFile(join(FIXTURES, c.pil));
      expect([got.width, got.height], c.jpg).toEqual([want.width, want.height]);
      let maxErr = 0;
      for (let i = 0; i < want.data.length; i++) maxErr = Math.max(maxErr, Math.abs(got.data[i] - want.data[i]));
      expect(maxErr, c.jpg).toBeLessThanOrEqual(3);
      // Kept as stored when asked.
      if (c.orientation >= 5) expect(decodeImage(bytes, c.jpg, { exifTranspose: false }).width).toBe(want.height);
    }
  });

  it('parseJpegFrame reads the sampling factors', async () => {
    const f = parseJpegFrame(new Uint8Array(await readFile(join(FIXTURES, 'jpeg_q90_420.jpg'))));
    expect(f).toEqual({ width: 48, height: 40, components: [{ id: 1, h: 2, v: 2 }, { id: 2, h: 1, v: 1 }, { id: 3, h: 1, v: 1 }], adobeTransform: undefined, orientation: undefined });
    expect(parseJpegFrame(new Uint8Array(await readFile(join(FIXTURES, 'jpeg_grey_q90.jpg'))))?.components).toEqual([{ id: 1, h: 1, v: 1 }]);
  });

  it('corrupt, truncated, unknown and missing files: errors naming the file', async () => {
    expect(() => decodeImage(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]), 'd/x.png')).toThrow(ImageDecodeError);
    expect(() => decodeImage(new Uint8Array([1, 2, 3]), 'd/x.png')).toThrow('d/x.png: not a PNG or JPEG file (first bytes 01 02 03; expected 89 50 4e 47 … or ff d8 ff)');
    expect(() => decodeImage(TINY_PNG.subarray(0, 40), 'd/cut.png')).toThrow(/^d\/cut\.png: corrupt or unsupported PNG/);
    expect(() => decodeImage(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0, 1, 2]), 'd/bad.jpg')).toThrow(/^d\/bad\.jpg: corrupt or unsupported JPEG/);
    const dir = await folder({ 'ok.png': pngBytes(3, 2, bytes(24, 4)) });
    expect((await readImageFile(join(dir, 'ok.png'))).width).toBe(3);
    await expect(readImageFile(join(dir, 'none.png'))).rejects.toThrow(`${join(dir, 'none.png')}: no such file`);
  });
});

// ---- transform ------------------------------------------------------------------------------------------------

/**
 * Float64 reference of PIL's bilinear resize, from its definition: output pixel i of an axis covers input
 * coordinates centred on (i + 0.5)·scale; a triangle filter of radius max(scale, 1) (antialiasing when shrinking)
 * weighs input pixel j by tri((j + 0.5 − centre) / max(scale, 1)), normalised. Separable, no intermediate rounding.
 */
function resizeRef(img: RgbImage, outW: number, outH: number): Float64Array {
  const weights = (inN: number, outN: number) => {
    const scale = inN / outN;
    const fs = Math.max(scale, 1);
    return Array.from({ length: outN }, (_, i) => {
      const centre = (i + 0.5) * scale;
      const w = Array.from({ length: inN }, (_, j) => Math.max(0, 1 - Math.abs((j + 0.5 - centre) / fs)));
      const s = w.reduce((a, b) => a + b, 0);
      return w.map((v) => v / s);
    });
  };
  const wx = weights(img.width, outW);
  const wy = weights(img.height, outH);
  const out = new Float64Array(outW * outH * 3);
  for (let y = 0; y < outH; y++)
    for (let x = 0; x < outW; x++)
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let j = 0; j < img.height; j++) {
          if (wy[y][j] === 0) continue;
          let row = 0;
          for (let i = 0; i < img.width; i++) row += wx[x][i] * img.data[(j * img.width + i) * 3 + c];
          acc += wy[y][j] * row;
        }
        out[(y * outW + x) * 3 + c] = acc;
      }
  return out;
}

function randomRgb(w: number, h: number, seed: number): RgbImage {
  return { data: bytes(w * h * 3, seed), width: w, height: h, channels: 3 };
}

/** An asymmetric image whose pixel at (x, y) is (x, y, 7). */
function coordImage(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set([x, y, 7], (y * w + x) * 3);
  return { data, width: w, height: h, channels: 3 };
}

describe('training transform', () => {
  it('output size follows torchvision Resize(int): shorter side → res, longer → int(res·long/short)', () => {
    expect(resizedSize(600, 800, 512)).toEqual([512, 682]);
    expect(resizedSize(801, 600, 512)).toEqual([683, 512]);
    expect(resizedSize(100, 100, 64)).toEqual([64, 64]);
  });

  it('bilinear resize (down with antialias, up, mixed) matches the float64 reference within 1 level', () => {
    for (const [w, h, res, seed] of [[37, 23, 16, 5], [7, 10, 12, 6], [40, 9, 13, 7], [19, 19, 19, 8]] as const) {
      const img = randomRgb(w, h, seed);
      const got = resizeShorterSide(img, res);
      const [oh, ow] = resizedSize(h, w, res);
      expect([got.height, got.width]).toEqual([oh, ow]);
      const want = resizeRef(img, ow, oh);
      let maxErr = 0;
      for (let i = 0; i < want.length; i++) maxErr = Math.max(maxErr, Math.abs(got.data[i] - want[i]));
      console.log(`[resize ${w}×${h} → ${ow}×${oh}] max abs err vs float64 ${maxErr.toFixed(3)} levels`);
      expect(maxErr).toBeLessThanOrEqual(1);
      if (w === h && w === res) expect(Array.from(got.data)).toEqual(Array.from(img.data));
    }
  });

  it('bilinear resize equals Pillow\'s (torchvision Resize on PIL) bit for bit (goldens in test/fixtures/trainer_data)', async () => {
    const cases = JSON.parse(await readFile(join(FIXTURES, 'cases.json'), 'utf8')) as { resize: { src: string; resolution: number; out: string; size: [number, number] }[] };
    for (const c of cases.resize) {
      const src = await readImageFile(join(FIXTURES, c.src));
      const want = await readImageFile(join(FIXTURES, c.out));
      const got = resizeShorterSide(src, c.resolution);
      expect([got.width, got.height], c.out).toEqual(c.size);
      let diff = 0;
      for (let i = 0; i < want.data.length; i++) if (got.data[i] !== want.data[i]) diff++;
      expect(diff, `${c.out}: bytes differing from Pillow`).toBe(0);
    }
  });

  it('random crop + flip bookkeeping on an asymmetric image: crop_top_left, flipped left = res − left, time_ids', () => {
    const res = 20;
    // Wide (40×20: shorter side already res, no resampling) and tall (20×44) images: the crop moves along one axis.
    const seen = { wide: new Set<number>(), tall: new Set<number>(), flips: 0 };
    for (let seed = 0; seed < 200; seed++) {
      for (const [w, h] of [[40, 20], [20, 44]] as const) {
        const rng = new SeededRng(seed);
        const p = prepareImage(coordImage(w, h), { resolution: res, randomFlip: true }, rng);
        // Replay the draws: top, left, flip.
        const replay = new SeededRng(seed);
        const top = nextInt(replay, 0, h - res);
        const left = nextInt(replay, 0, w - res);
        const flip = nextFloat(replay) < 0.5;
        expect(p.flipped).toBe(flip);
        expect(p.cropTopLeft).toEqual([top, flip ? res - left : left]);
        expect(p.timeIds).toEqual([h, w, top, flip ? res - left : left, res, res]);
        expect(p.originalSize).toEqual([h, w]);
        expect(p.shape).toEqual([3, res, res]);
        // Pixel (x, y) of the output must hold the source coordinates it came from.
        for (const [x, y] of [[0, 0], [res - 1, 0], [3, res - 1]]) {
          const srcX = flip ? left + res - 1 - x : left + x;
          const srcY = top + y;
          const at = (c: number) => p.pixels[c * res * res + y * res + x];
          expect([at(0), at(1), at(2)]).toEqual([srcX, srcY, 7].map((v) => Math.fround(2 * Math.fround(v / 255) - 1)));
        }
        if (w > h) seen.wide.add(left);
        else seen.tall.add(top);
        if (flip) seen.flips++;
      }
    }
    // Every crop position of the inclusive range occurs; flips happen about half the time.
    expect(seen.wide.size).toBe(21);
    expect(seen.tall.size).toBe(25);
    expect(seen.flips).toBeGreaterThan(150);
    expect(seen.flips).toBeLessThan(250);
  });

  it('centre crop rounds half to even (Python round) and needs no rng; resize + crop agree with the reference', () => {
    expect(cropTopLeft(20, 45, 20, { center: true })).toEqual([0, 12]); // 12.5 → 12
    expect(cropTopLeft(20, 47, 20, { center: true })).toEqual([0, 14]); // 13.5 → 14
    expect(cropTopLeft(31, 20, 20, { center: true })).toEqual([6, 0]); // 5.5 → 6
    const img = randomRgb(50, 30, 9);
    const p = prepareImage(img, { resolution: 16, centerCrop: true });
    const [oh, ow] = resizedSize(30, 50, 16);
    const want = resizeRef(img, ow, oh);
    expect([oh, ow]).toEqual([16, 26]); // int(16·50/30)
    const left = 5; // (26 − 16) / 2
    expect(p.cropTopLeft).toEqual([0, left]);
    let maxErr = 0;
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 16; y++)
        for (let x = 0; x < 16; x++) {
          const ref = (want[(y * ow + left + x) * 3 + c] / 255) * 2 - 1;
          maxErr = Math.max(maxErr, Math.abs(p.pixels[c * 256 + y * 16 + x] - ref));
        }
    expect(maxErr).toBeLessThanOrEqual(2 / 255 + 1e-6);
    expect(() => prepareImage(img, { resolution: 16 })).toThrow(TransformError);
    expect(() => prepareImage({ ...img, channels: 4 }, { resolution: 16, centerCrop: true })).toThrow(/expected an RGB image/);
  });

  it('Rng: state round-trips, nextInt covers its inclusive range', () => {
    const a = new SeededRng(42);
    for (let i = 0; i < 5; i++) a.nextU32();
    const b = SeededRng.fromState(a.state);
    expect([a.nextU32(), a.nextU32()]).toEqual([b.nextU32(), b.nextU32()]);
    const hits = new Set<number>();
    for (let i = 0; i < 500; i++) hits.add(nextInt(a, -2, 3));
    expect([...hits].sort()).toEqual([-1, -2, 0, 1, 2, 3].sort());
    expect(() => new SeededRng(-1)).toThrow(RangeError);
  });

  it('shuffledIndices: a permutation, reproducible from the seed, every order of 3 about equally often', () => {
    const p = shuffledIndices(50, new SeededRng(3));
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(shuffledIndices(50, new SeededRng(3))).toEqual(p);
    const rng = new SeededRng(9);
    const counts = new Map<string, number>();
    for (let i = 0; i < 6000; i++) {
      const k = shuffledIndices(3, rng).join('');
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    expect(counts.size).toBe(6);
    // 1000 expected each; 5 sigma of a binomial(6000, 1/6) is ±144.
    for (const c of counts.values()) expect(Math.abs(c - 1000)).toBeLessThan(145);
  });
});
