// clip_tokenizer/: the CLIP tokenizer against transformers CLIPTokenizer ids (tokens.json: prompts with case,
// whitespace, accents, CJK, Greek/Cyrillic, emoji, HTML entities, '!' runs, special tokens typed in the text, exact and
// over-long lengths) for both SDXL tokenizers: tokenizer (pad <|endoftext|>) and tokenizer_2 (pad '!'), built from the
// folder's vocab.json and merges.txt. (Options and file handling: test/tokenizer.test.ts.)
import { beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer } from '../../src/text/clip_tokenizer.js';
import { goldenExists, joinPath, readJson } from '../golden_io.js';
import { type GoldenSuite, dtypeOf } from './suite.js';

const NAME = 'clip_tokenizer';
const FILES = ['vocab.json', 'merges.txt', 'tokens.json'];

/** One prompt of tokens.json (also read by test/tokenizer.test.ts). */
export interface TokenizerCase {
  name: string;
  prompt_utf8_hex: string;
  input_ids_1: number[];
  input_ids_2: number[];
  content_ids: number[];
  content_ids_2?: number[];
  truncated: boolean;
}
interface TokensJson {
  checks: { tok1_bos_eos_pad_unk: number[]; tok2_bos_eos_pad_unk: number[]; len_tok1: number };
  prompts: TokenizerCase[];
}

export const tokenizerSuite: GoldenSuite = {
  name: NAME,
  lookedFor: FILES.map((f) => `clip_tokenizer/${f}`),
  present: (root) => FILES.every((f) => goldenExists(joinPath(root, NAME), f)),
  define(root) {
    defineTokenizer(joinPath(root, NAME));
  },
};

export const promptOf = (c: TokenizerCase): string => Buffer.from(c.prompt_utf8_hex, 'hex').toString('utf8');

function defineTokenizer(dir: string): void {
  const golden = readJson<TokensJson>(dir, 'tokens.json')!;
  let tok1: ClipTokenizer;
  let tok2: ClipTokenizer;
  let compared = 0;

  describe(`${NAME}: ClipTokenizer vs transformers CLIPTokenizer (${golden.prompts.length} prompts)`, () => {
    beforeAll(async () => {
      console.log(`[golden ${NAME}] ${dir}`);
      tok1 = await ClipTokenizer.fromFolder(dir);
      // SDXL's tokenizer_2 folder differs only by special_tokens_map.json naming pad_token '!'.
      tok2 = await ClipTokenizer.fromFolder(dir, { padToken: '!' });
    });

    it('special ids: bos, eos, unk; pad (tokenizer) and pad (tokenizer_2); vocabulary size', () => {
      expect([tok1.bosId, tok1.eosId, tok1.padId, tok1.unkId]).toEqual(golden.checks.tok1_bos_eos_pad_unk);
      expect([tok2.bosId, tok2.eosId, tok2.padId, tok2.unkId]).toEqual(golden.checks.tok2_bos_eos_pad_unk);
      expect(tok1.vocabSize).toBe(golden.checks.len_tok1);
      expect(tok1.maxLength).toBe(77);
    });

    for (const c of golden.prompts) {
      it(`${c.name}: input_ids of both tokenizers and the untruncated content ids`, () => {
        const prompt = promptOf(c);
        expect(tok1.encode(prompt), 'tokenizer input_ids').toEqual(c.input_ids_1);
        expect(tok2.encode(prompt), 'tokenizer_2 input_ids').toEqual(c.input_ids_2);
        expect(tok1.encodeContent(prompt), 'content ids').toEqual(c.content_ids);
        expect(tok2.encodeContent(prompt), 'tokenizer_2 content ids').toEqual(c.content_ids_2 ?? c.content_ids);
        expect(c.truncated, 'truncated flag').toBe(c.content_ids.length > 75);
        compared++;
      });
    }

    it('summary', () => {
      // Ids are compared exactly: the worst error of a passing run is 0 differing ids.
      console.log(`[golden ${NAME}] ${dtypeOf(NAME)} ids: ${compared} of ${golden.prompts.length} prompts × 2 tokenizers identical, worst 0 differing ids (tolerance 0)`);
      expect(compared, 'prompts whose ids all matched').toBe(golden.prompts.length);
    });
  });
}
