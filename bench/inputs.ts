// Deterministic bench inputs: values do not matter for speed, only that they are finite and not all equal.
import type { Gpu } from '../runtime/device.js';
import type { DType } from '../src/dtype.js';
import { type Shape, Tensor, numel } from '../src/tensor.js';

/** Bytes per element of the f32 rows; a case's `bytes` counts elements × F32 (f16 rows: halved by bench/run.ts). */
export const F32 = 4;

let inputDType: DType = 'f32';

/** The element type filled() makes (bench/run.ts --dtype). */
export function setBenchDType(dtype: DType): void {
  inputDType = dtype;
}

/** Values in [-1, 1]·amp from a multiplicative hash of (index + seed), in the bench's dtype (setBenchDType). */
export function filled(gpu: Gpu, shape: Shape, label: string, seed = 0, amp = 1): Tensor {
  const n = numel(shape);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = amp * (((Math.imul(i + seed, 2654435761) >>> 0) % 2001) / 1000 - 1);
  return Tensor.fromArray(gpu, data, shape, { label, dtype: inputDType });
}

/** '1x320x128x128' */
export const dims = (s: Shape) => s.join('x');
