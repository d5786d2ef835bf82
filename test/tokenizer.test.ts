// The CLIP tokenizer's options and files on test/fixtures/clip_tokenizer (its ids against transformers
// CLIPTokenizer are the clip_tokenizer golden suite, test/golden/tokenizer.ts): padding / truncation switches,
// pad_token from special_tokens_map.json / tokenizer_config.json, and errors naming the file or token.
import { mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer, TokenizerError } from '../src/text/clip_tokenizer.js';
import golden from './fixtures/clip_tokenizer/tokens.json' with { type: 'json' };
import { type TokenizerCase, promptOf } from './golden/tokenizer.js';

const DIR = new URL('./fixtures/clip_tokenizer/', import.meta.url).pathname;

const cases = golden.prompts as TokenizerCase[];

let tok1: ClipTokenizer;
beforeAll(async () => {
  tok1 = await ClipTokenizer.fromFolder(DIR);
});

describe('ClipTokenizer options', () => {
  it('padding and truncation can be turned off', () => {
    const prompt = promptOf(cases.find((c) => c.name === 'long')!);
    const content = tok1.encodeContent(prompt);
    expect(content.length).toBeGreaterThan(75);
    expect(tok1.encode(prompt, { truncation: false, padding: false })).toEqual([49406, ...content, 49407]);
    expect(tok1.encode('a cat', { padding: false })).toEqual([49406, ...tok1.encodeContent('a cat'), 49407]);
    const short = tok1.encode(prompt, { maxLength: 10 });
    expect(short).toEqual([49406, ...content.slice(0, 8), 49407]);
  });
});

describe('ClipTokenizer files', () => {
  it('reads pad_token from special_tokens_map.json ({content} form) and tokenizer_config.json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'clip-tok-'));
    try {
      for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(DIR, f), join(dir, f));
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ pad_token: '<|endoftext|>', model_max_length: 77 }));
      writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify({ pad_token: { content: '!', lstrip: false } }));
      const t = await ClipTokenizer.fromFolder(dir);
      expect(t.padId).toBe(0);
      expect(t.padToken).toBe('!');
      rmSync(join(dir, 'special_tokens_map.json'));
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ pad_token: '!', model_max_length: 12 }));
      const u = await ClipTokenizer.fromFolder(dir);
      expect(u.padId).toBe(0);
      expect(u.encode('a cat')).toEqual([49406, 320, 2368, 49407, 0, 0, 0, 0, 0, 0, 0, 0]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('errors name the file or token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'clip-tok-'));
    try {
      copyFileSync(join(DIR, 'vocab.json'), join(dir, 'vocab.json'));
      await expect(ClipTokenizer.fromFolder(dir)).rejects.toThrow(/no merges\.txt/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const vocab = { a: 0, b: 1, 'a</w>': 2, 'b</w>': 3, 'ab</w>': 4, '<|startoftext|>': 5, '<|endoftext|>': 6 };
    expect(() => new ClipTokenizer({ vocab, merges: 'a b</w>' }, { padToken: '!' })).toThrow(TokenizerError);
    expect(() => new ClipTokenizer({ vocab, merges: 'a b</w>' }, { padToken: '!' })).toThrow(/pad token "!" is not in vocab\.json/);
    expect(() => new ClipTokenizer({ vocab, merges: 'a b c' })).toThrow(/merges\.txt line 1 'a b c' is not 'a b'/);
    expect(() => new ClipTokenizer({ vocab: '[1]', merges: 'a b' })).toThrow(/vocab\.json must be an object/);
    // A toy vocabulary: 'ab' merges into one token, 'ba' stays two, an unknown byte maps to unk.
    const t = new ClipTokenizer({ vocab, merges: '#version: 0.2\na b</w>\n' });
    expect(t.encodeContent('AB ba c')).toEqual([4, 1, 2, 6]);
    expect(() => t.encode('x', { maxLength: 1 })).toThrow(/maxLength must be an integer ≥ 2, got 1/);
  });
});
