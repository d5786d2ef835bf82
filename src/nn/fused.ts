// Helpers for derived weight copies (src/nn/module.ts DerivedWeight): stacking frozen weights so several
// projections of the same input run as one GEMM.
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { Var } from '../autograd/tape.js';
import { BYTES_PER_ELEMENT } from '../dtype.js';
import { Tensor, shapeStr } from '../tensor.js';
import type { ModelContext } from './module.js';

/**
 * [N_0, K], [N_1, K], ... → [Σ N_i, K]: a view when the parts already lie back to back in one buffer (weights
 * loaded into a pack, allocatePackedWeights), else a copy (buffer copies queued in order with the kernels).
 */
export function stackRows(gpu: Gpu, parts: readonly Tensor[], label: string): Tensor {
  if (!parts.length) throw new ShapeError(`${label}: nothing to stack`);
  const K = parts[0].shape[1];
  for (const p of parts)
    if (p.rank !== 2 || p.shape[1] !== K || p.dtype !== parts[0].dtype)
      throw new ShapeError(`${label}: stacked weights must be ${parts[0].dtype} [rows, ${K}], got '${p.label}' ${shapeStr(p.shape)} ${p.dtype}`);
  const rows = parts.reduce((n, p) => n + p.shape[0], 0);
  if (parts.every((p, i) => i === 0 || parts[i - 1].isFollowedBy(p))) return parts[0].view(0, [rows, K], label);
  const out = Tensor.empty(gpu, [rows, K], parts[0].dtype, label);
  const enc = gpu.queue.encoderForCopy();
  let offset = 0;
  for (const p of parts) {
    if (p.bytes) enc.copyBufferToBuffer(p.buffer, p.byteOffset, out.buffer, out.byteOffset + offset, p.bytes);
    offset += p.bytes;
  }
  return out;
}

/** A frozen Var over a cached tensor: a view of its own, so the forward's tidy() frees the view, not the cache. */
export function frozenView(t: Tensor, name: string): Var {
  return new Var(t.reshape(t.shape), false, name);
}

/**
 * Storage for the frozen weights of every pack (ModelContext.weightPacks): one buffer per pack holding its weights
 * back to back, so a fused GEMM reads them all as one matrix (stackRows gives a view) while each Linear reads its own
 * rows as a view: every weight exists once. A pack with a trainable weight, or whose weights would not start at
 * minStorageBufferOffsetAlignment, gets no storage (its weights load on their own; fused users copy as before).
 * Returns name → a view to load the weight into (the caller owns the views; the buffer goes when the last is gone).
 */
export function allocatePackedWeights(ctx: ModelContext, trainable?: (name: string) => boolean): Map<string, Tensor> {
  const views = new Map<string, Tensor>();
  const align = ctx.gpu.limits.minStorageBufferOffsetAlignment;
  const elem = BYTES_PER_ELEMENT[ctx.dtype];
  for (const names of ctx.weightPacks) {
    const shapes = names.map((n) => ctx.params.get(n)?.shape);
    const K = shapes[0]?.[1];
    if (shapes.some((s) => !s || s.length !== 2 || s[1] !== K) || names.some((n) => trainable?.(n))) continue;
    const offsets: number[] = [];
    let bytes = 0;
    for (const s of shapes) {
      offsets.push(bytes);
      bytes += s![0] * s![1] * elem;
    }
    if (offsets.some((o) => o % align) || bytes > Math.min(ctx.gpu.limits.maxBufferSize, ctx.gpu.limits.maxStorageBufferBindingSize)) continue;
    const rows = shapes.reduce((n, s) => n + s![0], 0);
    const pack = Tensor.empty(ctx.gpu, [rows, K!], ctx.dtype, `pack(${names[0]}, …${names.length})`);
    names.forEach((n, i) => views.set(n, pack.view(offsets[i], shapes[i]!, n)));
    pack.release(); // the views hold the storage
  }
  return views;
}
