// Attention for headDim 64 with subgroup shuffles (kernels/attention_subgroup.wgsl): quads of invocations share their
// rows, each holding a quarter of the head dim, so no probability tile goes through shared memory. Forward (4 query
// rows per quad) and the backward's dK/dV (2 keys per quad) and dQ (2 queries per quad) kernels; same layout, uniform
// block and buffers as attention.wgsl (whose bwd_prep still computes D). src/kernels/attention.ts picks them
// (AttentionTile `sg`) on devices with the `subgroups` feature.
import type { Gpu } from '../../runtime/device.js';
import type { DType } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { ATTENTION_BINDINGS, ATTENTION_UNIFORMS } from './attention_layout.js';
import { Kernel } from './kernel.js';

export type SubgroupEntry = 'forward' | 'bwd_dq' | 'bwd_dkdv';

/** Rows (queries; keys for dK/dV) per quad: forward 4 (or 2, SubgroupRunArgs.quadRows), backward 2. 16 quads per workgroup. */
export const SUBGROUP_QUAD_ROWS: Record<SubgroupEntry, number> = { forward: 4, bwd_dq: 2, bwd_dkdv: 2 };
/** Workgroup storage: double-buffered tiles of 16 tokens × 64 floats of two operands (+ LSE and D for dK/dV). */
export const SUBGROUP_SHARED_BYTES: Record<SubgroupEntry, number> = {
  forward: 2 * 2 * 16 * 64 * 4,
  bwd_dq: 2 * 2 * 16 * 64 * 4,
  bwd_dkdv: 2 * 2 * 16 * 64 * 4 + 2 * 2 * 16 * 4,
};
const ENTRY: Record<SubgroupEntry, string> = { forward: 'forward_sg', bwd_dq: 'bwd_dq_sg', bwd_dkdv: 'bwd_dkdv_sg' };

/** rows: the forward's rows per quad (QROWS, 4 or 2); the backward entries have 2. */
export const attentionSubgroupKernel = new Kernel<{ readonly rows: number; readonly dtype: DType }>({
  name: 'attention_subgroup',
  entryPoints: ['forward_sg', 'bwd_dkdv_sg', 'bwd_dq_sg'],
  // Q, K, V, O and their gradients f32 or f16; LSE, D, the shared tiles and all math f32.
  dtypes: ['f32', 'f16'],
  bindings: ATTENTION_BINDINGS,
  uniforms: ATTENTION_UNIFORMS,
  constants: (v) => ({ QROWS: v.rows }),
});

/** Why a subgroup kernel cannot run here at this headDim (null if it can). */
export function subgroupProblem(gpu: Gpu, entry: SubgroupEntry, headDim: number): string | null {
  if (headDim !== 64) return `the subgroup kernels need headDim 64 (got ${headDim})`;
  if (!gpu.hasSubgroups) return `the subgroup kernels need the 'subgroups' feature, which this device lacks`;
  const bytes = SUBGROUP_SHARED_BYTES[entry];
  if (gpu.limits.maxComputeWorkgroupStorageSize < bytes)
    return `${bytes} bytes of workgroup storage exceed maxComputeWorkgroupStorageSize ${gpu.limits.maxComputeWorkgroupStorageSize}`;
  return null;
}

export interface SubgroupRunArgs {
  /** The attention.wgsl bindings the entry reads and writes (q, k, v and o, lse for the forward; + dout, dvec, dq / dk, dv). */
  buffers: Record<string, Tensor>;
  params: Record<string, number>;
  /** Rows the grid covers: N queries (forward, dQ) or M keys (dK/dV). */
  rows: number;
  heads: number;
  B: number;
  label: string;
  /** Forward: rows per quad, 4 (default) or 2 (twice the workgroups, for small problems). */
  quadRows?: number;
}

export function runAttentionSubgroup(gpu: Gpu, entry: SubgroupEntry, a: SubgroupRunArgs): void {
  const rows = entry === 'forward' ? (a.quadRows ?? 4) : SUBGROUP_QUAD_ROWS[entry];
  if (rows !== SUBGROUP_QUAD_ROWS[entry] && !(entry === 'forward' && rows === 2))
    throw new Error(`attention ${entry}: ${rows} rows per quad (expected ${entry === 'forward' ? '4 or 2' : '2'})`);
  attentionSubgroupKernel.run(gpu, {
    entry: ENTRY[entry],
    // One pipeline per entry and row count (the backward entries do not read QROWS: it stays at its default).
    variant: { rows: entry === 'forward' ? rows : 4, dtype: a.buffers.q.dtype },
    params: a.params,
    buffers: a.buffers,
    workgroups: [Math.ceil(a.rows / (16 * rows)), a.heads, a.B],
    label: a.label,
  });
}
