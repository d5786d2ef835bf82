// CLIP BPE tokenizer as transformers 5.x's CLIPTokenizer runs it (the `tokenizers` backend), which is what diffusers'
// SDXL pipeline calls (spec sdxl.md §7.4, §12):
//   1. special tokens (bos, eos, unk, pad and other added special tokens) are split out of the raw text first; so
//      SDXL's tokenizer_2, whose pad token is '!', turns every '!' of a prompt into id 0 (diffusers#4153);
//   2. each remaining piece: NFC → runs of whitespace become ' ' → lowercase one code point at a time (so a final
//      capital sigma becomes 'σ', not JavaScript's contextual 'ς');
//   3. pre-tokenize with CLIP's regex (letters runs, single digits, punctuation runs, English contractions);
//   4. byte-level: UTF-8 bytes → GPT-2's bytes_to_unicode characters; the last symbol gets '</w>';
//   5. BPE: repeatedly merge the adjacent pair of lowest rank (line order in merges.txt); ids from vocab.json.
// No ftfy and no html.unescape (transformers 5 does neither; OpenAI's original tokenizer does both).
// encode() adds bos / eos, truncates to maxLength (bos + 75 + eos) and pads with the pad token.

export interface ClipTokenizerFiles {
  /** vocab.json: text or parsed. */
  vocab: string | Readonly<Record<string, number>>;
  /** merges.txt text ('#version' header line optional). */
  merges: string;
  /** special_tokens_map.json (text or parsed), when the folder has one. */
  specialTokensMap?: string | object;
  /** tokenizer_config.json (text or parsed), when the folder has one. */
  tokenizerConfig?: string | object;
}

export interface ClipTokenizerOptions {
  /** Overrides the pad token the files name (SDXL tokenizer_2: '!'). */
  padToken?: string;
  /** Overrides model_max_length (default 77). */
  maxLength?: number;
  /** A label for error messages (e.g. the folder). */
  name?: string;
}

export interface EncodeOptions {
  /** Pad with the pad token up to maxLength (default true, as padding='max_length'). */
  padding?: boolean;
  /** Keep at most maxLength − 2 content tokens (default true). */
  truncation?: boolean;
  /** Default: the tokenizer's maxLength (77). */
  maxLength?: number;
}

export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerError';
  }
}

const DEFAULT_BOS = '<|startoftext|>';
const DEFAULT_EOS = '<|endoftext|>';

// Unicode White_Space (what the tokenizers regexes' \s matches); JavaScript's \s differs (it has U+FEFF, lacks U+0085).
const WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_RUN = new RegExp(`[${WS}]+`, 'gu');
// CLIP's pre-tokenizer pattern (special tokens are split out before it runs).
const PRETOKENIZE = new RegExp(`'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${WS}\\p{L}\\p{N}]+`, 'gu');

/** GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 to U+0100 + n in byte order. */
function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : 256 + n++);
  return table;
}
const BYTE_CHARS = bytesToUnicode();
const UTF8 = new TextEncoder();

