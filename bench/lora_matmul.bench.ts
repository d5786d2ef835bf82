// The fused LoRA linear layer y = x·Wᵀ + b + scale·(x·Aᵀ)·Bᵀ (W frozen) on SDXL shapes, forward and backward
// (dx, dA, dB; no dW). Shapes read M x K x N rank r.
// flops, forward: 2·M·N·K (x·Wᵀ) + 2·M·r·K (h = x·Aᵀ) + 2·M·N·r (h·Bᵀ).
// flops, backward: g = dY·B 2·M·N·r; dx = dY·W + g·A 2·M·N·K + 2·M·r·K; dA = gᵀ·x 2·r·M·K; dB = dYᵀ·h 2·N·M·r
// (h taken from the forward).
import type { Gpu } from '../runtime/device.js';
import { loraLinearBackward, loraLinearWithH } from '../src/kernels/lora_matmul.js';
import { Tensor } from '../src/tensor.js';
import type { BenchCase } from './case.js';
import { filled } from './inputs.js';

function inputs(gpu: Gpu, M: number, K: number, N: number, r: number) {
  return {
    x: filled(gpu, [M, K], 'x'),
    W: filled(gpu, [N, K], 'W'),
    b: filled(gpu, [N], 'bias'),
    A: filled(gpu, [r, K], 'A', 0, 0.1),
    B: filled(gpu, [N, r], 'B', 0, 0.1),
  };
}

const SCALE = 1; // alpha / rank with alpha = rank, as the SDXL LoRA configs use

function forwardCase(M: number, K: number, N: number, r: number, quick = false): BenchCase {
  return {
    kernel: 'lora linear',
    shape: `${M}x${K}x${N} r${r}`,
    flops: 2 * M * N * K + 2 * M * r * K + 2 * M * N * r,
    quick,
    setup(gpu) {
      const t = inputs(gpu, M, K, N, r);
      return {
        run: () => {
          const { y, h } = loraLinearWithH(t.x, t.W, t.b, t.A, t.B, SCALE);
          y.release();
          h.release();
        },
        dispose: () => Object.values(t).forEach((v) => v.release()),
      };
    },
  };
}

function backwardCase(M: number, K: number, N: number, r: number, quick = false): BenchCase {
  return {
    kernel: 'lora linear backward',
    shape: `${M}x${K}x${N} r${r}`,
    flops: 2 * M * N * r + (2 * M * N * K + 2 * M * r * K) + 2 * r * M * K + 2 * N * M * r,
    quick,
    setup(gpu) {
      const t = inputs(gpu, M, K, N, r);
      const dy = filled(gpu, [M, N], 'dy');
      const { y, h } = loraLinearWithH(t.x, t.W, t.b, t.A, t.B, SCALE);
      y.release();
      return {
        run: () => {
          const g = loraLinearBackward(t.x, t.W, t.A, t.B, SCALE, dy, { h, bias: true });
          Object.values(g).forEach((v) => v?.release());
        },
        dispose: () => [...Object.values(t), dy, h].forEach((v) => v.release()),
      };
    },
  };
}

/** The kernels have f16 variants (`npm run bench -- --dtype f16`). */
export const dtypes = ['f32', 'f16'] as const;

export const cases: BenchCase[] = [
  // SDXL attention projections at 64×64 latents (4096 tokens, 640 channels) and the 32×32 feed-forward input.
  forwardCase(4096, 640, 640, 64),
  forwardCase(4096, 1280, 5120, 64),
  // SDXL's level-2 feed-forward (1024 tokens): ff.net.0.proj and ff.net.2 with their adapters.
  forwardCase(1024, 1280, 10240, 64),
  forwardCase(1024, 5120, 1280, 64),
  backwardCase(4096, 640, 640, 64),
  backwardCase(1024, 5120, 1280, 64),
  forwardCase(256, 320, 320, 8, true),
  backwardCase(256, 320, 320, 8, true),
];
