// The emoji teacher: an SDXL-shaped diffusers folder small enough to train from scratch on one GPU in hours and to
// sample on lavapipe in seconds. Every part is the SDXL class with smaller numbers, so this library's
// TcdSdxlPipeline and diffusers' StableDiffusionXLPipeline.from_pretrained both read the folder unchanged.
//
//   image 64×64×3 ──VAE (3 levels, ×4 down)──▶ latent 16×16×4 ──UNet (16 → 8 → 4)──▶ ε
//
// Latent 16×16×4 (12× fewer numbers than pixels) rather than SDXL's ×8 (8×8×4, 48×): emoji are flat colour areas
// with thin outlines, eyes and flag details one or two pixels wide; at 8×8 one latent cell covers a whole eye and the
// UNet would have only 8 → 4 → 2 levels, mostly border cells. 16×16 keeps the UNet geometry of the project's tiny
// test UNet (whose kernels and samplers are tested), and the VAE still trains in minutes.
//
// Text: two CLIP encoders as SDXL has (text_encoder: CLIPTextModel, text_encoder_2: CLIPTextModelWithProjection whose
// projection is the UNet's pooled text_embeds), both on the CLIP BPE tokenizer cut to its first EMOJI_VOCAB_SIZE
// tokens (the 512 byte tokens, the first merges in rank order, then bos / eos): any text still tokenizes (rare words
// fall apart into smaller pieces), and the token tables stay small enough to ship (4096 × 64 floats, not 49408 × 64).
//
// Size: 6.4 M parameters, 12.8 MB in F16 (scripts/emoji/model_stats.ts). The bound is the GPU machine, not the
// emoji: a device run carries at most 64 MiB with the working tree (~15 MB), Node + dawn.node (.gpu, ~30 MB), the
// bundled scripts and the dataset (7 MB as raw bytes + xz), so the teacher that must travel to every distillation
// and evaluation session gets what is left, ~13 MB in F16. Same budget as the bundled default the package ships.
import type { ClipTextConfigJson } from '../../text/clip_config.js';
import { ClipTokenizer } from '../../text/clip_tokenizer.js';
import type { UNetConfigJson } from '../../unet/config.js';
import type { VaeConfigJson } from '../../vae/config.js';
import { SDXL_MODEL_INDEX } from '../../pipeline/model_folder.js';
import { SDXL_SCHEDULER_CONFIG } from '../../schedulers/diffusers_config.js';

/** Tokens of the cut CLIP vocabulary: ids 0…4093 are the CLIP ids below 4094, then <|startoftext|>, <|endoftext|>. */
export const EMOJI_VOCAB_SIZE = 4096;
export const EMOJI_BOS = EMOJI_VOCAB_SIZE - 2;
export const EMOJI_EOS = EMOJI_VOCAB_SIZE - 1;
export const EMOJI_IMAGE_SIZE = 64;
export const EMOJI_LATENT_SIZE = 16;

export const EMOJI_VAE_CONFIG: VaeConfigJson = {
  _class_name: 'AutoencoderKL',
  _diffusers_version: '0.40.0.dev0',
  act_fn: 'silu',
  block_out_channels: [32, 64, 64],
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  in_channels: 3,
  out_channels: 3,
  latent_channels: 4,
  layers_per_block: 1,
  norm_num_groups: 16,
  // No mid-block attention: at 16×16 the convolutions already see the whole emoji, and it saves a backward kernel.
  mid_block_add_attention: false,
  sample_size: EMOJI_IMAGE_SIZE,
  // diffusers' convention 1 / std(latents); the VAE stage of scripts/emoji/train_teacher.ts measures it on the
  // training set and writes it here. 1 until then.
  scaling_factor: 1,
  force_upcast: false,
  use_quant_conv: true,
  use_post_quant_conv: true,
  latents_mean: null,
  latents_std: null,
  shift_factor: null,
};

const CLIP_COMMON = {
  vocab_size: EMOJI_VOCAB_SIZE,
  max_position_embeddings: 77,
  layer_norm_eps: 1e-5,
  bos_token_id: EMOJI_BOS,
  eos_token_id: EMOJI_EOS,
  pad_token_id: 1,
  attention_dropout: 0,
  dropout: 0,
  initializer_factor: 1,
  initializer_range: 0.02,
  model_type: 'clip_text_model',
  torch_dtype: 'float32',
};

/**
 * text_encoder: CLIPTextModel (SDXL: CLIP ViT-L, quick_gelu). Its penultimate hidden state is 64 of the 160 context
 * features; as in SDXL its last layer and final norm are never used (no gradient, kept for the architecture).
 */
export const EMOJI_TEXT_ENCODER_CONFIG: ClipTextConfigJson = {
  ...CLIP_COMMON,
  architectures: ['CLIPTextModel'],
  hidden_size: 64,
  intermediate_size: 256,
  num_hidden_layers: 3,
  num_attention_heads: 2,
  hidden_act: 'quick_gelu',
  projection_dim: 64,
};

/** text_encoder_2: CLIPTextModelWithProjection (SDXL: OpenCLIP bigG, gelu); text_embeds are the pooled 96. */
export const EMOJI_TEXT_ENCODER_2_CONFIG: ClipTextConfigJson = {
  ...CLIP_COMMON,
  architectures: ['CLIPTextModelWithProjection'],
  hidden_size: 96,
  intermediate_size: 384,
  num_hidden_layers: 3,
  num_attention_heads: 2,
  hidden_act: 'gelu',
  projection_dim: 96,
};

