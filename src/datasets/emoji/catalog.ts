// The emoji catalogue of the npm package `emoji-datasource-google` (emoji.json): one item per image, base emoji and
// skin-tone variants, each with a caption, a category label and its train / held-out split. Pure data: no files are
// read here (src/datasets/emoji/files.ts does that in Node).
//
// Caption format (lowercase, ", " between fields, fields that repeat an earlier one dropped):
//   <name>, <short name 1>, <short name 2>, …, <subcategory>, <category>[, <tone> skin tone[, <tone> skin tone]]
// with '_' in short names and '-' in subcategories read as spaces, e.g.
//   "father christmas, santa, person fantasy, people & body, medium skin tone"
//
// Split: by *base* emoji, so every skin-tone variant of a held-out emoji is held out with it. The variants are the
// same drawing recoloured; one of them in training would make its held-out siblings near-duplicates of training
// images and inflate every held-out metric (Fréchet distance, caption classifier accuracy). Within each category the
// base emoji are ordered by a seeded hash of their code point sequence and the first ⌈fraction · n⌉ are held out, so
// every category is represented in both splits and the split does not change when emoji are added elsewhere.

export type EmojiSplit = 'train' | 'heldout';

/** One emoji.json record (the fields this module reads). */
export interface EmojiJsonEntry {
  name: string | null;
  unified: string;
  image: string;
  short_name: string;
  short_names: string[];
  category: string;
  subcategory: string;
  sort_order: number;
  has_img_google: boolean;
  skin_variations?: Record<string, { unified: string; image: string; has_img_google: boolean }>;
}

export interface EmojiItem {
  /** Code points of this image, e.g. '1F385-1F3FD' (unique; also the exported file stem, lowercased). */
  id: string;
  /** Code points of the base emoji (equal to id for a base emoji): the split unit. */
  baseId: string;
  /** File name under img/google/64/. */
  image: string;
  caption: string;
  category: string;
  /** Index of category in EMOJI_CATEGORIES. */
  categoryIndex: number;
  subcategory: string;
  /** Skin tone names of a variant ('medium', 'light' …), empty for a base emoji. */
  skinTones: string[];
  split: EmojiSplit;
}

/** The ten categories of emoji-datasource 16 in emoji.json's order of first appearance by sort_order. */
export const EMOJI_CATEGORIES = [
  'Smileys & Emotion',
  'People & Body',
  'Component',
  'Animals & Nature',
  'Food & Drink',
  'Travel & Places',
  'Activities',
  'Objects',
  'Symbols',
  'Flags',
] as const;

/** Fitzpatrick modifiers (Unicode names without "emoji modifier fitzpatrick type"). */
export const SKIN_TONES: Readonly<Record<string, string>> = {
  '1F3FB': 'light',
  '1F3FC': 'medium-light',
  '1F3FD': 'medium',
  '1F3FE': 'medium-dark',
  '1F3FF': 'dark',
};

export interface CatalogOptions {
  /** Fraction of base emoji per category held out (default 0.1). */
  heldoutFraction?: number;
  /** Seed of the split hash (default 0). Changing it gives another, equally fixed split. */
  seed?: number;
}

export class EmojiCatalogError extends Error {
  constructor(message: string) {
    super(`emoji.json: ${message}`);
    this.name = 'EmojiCatalogError';
  }
}

/** Skin tone names of a skin_variations key ('1F3FB' or '1F3FB-1F3FF' for two people). */
export function skinToneNames(key: string): string[] {
  return key.split('-').map((cp) => {
    const tone = SKIN_TONES[cp.toUpperCase()];
    if (!tone) throw new EmojiCatalogError(`skin variation key '${key}': '${cp}' is not a Fitzpatrick modifier (1F3FB … 1F3FF)`);
    return tone;
  });
}

