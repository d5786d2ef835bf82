// f16 GEMM on subgroup matrices (kernels/matmul_subgroup_matrix.wgsl): tensor cores through Dawn's
// chromium-experimental-subgroup-matrix (Vulkan cooperative matrices). Selected only where the adapter reports the
// feature with an f16 → f32 config and a fixed subgroup size, and only after verifySubgroupMatrix (run by the f16
// probe, src/kernels/f16_support.ts) has checked it against the float64 reference on this device: until then, or if
// that check fails (reason logged), f16 GEMMs take the f16 variant of kernels/matmul.wgsl.
//
// NOT RUN in the session that wrote it (no device with the feature was available: lavapipe and SwiftShader lack
// it); its test (test/matmul_subgroup_matrix.test.ts) runs where the feature exists and skips itself elsewhere.
import type { Gpu } from '../../runtime/device.js';
import { DTypeError, ShapeError } from '../../runtime/errors.js';
import { matmulRef } from '../reference/matmul.js';
import { roundToF16 } from '../dtype.js';
import { Tensor, shapeStr } from '../tensor.js';
import { commonDType, requireSameGpu } from './checks.js';
import { Kernel } from './kernel.js';

export const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix';

/** One entry of the adapter's subgroupMatrixConfigs (GPUAdapterInfo, Dawn). */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface SubgroupMatrixVariant {
  [k: string]: number | boolean;
  M: number;
  N: number;
  K: number;
  sg: number;
  transB: boolean;
  bias: boolean;
}

export const matmulSubgroupMatrixKernel = new Kernel<SubgroupMatrixVariant>({
  name: 'matmul_subgroup_matrix',
  entryPoints: ['matmul'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'a', kind: 'read' },
    { name: 'b', kind: 'read' },
    { name: 'bias', kind: 'read' },
    { name: 'y', kind: 'read_write' },
  ],
  uniforms: [
    ['M', 'u32'],
    ['N', 'u32'],
    ['K', 'u32'],
    ['tilesN', 'u32'],
    ['batchA', 'u32'],
    ['batchB', 'u32'],
    ['batchY', 'u32'],
    ['alpha', 'f32'],
  ],
  constants: (v) => ({ TRANS_B: Number(v.transB), HAS_BIAS: Number(v.bias) }),
  // Subgroup-matrix type parameters must be const-expressions (not overrides): the config comes in the prelude.
  prelude: (v) => `const SM_M: u32 = ${v.M ?? 16}u; const SM_N: u32 = ${v.N ?? 16}u; const SM_K: u32 = ${v.K ?? 16}u; const SG: u32 = ${v.sg ?? 32}u;`,
  // wgsl_reflect cannot parse the subgroup-matrix types and templated builtins; the layout check sees stand-ins.
  reflectAs: (src) => src.replace(/subgroup_matrix_(left|right|result)<[^>]*>/g, 'f32').replace(/subgroupMatrix(\w+)<[^>]*>\(/g, 'subgroupMatrix$1('),
});

/** Workgroup memory the kernel needs for a config: two A and two B f16 tiles, 4 f32 result matrices. */
export function subgroupMatrixSharedBytes(c: SubgroupMatrixConfig): number {
  const BM = 4 * c.M;
  const BN = 4 * c.N;
  const BK = 2 * c.K;
  return 2 * 2 * BM * BK + 2 * 2 * BK * BN + 4 * 4 * c.M * c.N;
}

/** The config this device would use, or why there is none. */
export function subgroupMatrixPlan(gpu: Gpu): { config: SubgroupMatrixConfig; sg: number } | { reason: string } {
  if (!gpu.device.features.has(SUBGROUP_MATRIX_FEATURE)) return { reason: `the device does not offer '${SUBGROUP_MATRIX_FEATURE}'` };
  if (!gpu.hasF16) return { reason: `the device does not offer 'shader-f16'` };
  const info = gpu.adapterInfo as unknown as { subgroupMatrixConfigs?: SubgroupMatrixConfig[]; subgroupMinSize?: number; subgroupMaxSize?: number };
  const configs = [...(info.subgroupMatrixConfigs ?? [])].filter((c) => c.componentType === 'f16' && c.resultComponentType === 'f32');
  if (!configs.length) return { reason: 'no f16 → f32 subgroup-matrix config' };
  const { subgroupMinSize: lo, subgroupMaxSize: hi } = info;
  if (!lo || lo !== hi) return { reason: `the subgroup size is not fixed (min ${lo}, max ${hi}): 4·size invocations might not be 4 subgroups` };
  // Prefer the largest K (fewest multiply-accumulates per tile), then 16×16 results.
  configs.sort((x, y) => y.K - x.K || y.M * y.N - x.M * x.N);
  const limit = gpu.limits.maxComputeWorkgroupStorageSize;
  const fit = configs.find((c) => subgroupMatrixSharedBytes(c) <= limit && 4 * lo <= gpu.maxInvocations);
  if (!fit) return { reason: `no config fits ${limit} bytes of workgroup memory and ${gpu.maxInvocations} invocations` };
  return { config: fit, sg: lo };
}

export interface SubgroupMatmulOptions {
  /** B stored [N, K] (a linear layer's weight): Y = A·Bᵀ. */
  transB?: boolean;
  bias?: Tensor;
  alpha?: number;
  label?: string;
}

