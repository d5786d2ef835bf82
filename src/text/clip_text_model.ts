// transformers CLIPTextModel / CLIPTextModelWithProjection, inference only, on the kernels (spec sdxl.md §7.2):
//   x = token_embedding[ids] + position_embedding[0..T)                       hidden_states[0]
//   per layer (pre-LN):  x += out_proj(attn_causal(q, k, v of LN1(x)));  x += fc2(act(fc1(LN2(x))))   hidden_states[i]
//   last_hidden_state = final_layer_norm(x);  pooled = last_hidden_state[b, eos_b];  text_embeds = pooled · Pᵀ
// No padding mask (SDXL passes none): only the causal mask applies, so positions after EOS are computed as well.
// Weights use transformers' names: `text_model.…` (4.x files, SGM files via openCheckpoint) or without the prefix
// (transformers ≥ 5.6 CLIPTextModel saves), plus `text_projection.weight`; a `position_ids` buffer is ignored.
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { attention } from '../kernels/attention.js';
import { add } from '../kernels/elementwise.js';
import { checkIds, embedding, gatherRows } from '../kernels/embedding.js';
import { layerNorm } from '../kernels/layer_norm.js';
import { type Activation, matmul } from '../kernels/matmul.js';
import { FLOAT_DTYPES } from '../io/safetensors.js';
import { type RandomInitOptions, type RandomInitSummary, randomParameter } from '../nn/init.js';
import { Tensor, shapeStr } from '../tensor.js';
import { StateDictError, type WeightSource, indexSource, sameShape } from '../unet/weights.js';
import { type ClipTextConfig, type ClipTextConfigJson, eosPosition, parseClipTextConfig } from './clip_config.js';

export interface ClipForwardOptions {
  /**
   * Which hidden_states to keep: indices into hidden_states (0 = embeddings, i = output of layer i, negatives count
   * from the end: −1 = last layer, −2 = penultimate) or 'all'. Default [−2], what SDXL takes.
   */
  hiddenStates?: readonly number[] | 'all';
}

export interface ClipTextOutput {
  /** Kept hidden states by non-negative index; each [B, T, hidden]. */
  readonly hiddenStates: ReadonlyMap<number, Tensor>;
  /** final_layer_norm(hidden_states[−1]) [B, T, hidden]. */
  readonly lastHiddenState: Tensor;
  /** pooler_output: last_hidden_state at each row's EOS position [B, hidden]. */
  readonly pooled: Tensor;
  /** text_projection(pooled) [B, projectionDim] (CLIPTextModelWithProjection only). */
  readonly textEmbeds?: Tensor;
  /** The pooled position of each row. */
  readonly eosPositions: readonly number[];
  /** hidden_states[i], negative i from the end; throws when it was not kept. */
  hidden(i: number): Tensor;
  /** Releases every tensor of the output. */
  release(): void;
}

const PREFIX = 'text_model.';

export class ClipTextModel {
  readonly config: ClipTextConfig;
  /** Parameter name (with `text_model.`) → shape. */
  readonly paramShapes = new Map<string, readonly number[]>();
  private readonly weights = new Map<string, Tensor>();

