// Elementwise kernels on SDXL-sized activations: add (same shape and broadcast bias), silu, gelu_erf.
// Memory-bound, so throughput is GB/s of bytes read + written (f32). Reference: H100 HBM3 peak (a roofline).
import { hbmRooflineH100 } from './anchors.js';
import type { BenchCase } from './case.js';
import { Tensor, numel, type Shape } from '../src/tensor.js';
import { binary, unary, type UnaryOp } from '../src/kernels/elementwise.js';
import { filled, F32, dims } from './inputs.js';

function addCase(a: Shape, b: Shape, quick: boolean): BenchCase {
  const n = numel(a);
  const nb = numel(b);
  return {
    kernel: nb === n ? 'add' : 'add (broadcast)',
    shape: nb === n ? dims(a) : `${dims(a)} + ${dims(b)}`,
    bytes: (2 * n + nb) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, a, 'x');
      const y = filled(gpu, b, 'y');
      return {
        run: () => binary('add', x, y).release(),
        dispose: () => {
          x.release();
          y.release();
        },
      };
    },
  };
}

function unaryCase(op: UnaryOp, shape: Shape, quick: boolean): BenchCase {
  return {
    kernel: op,
    shape: dims(shape),
    bytes: 2 * numel(shape) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, shape, 'x');
      return { run: () => unary(op, x).release(), dispose: () => x.release() };
    },
  };
}

// SDXL: the first down block's activations (1×320×128×128) and the mid-size feed-forward (4096 tokens × 5120).
const CONV_ACT = [1, 320, 128, 128];
const FF_ACT = [4096, 5120];
// Quick (lavapipe-sized) versions.
const CONV_SMALL = [1, 320, 32, 32];
const FF_SMALL = [256, 1280];

/** The kernels have f16 variants (`npm run bench -- --dtype f16`). */
export const dtypes = ['f32', 'f16'] as const;

export const cases: BenchCase[] = [
  addCase(CONV_ACT, CONV_ACT, false),
  addCase(CONV_ACT, [1, 320, 1, 1], false),
  addCase(FF_ACT, FF_ACT, false),
  addCase(FF_ACT, [5120], false),
  unaryCase('silu', CONV_ACT, false),
  unaryCase('silu', FF_ACT, false),
  unaryCase('gelu_erf', CONV_ACT, false),
  unaryCase('gelu_erf', FF_ACT, false),
  addCase(CONV_SMALL, CONV_SMALL, true),
  addCase(CONV_SMALL, [1, 320, 1, 1], true),
  addCase(FF_SMALL, [1280], true),
  unaryCase('silu', CONV_SMALL, true),
  unaryCase('gelu_erf', FF_SMALL, true),
];
