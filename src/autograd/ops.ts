// Differentiable ops: each runs the forward kernel and registers its backward (from the same kernel family) with the
// tape. Backward computes only the gradients some input needs.
import { ShapeError } from '../../runtime/errors.js';
import { type BinaryOp, type UnaryOp, binary, binaryBackward, unary, unaryBackward } from '../kernels/elementwise.js';
import { type Activation, matmulBackward, matmulWithPre, matmul as matmulKernel } from '../kernels/matmul.js';
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
}

/** Y = act(alpha · op(A)·op(B) + bias). With an activation the pre-activation is kept for backward. */
export function matmul(a: Var, b: Var, opts: MatmulOpOptions = {}): Var {
  const { bias, activation = 'none', ...rest } = opts;
  const kopts = { ...rest, bias: bias?.value, activation };
  const inputs = bias ? [a, b, bias] : [a, b];
  const tracked = inputs.some((i) => i.needsGrad);
  if (activation === 'none' || !tracked) {
    return track(matmulKernel(a.value, b.value, kopts), {
      op: 'matmul',
      inputs,
      save: () => [keep(a), keep(b)],
      backward: (dy, [sa, sb], need) => {
        const g = matmulBackward(sa, sb, dy, { ...kopts, bias: bias?.value, needA: need[0], needB: need[1] });
        return [g.da, g.db, need[2] ? g.dbias : (g.dbias?.release(), undefined)];
      },
    });
  }
  const { y, pre } = matmulWithPre(a.value, b.value, kopts);
  return track(y, {
    op: `matmul+${activation}`,
    inputs,
    save: () => [keep(a), keep(b), pre],
    backward: (dy, [sa, sb, sp], need) => {
      const g = matmulBackward(sa, sb, dy, { ...kopts, pre: sp, needA: need[0], needB: need[1] });
      return [g.da, g.db, need[2] ? g.dbias : (g.dbias?.release(), undefined)];
    },
  });
}

/** y = x·Wᵀ + b (PyTorch Linear: W [out, in]). */
export function linear(x: Var, weight: Var, bias?: Var, activation: Activation = 'none'): Var {
  if (x.shape.at(-1) !== weight.shape[1])
    throw new ShapeError(`linear: x ${shapeStr(x.shape)} last dim must equal weight ${shapeStr(weight.shape)} in-features`);
  return matmul(x, weight, { transB: true, bias, activation });
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
