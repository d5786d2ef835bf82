// Operand checks shared by kernel wrappers: same device, dtype, live tensors.
import { DTypeError, ShapeError } from '../../runtime/errors.js';
import { type Shape, type Tensor, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';

export function requireDType(op: string, dtype: DType, ...ts: Tensor[]): void {
  for (const t of ts)
    if (t.dtype !== dtype) throw new DTypeError(`${op}: tensor '${t.label}' has dtype ${t.dtype}, expected ${dtype}`);
}

/** The one dtype all operands share (f32 or f16); throws naming the first that differs. */
export function commonDType(op: string, ...ts: Tensor[]): DType {
  const d = ts[0].dtype;
  for (const t of ts)
    if (t.dtype !== d) throw new DTypeError(`${op}: tensor '${t.label}' has dtype ${t.dtype}, expected ${d} (as '${ts[0].label}'); cast first`);
  return d;
}

export function requireSameGpu(op: string, ...ts: Tensor[]): void {
  for (const t of ts) if (t.gpu !== ts[0].gpu) throw new Error(`${op}: tensors '${ts[0].label}' and '${t.label}' live on different devices`);
}

export function requireShape(op: string, t: Tensor, shape: Shape): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw new ShapeError(`${op}: '${t.label}' has shape ${shapeStr(t.shape)}, expected ${shapeStr(shape)}`);
}

/** Numpy broadcasting of two shapes; throws naming both. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1)
      throw new ShapeError(`${op}: shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast (dim ${i}: ${da} vs ${db})`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Element strides of `shape` (row-major) seen from the broadcast `out` shape: 0 on broadcast dims. */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const strides = new Array<number>(out.length).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const o = out.length - shape.length + i;
    strides[o] = shape[i] === 1 ? 0 : s;
    s *= shape[i];
  }
  return strides;
}
