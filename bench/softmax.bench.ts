// Softmax over the last axis, forward and backward, at attention-score sizes: SDXL self-attention at 64×64 latents
// (10 heads × 4096 queries × 4096 keys) and cross-attention to CLIP's 77 tokens. Memory-bound: throughput is GB/s of
// bytes read + written (f32; forward reads x and writes y, backward reads y and dy and writes dx). Reference: H100
// HBM3 peak (a roofline).
import { hbmRooflineH100 } from './anchors.js';
import type { BenchCase } from './case.js';
import { Tensor, numel, type Shape } from '../src/tensor.js';
import { softmax, softmaxBackward } from '../src/kernels/softmax.js';
import { filled, F32, dims } from './inputs.js';

function forwardCase(shape: Shape, quick: boolean): BenchCase {
  return {
    kernel: 'softmax',
    shape: dims(shape),
    bytes: 2 * numel(shape) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, shape, 'x');
      return { run: () => softmax(x).release(), dispose: () => x.release() };
    },
  };
}

function backwardCase(shape: Shape, quick: boolean): BenchCase {
  return {
    kernel: 'softmax backward',
    shape: dims(shape),
    bytes: 3 * numel(shape) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, shape, 'x');
      const y = softmax(x);
      x.release();
      const dy = filled(gpu, shape, 'dy', 1);
      return {
        run: () => softmaxBackward(y, dy).release(),
        dispose: () => {
          y.release();
          dy.release();
        },
      };
    },
  };
}

const SELF = [10 * 4096, 4096];
const CROSS = [10 * 4096, 77];

/** The kernels have f16 variants (`npm run bench -- --dtype f16`). */
export const dtypes = ['f32', 'f16'] as const;

export const cases: BenchCase[] = [
  forwardCase(SELF, false),
  forwardCase(CROSS, false),
  forwardCase([4096, 77], false),
  backwardCase(SELF, false),
  backwardCase(CROSS, false),
  // Quick (lavapipe-sized) versions.
  forwardCase([64, 4096], true),
  forwardCase([512, 77], true),
  backwardCase([64, 4096], true),
];
