// Reductions (kernels/reduce.wgsl).
import { ShapeError } from '../../runtime/errors.js';
import { type Shape, Tensor, numel, shapeStr } from '../tensor.js';
import { requireDType } from './checks.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export interface ReduceVariant {
  [k: string]: number;
}

const MAX_RANK = 8;

export const reduceKernel = new Kernel<ReduceVariant>({
  name: 'reduce',
  entryPoints: ['sum_to'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'x', kind: 'read' },
    { name: 'y', kind: 'read_write' },
  ],
  uniforms: [
    ['n', 'u32'],
    ['rank', 'u32'],
    ['inner', 'u32'],
    ['_pad', 'u32'],
    ['outShape', 'vec4u[2]'],
    ['redShape', 'vec4u[2]'],
    ['xStrides', 'vec4u[2]'],
  ],
});

function pad8(v: readonly number[], fill: number): number[] {
  return [...v, ...new Array(MAX_RANK - v.length).fill(fill)];
}

/** Sums x over its broadcast dims so the result has `shape` (the inverse of broadcasting `shape` to x.shape). */
export function sumTo(x: Tensor, shape: Shape): Tensor {
  requireDType('sumTo', 'f32', x);
  const rank = x.rank;
  if (shape.length > rank || rank > MAX_RANK)
    throw new ShapeError(`sumTo: cannot reduce ${shapeStr(x.shape)} to ${shapeStr(shape)}`);
  const target = [...new Array(rank - shape.length).fill(1), ...shape];
  const red = x.shape.map((d, i) => {
    if (target[i] === d) return 1;
    if (target[i] !== 1) throw new ShapeError(`sumTo: cannot reduce ${shapeStr(x.shape)} to ${shapeStr(shape)} (dim ${i})`);
    return d;
  });
  const strides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    strides[i] = s;
    s *= x.shape[i];
  }
  const gpu = x.gpu;
  const y = Tensor.empty(gpu, shape, 'f32', `sumTo(${x.label})`);
  reduceKernel.run(gpu, {
    entry: 'sum_to',
    variant: {},
    params: {
      n: numel(shape),
      rank,
      inner: numel(red),
      _pad: 0,
      outShape: pad8(target, 1),
      redShape: pad8(red, 1),
      xStrides: pad8(strides, 0),
    },
    buffers: { x, y },
    workgroups: grid1d(gpu, numel(shape)),
  });
  return y;
}
