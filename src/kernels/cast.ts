// dtype conversion f32 ↔ f16 on the GPU (kernels/cast.wgsl): mixed precision casts f32 master weights to f16 for
// compute, upcasts f16 activations where a stage runs in f32 (the SDXL VAE) and f16 gradients for f32 reductions.
import type { DType } from '../dtype.js';
import { Tensor } from '../tensor.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export interface CastVariant {
  [k: string]: number;
}

export const castKernel = new Kernel<CastVariant>({
  name: 'cast',
  entryPoints: ['to_f16', 'to_f32'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'x32', kind: 'read' },
    { name: 'x16', kind: 'read' },
    { name: 'y32', kind: 'read_write' },
    { name: 'y16', kind: 'read_write' },
  ],
  uniforms: [['n', 'u32']],
});

/** x as `dtype` (a new tensor; x itself when it already has that dtype, as a view to release separately). */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x.reshape(x.shape);
  const gpu = x.gpu;
  const y = Tensor.empty(gpu, x.shape, dtype, `${dtype}(${x.label})`);
  castKernel.run(gpu, {
    entry: dtype === 'f16' ? 'to_f16' : 'to_f32',
    variant: {},
    params: { n: x.size },
    buffers: dtype === 'f16' ? { x32: x, y16: y } : { x16: x, y32: y },
    workgroups: grid1d(gpu, x.size),
    label: `cast.to_${dtype}`,
  });
  return y;
}
