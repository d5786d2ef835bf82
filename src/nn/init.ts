// Random initialisation of a model's parameters on the GPU (kernels/random.wgsl): no host arrays, so the 2.57 G
// parameters of the SDXL UNet (9.6 GiB f32) are ready in seconds. For benchmarks and tests that need a model of the
// real shape but not real weights.
//
// Rules, by parameter name and shape (diffusers names, see src/nn/module.ts):
//   '*.bias'                     → 0
//   '*.weight' of rank 1 (norms) → 1
//   other weights [out, ...fan]  → N(0, (gain / √fan_in)²), fan_in = product of the dims after the first
// With gain 1 a Linear / conv keeps the variance of its input, so activations of a deep random UNet stay finite.
// Each parameter draws from its own stream, a hash of its name: its values do not depend on the other parameters.
import type { Gpu } from '../../runtime/device.js';
import { Var } from '../autograd/tape.js';
import { cast } from '../kernels/cast.js';
import { constantTensor, randomNormal } from '../kernels/random.js';
import type { DType } from '../dtype.js';
import { type Tensor, numel } from '../tensor.js';
import type { Param } from './module.js';

export interface RandomInitOptions {
  /** default 0 */
  seed?: number;
  /** Weight std = gain / √fan_in (default 1). */
  gain?: number;
  /** Parameters to make trainable (requiresGrad); default none. */
  trainable?: (name: string) => boolean;
  /** Storage type of the parameters (default f32; f16: drawn in f32, rounded once). */
  dtype?: DType;
  /**
   * Where to put some parameters instead of a buffer of their own: name → a view of a packed buffer
   * (allocatePackedWeights in src/nn/fused.ts); the values are copied in and the view becomes the parameter.
   */
  packed?: ReadonlyMap<string, Tensor>;
  /** Called after each parameter with the running count (e.g. a progress line every N tensors). */
  onProgress?: (done: number, total: number, name: string) => void;
}

export interface RandomInitSummary {
  tensors: number;
  params: number;
  bytes: number;
}

export type InitKind = { kind: 'constant'; value: number } | { kind: 'normal'; std: number };

/** How `name` with `shape` is initialised under the rules above. */
export function initRule(name: string, shape: readonly number[], gain = 1): InitKind {
  if (name.endsWith('.bias')) return { kind: 'constant', value: 0 };
  if (shape.length <= 1) return { kind: 'constant', value: 1 };
  return { kind: 'normal', std: gain / Math.sqrt(numel(shape.slice(1))) };
}

/** FNV-1a of the name: the random stream of one parameter. */
export function nameStream(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** One parameter's random (or constant) f32 tensor under the rules above, made on the GPU. */
export function randomParameter(gpu: Gpu, name: string, shape: readonly number[], seed = 0, gain = 1): Tensor {
  const rule = initRule(name, shape, gain);
  return rule.kind === 'constant'
    ? constantTensor(gpu, shape, rule.value, name)
    : randomNormal(gpu, shape, { seed, stream: nameStream(name) }, 0, rule.std, name);
}

/** Replaces every parameter's value with a fresh random (or constant) f32 tensor on the GPU. */
export function initRandomParameters(gpu: Gpu, params: ReadonlyMap<string, Param>, opts: RandomInitOptions = {}): RandomInitSummary {
  const seed = opts.seed ?? 0;
  const gain = opts.gain ?? 1;
  const summary: RandomInitSummary = { tensors: 0, params: 0, bytes: 0 };
  const total = params.size;
  for (const [name, p] of params) {
    let t = randomParameter(gpu, name, p.shape, seed, gain);
    if (opts.dtype === 'f16') {
      // Drawn in f32 (the same values as an f32 model), rounded once to f16.
      const h = cast(t, 'f16');
      t.release();
      t = h;
    }
    const into = opts.packed?.get(name);
    if (into) {
      gpu.queue.encoderForCopy().copyBufferToBuffer(t.buffer, t.byteOffset, into.buffer, into.byteOffset, t.bytes);
      t.release();
      t = into;
    }
    p.var?.dispose();
    p.var = new Var(t, opts.trainable?.(name) ?? false, name);
    summary.tensors++;
    summary.params += t.size;
    summary.bytes += t.bytes;
    opts.onProgress?.(summary.tensors, total, name);
  }
  return summary;
}
