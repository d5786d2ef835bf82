// Kernel harness: a kernel family is one kernels/<name>.wgsl plus a wrapper that declares its bindings, uniform
// struct, entry points and variant → override constants. The declaration is checked against the WGSL (parsed by
// wgsl_reflect) when the wrapper is constructed, so a mismatch fails at load instead of as a GPU validation error.
import { WgslReflect, ResourceType } from 'wgsl_reflect/wgsl_reflect.module.js';
import type { Gpu } from '../../runtime/device.js';
import { DTypeError, KernelCompileError, KernelLayoutError, LimitError } from '../../runtime/errors.js';
import { type Variant, variantKey } from '../../runtime/pipeline_cache.js';
import type { Tensor } from '../tensor.js';
import type { DType } from '../dtype.js';
import { WGSL_INCLUDES, WGSL_SOURCES } from './wgsl_sources.generated.js';

export type BindingKind = 'uniform' | 'read' | 'read_write';
export interface BindingDecl {
  readonly name: string;
  readonly kind: BindingKind;
}

/** Uniform field types: scalars, vec4s, and fixed arrays of vec4 (`vec4u[2]`). */
export type UniformType = 'u32' | 'i32' | 'f32' | 'vec4u' | 'vec4i' | 'vec4f' | `${'vec4u' | 'vec4i' | 'vec4f'}[${number}]`;

export interface KernelSpec<V extends Variant> {
  /** WGSL file stem in kernels/. */
  readonly name: string;
  readonly entryPoints: readonly string[];
  /** @group(0) bindings in binding-index order; binding i of the WGSL must carry the same name and access. */
  readonly bindings: readonly BindingDecl[];
  /** Fields of the uniform struct (bound as the binding of kind 'uniform'), in declaration order. */
  readonly uniforms?: readonly (readonly [string, UniformType])[];
  /** Override constants for a variant (tile sizes, activation id, transposes, ...). */
  readonly constants?: (v: V) => Record<string, number>;
  /** Lines put before the WGSL for a variant (e.g. `enable f16;` and the element alias). */
  readonly prelude?: (v: V) => string;
  /**
   * Storage element types the WGSL is written for. A kernel that lists them declares its tensor bindings with the
   * element alias `T` (math stays f32: loads convert with `f32(x[i])`, stores with `T(v)`); the harness puts
   * `alias T = f32;` before the source, or `enable f16;` and `alias T = f16;` for a variant with `dtype: 'f16'`.
   * One WGSL file serves both, and the f32 variants compile to what they did before T existed.
   */
  readonly dtypes?: readonly DType[];
  /**
   * Rewrites the source for the load-time layout check only, where wgsl_reflect cannot parse a construct (the
   * subgroup-matrix types and templated builtins); the compiled source is never rewritten.
   */
  readonly reflectAs?: (source: string) => string;
  /** WGSL source (defaults to kernels/<name>.wgsl); used by tests of the harness itself. */
  readonly source?: string;
}

interface FieldLayout {
  name: string;
  type: UniformType;
  offset: number;
  size: number;
  kind: 'u32' | 'i32' | 'f32';
  count: number;
}

function fieldInfo(type: UniformType): { size: number; align: number; kind: 'u32' | 'i32' | 'f32'; count: number } {
  const arr = /^vec4([uif])\[(\d+)\]$/.exec(type);
  const kindOf = (c: string) => (c === 'u' ? 'u32' : c === 'i' ? 'i32' : 'f32') as 'u32' | 'i32' | 'f32';
  if (arr) return { size: 16 * Number(arr[2]), align: 16, kind: kindOf(arr[1]), count: 4 * Number(arr[2]) };
  if (type.startsWith('vec4')) return { size: 16, align: 16, kind: kindOf(type[4]), count: 4 };
  return { size: 4, align: 4, kind: type as 'u32' | 'i32' | 'f32', count: 1 };
}

function layoutUniforms(fields: readonly (readonly [string, UniformType])[]): { fields: FieldLayout[]; size: number } {
  let offset = 0;
  let maxAlign = 4;
  const out: FieldLayout[] = [];
  for (const [name, type] of fields) {
    const f = fieldInfo(type);
    offset = Math.ceil(offset / f.align) * f.align;
    out.push({ name, type, offset, size: f.size, kind: f.kind, count: f.count });
    offset += f.size;
    maxAlign = Math.max(maxAlign, f.align);
  }
  // Uniform structs are padded to 16 bytes so the binding size is always valid.
  return { fields: out, size: Math.max(16, Math.ceil(offset / 16) * 16) };
}

/**
 * The element prelude of kernels with `dtypes`: T / T4 storage types and toT / toT4 stores. An f16 store of an f32
 * beyond the f16 range gives ±Infinity explicitly (a runtime f32 → f16 conversion out of range is not defined by
 * WGSL): overflow stays visible, as dynamic loss scaling needs.
 */
