// diffusers Attention (AttnProcessor2_0 semantics) and the GEGLU FeedForward of BasicTransformerBlock.
import { attention, geglu } from '../autograd/nn_ops.js';
import type { Var } from '../autograd/tape.js';
import { Linear } from './linear.js';
import { type ModelContext, Module } from './module.js';

/**
 * Multi-head attention: q from x, k / v from the context (cross-attention) or x (self-attention), softmax(q·kᵀ /
 * sqrt(headDim))·v per head, then to_out.0. to_q / to_k / to_v have no bias (attention_bias false), to_out.0 has.
 * Heads stay interleaved in the channel dim ([B, tokens, heads·headDim]), which the attention kernel reads directly.
 */
export class Attention extends Module {
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;

  constructor(
    ctx: ModelContext,
    name: string,
    queryDim: number,
    /** Context width for cross-attention; undefined for self-attention. */
    readonly crossAttentionDim: number | undefined,
    readonly heads: number,
    readonly headDim: number,
  ) {
    super(ctx, name);
    const inner = heads * headDim;
    const kvDim = crossAttentionDim ?? queryDim;
    this.toQ = new Linear(ctx, this.path('to_q'), queryDim, inner, false);
    this.toK = new Linear(ctx, this.path('to_k'), kvDim, inner, false);
    this.toV = new Linear(ctx, this.path('to_v'), kvDim, inner, false);
    // to_out.1 is Dropout (identity).
    this.toOut = new Linear(ctx, this.path('to_out.0'), inner, queryDim, true);
  }

  /** x [B, N, queryDim], context [B, M, crossAttentionDim] (cross) → [B, N, queryDim]. */
  forward(x: Var, context?: Var): Var {
    const src = this.crossAttentionDim === undefined ? x : context;
    if (!src) throw new Error(`${this.name}: cross-attention needs encoder_hidden_states`);
    const q = this.toQ.forward(x);
    const k = this.toK.forward(src);
    const v = this.toV.forward(src);
    const o = attention(q, k, v, { heads: this.heads, label: this.name });
    const y = this.toOut.forward(o);
    this.ctx.emit(this.name, y);
    return y;
  }
}

/** FeedForward with GEGLU: ff.net.0.proj (C → 2·inner), hidden·GELU(gate), ff.net.2 (inner → C); net.1 is Dropout. */
export class FeedForward extends Module {
  readonly proj: Linear;
  readonly out: Linear;

  constructor(ctx: ModelContext, name: string, dim: number, mult = 4) {
    super(ctx, name);
    const inner = dim * mult;
    this.proj = new Linear(ctx, this.path('net.0.proj'), dim, 2 * inner);
    this.out = new Linear(ctx, this.path('net.2'), inner, dim);
  }

  forward(x: Var): Var {
    const y = this.out.forward(geglu(this.proj.forward(x)));
    this.ctx.emit(this.name, y);
    return y;
  }
}
