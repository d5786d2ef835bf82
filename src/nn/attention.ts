// diffusers Attention (AttnProcessor2_0 semantics) and the GEGLU FeedForward of BasicTransformerBlock.
import { attention, geglu } from '../autograd/nn_ops.js';
import { add, linear } from '../autograd/ops.js';
import type { Var } from '../autograd/tape.js';
import type { Tensor } from '../tensor.js';
import { frozenView, stackRows } from './fused.js';
import { Linear } from './linear.js';
import { DerivedWeight, type ModelContext, Module } from './module.js';

/** This block's K and V as column ranges of a K/V output shared by many blocks (src/nn/cross_kv.ts). */
export interface KvSlice {
  kv: Var;
  k: number;
  v: number;
}

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
  /**
   * Self-attention: [to_q; to_k; to_v] weights stacked [3·inner, queryDim] (WeightCacheOptions.fuseQkv): a view of
   * the packed weights (ModelContext.weightPacks), or a copy where they were loaded apart (trainable, misaligned).
   */
  private readonly qkv: DerivedWeight<Tensor>;

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
    this.qkv = new DerivedWeight(ctx);
    // Loaded back to back, the stacked [3·inner, queryDim] weight of the fused projection is a view, not a copy.
    if (crossAttentionDim === undefined) ctx.weightPacks.push([this.toQ, this.toK, this.toV].map((l) => l.weight.name));
  }

  /** K and V come from frozen, adapter-free projections: they may be computed by a stacked GEMM. */
  get plainKv(): boolean {
    return !this.toK.lora && !this.toV.lora && !this.toK.weight.v.needsGrad && !this.toV.weight.v.needsGrad;
  }

  private get fusableQkv(): boolean {
    return this.crossAttentionDim === undefined && this.ctx.weightCaches.fuseQkv && this.plainKv && !this.toQ.lora && !this.toQ.weight.v.needsGrad;
  }

  /**
   * x [B, N, queryDim], context [B, M, crossAttentionDim] (cross) → [B, N, queryDim]. kv: this block's K / V already
   * computed (cross-attention batched over blocks); otherwise to_k / to_v run here.
   */
  forward(x: Var, context?: Var, kv?: KvSlice, residual?: Var): Var {
    const opts = { heads: this.heads, label: this.name };
    const inner = this.heads * this.headDim;
    let o: Var;
    if (this.fusableQkv) {
      const w = this.qkv.get([this.toQ.weight.v, this.toK.weight.v, this.toV.weight.v], () =>
        stackRows(this.ctx.gpu, [this.toQ.weight.v.value, this.toK.weight.v.value, this.toV.weight.v.value], this.path('to_qkv.weight')),
      );
      const qkv = linear(x, frozenView(w, this.path('to_qkv.weight')));
      o = attention(qkv, qkv, qkv, { ...opts, slices: { channels: inner, q: 0, k: inner, v: 2 * inner } });
    } else if (kv) {
      this.qkv.release(); // an adapter was attached or the cache turned off: the stacked copy is stale
      const q = this.toQ.forward(x);
      o = attention(q, kv.kv, kv.kv, { ...opts, slices: { channels: inner, k: kv.k, v: kv.v } });
    } else {
      this.qkv.release();
      const src = this.crossAttentionDim === undefined ? x : context;
      if (!src) throw new Error(`${this.name}: cross-attention needs encoder_hidden_states`);
      const q = this.toQ.forward(x);
      const k = this.toK.forward(src);
      const v = this.toV.forward(src);
      o = attention(q, k, v, opts);
    }
    return this.output(o, residual);
  }

  /** to_out.0 (+ residual, fused into its epilogue unless a probe wants this module's own output). */
  private output(o: Var, residual?: Var): Var {
    if (residual && !this.ctx.wants(this.name)) return this.toOut.forward(o, 'none', residual);
    const y = this.toOut.forward(o);
    this.ctx.emit(this.name, y);
    return residual ? add(y, residual) : y;
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

  /** + residual (fused into ff.net.2's epilogue unless a probe wants this module's own output). */
  forward(x: Var, residual?: Var): Var {
    const hidden = geglu(this.proj.forward(x));
    if (residual && !this.ctx.wants(this.name)) return this.out.forward(hidden, 'none', residual);
    const y = this.out.forward(hidden);
    this.ctx.emit(this.name, y);
    return residual ? add(y, residual) : y;
  }
}
