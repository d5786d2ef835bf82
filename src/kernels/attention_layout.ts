// The binding and uniform layout shared by kernels/attention.wgsl and kernels/attention_subgroup.wgsl: the wrappers
// (attention.ts, attention_subgroup.ts) bind the same buffers and pass the same params object to either.
import type { BindingDecl, UniformType } from './kernel.js';

export const ATTENTION_BINDINGS: readonly BindingDecl[] = [
  { name: 'params', kind: 'uniform' },
  { name: 'q', kind: 'read' },
  { name: 'k', kind: 'read' },
  { name: 'v', kind: 'read' },
  { name: 'o', kind: 'read_write' },
  { name: 'lse', kind: 'read_write' },
  { name: 'dout', kind: 'read' },
  { name: 'dvec', kind: 'read_write' },
  { name: 'dq', kind: 'read_write' },
  { name: 'dk', kind: 'read_write' },
  { name: 'dv', kind: 'read_write' },
];

export const ATTENTION_UNIFORMS: readonly (readonly [string, UniformType])[] = [
  ['N', 'u32'],
  ['M', 'u32'],
  ['heads', 'u32'],
  ['rows', 'u32'],
  ['qStride', 'u32'],
  ['kStride', 'u32'],
  ['vStride', 'u32'],
  ['oStride', 'u32'],
  ['scaleLog2', 'f32'],
  ['scale', 'f32'],
  ['causal', 'u32'],
  ['one', 'u32'],
  ['qOff', 'u32'],
  ['kOff', 'u32'],
  ['vOff', 'u32'],
];
