// The CLIP text encoders on the tiny transformers encoders of test/fixtures/tiny_clip (their parity with
// transformers is the tiny_clip golden suite, test/golden/clip.ts): weight loading (prefix-free names, named key
// errors), input checks, and SDXL encodePrompt on the two tiny encoders.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { ClipTextModel } from '../src/text/clip_text_model.js';
import { type ClipTextConfigJson, eosPosition } from '../src/text/clip_config.js';
import { ClipTokenizer } from '../src/text/clip_tokenizer.js';
import { encodePrompt } from '../src/text/encode_prompt.js';
import { StateDictError, type StateDictEntry } from '../src/unet/weights.js';
import { type GoldenFile, openGolden, readJson } from './golden_io.js';
import { testGpu } from './helpers.js';

const DIR = resolve('test/fixtures/tiny_clip');
const COMPONENTS = ['text_encoder', 'text_encoder_2'] as const;
type Component = (typeof COMPONENTS)[number];

let gpu: Gpu;
const opened: GoldenFile[] = [];
const models = new Map<Component, ClipTextModel>();

function skipped(what: string): void {
  console.log(`skipped: ${what}`);
}

beforeAll(async () => {
  gpu = await testGpu();
  console.log(`[fixture] ${DIR}`);
  for (const component of COMPONENTS) {
    const config = readJson<ClipTextConfigJson>(join(DIR, component), 'config.json');
    const weights = await weightsOf(component);
    if (config && weights) models.set(component, await ClipTextModel.load(gpu, config, weights.src));
  }
});

afterAll(async () => {
  for (const m of models.values()) m.dispose();
  for (const f of opened) await f.close();
  await gpu?.destroy();
});

async function open(component: Component, file: string): Promise<GoldenFile | undefined> {
  const f = await openGolden(join(DIR, component), file);
  if (f) opened.push(f);
  return f;
}

async function weightsOf(component: Component): Promise<GoldenFile | undefined> {
  for (const f of ['weights.safetensors', 'model.safetensors', 'model.fp16.safetensors']) {
    const g = await open(component, f);
    if (g) return g;
  }
  return undefined;
}

async function idsOf(io: GoldenFile): Promise<number[][]> {
  const [B, T] = io.shape('input_ids');
  const flat = Array.from(await io.read('input_ids'));
  return Array.from({ length: B }, (_, b) => flat.slice(b * T, (b + 1) * T));
}

describe('CLIP text model: weights and inputs', () => {
  it('loads transformers ≥ 5.6 names (no text_model. prefix) and ignores a position_ids buffer; same outputs', async () => {
    const weights = await weightsOf('text_encoder');
    const config = readJson<ClipTextConfigJson>(join(DIR, 'text_encoder'), 'config.json');
    const io = await open('text_encoder', 'io.safetensors');
    if (!weights || !config || !io) return skipped('prefix-free loading (no text_encoder)');
    const dict = new Map<string, StateDictEntry>();
    for (const k of weights.keys()) dict.set(k.replace(/^text_model\./, ''), { data: await weights.f32(k), shape: weights.shape(k) });
    dict.set('embeddings.position_ids', { data: new Float32Array(77).map((_, i) => i), shape: [1, 77] });
    const flat = await ClipTextModel.load(gpu, config, dict);
    const ids = await idsOf(io);
    const a = flat.forward(ids);
    const ref = new ClipTextModel(gpu, config);
    await ref.loadWeights(weights.src);
    const b = ref.forward(ids);
    expect(Array.from(await a.hidden(-2).toArray())).toEqual(Array.from(await b.hidden(-2).toArray()));
    expect(Array.from(await a.pooled.toArray())).toEqual(Array.from(await b.pooled.toArray()));
    [a, b].forEach((o) => o.release());
    [flat, ref].forEach((m) => m.dispose());
  });

  it('reports missing, unexpected and mis-shaped weights by name, all at once', async () => {
    const weights = await weightsOf('text_encoder');
    const config = readJson<ClipTextConfigJson>(join(DIR, 'text_encoder'), 'config.json');
    if (!weights || !config) return skipped('weight errors (no text_encoder)');
    const dict = new Map<string, StateDictEntry>();
    for (const k of weights.keys()) dict.set(k, { data: await weights.f32(k), shape: weights.shape(k) });
    dict.delete('text_model.final_layer_norm.bias');
    const fc1 = dict.get('text_model.encoder.layers.0.mlp.fc1.bias')!;
    dict.set('text_model.encoder.layers.0.mlp.fc1.bias', { data: fc1.data.subarray(1), shape: [fc1.shape[0] - 1] });
    dict.set('text_model.extra.weight', { data: new Float32Array(2), shape: [2] });
    const model = new ClipTextModel(gpu, config);
    const err = await model.loadWeights(dict).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateDictError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/missing \(1\):\s+text_model\.final_layer_norm\.bias/);
    expect(msg).toMatch(/unexpected \(1\):\s+text_model\.extra\.weight/);
    expect(msg).toMatch(/text_model\.encoder\.layers\.0\.mlp\.fc1\.bias: model \[\d+\], checkpoint \[\d+\]/);
    // A CLIPTextModelWithProjection without text_projection.weight.
    const withProj = new ClipTextModel(gpu, config, { withProjection: true });
    dict.delete('text_model.extra.weight');
    dict.set('text_model.final_layer_norm.bias', { data: new Float32Array(config.hidden_size), shape: [config.hidden_size] });
    dict.set('text_model.encoder.layers.0.mlp.fc1.bias', fc1);
    await expect(withProj.loadWeights(dict)).rejects.toThrow(/missing \(1\):\s+text_projection\.weight/);
    expect(() => withProj.forward([[1, 2]])).toThrow(/not loaded/);
  });

  it("pools at transformers' EOS position: argmax(ids) for the legacy eos_token_id 2 (SDXL configs), else the first eos", () => {
    // SDXL tokenizer_2 rows: bos, content, eos 49407, pad 0 → argmax = the (only) eos. tokenizer rows pad with 49407:
    // argmax returns the first maximum, the real eos.
    expect(eosPosition([49406, 320, 2368, 49407, 0, 0], 2)).toBe(3);
    expect(eosPosition([49406, 320, 2368, 49407, 49407, 49407], 2)).toBe(3);
    expect(eosPosition([998, 5, 999, 999], 999)).toBe(2);
    expect(eosPosition([998, 5, 6], 999)).toBe(0);
  });

  it('rejects ids outside the vocabulary, ragged rows, too many positions and hidden states that do not exist', () => {
    const model = models.get('text_encoder');
    if (!model) return skipped('input checks (text_encoder did not load)');
    const V = model.config.vocabSize;
    expect(() => model.forward([[0, V]])).toThrow(ShapeError);
    expect(() => model.forward([[0, V]])).toThrow(new RegExp(`id ${V} at index 1 is not an integer in 0\\.\\.${V - 1}`));
    expect(() => model.forward([[0, 1], [2]])).toThrow(/row 0 has 2, row 1 has 1/);
    expect(() => model.forward([new Array(model.config.maxPositions + 1).fill(0)])).toThrow(/expected 1\.\.77/);
    expect(() => model.forward([[0, 1]], { hiddenStates: [model.config.layers + 1] })).toThrow(/hidden state \d+ does not exist/);
    const out = model.forward([[0, 1]], { hiddenStates: [0] });
    expect(() => out.hidden(-2)).toThrow(/was not kept \(kept: 0/);
    out.release();
  });
});

