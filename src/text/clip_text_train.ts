// CLIPTextModel / CLIPTextModelWithProjection on the tape, for training a text encoder from scratch with a diffusion
// model (the emoji teacher). Same math and the same transformers parameter names as ClipTextModel (the inference
// model in clip_text_model.ts, which reads what this one saves):
//   x = token_embedding[ids] + position_embedding[0..T)
//   per layer: x += out_proj(attn_causal(q, k, v of LN1(x)));  x += fc2(act(fc1(LN2(x))))
//   last_hidden_state = final_layer_norm(x);  pooled = last_hidden_state[b, eos_b];  text_embeds = pooled · Pᵀ
//
// The token lookup and the EOS pooling are one-hot GEMMs, so their gradients are matmul backwards (no scatter kernel):
// the batch's distinct tokens U are gathered from the table by a [U, V] selection matrix, then each position picks its
// row by a [B·T, U] one-hot matrix. Both are built on the host; with U of a few hundred they are a few MB.
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { attention, concat } from '../autograd/nn_ops.js';
import { add, matmul, reshape } from '../autograd/ops.js';
import { Var } from '../autograd/tape.js';
import { unary } from '../kernels/elementwise.js';
import { Linear } from '../nn/linear.js';
import { ModelContext, Module, type Param } from '../nn/module.js';
import { LayerNorm } from '../nn/norm.js';
import { type RandomInitOptions, type RandomInitSummary, initRandomParameters } from '../nn/init.js';
import { Tensor } from '../tensor.js';
import { type LoadWeightsOptions, type WeightSource, loadStateDict } from '../unet/weights.js';
import { type ClipTextConfig, type ClipTextConfigJson, eosPosition, parseClipTextConfig } from './clip_config.js';
import { checkIdRows } from './clip_text_model.js';

export interface TrainableClipOutput {
  /** hidden_states[layer] (default the penultimate, −2, as SDXL takes) [B, T, hidden]. */
  hidden: Var;
  /** pooler_output [B, hidden]. */
  pooled: Var;
  /** text_projection(pooled) [B, projection_dim] (with projection only). */
  textEmbeds?: Var;
}

class ClipLayer extends Module {
  readonly ln1: LayerNorm;
  readonly ln2: LayerNorm;
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly out: Linear;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    ctx: ModelContext,
    name: string,
    readonly cfg: ClipTextConfig,
  ) {
    super(ctx, name);
    const { hiddenSize: D, intermediateSize: I, eps } = cfg;
    this.ln1 = new LayerNorm(ctx, this.path('layer_norm1'), D, eps);
    this.ln2 = new LayerNorm(ctx, this.path('layer_norm2'), D, eps);
    this.q = new Linear(ctx, this.path('self_attn.q_proj'), D, D);
    this.k = new Linear(ctx, this.path('self_attn.k_proj'), D, D);
    this.v = new Linear(ctx, this.path('self_attn.v_proj'), D, D);
    this.out = new Linear(ctx, this.path('self_attn.out_proj'), D, D);
    this.fc1 = new Linear(ctx, this.path('mlp.fc1'), D, I);
    this.fc2 = new Linear(ctx, this.path('mlp.fc2'), I, D);
  }

  forward(x: Var): Var {
    const h = this.ln1.forward(x);
    const o = attention(this.q.forward(h), this.k.forward(h), this.v.forward(h), { heads: this.cfg.heads, causal: true, label: this.path('self_attn') });
    const x1 = this.out.forward(o, 'none', x);
    return this.fc2.forward(this.fc1.forward(this.ln2.forward(x1), this.cfg.activation), 'none', x1);
  }
}

export class TrainableClipTextModel extends Module {
  readonly config: ClipTextConfig;
  readonly tokenEmbedding: Param;
  readonly positionEmbedding: Param;
  readonly layers: ClipLayer[] = [];
  readonly finalNorm: LayerNorm;
  readonly projection?: Linear;

  constructor(
    readonly gpu: Gpu,
    config: ClipTextConfigJson,
    opts: { withProjection?: boolean } = {},
  ) {
    super(new ModelContext(gpu), '');
    const cfg = (this.config = parseClipTextConfig(config, opts));
    const ctx = this.ctx;
    this.tokenEmbedding = this.param('text_model.embeddings.token_embedding.weight', [cfg.vocabSize, cfg.hiddenSize]);
    this.positionEmbedding = this.param('text_model.embeddings.position_embedding.weight', [cfg.maxPositions, cfg.hiddenSize]);
    for (let l = 0; l < cfg.layers; l++) this.layers.push(new ClipLayer(ctx, `text_model.encoder.layers.${l}`, cfg));
    this.finalNorm = new LayerNorm(ctx, 'text_model.final_layer_norm', cfg.hiddenSize, cfg.eps);
    if (cfg.withProjection) this.projection = new Linear(ctx, 'text_projection', cfg.hiddenSize, cfg.projectionDim, false);
  }

