// GEGLU forward and backward on SDXL feed-forward shapes: tokens × 2F where F = 4C (level 1: 4096 tokens, C = 640,
// F = 2560; level 2: 1024 tokens, C = 1280, F = 5120; batch 1 at 1024²), plus 4096 × 2·5120. Memory-bound: throughput
// is GB/s of bytes read + written (f32). Reference: H100 HBM3 peak (a roofline).
import { hbmRooflineH100 } from './anchors.js';
import type { BenchCase } from './case.js';
import { Tensor, numel, type Shape } from '../src/tensor.js';
import { geglu, gegluBackward } from '../src/kernels/geglu.js';
import { filled, F32 } from './inputs.js';

function forwardCase(R: number, F: number, note: string, quick: boolean): BenchCase {
  return {
    kernel: 'geglu',
    shape: `${R}x${2 * F}${note}`,
    // Reads p [R, 2F], writes y [R, F].
    bytes: 3 * R * F * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const p = filled(gpu, [R, 2 * F], 'p');
      return { run: () => geglu(p).release(), dispose: () => p.release() };
    },
  };
}

function backwardCase(R: number, F: number, note: string, quick: boolean): BenchCase {
  return {
    kernel: 'geglu backward',
    shape: `${R}x${2 * F}${note}`,
    // Reads p [R, 2F] and dy [R, F], writes dp [R, 2F].
    bytes: 5 * R * F * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const p = filled(gpu, [R, 2 * F], 'p');
      const dy = filled(gpu, [R, F], 'dy');
      return {
        run: () => gegluBackward(p, dy).release(),
        dispose: () => {
          p.release();
          dy.release();
        },
      };
    },
  };
}

/** The kernels have f16 variants (`npm run bench -- --dtype f16`). */
export const dtypes = ['f32', 'f16'] as const;

export const cases: BenchCase[] = [
  forwardCase(4096, 2560, ' (SDXL level 1)', false),
  forwardCase(1024, 5120, ' (SDXL level 2)', false),
  forwardCase(4096, 5120, '', false),
  backwardCase(4096, 2560, ' (SDXL level 1)', false),
  backwardCase(1024, 5120, ' (SDXL level 2)', false),
  backwardCase(4096, 5120, '', false),
  // Quick (lavapipe-sized); F = 321 exercises the scalar (non-vec4) path.
  forwardCase(256, 1280, '', true),
  forwardCase(256, 321, ' (scalar path)', true),
  backwardCase(256, 1280, '', true),
];
