// The emoji dataset (src/datasets/emoji/): captions, split, compositing and the exported folders, on a 5-record
// excerpt of emoji-datasource-google@16.0.0 and its real PNGs (test/fixtures/emoji/SOURCE.txt).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { EMOJI_CATEGORIES, EmojiCatalogError, buildEmojiCatalog, emojiCaption, skinToneNames } from '../src/datasets/emoji/catalog.js';
import { compositeOver } from '../src/datasets/emoji/image.js';
import { exportEmojiDataset, loadEmojiImage, loadEmojiSplit, packEmojiSplit, readEmojiCatalog } from '../src/datasets/emoji/files.js';
import { decodePng } from '../src/pipeline/png.js';

const FIX = 'test/fixtures/emoji';
const json = async () => JSON.parse(await readFile(`${FIX}/emoji.json`, 'utf8'));

describe('emoji catalogue', () => {
  it('captions: name, short names, subcategory, category, skin tones; lowercase, duplicates dropped', async () => {
    const items = buildEmojiCatalog(await json());
    const byId = new Map(items.map((i) => [i.id, i]));
    expect(items.map((i) => i.id)).toEqual(['1F600', '1F91D', '1FAF1-1F3FB-200D-1FAF2-1F3FF', '1F385', '1F385-1F3FD', '1F34E', '1F1EF-1F1F5']);
    expect(byId.get('1F600')!.caption).toBe('grinning face, grinning, face smiling, smileys & emotion');
    expect(byId.get('1F385-1F3FD')!.caption).toBe('father christmas, santa, person fantasy, people & body, medium skin tone');
    expect(byId.get('1FAF1-1F3FB-200D-1FAF2-1F3FF')!.caption).toBe('handshake, hands, people & body, light skin tone, dark skin tone');
    // short names with '_' read as words; a short name equal to the name is not repeated
    expect(emojiCaption({ name: 'RED APPLE', short_names: ['apple', 'red_apple'], subcategory: 'food-fruit', category: 'Food & Drink' })).toBe(
      'red apple, apple, food fruit, food & drink',
    );
    expect(emojiCaption({ name: 'X', short_names: [], subcategory: 's', category: 'C' }, ['dark', 'dark'])).toBe('x, s, c, dark skin tone');
    expect(byId.get('1F1EF-1F1F5')!.categoryIndex).toBe(EMOJI_CATEGORIES.indexOf('Flags'));
    expect(byId.get('1F385-1F3FD')!.image).toBe('1f385-1f3fd.png');
  });

  it('split: by base emoji (variants follow their base), ⌈fraction·n⌉ per category, fixed by the seed', async () => {
    const data = await json();
    const items = buildEmojiCatalog(data, { heldoutFraction: 0.1 });
    for (const it of items) expect(it.split, it.id).toBe(items.find((b) => b.id === it.baseId)!.split);
    // People & Body has 2 base emoji: ⌈0.2⌉ = 1 held out; every other category has one, held out.
    const heldBases = new Set(items.filter((i) => i.split === 'heldout').map((i) => i.baseId));
    expect(heldBases.size).toBe(4);
    expect(['1F385', '1F91D'].filter((b) => heldBases.has(b)).length).toBe(1);
    expect(buildEmojiCatalog(data, { heldoutFraction: 0 }).every((i) => i.split === 'train')).toBe(true);
    expect(buildEmojiCatalog(data).map((i) => i.split)).toEqual(items.map((i) => i.split));
    // Some seed puts the other People & Body emoji in the held-out set: the seed is really used.
    const flips = [1, 2, 3, 4, 5, 6, 7, 8].some((seed) => buildEmojiCatalog(data, { seed }).find((i) => i.id === '1F385')!.split !== items.find((i) => i.id === '1F385')!.split);
    expect(flips).toBe(true);
  });

  it('bad input names what was expected', async () => {
    expect(() => buildEmojiCatalog({})).toThrow(EmojiCatalogError);
    expect(() => buildEmojiCatalog([{ unified: '1F600' }])).toThrow(/'image' must be a string/);
    const data = await json();
    data[0].category = 'Weather';
    expect(() => buildEmojiCatalog(data)).toThrow(/unknown category 'Weather'/);
    expect(() => skinToneNames('1F3FB-1F600')).toThrow(/not a Fitzpatrick modifier/);
    expect(() => buildEmojiCatalog(data, { heldoutFraction: 1 })).toThrow(/heldoutFraction/);
  });
});