/** The caption of an emoji (format in the header comment). */
export function emojiCaption(e: Pick<EmojiJsonEntry, 'name' | 'short_names' | 'subcategory' | 'category'>, skinTones: readonly string[] = []): string {
  const fields: string[] = [];
  const push = (s: string) => {
    const f = s.toLowerCase().replace(/\s+/g, ' ').trim();
    if (f && !fields.includes(f)) fields.push(f);
  };
  if (e.name) push(e.name);
  for (const s of e.short_names) push(s.replace(/_/g, ' '));
  push(e.subcategory.replace(/-/g, ' '));
  push(e.category);
  // Two people of the same tone read as one tone.
  for (const t of [...new Set(skinTones)]) fields.push(`${t} skin tone`);
  return fields.join(', ');
}

/** FNV-1a 32-bit of `seed:text` with murmur3's finaliser (FNV alone barely mixes its last bytes), in [0, 1). */
export function splitHash(text: string, seed: number): number {
  let h = 0x811c9dc5;
  const s = `${seed}:${text}`;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

function checkEntry(e: unknown, i: number): EmojiJsonEntry {
  const o = e as Record<string, unknown>;
  const want = (key: string, type: string) => {
    const v = o?.[key];
    const ok = type === 'array' ? Array.isArray(v) : typeof v === type;
    if (!ok) throw new EmojiCatalogError(`entry ${i} (${JSON.stringify(o?.unified ?? o?.name ?? '?')}): '${key}' must be ${type === 'array' ? 'an array' : `a ${type}`}, got ${JSON.stringify(v)}`);
  };
  for (const k of ['unified', 'image', 'category', 'subcategory']) want(k, 'string');
  want('short_names', 'array');
  want('sort_order', 'number');
  if (o.name !== null) want('name', 'string');
  return o as unknown as EmojiJsonEntry;
}

/**
 * Items of every emoji and skin-tone variant that has a Google image, in sort_order (variants after their base, in
 * modifier order), with captions, categories and the split.
 */
export function buildEmojiCatalog(json: unknown, opts: CatalogOptions = {}): EmojiItem[] {
  if (!Array.isArray(json)) throw new EmojiCatalogError(`expected an array of emoji records, got ${json === null ? 'null' : typeof json}`);
  const fraction = opts.heldoutFraction ?? 0.1;
  if (!(fraction >= 0 && fraction < 1)) throw new EmojiCatalogError(`heldoutFraction must be in [0, 1), got ${fraction}`);
  const seed = opts.seed ?? 0;
  const entries = json.map(checkEntry).filter((e) => e.has_img_google !== false);
  entries.sort((a, b) => a.sort_order - b.sort_order);
  for (const e of entries)
    if (!(EMOJI_CATEGORIES as readonly string[]).includes(e.category))
      throw new EmojiCatalogError(`'${e.unified}': unknown category '${e.category}' (expected one of ${EMOJI_CATEGORIES.join(', ')})`);

  // Held-out base emoji: per category, the lowest hashes.
  const heldout = new Set<string>();
  for (const cat of EMOJI_CATEGORIES) {
    const ids = entries.filter((e) => e.category === cat).map((e) => e.unified);
    ids.sort((a, b) => splitHash(a, seed) - splitHash(b, seed) || (a < b ? -1 : 1));
    for (const id of ids.slice(0, Math.ceil(fraction * ids.length))) heldout.add(id);
  }

  const items: EmojiItem[] = [];
  const seen = new Set<string>();
  const add = (item: EmojiItem) => {
    if (seen.has(item.id)) throw new EmojiCatalogError(`'${item.id}' appears twice`);
    seen.add(item.id);
    items.push(item);
  };
  for (const e of entries) {
    const base = {
      baseId: e.unified,
      category: e.category,
      categoryIndex: (EMOJI_CATEGORIES as readonly string[]).indexOf(e.category),
      subcategory: e.subcategory,
      split: (heldout.has(e.unified) ? 'heldout' : 'train') as EmojiSplit,
    };
    add({ ...base, id: e.unified, image: e.image, caption: emojiCaption(e), skinTones: [] });
    for (const [key, v] of Object.entries(e.skin_variations ?? {})) {
      if (v.has_img_google === false) continue;
      const tones = skinToneNames(key);
      add({ ...base, id: v.unified, image: v.image, caption: emojiCaption(e, tones), skinTones: tones });
    }
  }
  return items;
}