/** Y [.., M, N] = alpha · A·op(B) (+ bias) in f16 on subgroup matrices; A [.., M, K], B [K, N] or [N, K] (one matrix). */
export function matmulSubgroupMatrix(a: Tensor, b: Tensor, opts: SubgroupMatmulOptions = {}): Tensor {
  const op = opts.label ?? 'matmul_subgroup_matrix';
  const dtype = commonDType(op, a, b, ...(opts.bias ? [opts.bias] : []));
  if (dtype !== 'f16') throw new DTypeError(`${op}: subgroup-matrix GEMMs take f16 operands, got ${dtype}`);
  requireSameGpu(op, a, b);
  const plan = subgroupMatrixPlan(a.gpu);
  if ('reason' in plan) throw new Error(`${op}: not available on this device: ${plan.reason}`);
  if (a.rank < 2 || b.rank !== 2) throw new ShapeError(`${op}: A must be [.., M, K] and B one matrix, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
  const K = a.shape[a.rank - 1];
  const M = a.size / K;
  const [b0, b1] = b.shape;
  const [Kb, N] = opts.transB ? [b1, b0] : [b0, b1];
  if (Kb !== K) throw new ShapeError(`${op}: inner dims differ (K ${K} vs ${Kb}) for a ${shapeStr(a.shape)} and b ${shapeStr(b.shape)}${opts.transB ? 'ᵀ' : ''}`);
  if (opts.bias && (opts.bias.rank !== 1 || opts.bias.shape[0] !== N)) throw new ShapeError(`${op}: bias ${shapeStr(opts.bias.shape)} must be [${N}]`);
  const gpu = a.gpu;
  const y = Tensor.empty(gpu, [...a.shape.slice(0, -1), N], 'f16', op);
  if (M === 0 || N === 0) return y;
  const { config: c, sg } = plan;
  const tilesM = Math.ceil(M / (4 * c.M));
  const tilesN = Math.ceil(N / (4 * c.N));
  matmulSubgroupMatrixKernel.run(gpu, {
    entry: 'matmul',
    variant: { M: c.M, N: c.N, K: c.K, sg, transB: !!opts.transB, bias: !!opts.bias },
    params: { M, N, K, tilesN, batchA: 0, batchB: 0, batchY: 0, alpha: opts.alpha ?? 1 },
    buffers: { a, b, bias: opts.bias ?? a, y },
    workgroups: [tilesM * tilesN, 1, 1],
    label: op,
  });
  return y;
}

const verified = new WeakMap<Gpu, boolean>();

/** True once verifySubgroupMatrix passed on this device (gemm routes f16 GEMMs here only then). */
export function subgroupMatrixVerified(gpu: Gpu): boolean {
  return verified.get(gpu) === true;
}

/**
 * Runs the kernel on this device against the float64 reference (odd sizes: partial tiles in M, N, K; both B
 * layouts; bias and alpha) and records the verdict; null when it passes, else the reason (also when unavailable).
 */
export async function verifySubgroupMatrix(gpu: Gpu): Promise<string | null> {
  const plan = subgroupMatrixPlan(gpu);
  if ('reason' in plan) {
    verified.set(gpu, false);
    return plan.reason;
  }
  const [M, N, K] = [70, 45, 83];
  const av = roundToF16(Array.from({ length: M * K }, (_, i) => Math.sin(0.37 * i)));
  const bv = roundToF16(Array.from({ length: K * N }, (_, i) => Math.cos(0.11 * i)));
  const biasV = roundToF16(Array.from({ length: N }, (_, i) => 0.01 * i - 0.2));
  const bt = new Float64Array(N * K);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) bt[n * K + k] = bv[k * N + n];
  const live: Tensor[] = [];
  const t16 = (d: ArrayLike<number>, s: number[]) => (live.push(Tensor.fromArray(gpu, d, s, { dtype: 'f16', label: 'sgmm-check' })), live[live.length - 1]);
  try {
    const want = matmulRef(av, [M, K], bv, [K, N], { alpha: 0.5, bias: biasV }).y;
    for (const transB of [false, true]) {
      const y = matmulSubgroupMatrix(t16(av, [M, K]), transB ? t16(bt, [N, K]) : t16(bv, [K, N]), { transB, alpha: 0.5, bias: t16(biasV, [N]) });
      live.push(y);
      const got = await y.toArray();
      // Exact f16 inputs, f32 accumulation of K terms ≤ 0.5 each, one rounding: |err| ≤ 2^-11·|want| + K²·2^-24·0.5.
      for (let i = 0; i < want.length; i++) {
        const tol = 2 ** -11 * 1.01 * Math.abs(want[i]) + K * K * 2 ** -24 * 0.5 + 2 ** -24;
        if (!(Math.abs(got[i] - want[i]) <= tol)) {
          verified.set(gpu, false);
          return `subgroup-matrix GEMM (transB ${transB}) element ${i}: got ${got[i]}, want ${want[i]}`;
        }
      }
    }
    verified.set(gpu, true);
    return null;
  } catch (e) {
    verified.set(gpu, false);
    return `subgroup-matrix GEMM failed to run: ${(e as Error).message}`;
  } finally {
    live.forEach((t) => t.release());
  }
}