describe('emoji images', () => {
  it('alpha compositing over the background, checked per pixel on a real PNG', async () => {
    const rgba = decodePng(new Uint8Array(await readFile(`${FIX}/img/google/64/1f385.png`)));
    expect([rgba.width, rgba.height, rgba.channels]).toEqual([64, 64, 4]);
    const bg = [10, 200, 255] as const;
    const out = compositeOver(rgba, bg);
    expect(out.channels).toBe(3);
    let transparent = 0;
    let opaque = 0;
    for (let p = 0; p < 64 * 64; p++) {
      const a = rgba.data[4 * p + 3];
      if (a === 0) transparent++;
      if (a === 255) opaque++;
      for (let c = 0; c < 3; c++) {
        const want = (a * rgba.data[4 * p + c] + (255 - a) * bg[c]) / 255; // float64, integer alpha form
        expect(Math.abs(out.data[3 * p + c] - want)).toBeLessThanOrEqual(0.5 + 1e-9);
        if (a === 0) expect(out.data[3 * p + c]).toBe(bg[c]);
        if (a === 255) expect(out.data[3 * p + c]).toBe(rgba.data[4 * p + c]);
      }
    }
    // The emoji has a transparent surround and an opaque body: both branches were exercised.
    expect(transparent).toBeGreaterThan(100);
    expect(opaque).toBeGreaterThan(100);
    expect(() => compositeOver({ ...rgba, data: rgba.data.slice(0, 64 * 64 * 2), channels: 2 })).toThrow(/expected 3 \(RGB\) or 4/);
  });

  it('exports train / held-out folders (png + txt + metadata.jsonl) that load back', async () => {
    const out = await mkdtemp(`${tmpdir()}/emoji-export-`);
    try {
      const s = await exportEmojiDataset(FIX, out, { heldoutFraction: 0.1 });
      const items = await readEmojiCatalog(FIX);
      expect(s.train + s.heldout).toBe(items.length);
      const info = JSON.parse(await readFile(`${out}/dataset.json`, 'utf8'));
      expect(info.attribution).toMatch(/Apache License 2\.0/);
      for (const split of ['train', 'heldout'] as const) {
        const mine = items.filter((i) => i.split === split);
        const arr = await loadEmojiSplit(`${out}/${split}`);
        expect(arr.shape).toEqual([mine.length, 3, 64, 64]);
        expect(arr.captions).toEqual(mine.map((i) => i.caption));
        expect(arr.categories).toEqual(mine.map((i) => i.categoryIndex));
        for (const [n, it] of mine.entries()) {
          expect(await readFile(`${out}/${split}/${arr.files[n]}`.replace(/\.png$/, '.txt'), 'utf8')).toBe(it.caption);
          const img = await loadEmojiImage(FIX, it);
          // [-1, 1] value = 2·byte/255 − 1 of the composited image, channel-major.
          for (const p of [0, 2080, 4095]) for (let c = 0; c < 3; c++)
            expect(arr.images[n * 3 * 4096 + c * 4096 + p]).toBeCloseTo((2 * img.data[3 * p + c]) / 255 - 1, 6);
        }
        expect(Math.min(...arr.images)).toBeGreaterThanOrEqual(-1);
        expect(Math.max(...arr.images)).toBeLessThanOrEqual(1);
      }
      // The compact form (raw bytes) loads to the very same arrays.
      await packEmojiSplit(`${out}/train`, `${out}/packed/train`);
      const a = await loadEmojiSplit(`${out}/train`);
      const b = await loadEmojiSplit(`${out}/packed/train`);
      expect(b.shape).toEqual(a.shape);
      expect(b.captions).toEqual(a.captions);
      expect(Array.from(b.images).every((v, i) => v === a.images[i])).toBe(true);
      expect((await loadEmojiSplit(`${out}/packed/train`, 1)).shape[0]).toBe(1);
      await expect(loadEmojiSplit(`${out}/nope`)).rejects.toThrow(/metadata\.jsonl/);
      await expect(readEmojiCatalog(`${out}/nope`)).rejects.toThrow(/scripts\/emoji\/fetch\.mjs/);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
