// SDXL prompt conditioning (diffusers StableDiffusionXLPipeline.encode_prompt; spec sdxl.md §7.3):
//   per (tokenizer, encoder) pair: ids = tokenizer(prompt, padding 'max_length', 77, truncation);
//   embeds_k = encoder(ids).hidden_states[−2] (or [−(clipSkip + 2)]);  pooled = encoder 2's text_embeds
//   prompt_embeds = concat(embeds_1, embeds_2, −1)   [B, 77, 768 + 1280 = 2048]  (CLIP-L first)
// Classifier-free guidance: with no negative prompt and force_zeros_for_empty_prompt (SDXL's model_index.json: true)
// the negative embeddings are zeros; otherwise the negative prompt (default "") is encoded like the prompt. An
// explicit negative prompt "" is encoded, not zeroed. The UNet batch order is [negative, positive].
import { ShapeError } from '../../runtime/errors.js';
import { concat } from '../kernels/resample.js';
import { Tensor } from '../tensor.js';
import type { ClipTextModel, ClipTextOutput } from './clip_text_model.js';
import type { ClipTokenizer } from './clip_tokenizer.js';

export interface EncodePromptOptions {
  /** Prompt for tokenizer_2 / text_encoder_2 (default: the prompt). */
  prompt2?: string | readonly string[];
  /** Negative prompt for encoder 2 (default: the negative prompt). */
  negativePrompt2?: string | readonly string[];
  /**
   * Produce negative embeddings (default: whether a negative prompt was given). TCD runs without guidance (no
   * negative batch); pass true for CFG with the zeros rule.
   */
  classifierFreeGuidance?: boolean;
  /** model_index.json force_zeros_for_empty_prompt (default true, as SDXL base). */
  forceZerosForEmptyPrompt?: boolean;
  /** diffusers clip_skip: take hidden_states[−(clipSkip + 2)] (default: none → [−2]). */
  clipSkip?: number;
}

export interface EncodedPrompt {
  /** encoder_hidden_states [B, T, hidden_1 + hidden_2] ([B, 77, 2048] for SDXL). */
  promptEmbeds: Tensor;
  /** text_embeds [B, projection_dim] ([B, 1280]). */
  pooledPromptEmbeds: Tensor;
  negativePromptEmbeds?: Tensor;
  negativePooledPromptEmbeds?: Tensor;
  /** The token ids fed to each encoder (per row). */
  ids: { prompt: [number[][], number[][]]; negative?: [number[][], number[][]] };
  /** Whether the negative embeddings are the force_zeros_for_empty_prompt zeros. */
  negativeIsZeros: boolean;
  release(): void;
}

function asBatch(p: string | readonly string[], what: string, B?: number): string[] {
  const list = typeof p === 'string' ? [p] : [...p];
  if (B !== undefined) {
    if (list.length === 1 && B > 1) return new Array<string>(B).fill(list[0]);
    if (list.length !== B) throw new ShapeError(`encodePrompt: ${what} has ${list.length} entries, the prompt batch ${B}`);
  }
  if (list.length < 1) throw new ShapeError(`encodePrompt: ${what} is empty`);
  for (const s of list) if (typeof s !== 'string') throw new ShapeError(`encodePrompt: ${what} entries must be strings, got ${typeof s}`);
  return list;
}

/** Runs one prompt batch through both pairs: the concatenated hidden states and encoder 2's text_embeds. */
function encodePair(
  tokenizers: readonly [ClipTokenizer, ClipTokenizer],
  encoders: readonly [ClipTextModel, ClipTextModel],
  prompts: readonly [string[], string[]],
  layer: number,
): { embeds: Tensor; pooled: Tensor; ids: [number[][], number[][]] } {
  const ids: [number[][], number[][]] = [tokenizers[0].encodeBatch(prompts[0]), tokenizers[1].encodeBatch(prompts[1])];
  const out1 = encoders[0].forward(ids[0], { hiddenStates: [layer] });
  let out2: ClipTextOutput | undefined;
  try {
    out2 = encoders[1].forward(ids[1], { hiddenStates: [layer] });
    if (!out2.textEmbeds) throw new ShapeError('encodePrompt: encoders[1] has no text_projection (SDXL text_encoder_2 is CLIPTextModelWithProjection)');
    const embeds = concat(out1.hidden(layer), out2.hidden(layer), 2);
    // The pooled output outlives the forward output: keep a view of it.
    const pooled = out2.textEmbeds.reshape(out2.textEmbeds.shape);
    return { embeds, pooled, ids };
  } finally {
    out1.release();
    out2?.release();
  }
}

/**
 * SDXL encode_prompt. tokenizers / encoders: [CLIP-L, OpenCLIP bigG] (tokenizer, tokenizer_2; text_encoder,
 * text_encoder_2). prompt: one string or a batch; negativePrompt: one string (repeated) or one per prompt.
 */
export function encodePrompt(
  tokenizers: readonly [ClipTokenizer, ClipTokenizer],
  encoders: readonly [ClipTextModel, ClipTextModel],
  prompt: string | readonly string[],
  negativePrompt?: string | readonly string[],
  opts: EncodePromptOptions = {},
): EncodedPrompt {
  const prompts = asBatch(prompt, 'prompt');
  const B = prompts.length;
  const prompts2 = opts.prompt2 === undefined ? prompts : asBatch(opts.prompt2, 'prompt2', B);
  const clipSkip = opts.clipSkip ?? 0;
  if (!Number.isInteger(clipSkip) || clipSkip < 0) throw new ShapeError(`encodePrompt: clipSkip must be a non-negative integer, got ${clipSkip}`);
  const layer = -(clipSkip + 2);

  const pos = encodePair(tokenizers, encoders, [prompts, prompts2], layer);
  const result: EncodedPrompt = {
    promptEmbeds: pos.embeds,
    pooledPromptEmbeds: pos.pooled,
    ids: { prompt: pos.ids },
    negativeIsZeros: false,
    release() {
      for (const t of [this.promptEmbeds, this.pooledPromptEmbeds, this.negativePromptEmbeds, this.negativePooledPromptEmbeds]) t?.release();
    },
  };
  const cfg = opts.classifierFreeGuidance ?? negativePrompt !== undefined;
  if (!cfg) return result;
  try {
    if (negativePrompt === undefined && (opts.forceZerosForEmptyPrompt ?? true)) {
      result.negativePromptEmbeds = Tensor.zeros(pos.embeds.gpu, pos.embeds.shape, 'f32', 'negative_prompt_embeds');
      result.negativePooledPromptEmbeds = Tensor.zeros(pos.pooled.gpu, pos.pooled.shape, 'f32', 'negative_pooled_prompt_embeds');
      result.negativeIsZeros = true;
      return result;
    }
    const neg = asBatch(negativePrompt ?? '', 'negativePrompt', B);
    const neg2 = opts.negativePrompt2 === undefined ? neg : asBatch(opts.negativePrompt2, 'negativePrompt2', B);
    const n = encodePair(tokenizers, encoders, [neg, neg2], layer);
    result.negativePromptEmbeds = n.embeds;
    result.negativePooledPromptEmbeds = n.pooled;
    result.ids.negative = n.ids;
    return result;
  } catch (e) {
    result.release();
    throw e;
  }
}