export const ELEMENT_PRELUDE: Record<DType, string> = {
  f32: [
    'alias T = f32; alias T4 = vec4<f32>;',
    'fn toT(v: f32) -> T { return v; } fn toT4(v: vec4f) -> T4 { return v; }',
  ].join('\n'),
  f16: [
    'enable f16; alias T = f16; alias T4 = vec4<f16>;',
    // Infinity from a private variable: a const-expression infinity is a shader-creation error.
    'var<private> F16_INF_BITS: u32 = 0x7c007c00u;',
    'fn toT(v: f32) -> T { let inf = bitcast<vec2<f16>>(F16_INF_BITS).x; if (v >= 65520.0) { return inf; } if (v <= -65520.0) { return -inf; } return T(v); }',
    'fn toT4(v: vec4f) -> T4 { return T4(toT(v.x), toT(v.y), toT(v.z), toT(v.w)); }',
  ].join('\n'),
};

export type ParamValue = number | readonly number[];

export interface RunArgs<V extends Variant> {
  entry: string;
  variant: V;
  params?: Record<string, ParamValue>;
  buffers: Record<string, Tensor>;
  workgroups: readonly [number, number?, number?];
  /** Shown in profiles and errors; defaults to `<kernel>.<entry>`. */
  label?: string;
}

export class Kernel<V extends Variant> {
  readonly source: string;
  private readonly uniform?: { fields: FieldLayout[]; size: number };
  /** Binding indices each entry point statically uses (from wgsl_reflect); its bind group holds only these. */
  private readonly entryBindings = new Map<string, number[]>();
  private readonly layouts = new WeakMap<Gpu, Map<string, GPUBindGroupLayout>>();
  private readonly failed = new Map<string, KernelCompileError>();

  constructor(readonly spec: KernelSpec<V>) {
    const src = spec.source ?? WGSL_SOURCES[spec.name];
    if (src === undefined) throw new KernelLayoutError(spec.name, `no kernels/${spec.name}.wgsl (run npm run gen)`);
    this.source = src;
    if (spec.uniforms) this.uniform = layoutUniforms(spec.uniforms);
    this.checkAgainstWgsl();
  }

  private checkAgainstWgsl(): void {
    const { spec } = this;
    let reflect: WgslReflect;
    try {
      const src = this.withPrelude(undefined);
      reflect = new WgslReflect(spec.reflectAs ? spec.reflectAs(src) : src);
    } catch (e) {
      throw new KernelLayoutError(spec.name, `WGSL does not parse: ${(e as Error).message}`);
    }
    const computes = new Map(reflect.entry.compute.map((f) => [f.name, f]));
    for (const ep of spec.entryPoints)
      if (!computes.has(ep))
        throw new KernelLayoutError(spec.name, `entry point '${ep}' not found (WGSL has: ${[...computes.keys()].join(', ')})`);
    for (const ep of spec.entryPoints) {
      const used = computes.get(ep)!.resources.map((r) => r.binding);
      this.entryBindings.set(ep, [...new Set(used)].sort((x, y) => x - y));
    }
    const vars = [...reflect.uniforms, ...reflect.storage];
    for (const v of vars) {
      if (v.group !== 0) throw new KernelLayoutError(spec.name, `'${v.name}' is in @group(${v.group}); kernels use group 0 only`);
      const d = spec.bindings[v.binding];
      if (!d) throw new KernelLayoutError(spec.name, `WGSL binding ${v.binding} '${v.name}' is not declared by the wrapper`);
      const kind: BindingKind | 'other' =
        v.resourceType === ResourceType.Uniform ? 'uniform' : v.resourceType === ResourceType.Storage ? (v.access === 'read_write' ? 'read_write' : 'read') : 'other';
      if (d.name !== v.name || d.kind !== kind)
        throw new KernelLayoutError(spec.name, `binding ${v.binding}: wrapper declares ${d.kind} '${d.name}', WGSL has ${kind} '${v.name}'`);
    }
    spec.bindings.forEach((d, i) => {
      if (!vars.some((v) => v.binding === i)) throw new KernelLayoutError(spec.name, `declared binding ${i} '${d.name}' is not in the WGSL`);
    });
    const uni = reflect.uniforms[0];
    if (uni || this.uniform) {
      if (!uni || !this.uniform) throw new KernelLayoutError(spec.name, `uniform struct declared on one side only`);
      const members = uni.members ?? [];
      const wgslFields = members.map((m) => `${m.name}@${m.offset}`).join(', ');
      const tsFields = this.uniform.fields.map((f) => `${f.name}@${f.offset}`).join(', ');
      if (wgslFields !== tsFields) throw new KernelLayoutError(spec.name, `uniform fields differ: WGSL {${wgslFields}} vs wrapper {${tsFields}}`);
    }
  }

