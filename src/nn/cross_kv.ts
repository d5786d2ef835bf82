// Cross-attention K / V for all transformer blocks at once. Every attn2 projects the same text context
// (encoder_hidden_states, M = 77 tokens) with its own frozen to_k / to_v: 2 GEMMs per block with M = B·77 rows,
// too few rows to fill a large GPU (SDXL: 140 GEMMs of 77×2048×1280 at ~3 TFLOP/s). Stacking the weights of many
// blocks into one [Σ 2·inner, crossDim] matrix makes a few wide GEMMs instead; each block then reads its K and V as
// column ranges of the shared output (attention slices), without copies.
//
// Only blocks whose to_k / to_v are frozen and carry no LoRA take part (the others run their own projections), and
// only when the context needs no gradient. The stacked weights are derived copies (WeightCacheOptions.batchCrossKv).
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

  constructor(
    private readonly ctx: ModelContext,
    readonly members: readonly Attention[],
  ) {
    this.kept = new DerivedWeight(ctx);
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

  /** Consecutive blocks whose stacked weight [rows, K] and output [B·M, rows] each fit one binding. */
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
      if (cur.length && rows + r > maxRows) {
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