  constructor(
    readonly gpu: Gpu,
    config: ClipTextConfigJson | ClipTextConfig,
    opts: { withProjection?: boolean } = {},
  ) {
    this.config = 'hidden_size' in config ? parseClipTextConfig(config, opts) : { ...config, ...(opts.withProjection === undefined ? {} : { withProjection: opts.withProjection }) };
    const { hiddenSize: D, intermediateSize: I, layers, vocabSize, maxPositions, projectionDim, withProjection } = this.config;
    const param = (name: string, shape: number[]) => this.paramShapes.set(name, shape);
    param(`${PREFIX}embeddings.token_embedding.weight`, [vocabSize, D]);
    param(`${PREFIX}embeddings.position_embedding.weight`, [maxPositions, D]);
    for (let l = 0; l < layers; l++) {
      const p = `${PREFIX}encoder.layers.${l}.`;
      for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
        param(`${p}self_attn.${proj}.weight`, [D, D]);
        param(`${p}self_attn.${proj}.bias`, [D]);
      }
      for (const ln of ['layer_norm1', 'layer_norm2']) {
        param(`${p}${ln}.weight`, [D]);
        param(`${p}${ln}.bias`, [D]);
      }
      param(`${p}mlp.fc1.weight`, [I, D]);
      param(`${p}mlp.fc1.bias`, [I]);
      param(`${p}mlp.fc2.weight`, [D, I]);
      param(`${p}mlp.fc2.bias`, [D]);
    }
    param(`${PREFIX}final_layer_norm.weight`, [D]);
    param(`${PREFIX}final_layer_norm.bias`, [D]);
    if (withProjection) param('text_projection.weight', [projectionDim, D]);
  }

  /**
   * Builds the model from config.json and loads its weights. Whether it has text_projection comes from
   * opts.withProjection, else the config's architectures, else whether the weights hold `text_projection.weight`.
   */
  static async load(gpu: Gpu, config: ClipTextConfigJson, source: WeightSource, opts: { withProjection?: boolean } = {}): Promise<ClipTextModel> {
    const index = await indexSource(source);
    const withProjection = opts.withProjection ?? (config.architectures ? undefined : index.shapes.has('text_projection.weight'));
    const model = new ClipTextModel(gpu, config, { withProjection });
    await model.loadWeights(source);
    return model;
  }

  /** Checks names, shapes and dtypes against the source (all problems reported together), then uploads tensor by tensor. */
  async loadWeights(source: WeightSource): Promise<void> {
    const index = await indexSource(source);
    // Files saved by transformers ≥ 5.6 CLIPTextModel have no `text_model.` prefix.
    const prefixed = [...index.shapes.keys()].some((k) => k.startsWith(PREFIX));
    const fileName = (name: string) => (prefixed || !name.startsWith(PREFIX) ? name : name.slice(PREFIX.length));
    const missing: string[] = [];
    const mismatched: StateDictError['mismatched'] = [];
    const unsupported: StateDictError['unsupported'] = [];
    const used = new Set<string>();
    for (const [name, shape] of this.paramShapes) {
      const key = fileName(name);
      const e = index.shapes.get(key);
      used.add(key);
      if (!e) missing.push(`${key} ${shapeStr(shape)}`);
      else if (!(FLOAT_DTYPES as readonly string[]).includes(e.dtype)) unsupported.push({ name: key, dtype: e.dtype });
      else if (!sameShape(e.shape, shape)) mismatched.push({ name: key, expected: shape, got: e.shape });
    }
    const unexpected = [...index.shapes]
      .filter(([k]) => !used.has(k) && !k.endsWith('position_ids'))
      .map(([k, e]) => `${k} ${shapeStr(e.shape)}`);
    if (missing.length || unexpected.length || mismatched.length || unsupported.length)
      throw new StateDictError(index.name, missing, unexpected, mismatched, unsupported);
    for (const [name, shape] of this.paramShapes) {
      const t = Tensor.fromArray(this.gpu, await index.read(fileName(name)), shape, { label: name });
      this.weights.get(name)?.release();
      this.weights.set(name, t);
    }
  }

  /**
   * Random weights on the GPU (src/nn/init.ts: N(0, 1/fan_in), norms 1, biases 0), for benchmarks and tests without
   * a checkpoint.
   */
  initRandom(opts: Pick<RandomInitOptions, 'seed' | 'gain' | 'onProgress'> = {}): RandomInitSummary {
    const summary: RandomInitSummary = { tensors: 0, params: 0, bytes: 0 };
    for (const [name, shape] of this.paramShapes) {
      const t = randomParameter(this.gpu, name, shape, opts.seed ?? 0, opts.gain ?? 1);
      this.weights.get(name)?.release();
      this.weights.set(name, t);
      summary.tensors++;
      summary.params += t.size;
      summary.bytes += t.bytes;
      opts.onProgress?.(summary.tensors, this.paramShapes.size, name);
    }
    return summary;
  }

  private w(name: string): Tensor {
    const t = this.weights.get(name);
    if (!t) throw new Error(`CLIP text model: parameter '${name}' is not loaded (call loadWeights first)`);
    return t;
  }

  private linear(x: Tensor, name: string, activation: Activation = 'none', bias = true): Tensor {
    return matmul(x, this.w(`${name}.weight`), { transB: true, bias: bias ? this.w(`${name}.bias`) : undefined, activation, label: name });
  }

  private norm(x: Tensor, name: string): Tensor {
    const r = layerNorm(x, { weight: this.w(`${name}.weight`), bias: this.w(`${name}.bias`), eps: this.config.eps });
    r.mean.release();
    r.rstd.release();
    return r.y;
  }

  /** One pre-LN encoder layer; consumes x. */
  private layer(x: Tensor, l: number): Tensor {
    const p = `${PREFIX}encoder.layers.${l}.`;
    const h = this.norm(x, `${p}layer_norm1`);
    const q = this.linear(h, `${p}self_attn.q_proj`);
    const k = this.linear(h, `${p}self_attn.k_proj`);
    const v = this.linear(h, `${p}self_attn.v_proj`);
    h.release();
    const o = attention(q, k, v, { heads: this.config.heads, causal: true, label: `${p}self_attn` });
    [q, k, v].forEach((t) => t.release());
    const a = this.linear(o, `${p}self_attn.out_proj`);
    o.release();
    const x1 = add(x, a);
    [x, a].forEach((t) => t.release());
    const h2 = this.norm(x1, `${p}layer_norm2`);
    const f = this.linear(h2, `${p}mlp.fc1`, this.config.activation);
    h2.release();
    const m = this.linear(f, `${p}mlp.fc2`);
    f.release();
    const x2 = add(x1, m);
    [x1, m].forEach((t) => t.release());
    return x2;
  }

  /** ids: B rows of T ≤ max_position_embeddings token ids (77 from the SDXL tokenizers). */
  forward(ids: readonly (readonly number[])[], opts: ClipForwardOptions = {}): ClipTextOutput {
    const { hiddenSize: D, layers, vocabSize, maxPositions } = this.config;
    const { B, T, flat } = checkIdRows(ids, vocabSize, maxPositions);
    const count = layers + 1;
    const keep = new Set<number>();
    for (const i of opts.hiddenStates === 'all' ? [...Array(count).keys()] : (opts.hiddenStates ?? [-2])) {
      const j = i < 0 ? count + i : i;
      if (!Number.isInteger(i) || j < 0 || j >= count)
        throw new ShapeError(`CLIP text model: hidden state ${i} does not exist (there are ${count}: 0..${layers}, or −${count}..−1)`);
      keep.add(j);
    }

    const kept = new Map<number, Tensor>();
    const idT = Tensor.fromArray(this.gpu, flat, [B, T], { label: 'input_ids' });
    let x = embedding(this.w(`${PREFIX}embeddings.token_embedding.weight`), idT, {
      position: this.w(`${PREFIX}embeddings.position_embedding.weight`),
      label: `${PREFIX}embeddings`,
    });
    idT.release();
    if (keep.has(0)) kept.set(0, x.reshape(x.shape));
    for (let l = 0; l < layers; l++) {
      x = this.layer(x, l);
      if (keep.has(l + 1)) kept.set(l + 1, x.reshape(x.shape));
    }
    const last = this.norm(x, `${PREFIX}final_layer_norm`);
    x.release();

    const eosPositions = ids.map((row) => eosPosition(row as number[], this.config.eosTokenId));
    const rows = last.reshape([B * T, D]);
    const pooled = gatherRows(rows, eosPositions.map((p, b) => b * T + p), 'pooler_output');
    rows.release();
    const textEmbeds = this.config.withProjection ? this.linear(pooled, 'text_projection', 'none', false) : undefined;

    return {
      hiddenStates: kept,
      lastHiddenState: last,
      pooled,
      textEmbeds,
      eosPositions,
      hidden(i: number): Tensor {
        const j = i < 0 ? count + i : i;
        const t = kept.get(j);
        if (!t) throw new Error(`CLIP text model: hidden state ${i} was not kept (kept: ${[...kept.keys()].join(', ') || 'none'}; see ClipForwardOptions.hiddenStates)`);
        return t;
      },
      release() {
        for (const t of kept.values()) t.release();
        last.release();
        pooled.release();
        textEmbeds?.release();
      },
    };
  }

  /** Bytes of the loaded weights (f32 on the GPU). */
  get weightBytes(): number {
    let n = 0;
    for (const t of this.weights.values()) n += t.bytes;
    return n;
  }

  dispose(): void {
    for (const t of this.weights.values()) t.release();
    this.weights.clear();
  }
}

/** B equal rows of T ids, 1 ≤ T ≤ max_position_embeddings, every id < vocab_size (both CLIP models check the same). */
export function checkIdRows(ids: readonly (readonly number[])[], vocabSize: number, maxPositions: number): { B: number; T: number; flat: number[] } {
  const B = ids.length;
  if (B < 1) throw new ShapeError('CLIP text model: expected at least one row of ids, got none');
  const T = ids[0].length;
  ids.forEach((row, b) => {
    if (row.length !== T) throw new ShapeError(`CLIP text model: id rows must have equal lengths, row 0 has ${T}, row ${b} has ${row.length}`);
  });
  if (T < 1 || T > maxPositions) throw new ShapeError(`CLIP text model: rows of ${T} ids, expected 1..${maxPositions} (max_position_embeddings)`);
  const flat = ids.flat();
  checkIds(`CLIP text model (vocab_size ${vocabSize})`, flat, vocabSize);
  return { B, T, flat };
}