  /** The storage element type of a variant: its `dtype` field, f32 when absent. */
  static dtypeOf(variant: Variant | undefined): DType {
    const d = variant?.dtype;
    return d === 'f16' ? 'f16' : 'f32';
  }

  /** Lines before the kernel source: the element alias (kernels with dtypes), then the spec's own prelude. */
  private prelude(variant: V | undefined): string {
    const lines: string[] = [];
    if (this.spec.dtypes) {
      const dtype = Kernel.dtypeOf(variant);
      if (!this.spec.dtypes.includes(dtype))
        throw new KernelLayoutError(this.spec.name, `no ${dtype} variant (the WGSL is written for ${this.spec.dtypes.join(', ')})`);
      lines.push(ELEMENT_PRELUDE[dtype]);
    } else if (variant?.dtype !== undefined && variant.dtype !== 'f32') {
      throw new KernelLayoutError(this.spec.name, `no ${String(variant.dtype)} variant (the WGSL is f32 only)`);
    }
    if (this.spec.prelude) lines.push(this.spec.prelude(variant ?? ({} as V)));
    return lines.join('\n');
  }

  /** Where line n of the compiled source (prelude + kernel + appended includes) comes from: '<file> line <n>'. */
  sourceLine(variant: V | undefined, n: number): string {
    const pre = this.prelude(variant);
    const line = n - (pre ? pre.split('\n').length : 0);
    const inc = this.spec.source ? undefined : [...(WGSL_INCLUDES[this.spec.name] ?? [])].reverse().find(([start]) => line >= start);
    if (inc) return `${inc[1]} line ${line - inc[0] + 1}`;
    return this.spec.source ? `line ${line}` : `kernels/${this.spec.name}.wgsl line ${line}`;
  }

  private withPrelude(variant: V | undefined): string {
    const pre = this.prelude(variant);
    if (!pre) return this.source;
    if (!this.spec.dtypes) return `${pre}\n${this.source}`;
    // Directives must precede every declaration, the element alias included: the kernel's own `enable` lines move
    // to the front of the prelude's first line, and stay as blank lines in place (line numbers are unchanged).
    const directives: string[] = [];
    const body = this.source.replace(/^enable [\w, ]+;[ \t]*$/gm, (d) => (directives.push(d.trim()), ''));
    return directives.length ? `${directives.join(' ')} ${pre}\n${body}` : `${pre}\n${body}`;
  }

  private bindGroupLayout(gpu: Gpu, entry: string): GPUBindGroupLayout {
    let perGpu = this.layouts.get(gpu);
    if (!perGpu) this.layouts.set(gpu, (perGpu = new Map()));
    let l = perGpu.get(entry);
    if (!l) {
      l = gpu.device.createBindGroupLayout({
        label: `${this.spec.name}.${entry}-layout`,
        entries: this.entryBindings.get(entry)!.map((i) => {
          const kind = this.spec.bindings[i].kind;
          return {
            binding: i,
            visibility: GPUShaderStage.COMPUTE,
            // The uniform binding takes a dynamic offset into the batch's uniform arena, so a bind group depends
            // only on the storage buffers bound and can be reused (BindGroupCache).
            buffer:
              kind === 'uniform'
                ? { type: 'uniform', hasDynamicOffset: true }
                : { type: kind === 'read' ? 'read-only-storage' : 'storage' },
          };
        }),
      });
      perGpu.set(entry, l);
    }
    return l;
  }

  /** The pipeline for (entry, variant), built on first use inside error scopes. */
  pipeline(gpu: Gpu, entry: string, variant: V): GPUComputePipeline {
    if (!this.spec.entryPoints.includes(entry)) throw new Error(`kernel '${this.spec.name}' has no entry point '${entry}'`);
    const key = variantKey(this.spec.name, entry, variant);
    const failed = this.failed.get(key);
    if (failed) throw failed;
    const cached = gpu.pipelines.get(key);
    if (cached) return cached;
    this.prelude(variant); // a dtype the kernel is not written for: KernelLayoutError, on any device
    if (Kernel.dtypeOf(variant) === 'f16' && !gpu.hasF16)
      throw new DTypeError(`${this.spec.name}.${entry}: the f16 variant needs the 'shader-f16' feature, which this device does not offer`);
    const label = `${this.spec.name}.${entry}${JSON.stringify(variant)}`;
    // Devices made by Gpu.create() have the adapter's maximum; an engine's device (Gpu.fromDevice) may have the default 8.
    const storage = this.entryBindings.get(entry)!.filter((i) => this.spec.bindings[i].kind !== 'uniform').length;
    const maxStorage = gpu.limits.maxStorageBuffersPerShaderStage;
    if (storage > maxStorage)
      throw new LimitError('maxStorageBuffersPerShaderStage', storage, maxStorage, `kernel ${label} (request a higher limit when creating the device)`);
    const device = gpu.device;
    device.pushErrorScope('validation');
    device.pushErrorScope('internal');
    const module = device.createShaderModule({ code: this.withPrelude(variant), label });
    const pipeline = device.createComputePipeline({
      label,
      layout: device.createPipelineLayout({ bindGroupLayouts: [this.bindGroupLayout(gpu, entry)], label }),
      compute: { module, entryPoint: entry, constants: this.spec.constants?.(variant) },
    });
    const internal = device.popErrorScope();
    const validation = device.popErrorScope();
    const check = Promise.all([validation, internal, module.getCompilationInfo()]).then(([v, i, info]) => {
      const err = v ?? i;
      if (!err) return null;
      const msgs = info.messages.filter((m) => m.type === 'error').map((m) => `  ${this.sourceLine(variant, m.lineNum)}:${m.linePos} ${m.message}`);
      const e = new KernelCompileError(this.spec.name, variant, msgs.length ? msgs.join('\n') : err.message);
      this.failed.set(key, e);
      return e;
    });
    gpu.queue.addCheck(check);
    gpu.pipelines.set(key, pipeline);
    return pipeline;
  }

