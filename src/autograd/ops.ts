// Differentiable ops: each runs the forward kernel and registers its backward (from the same kernel family) with the
// tape. Backward computes only the gradients some input needs.
import { ShapeError } from '../../runtime/errors.js';
import { type BinaryOp, type UnaryOp, binary, binaryBackward, unary, unaryBackward } from '../kernels/elementwise.js';
import { type Activation, matmulBackward, matmulWithPre, matmul as matmulKernel } from '../kernels/matmul.js';
import { cast } from '../kernels/cast.js';
import type { DType } from '../dtype.js';
import { meanBackward, mean as meanKernel, sumAll, sumBackward, sumTo, sum as sumKernel } from '../kernels/reduce.js';
import { type Shape, type Tensor, shapeStr } from '../tensor.js';
import { Var, keep, track } from './tape.js';

export function binaryOp(op: BinaryOp, a: Var, b: Var): Var {
  if (op === 'add' || op === 'sub') {
    // The gradients are dy (negated for b of sub) summed to each operand's shape: nothing to save.
    return track(binary(op, a.value, b.value), {
      op,
      inputs: [a, b],
      backward: (dy, _saved, need) => [
        need[0] ? sumTo(dy, a.shape) : undefined,
        need[1] ? (op === 'add' ? sumTo(dy, b.shape) : negatedSumTo(dy, b.shape)) : undefined,
      ],
    });
  }
  return track(binary(op, a.value, b.value), {
    op,
    inputs: [a, b],
    save: () => [keep(a), keep(b)],
    backward: (dy, [sa, sb]) => {
      const { da, db } = binaryBackward(op, sa, sb, dy);
      return [da, db];
    },
  });
}
function negatedSumTo(dy: Tensor, shape: Shape): Tensor {
  const s = sumTo(dy, shape);
  const n = unary('scale', s, { alpha: -1 });
  s.release();
  return n;
}

export const add = (a: Var, b: Var) => binaryOp('add', a, b);
export const sub = (a: Var, b: Var) => binaryOp('sub', a, b);
export const mul = (a: Var, b: Var) => binaryOp('mul', a, b);
export const div = (a: Var, b: Var) => binaryOp('div', a, b);

export function unaryOp(op: UnaryOp, x: Var, alpha = 1): Var {
  return track(unary(op, x.value, { alpha }), {
    op,
    inputs: [x],
    save: () => [keep(x)],
    backward: (dy, [sx]) => [unaryBackward(op, sx, dy, { alpha })],
  });
}
export const scale = (x: Var, alpha: number) => unaryOp('scale', x, alpha);
export const silu = (x: Var) => unaryOp('silu', x);
export const geluErf = (x: Var) => unaryOp('gelu_erf', x);
export const geluTanh = (x: Var) => unaryOp('gelu_tanh', x);
export const quickGelu = (x: Var) => unaryOp('quick_gelu', x);

/** x as `dtype` (f32 ↔ f16); the gradient is cast back to x's dtype (f32 master weights get f32 gradients). */
export function castOp(x: Var, dtype: DType): Var {
  if (x.value.dtype === dtype) return x;
  return track(cast(x.value, dtype), {
    op: `cast_${dtype}`,
    inputs: [x],
    backward: (dy) => [cast(dy, x.value.dtype)],
  });
}

/** View with another shape (no copy). */
export function reshape(x: Var, shape: Shape): Var {
  const out = x.value.reshape(shape);
  return track(out, {
    op: 'reshape',
    inputs: [x],
    backward: (dy) => [dy.reshape(x.shape)],
  });
}

export interface MatmulOpOptions {
  transA?: boolean;
  transB?: boolean;
  bias?: Var;
  activation?: Activation;
  alpha?: number;
  /** Added after the activation in the GEMM's epilogue (a skip connection); its gradient is dy. */
  residual?: Var;
}

/** Y = act(alpha · op(A)·op(B) + bias) [+ residual]. With an activation the pre-activation is kept for backward. */
export function matmul(a: Var, b: Var, opts: MatmulOpOptions = {}): Var {
  const { bias, activation = 'none', residual, ...rest } = opts;
  const kopts = { ...rest, bias: bias?.value, activation };
  const inputs = [a, b, ...(bias ? [bias] : []), ...(residual ? [residual] : [])];
  const iBias = bias ? 2 : -1;
  const iRes = residual ? inputs.length - 1 : -1;
  const tracked = inputs.some((i) => i.needsGrad);
  const grads = (g: { da?: Tensor; db?: Tensor; dbias?: Tensor }, dy: Tensor, need: boolean[]) => {
    const out: (Tensor | undefined)[] = [g.da, g.db];
    if (iBias >= 0) out[iBias] = need[iBias] ? g.dbias : (g.dbias?.release(), undefined);
    else g.dbias?.release();
    if (iRes >= 0) out[iRes] = need[iRes] ? dy.reshape(dy.shape) : undefined;
    return out;
  };
  if (activation === 'none' || !tracked) {
    return track(matmulKernel(a.value, b.value, { ...kopts, residual: residual?.value }), {
      op: 'matmul',
      inputs,
      save: () => [keep(a), keep(b)],
      // The bias is passed on only when it needs a gradient (a frozen bias costs no column sums).
      backward: (dy, [sa, sb], need) =>
        grads(matmulBackward(sa, sb, dy, { ...kopts, bias: need[iBias] ? kopts.bias : undefined, needA: need[0], needB: need[1] }), dy, need),
    });
  }
  const { y, pre } = matmulWithPre(a.value, b.value, { ...kopts, residual: residual?.value });
  return track(y, {
    op: `matmul+${activation}`,
    inputs,
    save: () => [keep(a), keep(b), pre],
    backward: (dy, [sa, sb, sp], need) =>
      grads(matmulBackward(sa, sb, dy, { ...kopts, bias: need[iBias] ? kopts.bias : undefined, pre: sp, needA: need[0], needB: need[1] }), dy, need),
  });
}

/** y = x·Wᵀ + b [+ residual] (PyTorch Linear: W [out, in]). */
export function linear(x: Var, weight: Var, bias?: Var, activation: Activation = 'none', residual?: Var): Var {
  if (x.shape.at(-1) !== weight.shape[1])
    throw new ShapeError(`linear: x ${shapeStr(x.shape)} last dim must equal weight ${shapeStr(weight.shape)} in-features`);
  return matmul(x, weight, { transB: true, bias, activation, residual });
}

export function sum(x: Var, axis: number, keepDims = false): Var {
  return track(sumKernel(x.value, axis, { keepdim: keepDims }), {
    op: 'sum',
    inputs: [x],
    backward: (dy) => [sumBackward(dy, x.shape, axis)],
  });
}

export function mean(x: Var, axis: number, keepDims = false): Var {
  return track(meanKernel(x.value, axis, { keepdim: keepDims }), {
    op: 'mean',
    inputs: [x],
    backward: (dy) => [meanBackward(dy, x.shape, axis)],
  });
}

/** Sum of all elements, as a [1] tensor. */
export function sumAllOp(x: Var): Var {
  return track(sumAll(x.value), {
    op: 'sumAll',
    inputs: [x],
    backward: (dy) => {
      const flat = sumBackward(dy, [x.value.size], 0);
      const g = flat.reshape(x.shape);
      flat.release();
      return [g];
    },
  });
}