function parseJson(text: string | object, what: string): unknown {
  if (typeof text !== 'string') return text;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${what}: not valid JSON (${(e as Error).message})`);
  }
}

/** A token entry of special_tokens_map.json / tokenizer_config.json: a string or {content: string}. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export class ClipTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly maxLength: number;
  readonly padToken: string;
  private readonly vocab: Map<string, number>;
  private readonly ranks = new Map<string, number>();
  private readonly specials: Map<string, number>;
  private readonly specialSplit?: RegExp;
  private readonly cache = new Map<string, readonly number[]>();

  constructor(files: ClipTokenizerFiles, opts: ClipTokenizerOptions = {}) {
    const name = opts.name ?? 'CLIP tokenizer';
    const vocabObj = parseJson(files.vocab, `${name}: vocab.json`);
    if (!vocabObj || typeof vocabObj !== 'object' || Array.isArray(vocabObj))
      throw new TokenizerError(`${name}: vocab.json must be an object token → id, got ${Array.isArray(vocabObj) ? 'an array' : typeof vocabObj}`);
    this.vocab = new Map(Object.entries(vocabObj as Record<string, number>));
    for (const [tok, id] of this.vocab)
      if (!Number.isInteger(id) || id < 0) throw new TokenizerError(`${name}: vocab.json maps '${tok}' to ${JSON.stringify(id)}, expected a non-negative integer id`);

    const lines = files.merges.split(/\r?\n/);
    let rank = 0;
    lines.forEach((line, i) => {
      if (!line || (i === 0 && line.startsWith('#version'))) return;
      const parts = line.split(' ');
      if (parts.length !== 2) throw new TokenizerError(`${name}: merges.txt line ${i + 1} '${line}' is not 'a b'`);
      const key = `${parts[0]} ${parts[1]}`;
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
      rank++;
    });
    if (rank === 0) throw new TokenizerError(`${name}: merges.txt holds no merges`);

    const map = (files.specialTokensMap ? parseJson(files.specialTokensMap, `${name}: special_tokens_map.json`) : {}) as Record<string, unknown>;
    const config = (files.tokenizerConfig ? parseJson(files.tokenizerConfig, `${name}: tokenizer_config.json`) : {}) as Record<string, unknown>;
    const pick = (key: string, fallback: string) => tokenContent(map[key]) ?? tokenContent(config[key]) ?? fallback;
    const bos = pick('bos_token', DEFAULT_BOS);
    const eos = pick('eos_token', DEFAULT_EOS);
    const unk = pick('unk_token', DEFAULT_EOS);
    this.padToken = opts.padToken ?? pick('pad_token', eos);
    const idOf = (tok: string, role: string) => {
      const id = this.vocab.get(tok);
      if (id === undefined) throw new TokenizerError(`${name}: ${role} token ${JSON.stringify(tok)} is not in vocab.json`);
      return id;
    };
    this.bosId = idOf(bos, 'bos');
    this.eosId = idOf(eos, 'eos');
    this.unkId = idOf(unk, 'unk');
    this.padId = idOf(this.padToken, 'pad');

    // Special tokens: the four roles plus tokenizer_config's added special tokens; matched in the raw text.
    this.specials = new Map([bos, eos, unk, this.padToken].map((t) => [t, this.vocab.get(t)!]));
    const added = config.added_tokens_decoder;
    if (added && typeof added === 'object')
      for (const [id, entry] of Object.entries(added as Record<string, { content?: string; special?: boolean }>))
        if (entry?.special && typeof entry.content === 'string') this.specials.set(entry.content, Number(id));
    const alternatives = [...this.specials.keys()].filter((t) => t.length > 0).sort((a, b) => b.length - a.length);
    if (alternatives.length) this.specialSplit = new RegExp(alternatives.map(escapeRegex).join('|'), 'gu');

    const maxLength = opts.maxLength ?? (typeof config.model_max_length === 'number' && config.model_max_length < 1e6 ? config.model_max_length : 77);
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new TokenizerError(`${name}: maxLength must be an integer ≥ 2 (bos + eos), got ${maxLength}`);
    this.maxLength = maxLength;
  }

  /** Reads vocab.json, merges.txt and (when present) special_tokens_map.json / tokenizer_config.json of a folder (Node). */
  static async fromFolder(dir: string, opts: ClipTokenizerOptions = {}): Promise<ClipTokenizer> {
    const { readFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const read = (f: string) => readFile(join(dir, f), 'utf8');
    const optional = (f: string) => read(f).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
    const required = (f: string) =>
      read(f).catch((e: NodeJS.ErrnoException) =>
        Promise.reject(e.code === 'ENOENT' ? new TokenizerError(`${dir}: no ${f} (a CLIP tokenizer folder holds vocab.json and merges.txt)`) : e),
      );
    const [vocab, merges, specialTokensMap, tokenizerConfig] = await Promise.all([
      required('vocab.json'),
      required('merges.txt'),
      optional('special_tokens_map.json'),
      optional('tokenizer_config.json'),
    ]);
    return new ClipTokenizer({ vocab, merges, specialTokensMap, tokenizerConfig }, { name: dir, ...opts });
  }

  get vocabSize(): number {
    return this.vocab.size;
  }

  /** Content ids of `text`: no bos / eos, no truncation. */
  encodeContent(text: string): number[] {
    const ids: number[] = [];
    for (const piece of this.splitSpecial(text)) {
      if (piece.special !== undefined) {
        ids.push(piece.special);
        continue;
      }
      for (const word of this.pretokenize(piece.text)) ids.push(...this.bpe(word));
    }
    return ids;
  }

  /** The token strings of encodeContent (for inspection). */
  tokenize(text: string): string[] {
    const byId = new Map<number, string>();
    for (const [t, id] of this.vocab) byId.set(id, t);
    return this.encodeContent(text).map((id) => byId.get(id) ?? '<unk>');
  }

  /** [bos, content…, eos, pad…] as tokenizer(text, padding='max_length', max_length=77, truncation=True). */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TokenizerError(`encode: expected a string prompt, got ${typeof text}`);
    const maxLength = opts.maxLength ?? this.maxLength;
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new TokenizerError(`encode: maxLength must be an integer ≥ 2, got ${maxLength}`);
    let content = this.encodeContent(text);
    if (opts.truncation ?? true) content = content.slice(0, maxLength - 2);
    const ids = [this.bosId, ...content, this.eosId];
    if (opts.padding ?? true) while (ids.length < maxLength) ids.push(this.padId);
    return ids;
  }

  encodeBatch(texts: readonly string[], opts: EncodeOptions = {}): number[][] {
    return texts.map((t) => this.encode(t, opts));
  }

  private *splitSpecial(text: string): Generator<{ text: string; special?: number }> {
    if (!this.specialSplit) {
      yield { text };
      return;
    }
    let last = 0;
    for (const m of text.matchAll(this.specialSplit)) {
      if (m.index! > last) yield { text: text.slice(last, m.index) };
      yield { text: m[0], special: this.specials.get(m[0])! };
      last = m.index! + m[0].length;
    }
    if (last < text.length) yield { text: text.slice(last) };
  }

  /** Normalize (NFC, whitespace runs → ' ', per-code-point lowercase) and split into words. */
  private pretokenize(text: string): string[] {
    const collapsed = text.normalize('NFC').replace(WHITESPACE_RUN, ' ');
    let lower = '';
    for (const ch of collapsed) lower += ch.toLowerCase();
    return lower.match(PRETOKENIZE) ?? [];
  }

  /** Byte-level BPE of one word; ids (cached). */
  private bpe(word: string): readonly number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    const symbols = Array.from(UTF8.encode(word), (b) => BYTE_CHARS[b]);
    symbols[symbols.length - 1] += '</w>';
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const r = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      // Merge every occurrence of the best pair, left to right.
      const a = symbols[best];
      const b = symbols[best + 1];
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
          merged.push(a + b);
          i++;
        } else merged.push(symbols[i]);
      }
      symbols.splice(0, symbols.length, ...merged);
    }
    const ids = symbols.map((s) => this.vocab.get(s) ?? this.unkId);
    if (this.cache.size > 20000) this.cache.clear();
    this.cache.set(word, ids);
    return ids;
  }
}
