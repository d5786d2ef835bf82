// Layer norm (affine) forward and backward on SDXL transformer token rows. Memory bound: throughput is GB/s of the
// bytes a call must move at minimum (forward: read x + write y = 2·4·numel; backward: read x, dy + write dx =
// 3·4·numel; weight / bias / statistics are negligible). The backward reads x and dy a second time for the weight
// and bias gradients. Reference: H100 HBM3 peak (a roofline, not a measurement).
import { hbmRooflineH100 } from './anchors.js';
import type { BenchCase } from './case.js';
import { Tensor, numel, type Shape } from '../src/tensor.js';
import { layerNorm, layerNormBackward } from '../src/kernels/layer_norm.js';
import { filled, F32 } from './inputs.js';

function forwardCase(M: number, D: number, quick: boolean): BenchCase {
  return {
    kernel: 'layer_norm',
    shape: `${M}x${D}`,
    bytes: 2 * M * D * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, [M, D], 'x');
      const weight = filled(gpu, [D], 'weight', 1);
      const bias = filled(gpu, [D], 'bias', 2);
      return {
        run: () => {
          const r = layerNorm(x, { weight, bias, eps: 1e-5 });
          r.y.release();
          r.mean.release();
          r.rstd.release();
        },
        dispose: () => [x, weight, bias].forEach((t) => t.release()),
      };
    },
  };
}

function backwardCase(M: number, D: number, quick: boolean): BenchCase {
  return {
    kernel: 'layer_norm backward',
    shape: `${M}x${D}`,
    bytes: 3 * M * D * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, [M, D], 'x');
      const dy = filled(gpu, [M, D], 'dy', 3);
      const weight = filled(gpu, [D], 'weight', 1);
      const bias = filled(gpu, [D], 'bias', 2);
      const saved = layerNorm(x, { weight, bias, eps: 1e-5 });
      return {
        run: () => {
          const g = layerNormBackward(dy, x, saved, { weight, bias });
          g.dx.release();
          g.dweight?.release();
          g.dbias?.release();
        },
        dispose: () => [x, dy, weight, bias, saved.y, saved.mean, saved.rstd].forEach((t) => t.release()),
      };
    },
  };
}

// SDXL transformer blocks: 4096 tokens × 640 (64×64 latent level), 1024 tokens × 1280 (32×32 level); quick:
// lavapipe-sized.
/** The kernels have f16 variants (`npm run bench -- --dtype f16`). */
export const dtypes = ['f32', 'f16'] as const;

export const cases: BenchCase[] = [
  forwardCase(4096, 640, false),
  forwardCase(1024, 1280, false),
  backwardCase(4096, 640, false),
  backwardCase(1024, 1280, false),
  forwardCase(256, 640, true),
  backwardCase(256, 640, true),
];
