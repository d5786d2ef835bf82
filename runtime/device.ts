// The Gpu: one adapter + device and the runtime services built on it (buffer pool, uniform arena, pipeline cache,
// batched submission, profiler). Same interface in Node (dawn.node) and browsers (navigator.gpu).
// The package's .d.ts use the WebGPU types (GPUDevice, GPUBuffer, …): consumers get them with the declarations.
/// <reference types="@webgpu/types" preserve="true" />
import { BindGroupCache } from './bind_group_cache.js';
import { BufferPool } from './buffer_pool.js';
import { GpuError, LimitError } from './errors.js';
import { browserHost, type GpuHost, type HostOptions } from './host.js';
import { PipelineCache } from './pipeline_cache.js';
import { Profiler } from './profiler.js';
import { Submitter } from './submitter.js';
import { UniformArena } from './uniform_arena.js';

export interface GpuOptions extends HostOptions {
  /** Ask for 'shader-f16' when offered (default true). */
  f16?: boolean;
  /** Submit and error-check each dispatch on its own (debug). Env: TCD_IMMEDIATE=1. */
  immediate?: boolean;
  /** Dispatches per submit (default 64). */
  batchSize?: number;
  /** Supply a host (tests, browsers); by default Node uses dawn.node and browsers navigator.gpu. */
  host?: GpuHost;
}

/** Limits the library requests at the adapter's maximum. */
const MAX_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

// chromium-experimental-subgroup-matrix: tensor-core GEMMs (src/kernels/matmul_subgroup_matrix.ts), where offered.
const OPTIONAL_FEATURES: GPUFeatureName[] = ['timestamp-query', 'subgroups', 'shader-f16', 'chromium-experimental-subgroup-matrix' as GPUFeatureName];

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return !!p?.versions?.node && !(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu;
}

/** Gpu.fromDevice: a device that an engine created and owns. */
export interface ExternalDeviceOptions {
  /** The adapter the device came from, for summary() / describe() (default: the device's adapterInfo). */
  adapter?: GPUAdapter;
  /** Submit and error-check each dispatch on its own (debug). Env: TCD_IMMEDIATE=1. */
  immediate?: boolean;
  /** Dispatches per submit (default 64). */
  batchSize?: number;
}

/**
 * The WebGPU flag constants (spec values). dawn.node does not define them globally; Gpu.create() takes them from the
 * `webgpu` package, and Gpu.fromDevice() in Node, where the engine may not have, installs these.
 */
const WEBGPU_FLAGS = {
  GPUBufferUsage: { MAP_READ: 1, MAP_WRITE: 2, COPY_SRC: 4, COPY_DST: 8, INDEX: 16, VERTEX: 32, UNIFORM: 64, STORAGE: 128, INDIRECT: 256, QUERY_RESOLVE: 512 },
  GPUMapMode: { READ: 1, WRITE: 2 },
  GPUShaderStage: { VERTEX: 1, FRAGMENT: 2, COMPUTE: 4 },
};

export interface AdapterSummary {
  host: 'node' | 'browser';
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  features: string[];
  limits: Record<string, number>;
}

export class Gpu {
  readonly pool: BufferPool;
  readonly pipelines = new PipelineCache();
  readonly bindGroups = new BindGroupCache();
  readonly queue: Submitter;
  private readonly uniforms: UniformArena;
  private profilerInstance?: Profiler;
  private lost?: string;
  private uncaptured: string[] = [];
  private destroyed = false;

