// Batched transpose of the last two dims (kernels/transpose.wgsl): x [..., R, C] → y [..., C, R].
// Used to turn NCHW feature maps ([B, C, H·W]) into token rows ([B, H·W, C]) and back around the UNet's
// Transformer2DModel. The backward of y = transpose(x) is transpose(dy).
import { ShapeError } from '../../runtime/errors.js';
import { Tensor, numel, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';
import { commonDType } from './checks.js';
import { Kernel } from './kernel.js';

export const transposeKernel = new Kernel<{ dtype: DType }>({
  name: 'transpose',
  entryPoints: ['transpose'],
  dtypes: ['f32', 'f16'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'x', kind: 'read' },
    { name: 'y', kind: 'read_write' },
  ],
  uniforms: [
    ['R', 'u32'],
    ['C', 'u32'],
    ['tilesR', 'u32'],
    ['fold', 'u32'],
  ],
});

/** y [..., C, R] with y[..., c, r] = x[..., r, c] for x [..., R, C] (rank ≥ 2; leading dims are a batch). */
export function transpose(x: Tensor, label = `transpose(${x.label})`): Tensor {
  const dtype = commonDType('transpose', x);
  if (x.rank < 2) throw new ShapeError(`transpose: x ${shapeStr(x.shape)} must have rank ≥ 2 [..., R, C]`);
  const [R, C] = x.shape.slice(-2);
  const B = numel(x.shape.slice(0, -2));
  const gpu = x.gpu;
  const y = Tensor.empty(gpu, [...x.shape.slice(0, -2), C, R], dtype, label);
  if (y.size === 0) return y;
  const tilesR = Math.ceil(R / 16);
  const tilesC = Math.ceil(C / 16);
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (tilesC > max) throw new ShapeError(`transpose: ${C} columns need ${tilesC} workgroups along x, more than the device's ${max}`);
  // The batch goes into z when it fits; otherwise (tiny tilesR · B) it is folded into y.
  const fold = B > max && tilesR * B <= max;
  if (!fold && (B > max || tilesR > max)) throw new ShapeError(`transpose: x ${shapeStr(x.shape)} needs too many workgroups for one dispatch`);
  transposeKernel.run(gpu, {
    entry: 'transpose',
    variant: { dtype },
    params: { R, C, tilesR, fold: fold ? 1 : 0 },
    buffers: { x, y },
    workgroups: fold ? [tilesC, tilesR * B, 1] : [tilesC, tilesR, B],
    label: 'transpose',
  });
  return y;
}