  /** Every parameter by transformers name (`text_model.…`, `text_projection.weight`). */
  get parameters(): ReadonlyMap<string, Param> {
    return this.ctx.params;
  }

  /**
   * Random weights (src/nn/init.ts rules: N(0, 1/fan_in), norms 1, biases 0) except the two embedding tables, which
   * get N(0, 0.02²) as transformers initialises them (unit-variance embeddings would swamp the first LayerNorm's
   * residual stream). `trainable` defaults to every parameter.
   */
  initRandom(opts: RandomInitOptions = {}): RandomInitSummary {
    const summary = initRandomParameters(this.gpu, this.parameters, { trainable: () => true, ...opts });
    for (const p of [this.tokenEmbedding, this.positionEmbedding]) {
      // Rescale the N(0, 1/cols) draw of initRandomParameters to std 0.02 (deterministic per seed).
      const old = p.v.value;
      p.v.value = unary('scale', old, { alpha: 0.02 * Math.sqrt(p.shape[1]) });
      old.release();
    }
    return summary;
  }

  /** Loads `text_model.…` weights (a safetensors source or a name → {data, shape} map); trainable by default. */
  loadWeights(source: WeightSource, opts: LoadWeightsOptions = {}): Promise<void> {
    return loadStateDict(this.ctx, source, { trainable: () => true, ...opts });
  }

  dispose(): void {
    for (const p of this.ctx.params.values()) {
      p.var?.dispose();
      p.var = undefined;
    }
  }

  /** ids: B rows of T token ids. hiddenState: which hidden state to return (negative from the end; default −2). */
  forward(ids: readonly (readonly number[])[], hiddenState = -2): TrainableClipOutput {
    const { hiddenSize: D, layers, vocabSize, maxPositions, eosTokenId } = this.config;
    const { B, T, flat } = checkIdRows(ids, vocabSize, maxPositions);
    const keepAt = hiddenState < 0 ? layers + 1 + hiddenState : hiddenState;
    if (!Number.isInteger(hiddenState) || keepAt < 0 || keepAt > layers)
      throw new ShapeError(`CLIP text model: hidden state ${hiddenState} does not exist (0..${layers}, or −${layers + 1}..−1)`);

    const tokens = this.embedTokens(flat);
    const pos = this.positionEmbedding.v;
    const posT = T === maxPositions ? pos : matmul(this.constant(oneHotRows(range(T), maxPositions), [T, maxPositions], 'position_select'), pos);
    let x = add(reshape(tokens, [B, T, D]), posT);
    let hidden = keepAt === 0 ? x : undefined;
    for (let l = 0; l < layers; l++) {
      x = this.layers[l].forward(x);
      if (keepAt === l + 1) hidden = x;
    }
    const last = this.finalNorm.forward(x);
    const eos = ids.map((row, b) => b * T + eosPosition(row as number[], eosTokenId));
    const pooled = matmul(this.constant(oneHotRows(eos, B * T), [B, B * T], 'eos_select'), reshape(last, [B * T, D]));
    const textEmbeds = this.projection?.forward(pooled);
    return { hidden: hidden!, pooled, textEmbeds };
  }

  /** token_embedding[ids] as [N, D] through the batch's distinct tokens (see the header). */
  private embedTokens(flat: readonly number[]): Var {
    const V = this.config.vocabSize;
    const unique = [...new Set(flat)].sort((a, b) => a - b);
    const local = new Map(unique.map((id, i) => [id, i]));
    const table = matmul(this.constant(oneHotRows(unique, V), [unique.length, V], 'token_select'), this.tokenEmbedding.v);
    const rows = flat.map((id) => local.get(id)!);
    return matmul(this.constant(oneHotRows(rows, unique.length), [flat.length, unique.length], 'token_one_hot'), table);
  }

  private constant(data: Float32Array, shape: number[], label: string): Var {
    return new Var(Tensor.fromArray(this.gpu, data, shape, { label }));
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** rows.length × width matrix with a 1 at (r, rows[r]). */
function oneHotRows(rows: readonly number[], width: number): Float32Array {
  const m = new Float32Array(rows.length * width);
  rows.forEach((c, r) => (m[r * width + c] = 1));
  return m;
}

/** Joined SDXL conditioning of two encoders: [B, T, D1 + D2] context and encoder 2's text_embeds. */
export function sdxlTextConditioning(a: TrainableClipOutput, b: TrainableClipOutput): { context: Var; pooled: Var } {
  if (!b.textEmbeds) throw new ShapeError('sdxlTextConditioning: the second encoder needs text_projection (CLIPTextModelWithProjection)');
  return { context: concat(a.hidden, b.hidden, 2), pooled: b.textEmbeds };
}
