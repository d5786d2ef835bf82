// BasicTransformerBlock and Transformer2DModel (continuous input) as the SDXL UNet uses them.
import { transpose } from '../autograd/nn_ops.js';
import { add, reshape } from '../autograd/ops.js';
import { type Var, checkpoint, tidy } from '../autograd/tape.js';
import { Attention, FeedForward, type KvSlice } from './attention.js';
import { Conv2d } from './conv2d.js';
import { Linear } from './linear.js';
import { type ModelContext, Module } from './module.js';
import { GroupNorm, LayerNorm } from './norm.js';

/** h += attn1(LN1(h)); h += attn2(LN2(h), context); h += ff(LN3(h)). LayerNorms eps 1e-5, affine. */
export class BasicTransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;

  constructor(ctx: ModelContext, name: string, dim: number, heads: number, headDim: number, crossAttentionDim: number) {
    super(ctx, name);
    this.norm1 = new LayerNorm(ctx, this.path('norm1'), dim);
    this.attn1 = new Attention(ctx, this.path('attn1'), dim, undefined, heads, headDim);
    this.norm2 = new LayerNorm(ctx, this.path('norm2'), dim);
    this.attn2 = new Attention(ctx, this.path('attn2'), dim, crossAttentionDim, heads, headDim);
    this.norm3 = new LayerNorm(ctx, this.path('norm3'), dim);
    this.ff = new FeedForward(ctx, this.path('ff'), dim);
  }

  /** h [B, N, C], context [B, M, crossAttentionDim]. */
  forward(h: Var, context: Var): Var {
    // K / V batched over blocks (src/nn/cross_kv.ts) enter the checkpoint as an input, so a replay finds them alive.
    const kv = this.ctx.crossKv?.get(this.attn2.name);
    let y: Var;
    if (!this.ctx.checkpointing.transformerBlocks) y = this.run(h, context, kv);
    else if (kv) y = checkpoint(this.name, ([a, c, s]) => this.run(a, c, { ...kv, kv: s }), [h, context, kv.kv]);
    else y = checkpoint(this.name, ([a, c]) => this.run(a, c), [h, context]);
    this.ctx.emit(this.name, y);
    return y;
  }

  // The residual adds go into the output projections' epilogues (no separate pass over the activations).
  private run(h: Var, context: Var, kv?: KvSlice): Var {
    return tidy(() => {
      let x = this.attn1.forward(this.norm1.forward(h), undefined, undefined, h);
      x = this.attn2.forward(this.norm2.forward(x), context, kv, x);
      return this.ff.forward(this.norm3.forward(x), x);
    });
  }
}

export interface Transformer2DConfig {
  heads: number;
  headDim: number;
  inChannels: number;
  layers: number;
  crossAttentionDim: number;
  groups: number;
  /** proj_in / proj_out are Linear on token rows (SDXL) instead of 1×1 convs on the feature map (SD 1.x). */
  useLinearProjection: boolean;
}

/**
 * GroupNorm (eps 1e-6) → token rows [B, H·W, C] → proj_in → transformer blocks → proj_out → back to [B, C, H, W]
 * → + input. The NCHW ↔ token-row reshapes are one transpose kernel each.
 */
export class Transformer2DModel extends Module {
  readonly norm: GroupNorm;
  readonly projIn: Linear | Conv2d;
  readonly blocks: BasicTransformerBlock[];
  readonly projOut: Linear | Conv2d;

  constructor(
    ctx: ModelContext,
    name: string,
    readonly cfg: Transformer2DConfig,
  ) {
    super(ctx, name);
    const C = cfg.inChannels;
    const inner = cfg.heads * cfg.headDim;
    this.norm = new GroupNorm(ctx, this.path('norm'), cfg.groups, C, 1e-6);
    this.projIn = cfg.useLinearProjection
      ? new Linear(ctx, this.path('proj_in'), C, inner)
      : new Conv2d(ctx, this.path('proj_in'), C, inner, { kernel: 1 });
    this.blocks = Array.from(
      { length: cfg.layers },
      (_, t) => new BasicTransformerBlock(ctx, this.path(`transformer_blocks.${t}`), inner, cfg.heads, cfg.headDim, cfg.crossAttentionDim),
    );
    this.projOut = cfg.useLinearProjection
      ? new Linear(ctx, this.path('proj_out'), inner, C)
      : new Conv2d(ctx, this.path('proj_out'), inner, C, { kernel: 1 });
  }

  /** x [B, C, H, W], context [B, M, crossAttentionDim] → [B, C, H, W]. */
  forward(x: Var, context: Var): Var {
    const y = tidy(() => {
      const [B, C, H, W] = x.shape;
      const inner = this.cfg.heads * this.cfg.headDim;
      const n = this.norm.forward(x);
      let h: Var;
      if (this.projIn instanceof Linear) {
        h = this.projIn.forward(transpose(reshape(n, [B, C, H * W])));
      } else {
        const p = this.projIn.forward(n);
        this.ctx.emit(this.projIn.name, p);
        h = transpose(reshape(p, [B, inner, H * W]));
      }
      if (this.projIn instanceof Linear) this.ctx.emit(this.projIn.name, h);
      for (const block of this.blocks) h = block.forward(h, context);
      if (this.projOut instanceof Linear) {
        const p = this.projOut.forward(h);
        this.ctx.emit(this.projOut.name, p);
        return add(reshape(transpose(p), [B, C, H, W]), x);
      }
      const p = this.projOut.forward(reshape(transpose(h), [B, inner, H, W]));
      this.ctx.emit(this.projOut.name, p);
      return add(p, x);
    });
    this.ctx.emit(this.name, y);
    return y;
  }
}