  run(gpu: Gpu, args: RunArgs<V>): void {
    const label = args.label ?? `${this.spec.name}.${args.entry}`;
    const [x, y = 1, z = 1] = args.workgroups;
    const maxWg = gpu.limits.maxComputeWorkgroupsPerDimension;
    for (const n of [x, y, z]) if (n > maxWg) throw new LimitError('maxComputeWorkgroupsPerDimension', n, maxWg, `dispatch of ${label}`);
    if (x === 0 || y === 0 || z === 0) return;
    const pipeline = this.pipeline(gpu, args.entry, args.variant);
    const layout = this.bindGroupLayout(gpu, args.entry);
    const bindings = this.entryBindings.get(args.entry)!;
    let uniform: GPUBufferBinding | undefined;
    const tensors: (Tensor | undefined)[] = [];
    for (const i of bindings) {
      const b = this.spec.bindings[i];
      if (b.kind === 'uniform') {
        uniform = gpu.queue.pushUniforms(this.packUniforms(args.params ?? {}));
        tensors.push(undefined);
        continue;
      }
      const t = args.buffers[b.name];
      if (!t) throw new Error(`kernel '${this.spec.name}': no tensor given for binding '${b.name}'`);
      gpu.checkBinding(t.bindingBytes, `tensor '${t.label}' bound as '${b.name}' of ${label}`);
      tensors.push(t);
    }
    const bindGroup = gpu.bindGroups.get(layout, bindings, tensors, uniform, () =>
      gpu.device.createBindGroup({
        layout,
        entries: bindings.map((i, k) => {
          const t = tensors[k];
          if (!t) return { binding: i, resource: { buffer: uniform!.buffer, offset: 0, size: uniform!.size } };
          return { binding: i, resource: { buffer: t.buffer, offset: t.byteOffset, size: t.bindingBytes } };
        }),
        label,
      }),
    );
    gpu.queue.dispatch({ label, pipeline, bindGroup, dynamicOffsets: uniform ? [uniform.offset!] : undefined, workgroups: [x, y, z] });
  }

  private packUniforms(params: Record<string, ParamValue>): ArrayBuffer {
    const u = this.uniform!;
    const buf = new ArrayBuffer(u.size);
    const u32 = new Uint32Array(buf);
    const i32 = new Int32Array(buf);
    const f32 = new Float32Array(buf);
    let n = 0;
    for (const f of u.fields) {
      const v = params[f.name];
      if (v === undefined) throw new Error(`kernel '${this.spec.name}': uniform '${f.name}' not given`);
      n++;
      const o = f.offset / 4;
      if (typeof v === 'number') {
        if (f.kind === 'u32') u32[o] = v;
        else if (f.kind === 'i32') i32[o] = v;
        else f32[o] = v;
        continue;
      }
      if (v.length > f.count) throw new Error(`kernel '${this.spec.name}': uniform '${f.name}' takes ${f.count} values, got ${v.length}`);
      for (let i = 0; i < v.length; i++) {
        if (f.kind === 'u32') u32[o + i] = v[i];
        else if (f.kind === 'i32') i32[o + i] = v[i];
        else f32[o + i] = v[i];
      }
    }
    // Every given name was a field (fields were all found, so a count mismatch means extra names).
    if (Object.keys(params).length !== n) {
      const extra = Object.keys(params).filter((k) => !u.fields.some((f) => f.name === k));
      throw new Error(`kernel '${this.spec.name}': unknown uniforms ${extra.join(', ')}`);
    }
    return buf;
  }

}
