// The elementwise operations a scheduler step is written in, over either host arrays or GPU tensors. Each op is one
// torch op of diffusers' step (a scalar times a tensor, a sum, a difference, a division by a scalar) with one rounding,
// so a step written once runs as diffusers does: on the host in float32 (bit-exact emulation) or float64, and on the
// GPU as elementwise kernels.
import { requireDType, requireSameGpu } from '../kernels/checks.js';
import { BINARY_OPS, type BinaryOp, UNARY_OPS, elementwiseKernel } from '../kernels/elementwise.js';
import { grid1d } from '../kernels/grid.js';
import { Tensor } from '../tensor.js';
import { ShapeError } from '../../runtime/errors.js';
import { type Precision, type Round, roundFor } from './numeric.js';

export type HostArray = Float32Array | Float64Array;

export interface ElementOps<T> {
  /** a·x */
  scale(x: T, a: number): T;
  /** x + y */
  add(x: T, y: T): T;
  /** x − y */
  sub(x: T, y: T): T;
  /** x / a for a scalar a */
  divScalar(x: T, a: number): T;
  /** A handle the caller owns that shares x's data (the GPU releases it separately). */
  retain(x: T): T;
  release(x: T): void;
}

/** a·x + b·y, each product and the sum rounded once (torch: two scalar-tensor products, then an add). */
export function axpby<T>(ops: ElementOps<T>, a: number, x: T, b: number, y: T): T {
  const ax = ops.scale(x, a);
  const by = ops.scale(y, b);
  const out = ops.add(ax, by);
  ops.release(ax);
  ops.release(by);
  return out;
}

/** (x − a·y) / b: diffusers' x0 = (sample − sqrt(1 − ᾱ)·ε) / sqrt(ᾱ). */
export function subScaledDiv<T>(ops: ElementOps<T>, x: T, a: number, y: T, b: number): T {
  const ay = ops.scale(y, a);
  const d = ops.sub(x, ay);
  ops.release(ay);
  const out = ops.divScalar(d, b);
  ops.release(d);
  return out;
}

/** Host arrays in float32 (every op rounded with Math.fround, results in Float32Array) or float64. */
export class HostOps implements ElementOps<HostArray> {
  readonly round: Round;
  constructor(readonly precision: Precision) {
    this.round = roundFor(precision);
  }
  /** A copy of values as this precision's array (float32: rounded to float32). */
  from(values: ArrayLike<number>): HostArray {
    return this.precision === 'float32' ? Float32Array.from(values) : Float64Array.from(values);
  }
  private map(n: number, fn: (i: number) => number): HostArray {
    const out = this.precision === 'float32' ? new Float32Array(n) : new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = fn(i);
    return out;
  }
  scale(x: HostArray, a: number): HostArray {
    return this.map(x.length, (i) => a * x[i]);
  }
  add(x: HostArray, y: HostArray): HostArray {
    return this.map(x.length, (i) => x[i] + y[i]);
  }
  sub(x: HostArray, y: HostArray): HostArray {
    return this.map(x.length, (i) => x[i] - y[i]);
  }
  divScalar(x: HostArray, a: number): HostArray {
    return this.map(x.length, (i) => x[i] / a);
  }
  retain(x: HostArray): HostArray {
    return x;
  }
  release(): void {}
}

// The elementwise kernel on flat same-size operands. Called directly rather than through unary()/binary(), whose
// outputs are labelled after their inputs: over a sampling loop those labels nest once per op and grow exponentially.
const flat = (n: number, alpha: number) => ({
  n,
  rank: 1,
  alpha,
  shape: [n, 1, 1, 1, 1, 1, 1, 1],
  aStrides: [1, 0, 0, 0, 0, 0, 0, 0],
  bStrides: [1, 0, 0, 0, 0, 0, 0, 0],
});

function gpuScale(x: Tensor, alpha: number): Tensor {
  requireDType('scheduler scale', 'f32', x);
  const y = Tensor.empty(x.gpu, x.shape, 'f32', 'scheduler.scale');
  elementwiseKernel.run(x.gpu, {
    entry: 'unary',
    variant: { op: UNARY_OPS.scale, wrt: 0, dtype: 'f32' },
    params: flat(x.size, Math.fround(alpha)),
    buffers: { a: x, y },
    workgroups: grid1d(x.gpu, x.size),
    label: 'scheduler.scale',
  });
  return y;
}

function gpuBinary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  requireDType(`scheduler ${op}`, 'f32', a, b);
  requireSameGpu(`scheduler ${op}`, a, b);
  if (a.size !== b.size) throw new ShapeError(`scheduler ${op}: operands of ${a.size} and ${b.size} elements`);
  const y = Tensor.empty(a.gpu, a.shape, 'f32', `scheduler.${op}`);
  elementwiseKernel.run(a.gpu, {
    entry: 'binary',
    variant: { op: BINARY_OPS[op], wrt: 0, dtype: 'f32' },
    params: flat(a.size, 1),
    buffers: { a, b, y },
    workgroups: grid1d(a.gpu, a.size),
    label: `scheduler.${op}`,
  });
  return y;
}

/**
 * GPU tensors through the elementwise kernel. Products and sums round as in torch; the division by a scalar is a
 * product with the float32 reciprocal (within 1 ulp of torch's correctly rounded quotient).
 */
export const gpuOps: ElementOps<Tensor> = {
  scale: gpuScale,
  add: (x, y) => gpuBinary('add', x, y),
  sub: (x, y) => gpuBinary('sub', x, y),
  divScalar: (x, a) => gpuScale(x, 1 / a),
  retain: (x) => x.reshape(x.shape),
  release: (x) => x.release(),
};