  private constructor(
    readonly host: GpuHost,
    /** Undefined for a device from Gpu.fromDevice without `adapter` (adapterInfo then comes from the device). */
    readonly adapter: GPUAdapter | undefined,
    readonly device: GPUDevice,
    opts: GpuOptions,
    /** True for Gpu.fromDevice: the engine owns the device (we never destroy it nor take its error handler). */
    readonly external = false,
  ) {
    this.pool = new BufferPool(device, device.limits.maxBufferSize);
    this.pool.onDestroy = () => this.bindGroups.clear();
    this.uniforms = new UniformArena(device, device.limits.minUniformBufferOffsetAlignment);
    const envImmediate = typeof process !== 'undefined' && process.env?.TCD_IMMEDIATE === '1';
    this.queue = new Submitter(device, this.uniforms, opts.batchSize ?? 64, opts.immediate ?? envImmediate);
    device.lost.then((info) => {
      if (info.reason !== 'destroyed') this.lost = `device lost (${info.reason}): ${info.message}`;
    });
    // Our own work runs inside error scopes (Submitter); the uncaptured-error handler of an engine's device stays its own.
    if (!external)
      device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
        this.uncaptured.push(ev.error.message);
      };
  }

  /**
   * Wraps a GPUDevice that an engine already has (as ONNX Runtime Web takes a `device` option): kernels run on it
   * with the features and limits it was created with (a kernel that needs a higher limit throws a LimitError naming
   * it). The engine keeps ownership: destroy() frees only our buffers and leaves the device alive. Our work is
   * batched: call flush() before the engine submits work that must see ours (queue order does the rest), and make
   * sure the engine's own pending commands are submitted before our kernels read its buffers.
   */
  static fromDevice(device: GPUDevice, opts: ExternalDeviceOptions = {}): Gpu {
    if (!device || typeof (device as { createBuffer?: unknown }).createBuffer !== 'function')
      throw new TypeError(`Gpu.fromDevice: expected a GPUDevice, got ${device === null ? 'null' : typeof device}`);
    for (const [name, flags] of Object.entries(WEBGPU_FLAGS)) (globalThis as Record<string, unknown>)[name] ??= flags;
    const node = !!(globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
    const host: GpuHost = {
      kind: node ? 'node' : 'browser',
      get gpu(): GPU {
        throw new Error('this Gpu wraps an engine\'s device (Gpu.fromDevice): it has no GPU object of its own');
      },
      release() {},
    };
    return new Gpu(host, opts.adapter, device, { immediate: opts.immediate, batchSize: opts.batchSize }, true);
  }

  /** The adapter's info: from the adapter, else from the device (GPUDevice.adapterInfo). */
  get adapterInfo(): GPUAdapterInfo {
    const info = this.adapter?.info ?? (this.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    return info ?? ({ vendor: '', architecture: '', device: '', description: 'adapter unknown' } as GPUAdapterInfo);
  }

  /** Submits the work recorded so far, so that whatever the engine submits next runs after it. */
  flush(): void {
    this.queue.flush();
  }

  static async create(opts: GpuOptions = {}): Promise<Gpu> {
    let host = opts.host;
    if (!host) {
      if (isNode()) {
        const mod = await import('./host_node.js');
        host = await mod.nodeHost(opts);
      } else {
        host = browserHost();
      }
    }
    const adapter = await host.gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
    if (!adapter) {
      host.release();
      throw new GpuError(
        'no WebGPU adapter found (Node: install a Vulkan driver, e.g. `sudo bash scripts/setup-vulkan.sh`; browser: enable WebGPU)',
      );
    }
    const wanted = OPTIONAL_FEATURES.filter((f) => !(f === 'shader-f16' && opts.f16 === false));
    const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
    const requiredLimits: Record<string, number> = {};
    for (const k of MAX_LIMITS) {
      const v = (adapter.limits as unknown as Record<string, number>)[k];
      if (typeof v === 'number') requiredLimits[k] = v;
    }
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'tcd-webgpu' });
    return new Gpu(host, adapter, device, opts);
  }

  /**
   * The device's limits as a plain object, read once: wrappers consult them per dispatch, and on dawn.node every
   * property read of the native GPUSupportedLimits crosses into C++.
   */
  get limits(): GPUSupportedLimits {
    if (!this.limitsCopy) {
      const src = this.device.limits as unknown as Record<string, number>;
      const copy: Record<string, number> = {};
      // GPUSupportedLimits attributes live on the prototype (not own enumerable properties): walk it.
      for (let o: object | null = src; o && o !== Object.prototype; o = Object.getPrototypeOf(o))
        for (const k of Object.getOwnPropertyNames(o)) if (k !== 'constructor' && typeof src[k] === 'number') copy[k] = src[k];
      for (const k of MAX_LIMITS) if (typeof src[k] === 'number') copy[k] = src[k];
      this.limitsCopy = copy as unknown as GPUSupportedLimits;
    }
    return this.limitsCopy;
  }
  private limitsCopy?: GPUSupportedLimits;
  private featureFlags?: { f16: boolean; subgroups: boolean; timestamps: boolean };
  private get features(): { f16: boolean; subgroups: boolean; timestamps: boolean } {
    this.featureFlags ??= {
      f16: this.device.features.has('shader-f16'),
      subgroups: this.device.features.has('subgroups'),
      timestamps: this.device.features.has('timestamp-query'),
    };
    return this.featureFlags;
  }
  get hasF16(): boolean {
    return this.features.f16;
  }
  get hasSubgroups(): boolean {
    return this.features.subgroups;
  }
  get hasTimestamps(): boolean {
    return this.features.timestamps;
  }
  get maxInvocations(): number {
    return this.limits.maxComputeInvocationsPerWorkgroup;
  }

  summary(): AdapterSummary {
    const info = this.adapterInfo;
    const limits: Record<string, number> = {};
    for (const k of [...MAX_LIMITS, 'minStorageBufferOffsetAlignment', 'minUniformBufferOffsetAlignment'])
      limits[k] = (this.device.limits as unknown as Record<string, number>)[k];
    return {
      host: this.host.kind,
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      isFallbackAdapter: (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
      features: [...this.device.features].sort(),
      limits,
    };
  }

  /** One line naming the adapter, for test and bench logs. */
  describe(): string {
    const s = this.summary();
    const name = [s.vendor, s.architecture, s.device, s.description].filter(Boolean).join(' / ');
    return `${s.host}: ${name || 'unnamed adapter'} [${s.features.filter((f) => OPTIONAL_FEATURES.includes(f as GPUFeatureName)).join(', ')}]`;
  }

  /** Throws a LimitError if a binding of `bytes` would exceed maxStorageBufferBindingSize. */
  checkBinding(bytes: number, what: string): void {
    const max = this.device.limits.maxStorageBufferBindingSize;
    if (bytes > max) throw new LimitError('maxStorageBufferBindingSize', bytes, max, what);
  }

  /** Starts per-kernel timing (timestamp queries where offered). */
  startProfiling(): Profiler {
    this.queue.flush();
    this.profilerInstance ??= new Profiler(this.device);
    this.queue.profiler = this.profilerInstance;
    return this.profilerInstance;
  }
  stopProfiling(): void {
    this.queue.flush();
    this.queue.profiler = undefined;
  }

  /** Queue write that respects recorded-but-unsubmitted work (flushes it first). */
  write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    if (this.queue.hasPending) this.queue.flush();
    this.device.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Reads bytes back from a buffer (flushes pending work first). */
  async read(buffer: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({
      size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: `readback(${buffer.label})`,
    });
    this.queue.encoderForCopy().copyBufferToBuffer(buffer, offset, staging, 0, size);
    this.queue.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      this.throwIfBroken();
      await this.queue.throwErrors();
      throw e;
    }
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    this.throwIfBroken();
    await this.queue.throwErrors();
    return out;
  }

  /** Waits for all submitted work and throws any GPU error (naming the kernel) since the last sync. */
  async sync(): Promise<void> {
    await this.queue.sync();
    this.throwIfBroken();
  }

  private throwIfBroken(): void {
    if (this.lost) throw new GpuError(this.lost);
    if (this.uncaptured.length) {
      const msgs = this.uncaptured.splice(0);
      throw new GpuError(`uncaptured GPU error: ${msgs.join('\n')}`);
    }
  }

  /**
   * Waits for submitted work, then destroys every buffer, the device, and drops the host reference so Node can
   * exit (for Gpu.fromDevice: only the pooled buffers and our uniform / profiler buffers). Await it: destroying a dawn.node device with queue work still pending (e.g. uploads never read back) made
   * the process crash at exit.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.queue.flush();
    await this.device.queue.onSubmittedWorkDone().catch(() => {});
    this.profilerInstance?.destroy();
    this.pool.destroyAll();
    this.uniforms.destroy();
    if (this.external) return; // the engine's device: its buffers (Tensor.fromBuffer) and the device stay alive
    this.device.destroy();
    this.host.release();
  }
}
