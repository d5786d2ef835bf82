// Nearest ×2 upsampling (forward, backward) and the skip concat / split of SDXL's up path at 1024² (batch 1):
// Upsample2D of up_blocks.0 (1280 @ 32² → 64²) and up_blocks.1 (640 @ 64² → 128²); cat of up_blocks.2's first resnet
// (640 + 320 @ 128²) and of up_blocks.0 (1280 + 1280 @ 32²). Memory-bound: GB/s of bytes read + written (f32).
// Reference: H100 HBM3 peak (a roofline).
import { hbmRooflineH100 } from './anchors.js';
import type { BenchCase } from './case.js';
import { Tensor, numel, type Shape } from '../src/tensor.js';
import { concat, split, upsampleNearest, upsampleNearestBackward } from '../src/kernels/resample.js';
import { filled, F32, dims } from './inputs.js';

function upsampleCase(shape: Shape, quick: boolean): BenchCase {
  return {
    kernel: 'upsample nearest x2',
    shape: dims(shape),
    bytes: 5 * numel(shape) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, shape, 'x');
      return { run: () => upsampleNearest(x).release(), dispose: () => x.release() };
    },
  };
}

function upsampleBackwardCase(shape: Shape, quick: boolean): BenchCase {
  const [B, C, H, W] = shape;
  return {
    kernel: 'upsample nearest x2 backward',
    shape: dims(shape),
    bytes: 5 * numel(shape) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const dy = filled(gpu, [B, C, 2 * H, 2 * W], 'dy');
      return { run: () => upsampleNearestBackward(dy, shape).release(), dispose: () => dy.release() };
    },
  };
}

function concatCase(a: Shape, b: Shape, quick: boolean): BenchCase {
  return {
    kernel: 'concat (channels)',
    shape: `${dims(a)} ++ ${dims(b)}`,
    bytes: 2 * (numel(a) + numel(b)) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, a, 'a');
      const y = filled(gpu, b, 'b');
      return {
        run: () => concat(x, y).release(),
        dispose: () => {
          x.release();
          y.release();
        },
      };
    },
  };
}

function splitCase(shape: Shape, sizeA: number, quick: boolean): BenchCase {
  return {
    kernel: 'split (channels)',
    shape: `${dims(shape)} at ${sizeA}`,
    bytes: 2 * numel(shape) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, shape, 'x');
      return {
        run: () => split(x, sizeA).forEach((t) => t.release()),
        dispose: () => x.release(),
      };
    },
  };
}

/** The kernels have f16 variants (`npm run bench -- --dtype f16`). */
export const dtypes = ['f32', 'f16'] as const;

export const cases: BenchCase[] = [
  upsampleCase([1, 1280, 32, 32], false),
  upsampleCase([1, 640, 64, 64], false),
  upsampleBackwardCase([1, 1280, 32, 32], false),
  upsampleBackwardCase([1, 640, 64, 64], false),
  concatCase([1, 640, 128, 128], [1, 320, 128, 128], false),
  concatCase([1, 1280, 32, 32], [1, 1280, 32, 32], false),
  splitCase([1, 960, 128, 128], 640, false),
  // Quick (lavapipe-sized).
  upsampleCase([1, 320, 16, 16], true),
  upsampleBackwardCase([1, 320, 16, 16], true),
  concatCase([1, 320, 32, 32], [1, 160, 32, 32], true),
  splitCase([1, 480, 32, 32], 320, true),
];
