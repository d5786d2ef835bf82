// Sinusoidal timestep embedding (kernels/timestep_embedding.wgsl), diffusers get_timestep_embedding. SDXL uses it for
// the timestep (dim 320, flip_sin_to_cos true, shift 0) and for each of the 6 add_time_ids (dim 256): embed the
// flattened [B·6] ids and view the result [B·6, 256] as [B, 1536].
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { Tensor, shapeStr } from '../tensor.js';
import { requireDType } from './checks.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export const timestepEmbeddingKernel = new Kernel<Record<string, number>>({
  name: 'timestep_embedding',
  entryPoints: ['embed'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 't', kind: 'read' },
    { name: 'freq', kind: 'read' },
    { name: 'y', kind: 'read_write' },
  ],
  uniforms: [
    ['n', 'u32'],
    ['dim', 'u32'],
    ['half', 'u32'],
    ['flip', 'u32'],
    ['scale', 'f32'],
  ],
});

export interface TimestepEmbeddingOptions {
  /** [cos | sin] instead of [sin | cos] (diffusers default false; SDXL true). */
  flipSinToCos?: boolean;
  /** diffusers downscale_freq_shift (default 1; SDXL 0). */
  downscaleFreqShift?: number;
  /** Multiplies the arguments (default 1). */
  scale?: number;
  /** default 10000 */
  maxPeriod?: number;
}

/**
 * freq[i] = exp(exponent[i]) with torch's float32 steps: exponent = f32(f32(−ln max_period) · i) / f32(half − shift)
 * (CPU true division), exp correctly rounded to f32 (torch's vectorised expf is within 1 ulp of that).
 */
export function timestepFrequencies(half: number, shift: number, maxPeriod: number): Float32Array {
  const f = Math.fround;
  const c = f(-Math.log(maxPeriod));
  const d = f(half - shift);
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) out[i] = f(Math.exp(f(f(c * i) / d)));
  return out;
}

// The frequency table of each (dim, shift, max period) is uploaded once per device and kept.
const freqCache = new WeakMap<Gpu, Map<string, Tensor>>();

function frequencies(gpu: Gpu, half: number, shift: number, maxPeriod: number): Tensor {
  let perGpu = freqCache.get(gpu);
  if (!perGpu) freqCache.set(gpu, (perGpu = new Map()));
  const key = `${half}/${shift}/${maxPeriod}`;
  let t = perGpu.get(key);
  if (!t) {
    t = Tensor.fromArray(gpu, timestepFrequencies(half, shift, maxPeriod), [half], { label: `timestep_freq(${key})` });
    perGpu.set(key, t);
  }
  return t;
}

/** y [N, dim] from timesteps t [N] (f32; fractional allowed), as diffusers get_timestep_embedding. */
export function timestepEmbedding(t: Tensor, dim: number, opts: TimestepEmbeddingOptions = {}): Tensor {
  requireDType('timestepEmbedding', 'f32', t);
  if (t.rank !== 1) throw new ShapeError(`timestepEmbedding: timesteps '${t.label}' has shape ${shapeStr(t.shape)}, expected [N]`);
  if (!Number.isInteger(dim) || dim < 1) throw new ShapeError(`timestepEmbedding: dim must be a positive integer, got ${dim}`);
  const gpu = t.gpu;
  const half = Math.floor(dim / 2);
  const y = Tensor.empty(gpu, [t.shape[0], dim], 'f32', `timestep_embedding(${t.label})`);
  // half = 0 (dim 1) binds a 1-element table that is never read.
  const freq = frequencies(gpu, Math.max(half, 1), opts.downscaleFreqShift ?? 1, opts.maxPeriod ?? 10000);
  timestepEmbeddingKernel.run(gpu, {
    entry: 'embed',
    variant: {},
    params: { n: y.size, dim, half, flip: opts.flipSinToCos ? 1 : 0, scale: opts.scale ?? 1 },
    buffers: { t, freq, y },
    workgroups: grid1d(gpu, y.size),
  });
  return y;
}
