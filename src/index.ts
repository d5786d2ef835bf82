// Public API. Engine authors: create a Gpu, make Tensors, call kernels directly.
export { Gpu, type GpuOptions, type AdapterSummary } from '../runtime/device.js';
export { BENCH_DISABLE_TOGGLES, NVIDIA_F16_TOGGLES, type GpuHost, type HostOptions } from '../runtime/host.js';
export * from '../runtime/errors.js';
export { Tensor, numel, type Shape } from './tensor.js';
export type { DType } from './dtype.js';
export { Kernel, type KernelSpec, type BindingDecl, type UniformType } from './kernels/kernel.js';
export * from './kernels/elementwise.js';
export * from './kernels/reduce.js';
