// Random and constant fills on the GPU (kernels/random.wgsl): weights for benchmarks and random init without
// building multi-GiB host arrays. Counter-based: element i of (seed, stream) always gets the same value, whatever the
// dispatch shape, and src/reference/random.ts reproduces it on the CPU.
import type { Gpu } from '../../runtime/device.js';
import { type Shape, Tensor } from '../tensor.js';
import { requireDType } from './checks.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export const randomKernel = new Kernel<Record<string, number>>({
  name: 'random',
  entryPoints: ['uniform_fill', 'normal_fill', 'constant_fill'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'y', kind: 'read_write' },
  ],
  uniforms: [
    ['n', 'u32'],
    ['key0', 'u32'],
    ['key1', 'u32'],
    ['a', 'f32'],
    ['b', 'f32'],
  ],
});

/** Which random sequence: `seed` picks the experiment, `stream` one tensor in it (default 0). */
export interface RandomKey {
  seed: number;
  stream?: number;
}

// The normal fill uses counters 2i and 2i + 1, which must stay below 2^32.
const MAX_ELEMENTS = 2 ** 31;

function checkU32(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`random: ${what} must be an integer in [0, 2^32), got ${v}`);
}

/** splitmix32-style finaliser (host side only: it turns (seed, stream) into the two kernel key words). */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** The kernel's key words for (seed, stream); distinct pairs give unrelated sequences. */
export function randomKey(key: RandomKey): [number, number] {
  const stream = key.stream ?? 0;
  checkU32(key.seed, 'seed');
  checkU32(stream, 'stream');
  const k0 = mix32((key.seed + 0x9e3779b9) >>> 0);
  const k1 = mix32((k0 ^ mix32((stream + 0x7f4a7c15) >>> 0)) >>> 0);
  return [k0, k1];
}

function run(t: Tensor, entry: string, key: [number, number], a: number, b: number, label: string): void {
  requireDType(label, 'f32', t);
  if (t.size > MAX_ELEMENTS) throw new RangeError(`${label}: tensor '${t.label}' has ${t.size} elements, at most ${MAX_ELEMENTS} supported`);
  const gpu = t.gpu;
  randomKernel.run(gpu, {
    entry,
    variant: {},
    params: { n: t.size, key0: key[0], key1: key[1], a, b },
    buffers: { y: t },
    workgroups: grid1d(gpu, t.size),
    label,
  });
}

/** t ← U[low, high) in place (default [0, 1)). */
export function fillUniform(t: Tensor, key: RandomKey, low = 0, high = 1): void {
  if (!Number.isFinite(low) || !Number.isFinite(high) || !(low <= high))
    throw new RangeError(`fillUniform: need finite low <= high, got [${low}, ${high})`);
  run(t, 'uniform_fill', randomKey(key), low, high, 'random.uniform');
}

/** t ← N(mean, std²) in place (Box–Muller; |z| <= 5.77 since u1 >= 2^-24). */
export function fillNormal(t: Tensor, key: RandomKey, mean = 0, std = 1): void {
  if (!Number.isFinite(mean) || !Number.isFinite(std) || std < 0)
    throw new RangeError(`fillNormal: need finite mean and std >= 0, got mean ${mean}, std ${std}`);
  run(t, 'normal_fill', randomKey(key), mean, std, 'random.normal');
}

/** t ← value in place. */
export function fillConstant(t: Tensor, value: number): void {
  if (!Number.isFinite(value)) throw new RangeError(`fillConstant: value must be finite, got ${value}`);
  run(t, 'constant_fill', [0, 0], value, 0, 'random.constant');
}

/** A new f32 tensor of N(mean, std²) values. */
export function randomNormal(gpu: Gpu, shape: Shape, key: RandomKey, mean = 0, std = 1, label = 'randn'): Tensor {
  const t = Tensor.empty(gpu, shape, 'f32', label);
  try {
    fillNormal(t, key, mean, std);
  } catch (e) {
    t.release();
    throw e;
  }
  return t;
}

/** A new f32 tensor of U[low, high) values. */
export function randomUniform(gpu: Gpu, shape: Shape, key: RandomKey, low = 0, high = 1, label = 'rand'): Tensor {
  const t = Tensor.empty(gpu, shape, 'f32', label);
  try {
    fillUniform(t, key, low, high);
  } catch (e) {
    t.release();
    throw e;
  }
  return t;
}

/** A new f32 tensor holding `value` everywhere (no host array: cheap for large tensors). */
export function constantTensor(gpu: Gpu, shape: Shape, value: number, label = 'full'): Tensor {
  const t = Tensor.empty(gpu, shape, 'f32', label);
  try {
    fillConstant(t, value);
  } catch (e) {
    t.release();
    throw e;
  }
  return t;
}
