// Embedding lookup / row gather (kernels/embedding.wgsl): y[..., :] = table[ids[...], :] (+ pos[t, :] for the last
// ids dim t). CLIP's token + position embeddings are one call; gatherRows picks rows by host indices (pooled EOS
// tokens). Inference only: no backward (the text encoders are frozen; textual inversion would need a scatter-add).
import { ShapeError } from '../../runtime/errors.js';
import { Tensor, shapeStr } from '../tensor.js';
import { requireDType, requireSameGpu } from './checks.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export const embeddingKernel = new Kernel<Record<string, number>>({
  name: 'embedding',
  entryPoints: ['gather'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'idx', kind: 'read' },
    { name: 'table', kind: 'read' },
    { name: 'pos', kind: 'read' },
    { name: 'y', kind: 'read_write' },
  ],
  uniforms: [
    ['n', 'u32'],
    ['D', 'u32'],
    ['tableRows', 'u32'],
    ['T', 'u32'],
    ['hasPos', 'u32'],
  ],
});

export interface EmbeddingOptions {
  /** Position rows pos [P, D]: row t is added at ids position t of the last dim (needs T ≤ P). */
  position?: Tensor;
  label?: string;
}

/**
 * table [V, D], ids [...S] (f32 holding integer ids) → y [...S, D]. Ids outside 0..V−1 are clamped in the kernel;
 * check them on the host first (checkIds) where they are known.
 */
export function embedding(table: Tensor, ids: Tensor, opts: EmbeddingOptions = {}): Tensor {
  const op = opts.label ?? 'embedding';
  const pos = opts.position;
  requireDType(op, 'f32', table, ids, ...(pos ? [pos] : []));
  requireSameGpu(op, table, ids, ...(pos ? [pos] : []));
  if (table.rank !== 2) throw new ShapeError(`${op}: table '${table.label}' has shape ${shapeStr(table.shape)}, expected [V, D]`);
  const [V, D] = table.shape;
  if (V < 1) throw new ShapeError(`${op}: table '${table.label}' has no rows`);
  const T = ids.rank ? ids.shape[ids.rank - 1] : 1;
  if (pos) {
    if (pos.rank !== 2 || pos.shape[1] !== D)
      throw new ShapeError(`${op}: position '${pos.label}' has shape ${shapeStr(pos.shape)}, expected [P, ${D}]`);
    if (T > pos.shape[0])
      throw new ShapeError(`${op}: ids ${shapeStr(ids.shape)} have ${T} positions, position table only ${pos.shape[0]}`);
  }
  const gpu = table.gpu;
  const y = Tensor.empty(gpu, [...ids.shape, D], 'f32', op);
  if (y.size === 0) return y;
  embeddingKernel.run(gpu, {
    entry: 'gather',
    variant: {},
    params: { n: y.size, D, tableRows: V, T: Math.max(T, 1), hasPos: pos ? 1 : 0 },
    // Without pos the table stands in for its (unread) binding.
    buffers: { idx: ids, table, pos: pos ?? table, y },
    workgroups: grid1d(gpu, y.size),
    label: op,
  });
  return y;
}

/** Throws naming the first id that is not an integer in 0..V−1. */
export function checkIds(what: string, ids: ArrayLike<number>, V: number): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new ShapeError(`${what}: id ${id} at index ${i} is not an integer in 0..${V - 1}`);
  }
}

/** x [R, D] → y [rows.length, D] with y[i] = x[rows[i]] (host indices, checked). */
export function gatherRows(x: Tensor, rows: readonly number[], label = `gatherRows(${x.label})`): Tensor {
  if (x.rank !== 2) throw new ShapeError(`gatherRows: x '${x.label}' has shape ${shapeStr(x.shape)}, expected [R, D]`);
  checkIds('gatherRows', rows, x.shape[0]);
  const idx = Tensor.fromArray(x.gpu, rows, [rows.length], { label: `${label}.rows` });
  const y = embedding(x, idx, { label });
  idx.release();
  return y;
}
