// Matmul: the 4096³ f32 GEMM against PyTorch's cuBLAS SGEMM on the same H100, the SDXL UNet's linear shapes
// (shapes read M x K x N; SDXL's weights are stored [N, K], so these run x·Wᵀ + bias like nn.Linear), a fused
// epilogue, a backward, and small quick cases for lavapipe. flops = 2·M·N·K per GEMM.
import type { Gpu } from '../runtime/device.js';
import { type Activation, MATMUL_TILES, matmul, matmulBackward } from '../src/kernels/matmul.js';
import { matmulSubgroupMatrix, subgroupMatrixPlan } from '../src/kernels/matmul_subgroup_matrix.js';
import { Tensor } from '../src/tensor.js';
import type { BenchCase, Reference } from './case.js';
import { filled } from './inputs.js';

const CUBLAS_4096: Reference = {
  value: 47900,
  source: 'PyTorch 2.11 cuBLAS SGEMM fp32 TF32 off, H100 (anchors/pytorch_h100.json)',
  adapter: 'NVIDIA|nvidia',
};

interface GemmCase {
  M: number;
  K: number;
  N: number;
  /** B stored [N, K] (a linear layer's weight). */
  transB?: boolean;
  bias?: boolean;
  activation?: Activation;
  quick?: boolean;
  reference?: Reference;
  /** Force a tile preset (sweeps); default: the wrapper's choice. */
  tile?: keyof typeof MATMUL_TILES;
  /** Force K-slices (sweeps); default: the wrapper's choice. */
  splitK?: number;
}

function forwardCase(c: GemmCase): BenchCase {
  const epi = [c.transB ? 'x·Wᵀ' : '', c.bias ? '+bias' : '', c.activation ? `+${c.activation}` : ''].filter(Boolean).join(' ');
  return {
    kernel: c.tile ? `matmul sweep ${c.tile}${c.splitK ? ` split ${c.splitK}` : ''}` : 'matmul',
    shape: `${c.M}x${c.K}x${c.N}${epi ? ` ${epi}` : ''}`,
    flops: 2 * c.M * c.N * c.K,
    quick: c.quick,
    reference: c.reference,
    setup(gpu) {
      const a = filled(gpu, [c.M, c.K], 'a');
      const b = filled(gpu, c.transB ? [c.N, c.K] : [c.K, c.N], 'b');
      const bias = c.bias ? filled(gpu, [c.N], 'bias') : undefined;
      const opts = { transB: c.transB, bias, activation: c.activation, tile: c.tile ? MATMUL_TILES[c.tile] : undefined, splitK: c.splitK };
      return {
        run: () => matmul(a, b, opts).release(),
        dispose: () => [a, b, bias].forEach((t) => t?.release()),
      };
    },
  };
}

/** dX and dW of a linear layer y = x·Wᵀ + b (two GEMMs of 2·M·N·K each, plus the bias column sums). */
function backwardCase(M: number, K: number, N: number, quick = false): BenchCase {
  return {
    kernel: 'matmul backward',
    shape: `${M}x${K}x${N} x·Wᵀ+bias`,
    flops: 4 * M * N * K,
    quick,
    setup(gpu) {
      const x = filled(gpu, [M, K], 'x');
      const w = filled(gpu, [N, K], 'W');
      const bias = filled(gpu, [N], 'bias');
      const dy = filled(gpu, [M, N], 'dy');
      return {
        run: () => {
          const g = matmulBackward(x, w, dy, { transB: true, bias });
          [g.da, g.db, g.dbias].forEach((t) => t?.release());
        },
        dispose: () => [x, w, bias, dy].forEach((t) => t.release()),
      };
    },
  };
}

/** The kernels have f16 variants (`npm run bench -- --dtype f16`). */
export const dtypes = ['f32', 'f16'] as const;

export const cases: BenchCase[] = [
  forwardCase({ M: 4096, K: 4096, N: 4096, reference: CUBLAS_4096 }),
  // SDXL UNet linears (M = tokens): attention projections at 64×64 latents, the feed-forward in/out at 32×32,
  // and the text-conditioning projection (77 tokens × 2048 → 1280).
  forwardCase({ M: 4096, K: 640, N: 640, transB: true, bias: true }),
  forwardCase({ M: 4096, K: 1280, N: 5120, transB: true, bias: true }),
  forwardCase({ M: 1024, K: 1280, N: 10240, transB: true, bias: true }),
  // dX of SDXL's level-2 ff.net.2 (dY [1024, 1280] · W [1280, 5120]: B not transposed).
  forwardCase({ M: 1024, K: 1280, N: 5120 }),
  forwardCase({ M: 77, K: 2048, N: 1280, transB: true, bias: true }),
  forwardCase({ M: 4096, K: 1280, N: 5120, transB: true, bias: true, activation: 'gelu_erf' }),
  backwardCase(4096, 640, 640),
  forwardCase({ M: 256, K: 256, N: 256, quick: true }),
  forwardCase({ M: 512, K: 512, N: 512, quick: true }),
  forwardCase({ M: 77, K: 256, N: 320, transB: true, bias: true, quick: true }),
  backwardCase(256, 128, 128, true),
  // The tensor-core GEMM (kernels/matmul_subgroup_matrix.wgsl): f16 only, where the device offers subgroup matrices.
  subgroupMatrixCase(4096, 4096, 4096),
  subgroupMatrixCase(4096, 1280, 5120, true),
  subgroupMatrixCase(512, 512, 512, false, true),
];

function subgroupMatrixCase(M: number, K: number, N: number, transB = false, quick = false): BenchCase {
  return {
    kernel: 'matmul subgroup-matrix',
    shape: `${M}x${K}x${N}${transB ? ' x·Wᵀ' : ''}`,
    flops: 2 * M * N * K,
    quick,
    dtypes: ['f16'],
    unavailable: (gpu) => {
      const plan = subgroupMatrixPlan(gpu);
      return 'reason' in plan ? plan.reason : null;
    },
    setup(gpu) {
      const a = filled(gpu, [M, K], 'a');
      const b = filled(gpu, transB ? [N, K] : [K, N], 'b');
      return {
        run: () => matmulSubgroupMatrix(a, b, { transB }).release(),
        dispose: () => [a, b].forEach((t) => t.release()),
      };
    },
  };
}

// TCD_MATMUL_SWEEP=1: every tile preset × K-split 1, 2, 4 on the SDXL UNet's linear shapes (M tokens × K in × N out),
// to fit the wrapper's tile and split choice (chooseMatmulTile, splitKFor) to the GPU at hand.
const SDXL_LINEARS: [number, number, number][] = [
  [1024, 1280, 1280], [1024, 1280, 3840], [1024, 1280, 10240], [1024, 5120, 1280],
  [4096, 640, 640], [4096, 640, 1920], [4096, 640, 5120], [4096, 2560, 640], [77, 2048, 1280],
];
if (typeof process !== 'undefined' && process.env?.TCD_MATMUL_SWEEP === '1') {
  for (const [M, K, N] of SDXL_LINEARS)
    for (const tile of Object.keys(MATMUL_TILES) as (keyof typeof MATMUL_TILES)[])
      for (const splitK of tile === 'large' ? [1, 2, 4, 8] : [1, 2, 4]) cases.push(forwardCase({ M, K, N, transB: true, bias: true, tile, splitK }));
  // Input gradients of the feed-forward (dY · W, W not transposed) on the large tile.
  for (const [M, K, N] of [[1024, 10240, 1280], [1024, 1280, 5120]] as const)
    for (const splitK of [1, 2, 4, 8]) cases.push(forwardCase({ M, K, N, tile: 'large', splitK }));
}
