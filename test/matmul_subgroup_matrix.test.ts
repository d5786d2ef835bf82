// The f16 subgroup-matrix GEMM (tensor cores via chromium-experimental-subgroup-matrix) against the float64
// reference. Runs only on devices that offer the feature with an f16 → f32 config (skipped by feature detection
// elsewhere, e.g. lavapipe and SwiftShader, with the reason printed). GPU machine: TCD_ENABLE_TOGGLES=
// allow_unsafe_apis,vulkan_enable_f16_on_nvidia makes Dawn offer shader-f16 and the feature on NVIDIA.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { roundToF16 } from '../src/dtype.js';
import { matmul } from '../src/kernels/matmul.js';
import { matmulSubgroupMatrix, matmulSubgroupMatrixKernel, subgroupMatrixPlan, verifySubgroupMatrix } from '../src/kernels/matmul_subgroup_matrix.js';
import { matmulRef } from '../src/reference/matmul.js';
import { Tensor } from '../src/tensor.js';
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

type Ctx = { skip(note?: string): never };
function requireFeature(ctx: Ctx): void {
  const plan = subgroupMatrixPlan(gpu);
  if ('reason' in plan) ctx.skip(`subgroup-matrix GEMM unavailable on ${gpu.describe()}: ${plan.reason}`);
}

describe('matmul_subgroup_matrix', () => {
  it('the wrapper agrees with its WGSL (bindings, uniforms) and says why a device cannot use it', () => {
    expect(matmulSubgroupMatrixKernel.spec.entryPoints).toEqual(['matmul']);
    const plan = subgroupMatrixPlan(gpu);
    console.log(`[subgroup matrix] ${gpu.describe()}: ${'reason' in plan ? `unavailable: ${plan.reason}` : `config ${JSON.stringify(plan.config)}, subgroup ${plan.sg}`}`);
    if ('reason' in plan) expect(plan.reason.length).toBeGreaterThan(0);
  });

  for (const [M, N, K, transB] of [[64, 64, 32, false], [70, 45, 83, true], [1, 130, 200, false]] as const) {
    it(`${M}×${N}×${K}${transB ? ' (B stored [N, K])' : ''} + bias, alpha 0.5 vs float64`, async (ctx) => {
      requireFeature(ctx);
      const av = roundToF16(seeded(M * K, 1));
      const bv = roundToF16(seeded(K * N, 2));
      const biasV = roundToF16(seeded(N, 3));
      const bShape = transB ? [N, K] : [K, N];
      const a = Tensor.fromArray(gpu, av, [M, K], { dtype: 'f16', label: 'a' });
      const b = Tensor.fromArray(gpu, bv, bShape, { dtype: 'f16', label: 'b' });
      const bias = Tensor.fromArray(gpu, biasV, [N], { dtype: 'f16', label: 'bias' });
      const y = matmulSubgroupMatrix(a, b, { transB, alpha: 0.5, bias });
      const want = matmulRef(av, [M, K], bv, bShape, { transB, alpha: 0.5, bias: biasV }).y;
      // f16 inputs exact, f32 accumulation of K products ≤ 0.5, one rounding to f16.
      expectClose(await y.toArray(), want, { atol: K * K * 2 ** -24 * 0.5 + 2 ** -24, rtol: 2 ** -11 * 1.01 }, 'y');
      [a, b, bias, y].forEach((t) => t.release());
    });
  }

  it('verified by the probe, f16 GEMMs route through it and still match float64', async (ctx) => {
    requireFeature(ctx);
    expect(await verifySubgroupMatrix(gpu)).toBeNull();
    const av = roundToF16(seeded(33 * 48, 4));
    const bv = roundToF16(seeded(40 * 48, 5));
    const y = matmul(Tensor.fromArray(gpu, av, [33, 48], { dtype: 'f16' }), Tensor.fromArray(gpu, bv, [40, 48], { dtype: 'f16' }), { transB: true });
    expectClose(await y.toArray(), matmulRef(av, [33, 48], bv, [40, 48], { transB: true }).y, { atol: 48 * 48 * 2 ** -24 + 2 ** -24, rtol: 2 ** -11 * 1.01 }, 'y');
  });
});
