// A GpuHost with no GPU behind it: the library runs its ordinary code path (buffer pool, kernel wrappers, limit
// checks, bind groups, submission) against a device that records what would be allocated and bound and runs nothing.
// bench/sdxl_unet.ts --dry-run uses it to plan the memory of the full SDXL UNet on a machine without a GPU: pool peak
// per mode, the largest buffer and binding, checked against the H100's limits (defaults below, from
// shared/spec/webgpu.md §4: Dawn on NVIDIA caps bindings at 2 GiB − 4, maxBufferSize 1 TiB).
// Read-backs return zeros; timings measure only the host side of recording the work.
import type { GpuHost } from '../runtime/host.js';

/** H100 limits as Dawn reports them (measured, shared/spec/webgpu.md §4). */
export const H100_LIMITS: Record<string, number> = {
  maxStorageBufferBindingSize: 2147483644,
  maxBufferSize: 2 ** 40,
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupSizeX: 1024,
  maxComputeWorkgroupSizeY: 1024,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBuffersPerShaderStage: 16,
  minStorageBufferOffsetAlignment: 256,
  minUniformBufferOffsetAlignment: 256,
  maxBindGroups: 4,
};

export interface DryRunStats {
  buffersCreated: number;
  /** Bytes of buffers created and not destroyed (storage, uniform, staging). */
  liveBytes: number;
  largestBuffer: { bytes: number; label: string };
  largestBinding: { bytes: number; label: string };
  /** The largest binding since the caller last reset this (e.g. per benchmark mode). */
  windowBinding: { bytes: number; label: string };
  dispatches: number;
  /** Dispatches per pipeline label prefix (kernel.entry). */
  dispatchesByKernel: Map<string, number>;
}

export interface DryRunHost extends GpuHost {
  readonly stats: DryRunStats;
}

// The WebGPU flag namespaces, as browsers and dawn.node define them, for a process that never loads dawn.node.
const FLAGS = {
  GPUBufferUsage: { MAP_READ: 1, MAP_WRITE: 2, COPY_SRC: 4, COPY_DST: 8, INDEX: 16, VERTEX: 32, UNIFORM: 64, STORAGE: 128, INDIRECT: 256, QUERY_RESOLVE: 512 },
  GPUShaderStage: { VERTEX: 1, FRAGMENT: 2, COMPUTE: 4 },
  GPUMapMode: { READ: 1, WRITE: 2 },
};

export function dryRunHost(opts: { limits?: Record<string, number>; features?: string[] } = {}): DryRunHost {
  const g = globalThis as Record<string, unknown>;
  for (const [k, v] of Object.entries(FLAGS)) g[k] ??= v;
  const limits = { ...H100_LIMITS, ...opts.limits };
  const features = new Set(opts.features ?? ['subgroups']);
  const stats: DryRunStats = {
    buffersCreated: 0,
    liveBytes: 0,
    largestBuffer: { bytes: 0, label: '' },
    largestBinding: { bytes: 0, label: '' },
    windowBinding: { bytes: 0, label: '' },
    dispatches: 0,
    dispatchesByKernel: new Map(),
  };

  const createBuffer = (d: GPUBufferDescriptor) => {
    const size = Number(d.size);
    if (size > limits.maxBufferSize) throw new Error(`dry run: buffer '${d.label}' of ${size} bytes exceeds maxBufferSize ${limits.maxBufferSize}`);
    stats.buffersCreated++;
    stats.liveBytes += size;
    if (size > stats.largestBuffer.bytes) stats.largestBuffer = { bytes: size, label: d.label ?? '' };
    let destroyed = false;
    let data: ArrayBuffer | undefined;
    return {
      size,
      usage: d.usage,
      label: d.label ?? '',
      mapState: 'unmapped',
      async mapAsync() {},
      getMappedRange(offset = 0, len?: number) {
        data ??= new ArrayBuffer(size);
        return data.slice(offset, len === undefined ? undefined : offset + len);
      },
      unmap() {},
      destroy() {
        if (!destroyed) stats.liveBytes -= size;
        destroyed = true;
      },
    };
  };

  const pass = () => {
    let pipelineLabel = '';
    return {
      setPipeline(p: { label: string }) {
        pipelineLabel = p.label;
      },
      setBindGroup() {},
      dispatchWorkgroups() {
        stats.dispatches++;
        const k = pipelineLabel.replace(/[{[(].*$/, '');
        stats.dispatchesByKernel.set(k, (stats.dispatchesByKernel.get(k) ?? 0) + 1);
      },
      end() {},
    };
  };

  const device = {
    label: 'dry-run',
    features,
    limits,
    lost: new Promise(() => {}),
    onuncapturederror: null as unknown,
    queue: {
      submit() {},
      writeBuffer() {},
      async onSubmittedWorkDone() {},
    },
    createBuffer,
    createShaderModule: (d: GPUShaderModuleDescriptor) => ({ label: d.label ?? '', async getCompilationInfo() { return { messages: [] }; } }),
    createComputePipeline: (d: GPUComputePipelineDescriptor) => ({ label: d.label ?? '' }),
    createPipelineLayout: (d: GPUPipelineLayoutDescriptor) => ({ label: d.label ?? '' }),
    createBindGroupLayout: (d: GPUBindGroupLayoutDescriptor) => ({ label: d.label ?? '' }),
    createBindGroup(d: GPUBindGroupDescriptor) {
      for (const e of d.entries) {
        const r = e.resource as GPUBufferBinding;
        const size = Number(r.size ?? (r.buffer as unknown as { size: number }).size);
        const where = { bytes: size, label: `${d.label} binding ${e.binding}` };
        if (size > stats.largestBinding.bytes) stats.largestBinding = where;
        if (size > stats.windowBinding.bytes) stats.windowBinding = where;
      }
      return { label: d.label ?? '' };
    },
    createQuerySet: () => ({ destroy() {} }),
    createCommandEncoder: () => ({
      beginComputePass: pass,
      copyBufferToBuffer() {},
      clearBuffer() {},
      resolveQuerySet() {},
      finish: () => ({}),
    }),
    pushErrorScope() {},
    popErrorScope: async () => null,
    destroy() {},
  };

  const adapter = {
    features,
    limits,
    info: { vendor: 'dry-run', architecture: '', device: '', description: 'no GPU: records allocations and bindings only' },
    async requestDevice() {
      return device;
    },
  };

  return {
    kind: 'node',
    gpu: { requestAdapter: async () => adapter } as unknown as GPU,
    stats,
    release() {},
  };
}
