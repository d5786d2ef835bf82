// Group norm (± fused SiLU) forward and backward on SDXL UNet activations. Memory bound: throughput is GB/s of the
// activation bytes a call must move at minimum (forward: read x + write y = 2·4·numel, PyTorch's convention in
// anchors.json; backward: read x, dy + write dx = 3·4·numel). The kernels move more: the forward reads x twice
// (stats, apply), the backward reads x and dy twice.
import { hbmRooflineH100, pytorchH100 } from './anchors.js';
import type { BenchCase, Reference } from './case.js';
import { Tensor, numel, type Shape } from '../src/tensor.js';
import { groupNorm, groupNormBackward } from '../src/kernels/group_norm.js';
import { filled, F32, dims } from './inputs.js';

const G = 32;

function forwardCase(shape: Shape, silu: boolean, quick: boolean, reference: Reference): BenchCase {
  return {
    kernel: silu ? 'group_norm+silu' : 'group_norm',
    shape: `${dims(shape)} G=${G}`,
    bytes: 2 * numel(shape) * F32,
    quick,
    reference,
    setup(gpu) {
      const x = filled(gpu, shape, 'x');
      const gamma = filled(gpu, [shape[1]], 'gamma', 1);
      const beta = filled(gpu, [shape[1]], 'beta', 2);
      return {
        run: () => {
          const r = groupNorm(x, gamma, beta, { groups: G, eps: 1e-5, silu });
          r.y.release();
          r.mean.release();
          r.rstd.release();
        },
        dispose: () => [x, gamma, beta].forEach((t) => t.release()),
      };
    },
  };
}

function backwardCase(shape: Shape, silu: boolean, quick: boolean): BenchCase {
  return {
    kernel: silu ? 'group_norm+silu backward' : 'group_norm backward',
    shape: `${dims(shape)} G=${G}`,
    bytes: 3 * numel(shape) * F32,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const x = filled(gpu, shape, 'x');
      const dy = filled(gpu, shape, 'dy', 3);
      const gamma = filled(gpu, [shape[1]], 'gamma', 1);
      const beta = filled(gpu, [shape[1]], 'beta', 2);
      const saved = groupNorm(x, gamma, beta, { groups: G, eps: 1e-5, silu });
      return {
        run: () => {
          const g = groupNormBackward(dy, x, gamma, beta, saved, { groups: G, silu });
          g.dx.release();
          g.dgamma.release();
          g.dbeta.release();
        },
        dispose: () => [x, dy, gamma, beta, saved.y, saved.mean, saved.rstd].forEach((t) => t.release()),
      };
    },
  };
}

// SDXL UNet resolutions at a 128×128 latent (down/up blocks 1-3); quick: lavapipe-sized.
const R1 = [1, 320, 128, 128];
const R2 = [1, 640, 64, 64];
const R3 = [1, 1280, 32, 32];
const SMALL = [1, 320, 32, 32];

/** The kernels have f16 variants (`npm run bench -- --dtype f16`). */
export const dtypes = ['f32', 'f16'] as const;

export const cases: BenchCase[] = [
  forwardCase(R1, false, false, pytorchH100('group_norm32_1x320x128x128_fp32')),
  forwardCase(R1, true, false, hbmRooflineH100()),
  forwardCase(R2, false, false, hbmRooflineH100()),
  forwardCase(R3, false, false, hbmRooflineH100()),
  backwardCase(R1, false, false),
  backwardCase(R1, true, false),
  backwardCase(R2, true, false),
  backwardCase(R3, true, false),
  forwardCase(SMALL, false, true, hbmRooflineH100()),
  forwardCase(SMALL, true, true, hbmRooflineH100()),
  backwardCase(SMALL, true, true),
];
