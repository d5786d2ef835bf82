// Deterministic bench inputs: values do not matter for speed, only that they are finite and not all equal.
import type { Gpu } from '../runtime/device.js';
import { type Shape, Tensor, numel } from '../src/tensor.js';

export const F32 = 4;

/** Values in [-1, 1]·amp from a multiplicative hash of (index + seed). */
export function filled(gpu: Gpu, shape: Shape, label: string, seed = 0, amp = 1): Tensor {
  const n = numel(shape);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = amp * (((Math.imul(i + seed, 2654435761) >>> 0) % 2001) / 1000 - 1);
  return Tensor.fromArray(gpu, data, shape, { label });
}

/** '1x320x128x128' */
export const dims = (s: Shape) => s.join('x');
