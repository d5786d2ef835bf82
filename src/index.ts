// Public API. Engine authors: create a Gpu, make Tensors, call kernels directly; or use the autograd, nn modules,
// the SDXL UNet and the io helpers.
export { Gpu, type GpuOptions, type AdapterSummary } from '../runtime/device.js';
export { BENCH_DISABLE_TOGGLES, NVIDIA_F16_TOGGLES, type GpuHost, type HostOptions } from '../runtime/host.js';
export * from '../runtime/errors.js';
export { Tensor, numel, type Shape } from './tensor.js';
export type { DType } from './dtype.js';
export { Kernel, type KernelSpec, type BindingDecl, type UniformType } from './kernels/kernel.js';
export * from './kernels/elementwise.js';
export * from './kernels/reduce.js';
export * from './kernels/softmax.js';
export * from './kernels/matmul.js';
export * from './kernels/lora_matmul.js';
export * from './kernels/conv2d.js';
export * from './kernels/group_norm.js';
export * from './kernels/layer_norm.js';
export * from './kernels/attention.js';
export * from './kernels/geglu.js';
export * from './kernels/resample.js';
export * from './kernels/timestep_embedding.js';
export * from './kernels/transpose.js';
export * from './kernels/adamw.js';
export * from './kernels/tcd_step.js';
export * as autograd from './autograd/index.js';
export * from './io/byte_source.js';
export * from './io/safetensors.js';
export * from './io/checkpoint.js';
export * from './io/lora_format.js';
export * from './unet/index.js';
