// Cross-attention K / V for all transformer blocks at once. Every attn2 projects the same text context
// (encoder_hidden_states, M = 77 tokens) with its own frozen to_k / to_v: 2 GEMMs per block with M = B·77 rows,
// too few rows to fill a large GPU (SDXL: 140 GEMMs of 77×2048×1280 at ~3 TFLOP/s). Stacking the weights of many
// blocks into one [Σ 2·inner, crossDim] matrix makes a few wide GEMMs instead; each block then reads its K and V as
// column ranges of the shared output (attention slices), without copies.
//
// Only blocks whose to_k / to_v are frozen and carry no LoRA take part (the others run their own projections), and
// only when the context needs no gradient. The stacked weights are views of the to_k / to_v weights, which loaders
// store back to back (ModelContext.weightPacks); copies only where they were loaded apart (WeightCacheOptions.batchCrossKv).
// A sampler calls the UNet several times with one context: the K / V of the last context tensor are kept and reused
// while that tensor and the stacked weights are unchanged (one [B·M, Σ 2·inner] output, 51 MB for SDXL).
import { linear } from '../autograd/ops.js';
import { Var } from '../autograd/tape.js';
import type { Tensor } from '../tensor.js';
import type { Attention, KvSlice } from './attention.js';
import { frozenView, stackRows } from './fused.js';
import { DerivedWeight, type ModelContext } from './module.js';

export class CrossKvBatch {
  /** One stacked weight per group of blocks (groups keep each binding within the device's limits). */
  private readonly stacks: DerivedWeight<Tensor>[] = [];
  /** The K / V of the last context, per group (views this object owns); freed with the other derived copies. */
  private readonly kept: DerivedWeight<{ version: number; outputs: Tensor[]; release(): void }>;

  /** Chunk index per member: the members whose to_k / to_v are loaded back to back in one buffer. */
  private readonly chunkOf = new Map<Attention, number>();

  constructor(
    private readonly ctx: ModelContext,
    readonly members: readonly Attention[],
  ) {
    this.kept = new DerivedWeight(ctx);
    // Consecutive members of one context width, as many as one binding holds, form a weight pack (loaded back to
    // back: the stacked weight is then a view of the to_k / to_v weights, not a second copy).
    const budget = Math.min(ctx.gpu.limits.maxStorageBufferBindingSize, ctx.gpu.limits.maxBufferSize);
    let chunk: Attention[] = [];
    let bytes = 0;
    const close = () => {
      if (chunk.length) ctx.weightPacks.push(chunk.flatMap((m) => [m.toK.weight.name, m.toV.weight.name]));
      chunk = [];
      bytes = 0;
    };
    for (const m of members) {
      const b = 2 * m.heads * m.headDim * (m.crossAttentionDim ?? 0) * 4;
      if (chunk.length && (bytes + b > budget || m.crossAttentionDim !== chunk[0].crossAttentionDim)) close();
      this.chunkOf.set(m, ctx.weightPacks.length);
      chunk.push(m);
      bytes += b;
    }
    close();
  }

  /** K / V slices by attention module name for the blocks that take part (empty when batching does not apply). */
  run(context: Var): Map<string, KvSlice> {
    const out = new Map<string, KvSlice>();
    const eligible =
      this.ctx.weightCaches.batchCrossKv && !context.needsGrad
        ? this.members.filter((m) => m.crossAttentionDim === context.shape.at(-1) && m.plainKv)
        : [];
    const groups = this.group(eligible, context);
    const sources = groups.map((group) => group.flatMap((m) => [m.toK.weight.v, m.toV.weight.v]));
    const compute = () => {
      const outputs = groups.map((_, g) => {
        this.stacks[g] ??= new DerivedWeight(this.ctx);
        const name = `cross_kv.${g}.weight`;
        const w = this.stacks[g].get(sources[g], () => stackRows(this.ctx.gpu, sources[g].map((v) => v.value), name));
        const kv = linear(context, frozenView(w, name));
        return kv.value.reshape(kv.shape); // a view of our own: the enclosing tidy disposes kv
      });
      return { version: context.value.version, outputs, release: () => outputs.forEach((t) => t.release()) };
    };
    // Rebuilt when the context Var, a to_k / to_v weight or the context's contents (a write()) changed.
    const all = [context, ...sources.flat()];
    let kept = groups.length ? this.kept.get(all, compute) : undefined;
    if (kept && kept.version !== context.value.version) {
      this.kept.release();
      kept = this.kept.get(all, compute);
    }
    if (!kept) this.kept.release();
    groups.forEach((group, g) => {
      const kv = new Var(kept!.outputs[g].reshape(kept!.outputs[g].shape));
      let offset = 0;
      for (const m of group) {
        const inner = m.heads * m.headDim;
        out.set(m.name, { kv, k: offset, v: offset + inner });
        offset += 2 * inner;
      }
    });
    for (const stale of this.stacks.splice(groups.length)) {
      stale.release();
      this.ctx.derived.delete(stale);
    }
    return out;
  }

  /** Drops the kept K / V. */
  forget(): void {
    this.kept.release();
  }

  /** Consecutive blocks of one weight pack whose stacked weight [rows, K] and output [B·M, rows] each fit one binding. */
  private group(eligible: readonly Attention[], context: Var): Attention[][] {
    const lim = this.ctx.gpu.limits;
    const budget = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    const K = context.shape.at(-1)!;
    const rowsOut = context.value.size / K;
    const maxRows = Math.floor(budget / (4 * Math.max(K, rowsOut)));
    const groups: Attention[][] = [];
    let cur: Attention[] = [];
    let rows = 0;
    for (const m of eligible) {
      const r = 2 * m.heads * m.headDim;
      if (cur.length && (rows + r > maxRows || this.chunkOf.get(m) !== this.chunkOf.get(cur[0]))) {
        groups.push(cur);
        cur = [];
        rows = 0;
      }
      cur.push(m);
      rows += r;
    }
    if (cur.length) groups.push(cur);
    return groups;
  }
}