/** The 6 SDXL time ids (original size, crop top-left, target size) for a 64×64 emoji. */
export const EMOJI_TIME_IDS = [EMOJI_IMAGE_SIZE, EMOJI_IMAGE_SIZE, 0, 0, EMOJI_IMAGE_SIZE, EMOJI_IMAGE_SIZE];
const ADD_TIME_DIM = 32;

export const EMOJI_UNET_CONFIG: UNetConfigJson = {
  _class_name: 'UNet2DConditionModel',
  _diffusers_version: '0.40.0.dev0',
  act_fn: 'silu',
  addition_embed_type: 'text_time',
  addition_embed_type_num_heads: 64,
  addition_time_embed_dim: ADD_TIME_DIM,
  // diffusers' naming quirk (as SDXL's config): these are head counts; every head is 64 wide.
  attention_head_dim: [1, 1, 2],
  // 4.3 M parameters. Two resnets per level would be 6.3 M, [64, 128, 192] 16.4 M: both over the transport budget.
  block_out_channels: [32, 64, 128],
  center_input_sample: false,
  class_embed_type: null,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  cross_attention_dim: 64 + 96,
  down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
  downsample_padding: 1,
  dropout: 0,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 1,
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  norm_eps: 1e-5,
  norm_num_groups: 16,
  num_attention_heads: null,
  out_channels: 4,
  projection_class_embeddings_input_dim: 96 + 6 * ADD_TIME_DIM,
  sample_size: EMOJI_LATENT_SIZE,
  time_embedding_type: 'positional',
  transformer_layers_per_block: [1, 1, 1],
  up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
  upcast_attention: false,
  use_linear_projection: true,
};

/** The training noise schedule (SDXL's): ε-prediction, scaled_linear betas 0.00085 … 0.012 over 1000 steps. */
export const EMOJI_SCHEDULER_CONFIG = { ...SDXL_SCHEDULER_CONFIG, _diffusers_version: '0.40.0.dev0' };

export const EMOJI_MODEL_INDEX = SDXL_MODEL_INDEX;

/**
 * The CLIP BPE vocabulary cut to its first `size` ids (the last two become bos / eos) and the merges that produce
 * only kept tokens. CLIP's vocab.json is the 512 byte tokens followed by one token per merge in rank order, so the
 * first size − 514 merges are exactly those whose results have ids below size − 2.
 */
export function cutClipVocabulary(vocab: Readonly<Record<string, number>>, merges: string, size = EMOJI_VOCAB_SIZE): { vocab: Record<string, number>; merges: string } {
  if (!Number.isInteger(size) || size < 516) throw new Error(`cutClipVocabulary: size must be an integer ≥ 516 (512 byte tokens, a merge, bos, eos), got ${size}`);
  const lines = merges.split('\n');
  const header = lines[0].startsWith('#version') ? [lines[0]] : [];
  const rules = lines.slice(header.length).filter((l) => l.trim());
  const nMerges = size - 2 - 512;
  if (rules.length < nMerges) throw new Error(`cutClipVocabulary: ${rules.length} merges, ${nMerges} needed for ${size} tokens`);
  const out: Record<string, number> = {};
  for (const [tok, id] of Object.entries(vocab)) if (id < size - 2) out[tok] = id;
  // Each kept merge's result must be a kept token: checks that the files really have the CLIP layout.
  for (const [i, rule] of rules.slice(0, nMerges).entries()) {
    const merged = rule.split(' ').join('');
    if (out[merged] !== 512 + i) throw new Error(`cutClipVocabulary: merge ${i} '${rule}' gives '${merged}' with id ${vocab[merged]}, expected ${512 + i}: not CLIP's vocab.json / merges.txt layout`);
  }
  out['<|startoftext|>'] = size - 2;
  out['<|endoftext|>'] = size - 1;
  return { vocab: out, merges: [...header, ...rules.slice(0, nMerges)].join('\n') + '\n' };
}

/** special_tokens_map.json / tokenizer_config.json of the cut tokenizer; tokenizer_2 pads with '!' as SDXL's. */
export function emojiTokenizerConfig(padToken: '<|endoftext|>' | '!') {
  const special = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: padToken };
  return { special, config: { ...special, model_max_length: 77, do_lower_case: true, tokenizer_class: 'CLIPTokenizer' } };
}

/**
 * tokenizer/ and tokenizer_2/ of the teacher folder (relative path → text) and the two tokenizers they describe,
 * from CLIP's full vocab.json / merges.txt cut to `size` tokens.
 */
export function emojiTokenizers(fullVocab: Readonly<Record<string, number>>, fullMerges: string, size = EMOJI_VOCAB_SIZE): { files: Record<string, string>; tokenizers: [ClipTokenizer, ClipTokenizer] } {
  const { vocab, merges } = cutClipVocabulary(fullVocab, fullMerges, size);
  const files: Record<string, string> = {};
  const tokenizers = (['tokenizer', 'tokenizer_2'] as const).map((dir) => {
    const { special, config } = emojiTokenizerConfig(dir === 'tokenizer' ? '<|endoftext|>' : '!');
    files[`${dir}/vocab.json`] = JSON.stringify(vocab);
    files[`${dir}/merges.txt`] = merges;
    files[`${dir}/special_tokens_map.json`] = JSON.stringify(special, null, 2) + '\n';
    files[`${dir}/tokenizer_config.json`] = JSON.stringify(config, null, 2) + '\n';
    return new ClipTokenizer({ vocab, merges, specialTokensMap: special, tokenizerConfig: config }, { name: dir });
  }) as [ClipTokenizer, ClipTokenizer];
  return { files, tokenizers };
}