/**
 * A CLIP tokenizer cut to the tiny models' 1000-token vocabulary: the 512 byte tokens, the first 486 merges of the real
 * CLIP BPE, then <|startoftext|> 998 and <|endoftext|> 999 (the tiny configs' bos / eos).
 */
function tinyTokenizer(padToken?: string): ClipTokenizer {
  const fixtures = new URL('./fixtures/clip_tokenizer/', import.meta.url).pathname;
  const full = JSON.parse(readFileSync(join(fixtures, 'vocab.json'), 'utf8')) as Record<string, number>;
  const vocab: Record<string, number> = Object.fromEntries(Object.entries(full).filter(([, id]) => id < 998));
  vocab['<|startoftext|>'] = 998;
  vocab['<|endoftext|>'] = 999;
  const merges = readFileSync(join(fixtures, 'merges.txt'), 'utf8').split('\n').slice(0, 1 + 486).join('\n');
  return new ClipTokenizer({ vocab, merges }, { padToken, name: 'tiny CLIP tokenizer' });
}

describe('encodePrompt (SDXL) on the tiny encoders', () => {
  const arr = async (t: { toArray(): Promise<Float32Array> }) => Array.from(await t.toArray());

  function pair() {
    const e1 = models.get('text_encoder');
    const e2 = models.get('text_encoder_2');
    if (!e1 || !e2) return undefined;
    return { tokenizers: [tinyTokenizer(), tinyTokenizer('!')] as [ClipTokenizer, ClipTokenizer], encoders: [e1, e2] as [ClipTextModel, ClipTextModel] };
  }

  /** concat(hidden_states[layer] of both encoders) per row, and encoder 2's text_embeds, computed directly. */
  async function direct(p: NonNullable<ReturnType<typeof pair>>, prompts: string[], layer = -2) {
    const o1 = p.encoders[0].forward(p.tokenizers[0].encodeBatch(prompts), { hiddenStates: [layer] });
    const o2 = p.encoders[1].forward(p.tokenizers[1].encodeBatch(prompts), { hiddenStates: [layer] });
    const [h1, h2] = [await o1.hidden(layer).toArray(), await o2.hidden(layer).toArray()];
    const [D1, D2] = [p.encoders[0].config.hiddenSize, p.encoders[1].config.hiddenSize];
    const rows = h1.length / D1;
    const embeds: number[] = [];
    for (let r = 0; r < rows; r++) embeds.push(...h1.subarray(r * D1, (r + 1) * D1), ...h2.subarray(r * D2, (r + 1) * D2));
    const pooled = await arr(o2.textEmbeds!);
    o1.release();
    o2.release();
    return { embeds, pooled };
  }

  it('prompt embeds = concat of both penultimate hidden states; pooled = text_embeds of encoder 2; no negative without CFG', async () => {
    const p = pair();
    if (!p) return skipped('encodePrompt (needs both tiny encoders)');
    const before = gpu.pool.report().currentBytes;
    const r = encodePrompt(p.tokenizers, p.encoders, 'a photo of a cat');
    const D = p.encoders[0].config.hiddenSize + p.encoders[1].config.hiddenSize;
    expect(r.promptEmbeds.shape).toEqual([1, 77, D]);
    expect(r.pooledPromptEmbeds.shape).toEqual([1, p.encoders[1].config.projectionDim]);
    expect(r.negativePromptEmbeds).toBeUndefined();
    // tokenizer pads with eos (999), tokenizer_2 with '!' (0); both end the content with one eos.
    const [ids1, ids2] = r.ids.prompt;
    expect(ids1[0].slice(0, 2)).toEqual([998, 320]);
    expect(ids1[0].filter((i) => i === 999).length).toBe(77 - 1 - p.tokenizers[0].encodeContent('a photo of a cat').length);
    expect(ids2[0].indexOf(999)).toBe(ids1[0].indexOf(999));
    expect(ids2[0].slice(ids2[0].indexOf(999) + 1).every((i) => i === 0)).toBe(true);
    const want = await direct(p, ['a photo of a cat']);
    expect(await arr(r.promptEmbeds)).toEqual(want.embeds);
    expect(await arr(r.pooledPromptEmbeds)).toEqual(want.pooled);
    r.release();
    expect(gpu.pool.report().currentBytes, 'pool bytes in use after encodePrompt + release()').toBe(before);
  });

  it('CFG without a negative prompt: zeros (force_zeros_for_empty_prompt); with it off, or with negative "", the "" encoding', async () => {
    const p = pair();
    if (!p) return skipped('encodePrompt CFG (needs both tiny encoders)');
    const prompts = ['a cat', 'two dogs!'];
    const zeros = encodePrompt(p.tokenizers, p.encoders, prompts, undefined, { classifierFreeGuidance: true });
    expect(zeros.negativeIsZeros).toBe(true);
    expect(zeros.negativePromptEmbeds!.shape).toEqual(zeros.promptEmbeds.shape);
    expect(zeros.negativePooledPromptEmbeds!.shape).toEqual([2, p.encoders[1].config.projectionDim]);
    expect((await arr(zeros.negativePromptEmbeds!)).every((v) => v === 0)).toBe(true);
    expect((await arr(zeros.negativePooledPromptEmbeds!)).every((v) => v === 0)).toBe(true);
    const want = await direct(p, prompts);
    expect(await arr(zeros.promptEmbeds)).toEqual(want.embeds);
    zeros.release();

    const empty = await direct(p, ['', '']);
    for (const r of [
      encodePrompt(p.tokenizers, p.encoders, prompts, '', {}),
      encodePrompt(p.tokenizers, p.encoders, prompts, undefined, { classifierFreeGuidance: true, forceZerosForEmptyPrompt: false }),
    ]) {
      expect(r.negativeIsZeros).toBe(false);
      expect(await arr(r.negativePromptEmbeds!)).toEqual(empty.embeds);
      expect(await arr(r.negativePooledPromptEmbeds!)).toEqual(empty.pooled);
      expect((await arr(r.negativePromptEmbeds!)).some((v) => v !== 0)).toBe(true);
      r.release();
    }
  });

  it('per-row negative prompts, prompt2, clipSkip, and batch-size errors', async () => {
    const p = pair();
    if (!p) return skipped('encodePrompt options (needs both tiny encoders)');
    const r = encodePrompt(p.tokenizers, p.encoders, ['a cat', 'a dog'], ['blurry', 'dark'], { prompt2: ['a cat', 'a cat'] });
    const neg = await direct(p, ['blurry', 'dark']);
    expect(await arr(r.negativePromptEmbeds!)).toEqual(neg.embeds);
    expect(r.ids.prompt[1][1]).toEqual(p.tokenizers[1].encode('a cat'));
    expect(r.ids.prompt[0][1]).toEqual(p.tokenizers[0].encode('a dog'));
    r.release();
    // clip_skip 1 → hidden_states[−3] (the embeddings for these 2-layer models).
    const skip = encodePrompt(p.tokenizers, p.encoders, 'a cat', undefined, { clipSkip: 1 });
    expect(await arr(skip.promptEmbeds)).toEqual((await direct(p, ['a cat'], -3)).embeds);
    skip.release();
    expect(() => encodePrompt(p.tokenizers, p.encoders, ['a', 'b'], ['x', 'y', 'z'])).toThrow(/negativePrompt has 3 entries, the prompt batch 2/);
    expect(() => encodePrompt(p.tokenizers, [p.encoders[1], p.encoders[0]], 'a')).toThrow(/no text_projection/);
  });
});
