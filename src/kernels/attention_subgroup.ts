// Attention forward for headDim 64 with subgroup shuffles (kernels/attention_subgroup.wgsl): quads of invocations
// share 4 query rows, each holding a quarter of the head dim, so no probability tile goes through shared memory. Same
// layout, uniform block and outputs as attention.wgsl's `forward`; src/kernels/attention.ts picks it (AttentionTile
// `sg`) on devices with the `subgroups` feature and runs it through runAttentionSubgroup.
import type { Gpu } from '../../runtime/device.js';
import type { Tensor } from '../tensor.js';
import { Kernel } from './kernel.js';

/** Queries per workgroup (64 invocations, 16 quads of 4 rows). */
export const SUBGROUP_BLOCK_ROWS = 64;
/** Workgroup storage: double-buffered K and V tiles of 16 keys × 64 floats. */
export const SUBGROUP_SHARED_BYTES = 2 * 2 * 16 * 64 * 4;

export const attentionSubgroupKernel = new Kernel<Record<string, never>>({
  name: 'attention_subgroup',
  entryPoints: ['forward_sg'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'q', kind: 'read' },
    { name: 'k', kind: 'read' },
    { name: 'v', kind: 'read' },
    { name: 'o', kind: 'read_write' },
    { name: 'lse', kind: 'read_write' },
  ],
  // The uniform block of attention.wgsl (the wrapper passes the same params object).
  uniforms: [
    ['N', 'u32'],
    ['M', 'u32'],
    ['heads', 'u32'],
    ['rows', 'u32'],
    ['qStride', 'u32'],
    ['kStride', 'u32'],
    ['vStride', 'u32'],
    ['oStride', 'u32'],
    ['scaleLog2', 'f32'],
    ['scale', 'f32'],
    ['causal', 'u32'],
    ['one', 'u32'],
    ['qOff', 'u32'],
    ['kOff', 'u32'],
    ['vOff', 'u32'],
  ],
  constants: () => ({}),
});

/** Why the subgroup forward cannot run here at this headDim (null if it can). */
export function subgroupForwardProblem(gpu: Gpu, headDim: number): string | null {
  if (headDim !== 64) return `the subgroup forward needs headDim 64 (got ${headDim})`;
  if (!gpu.hasSubgroups) return `the subgroup forward needs the 'subgroups' feature, which this device lacks`;
  if (gpu.limits.maxComputeWorkgroupStorageSize < SUBGROUP_SHARED_BYTES)
    return `${SUBGROUP_SHARED_BYTES} bytes of workgroup storage exceed maxComputeWorkgroupStorageSize ${gpu.limits.maxComputeWorkgroupStorageSize}`;
  return null;
}

export interface SubgroupForwardArgs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  lse: Tensor;
  params: Record<string, number>;
  N: number;
  heads: number;
  B: number;
  label: string;
}

export function runAttentionSubgroup(gpu: Gpu, a: SubgroupForwardArgs): void {
  attentionSubgroupKernel.run(gpu, {
    entry: 'forward_sg',
    variant: {},
    params: a.params,
    buffers: { q: a.q, k: a.k, v: a.v, o: a.o, lse: a.lse },
    workgroups: [Math.ceil(a.N / SUBGROUP_BLOCK_ROWS), a.heads, a.B],
    label: a.label,
  });
}
