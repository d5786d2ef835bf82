// Elementwise unary/binary ops with broadcasting, and their gradients (kernels/elementwise.wgsl).
import { ShapeError } from '../../runtime/errors.js';
import { type Shape, Tensor, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';
import { broadcastShapes, broadcastStrides, commonDType, requireSameGpu } from './checks.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';
import { sumTo } from './reduce.js';

export const UNARY_OPS = { scale: 10, silu: 11, gelu_tanh: 12, gelu_erf: 13, quick_gelu: 14, exp: 15, identity: 16 } as const;
export const BINARY_OPS = { add: 0, sub: 1, mul: 2, div: 3 } as const;
export type UnaryOp = keyof typeof UNARY_OPS;
export type BinaryOp = keyof typeof BINARY_OPS;

export interface ElementwiseVariant {
  [k: string]: number | string;
  op: number;
  wrt: number;
  /** Storage element type (math is f32 in both). */
  dtype: DType;
}

const MAX_RANK = 8;

export const elementwiseKernel = new Kernel<ElementwiseVariant>({
  name: 'elementwise',
  entryPoints: ['unary', 'unary_grad', 'binary', 'binary_grad'],
  dtypes: ['f32', 'f16'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'a', kind: 'read' },
    { name: 'b', kind: 'read' },
    { name: 'dy', kind: 'read' },
    { name: 'y', kind: 'read_write' },
  ],
  uniforms: [
    ['n', 'u32'],
    ['rank', 'u32'],
    ['alpha', 'f32'],
    ['shape', 'vec4u[2]'],
    ['aStrides', 'vec4u[2]'],
    ['bStrides', 'vec4u[2]'],
  ],
  constants: (v) => ({ OP: v.op, WRT: v.wrt }),
});

function pad8(v: readonly number[], fill: number): number[] {
  return [...v, ...new Array(MAX_RANK - v.length).fill(fill)];
}

function params(n: number, alpha = 1, shape: Shape = [], aStrides: number[] = [], bStrides: number[] = []) {
  return { n, rank: shape.length, alpha, shape: pad8(shape, 1), aStrides: pad8(aStrides, 0), bStrides: pad8(bStrides, 0) };
}

/** y = f(x). `alpha` is the factor of 'scale'. f32 or f16 (y has x's dtype; f32 math either way). */
export function unary(op: UnaryOp, x: Tensor, opts: { alpha?: number } = {}): Tensor {
  const dtype = commonDType(op, x);
  const gpu = x.gpu;
  const y = Tensor.empty(gpu, x.shape, dtype, `${op}(${x.label})`);
  elementwiseKernel.run(gpu, {
    entry: 'unary',
    variant: { op: UNARY_OPS[op], wrt: 0, dtype },
    params: params(x.size, opts.alpha ?? 1),
    buffers: { a: x, y },
    workgroups: grid1d(gpu, x.size),
    label: `unary.${op}`,
  });
  return y;
}

/** dx = dy · f'(x). */
export function unaryBackward(op: UnaryOp, x: Tensor, dy: Tensor, opts: { alpha?: number } = {}): Tensor {
  const dtype = commonDType(`${op} backward`, x, dy);
  requireSameGpu(`${op} backward`, x, dy);
  if (dy.size !== x.size) throw new ShapeError(`${op} backward: dy ${shapeStr(dy.shape)} must match x ${shapeStr(x.shape)}`);
  const gpu = x.gpu;
  const dx = Tensor.empty(gpu, x.shape, dtype, `d${op}(${x.label})`);
  elementwiseKernel.run(gpu, {
    entry: 'unary_grad',
    variant: { op: UNARY_OPS[op], wrt: 0, dtype },
    params: params(x.size, opts.alpha ?? 1),
    buffers: { a: x, dy, y: dx },
    workgroups: grid1d(gpu, x.size),
    label: `unary_grad.${op}`,
  });
  return dx;
}

/** y = a (op) b with numpy broadcasting. */
export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const dtype = commonDType(op, a, b);
  requireSameGpu(op, a, b);
  const out = broadcastShapes(op, a.shape, b.shape);
  if (out.length > MAX_RANK) throw new ShapeError(`${op}: rank ${out.length} exceeds the supported ${MAX_RANK}`);
  const gpu = a.gpu;
  const y = Tensor.empty(gpu, out, dtype, `${op}(${a.label}, ${b.label})`);
  elementwiseKernel.run(gpu, {
    entry: 'binary',
    variant: { op: BINARY_OPS[op], wrt: 0, dtype },
    params: params(y.size, 1, out, broadcastStrides(a.shape, out), broadcastStrides(b.shape, out)),
    buffers: { a, b, y },
    workgroups: grid1d(gpu, y.size),
    label: `binary.${op}`,
  });
  return y;
}

/** Gradients of y = a (op) b; each is reduced over its broadcast dims back to its operand's shape. */
export function binaryBackward(op: BinaryOp, a: Tensor, b: Tensor, dy: Tensor): { da: Tensor; db: Tensor } {
  const dtype = commonDType(`${op} backward`, a, b, dy);
  const out = broadcastShapes(op, a.shape, b.shape);
  if (dy.size !== out.reduce((p, d) => p * d, 1))
    throw new ShapeError(`${op} backward: dy ${shapeStr(dy.shape)} must have the broadcast shape ${shapeStr(out)}`);
  const gpu = a.gpu;
  const grads = [a, b].map((operand, wrt) => {
    const full = Tensor.empty(gpu, out, dtype, `d${op}/d${wrt ? 'b' : 'a'}`);
    elementwiseKernel.run(gpu, {
      entry: 'binary_grad',
      variant: { op: BINARY_OPS[op], wrt, dtype },
      params: params(full.size, 1, out, broadcastStrides(a.shape, out), broadcastStrides(b.shape, out)),
      buffers: { a, b, dy, y: full },
      workgroups: grid1d(gpu, full.size),
      label: `binary_grad.${op}`,
    });
    if (full.size === operand.size) {
      const g = full.reshape(operand.shape);
      full.release();
      return g;
    }
    // f16: sumTo accumulates in f32 and rounds once.
    const g = sumTo(full, operand.shape);
    full.release();
    return g;
  });
  return { da: grads[0], db: grads[1] };
}

export const add = (a: Tensor, b: Tensor) => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor) => binary('sub', a, b);
export const mul = (a: Tensor, b: Tensor) => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor) => binary('div', a, b);
export const scale = (x: Tensor, alpha: number) => unary('scale', x, { alpha });
export const silu = (x: Tensor) => unary('silu', x);
export const geluTanh = (x: Tensor) => unary('gelu_tanh', x);
export const geluErf = (x: Tensor) => unary('gelu_erf', x);
export const quickGelu = (x: Tensor) => unary('quick_gelu', x);
export const exp = (x: Tensor) => unary('exp', x);
