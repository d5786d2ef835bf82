// Reductions: the bias gradient of a 1280-wide linear layer over 4096 tokens (sum over axis 0 of [4096, 1280], via
// sumTo as the elementwise backward calls it), a row sum over the last axis of the same tensor, and the global L2
// norm of 2^26 elements (gradient clipping). Memory-bound: throughput is GB/s of bytes read + written (f32).
// Reference: H100 HBM3 peak (a roofline).
import { hbmRooflineH100 } from './anchors.js';
import type { BenchCase } from './case.js';
import { Tensor, numel, type Shape } from '../src/tensor.js';
import { globalL2Norm, sum, sumTo } from '../src/kernels/reduce.js';
import { filled, F32, dims } from './inputs.js';

function sumToCase(shape: Shape, target: Shape, quick: boolean): BenchCase {
  return {
    kernel: 'sumTo',
    shape: `${dims(shape)} -> ${dims(target)}`,
    bytes: (numel(shape) + numel(target)) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, shape, 'x');
      return { run: () => sumTo(x, target).release(), dispose: () => x.release() };
    },
  };
}

function sumCase(shape: Shape, axis: number, quick: boolean): BenchCase {
  return {
    kernel: `sum (axis ${axis})`,
    shape: dims(shape),
    bytes: (numel(shape) + numel(shape) / shape[axis]) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, shape, 'x');
      return { run: () => sum(x, axis).release(), dispose: () => x.release() };
    },
  };
}

function l2Case(n: number, parts: number, quick: boolean): BenchCase {
  return {
    kernel: parts === 1 ? 'l2 norm' : `l2 norm (${parts} tensors)`,
    shape: parts === 1 ? `2^${Math.log2(n)}` : `${parts} x 2^${Math.log2(n / parts)}`,
    bytes: n * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const xs = Array.from({ length: parts }, (_, i) => filled(gpu, [n / parts], `x${i}`));
      return { run: () => globalL2Norm(xs).release(), dispose: () => xs.forEach((x) => x.release()) };
    },
  };
}

export const cases: BenchCase[] = [
  sumToCase([4096, 1280], [1280], false),
  sumCase([4096, 1280], 0, false),
  sumCase([4096, 1280], 1, false),
  l2Case(2 ** 26, 1, false),
  l2Case(2 ** 26, 64, false),
  // Quick (lavapipe-sized) versions.
  sumToCase([512, 1280], [1280], true),
  sumCase([512, 1280], 1, true),
  l2Case(2 ** 20, 1, true),
];
