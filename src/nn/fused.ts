// Helpers for derived weight copies (src/nn/module.ts DerivedWeight): stacking frozen weights so several
// projections of the same input run as one GEMM.
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { Var } from '../autograd/tape.js';
import { Tensor, shapeStr } from '../tensor.js';

/** [N_0, K], [N_1, K], ... → [Σ N_i, K] by buffer copies (queued in order with the kernels). */
export function stackRows(gpu: Gpu, parts: readonly Tensor[], label: string): Tensor {
  if (!parts.length) throw new ShapeError(`${label}: nothing to stack`);
  const K = parts[0].shape[1];
  for (const p of parts)
    if (p.rank !== 2 || p.shape[1] !== K || p.dtype !== parts[0].dtype)
      throw new ShapeError(`${label}: stacked weights must be ${parts[0].dtype} [rows, ${K}], got '${p.label}' ${shapeStr(p.shape)} ${p.dtype}`);
  const rows = parts.reduce((n, p) => n + p.shape[0], 0);
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
