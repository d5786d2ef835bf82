// GEGLU forward and backward (kernels/geglu.wgsl): y = hidden · GELU_erf(gate) with [hidden | gate] = p.chunk(2, -1),
// as diffusers' GEGLU (activations.py) applies it to the output of ff.net.0.proj.
import { ShapeError } from '../../runtime/errors.js';
import { type Shape, Tensor, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';
import { commonDType, requireSameGpu } from './checks.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export const gegluKernel = new Kernel<{ dtype: DType }>({
  name: 'geglu',
  entryPoints: ['geglu', 'geglu_grad', 'geglu_vec4', 'geglu_grad_vec4'],
  dtypes: ['f32', 'f16'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'p', kind: 'read' },
    { name: 'dy', kind: 'read' },
    { name: 'y', kind: 'read_write' },
    { name: 'p4', kind: 'read' },
    { name: 'dy4', kind: 'read' },
    { name: 'y4', kind: 'read_write' },
  ],
  uniforms: [
    ['n', 'u32'],
    ['F', 'u32'],
  ],
});

/** [..., 2F] → F, naming the op on a bad shape. */
function halfWidth(op: string, p: Tensor): number {
  const last = p.shape[p.rank - 1];
  if (p.rank === 0 || last % 2 !== 0)
    throw new ShapeError(`${op}: input ${shapeStr(p.shape)} must have an even last dimension (2·F, hidden then gate)`);
  return last / 2;
}

function dispatch(entry: 'geglu' | 'geglu_grad', p: Tensor, dy: Tensor | undefined, y: Tensor, F: number): void {
  const gpu = p.gpu;
  const R = p.size / (2 * F || 1);
  // 16-byte accesses when rows hold whole vec4s (always in SDXL: F = 4·C).
  const vec = F % 4 === 0;
  const n = vec ? (R * F) / 4 : R * F;
  const buffers: Record<string, Tensor> = vec ? { p4: p, y4: y } : { p, y };
  if (dy) buffers[vec ? 'dy4' : 'dy'] = dy;
  gegluKernel.run(gpu, {
    entry: vec ? `${entry}_vec4` : entry,
    variant: { dtype: y.dtype },
    params: { n, F: vec ? F / 4 : F },
    buffers,
    workgroups: grid1d(gpu, n),
    label: vec ? `${entry}_vec4` : entry,
  });
}

/** y[..., F] = p[..., :F] · GELU_erf(p[..., F:]) for p[..., 2F] (the proj output of diffusers' GEGLU). */
export function geglu(p: Tensor): Tensor {
  const dtype = commonDType('geglu', p);
  const F = halfWidth('geglu', p);
  const outShape: Shape = [...p.shape.slice(0, -1), F];
  const y = Tensor.empty(p.gpu, outShape, dtype, `geglu(${p.label})`);
  dispatch('geglu', p, undefined, y, F);
  return y;
}

/** dp[..., 2F] of y = geglu(p) from dy[..., F]: [dy·GELU(gate) | dy·hidden·GELU'(gate)]. */
export function gegluBackward(p: Tensor, dy: Tensor): Tensor {
  const dtype = commonDType('geglu backward', p, dy);
  requireSameGpu('geglu backward', p, dy);
  const F = halfWidth('geglu backward', p);
  const want: Shape = [...p.shape.slice(0, -1), F];
  if (dy.rank !== want.length || dy.shape.some((d, i) => d !== want[i]))
    throw new ShapeError(`geglu backward: dy has shape ${shapeStr(dy.shape)}, expected ${shapeStr(want)} (p ${shapeStr(p.shape)})`);
  const dp = Tensor.empty(p.gpu, p.shape, dtype, `dgeglu(${p.label})`);
  dispatch('geglu_grad', p, dy, dp, F);
  return dp;
}
