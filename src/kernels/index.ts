// `tcd-webgpu/kernels`: the device, tensors and the kernel wrappers alone, for engines that call kernels directly
// and want neither the models nor the io helpers. The same classes as the top-level entry (one module graph).
export { Gpu, type GpuOptions, type AdapterSummary } from '../../runtime/device.js';
export { BENCH_DISABLE_TOGGLES, NVIDIA_F16_TOGGLES, type GpuHost, type HostOptions } from '../../runtime/host.js';
export * from '../../runtime/errors.js';
export { Tensor, numel, type Shape } from '../tensor.js';
export type { DType } from '../dtype.js';
export { Kernel, type KernelSpec, type BindingDecl, type UniformType } from './kernel.js';
export * from './elementwise.js';
export * from './reduce.js';
export * from './softmax.js';
export * from './matmul.js';
export * from './lora_matmul.js';
export * from './conv2d.js';
export * from './group_norm.js';
export * from './layer_norm.js';
export * from './attention.js';
export * from './geglu.js';
export * from './resample.js';
export * from './timestep_embedding.js';
export * from './transpose.js';
export * from './adamw.js';
export * from './tcd_step.js';
export * from './embedding.js';
export * from './random.js';
export * from './cast.js';
export { F16_TOL, f16Tolerance, f16NormTolerance, probeF16, resolveDType, parseDTypeChoice, type F16Status, type DTypeChoice } from './f16_support.js';
