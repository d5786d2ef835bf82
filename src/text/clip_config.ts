// transformers CLIPTextConfig (text_encoder/config.json, text_encoder_2/config.json) → the dims the model needs.
// SDXL: CLIP ViT-L (768, 12 layers, quick_gelu) and OpenCLIP bigG (1280, 32 layers, gelu, text_projection); spec
// sdxl.md §7.1.
import type { Activation } from '../kernels/matmul.js';

export interface ClipTextConfigJson {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings?: number;
  vocab_size?: number;
  hidden_act?: string;
  layer_norm_eps?: number;
  eos_token_id?: number;
  bos_token_id?: number;
  pad_token_id?: number;
  projection_dim?: number;
  architectures?: string[];
  [k: string]: unknown;
}

export interface ClipTextConfig {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  headDim: number;
  maxPositions: number;
  vocabSize: number;
  /** The matmul epilogue activation of mlp.fc1. */
  activation: Activation;
  eps: number;
  /**
   * eos_token_id of the config. transformers pools at argmax(input_ids) when it is 2 (the legacy value SDXL's configs
   * carry; 49407 is the largest id, so that is the first EOS), else at the first position holding it.
   */
  eosTokenId: number;
  projectionDim: number;
  /** CLIPTextModelWithProjection: text_projection (no bias) on the pooled output. */
  withProjection: boolean;
}

export class ClipConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClipConfigError';
  }
}

/** transformers ACT2FN names → fused matmul activations. 'gelu' is the exact (erf) GELU. */
const ACTIVATIONS: Record<string, Activation> = {
  quick_gelu: 'quick_gelu',
  gelu: 'gelu_erf',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
};

/**
 * Parses config.json. withProjection: the option, else whether `architectures` names CLIPTextModelWithProjection,
 * else false (ClipTextModel.load decides from the weights when neither says).
 */
export function parseClipTextConfig(json: ClipTextConfigJson, opts: { withProjection?: boolean } = {}): ClipTextConfig {
  const need = (key: keyof ClipTextConfigJson): number => {
    const v = json[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new ClipConfigError(`CLIP text config: '${String(key)}' must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const hiddenSize = need('hidden_size');
  const heads = need('num_attention_heads');
  if (hiddenSize % heads) throw new ClipConfigError(`CLIP text config: hidden_size ${hiddenSize} does not split into ${heads} heads`);
  const headDim = hiddenSize / heads;
  if (headDim % 4) throw new ClipConfigError(`CLIP text config: head dim ${headDim} (hidden_size / num_attention_heads) must be a multiple of 4`);
  const act = json.hidden_act ?? 'quick_gelu';
  const activation = ACTIVATIONS[act];
  if (!activation)
    throw new ClipConfigError(`CLIP text config: hidden_act '${act}' is not supported (expected one of ${Object.keys(ACTIVATIONS).join(', ')})`);
  const fromArch = json.architectures?.includes('CLIPTextModelWithProjection');
  return {
    hiddenSize,
    intermediateSize: need('intermediate_size'),
    layers: need('num_hidden_layers'),
    heads,
    headDim,
    maxPositions: json.max_position_embeddings ?? 77,
    vocabSize: json.vocab_size ?? 49408,
    activation,
    eps: json.layer_norm_eps ?? 1e-5,
    eosTokenId: json.eos_token_id ?? 49407,
    projectionDim: json.projection_dim ?? hiddenSize,
    withProjection: opts.withProjection ?? fromArch ?? false,
  };
}

/** The pooled (EOS) position of one row of ids, by transformers' rule for this config. */
export function eosPosition(ids: readonly number[], eosTokenId: number): number {
  let best = 0;
  if (eosTokenId === 2) {
    for (let i = 1; i < ids.length; i++) if (ids[i] > ids[best]) best = i;
    return best;
  }
  const i = ids.indexOf(eosTokenId);
  // (input_ids == eos).int().argmax() is 0 when no position matches.
  return i < 0 ? 0 : i;
}
