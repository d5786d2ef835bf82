// Dispatch geometry helpers.
import type { Gpu } from '../../runtime/device.js';
import { LimitError } from '../../runtime/errors.js';

/** A 2-D grid of `workgroupSize`-wide workgroups covering n items (kernels decode (wid.y*nwg.x + wid.x)*size + lid). */
export function grid1d(gpu: Gpu, n: number, workgroupSize = 256): [number, number] {
  const groups = Math.ceil(n / workgroupSize);
  const maxX = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (groups <= maxX) return [groups, 1];
  const y = Math.ceil(groups / maxX);
  if (y > maxX) throw new LimitError('maxComputeWorkgroupsPerDimension', y, maxX, `grid for ${n} items`);
  return [Math.ceil(groups / y), y];
}

/** Workgroup size for 1-D kernels: 256, or less where the device allows fewer invocations. */
export function clampWorkgroup(gpu: Gpu, wanted: number): number {
  return Math.min(wanted, gpu.maxInvocations, gpu.limits.maxComputeWorkgroupSizeX);
}
