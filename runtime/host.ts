// Host abstraction: where a GPU comes from. Node uses dawn.node (runtime/host_node.ts), browsers navigator.gpu.

export interface HostOptions {
  /** Substring of the adapter name to pick (Node: dawn's `adapter=` option). Env: TCD_ADAPTER. */
  adapterName?: string;
  /** Dawn backend, e.g. 'vulkan' (Node only). Env: TCD_BACKEND. */
  backend?: string;
  /** Dawn toggles to enable / disable (Node only; browsers ignore them). Env: TCD_ENABLE_TOGGLES, TCD_DISABLE_TOGGLES
   * (comma-separated, added to these). */
  enableToggles?: string[];
  disableToggles?: string[];
  powerPreference?: GPUPowerPreference;
}

export interface GpuHost {
  readonly kind: 'node' | 'browser';
  readonly gpu: GPU;
  /** Drops the host's reference so the process can exit (dawn.node keeps Node alive while referenced). */
  release(): void;
}

/** Adapter toggles that make Dawn offer 'shader-f16' on NVIDIA Vulkan (blocked there by default; unsafe APIs). */
export const NVIDIA_F16_TOGGLES = ['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia'];

/** Dawn toggles for honest kernel timing and speed: no timestamp quantization, no lazy clears. */
export const BENCH_DISABLE_TOGGLES = ['timestamp_quantization', 'lazy_clear_resource_on_first_use'];

export function browserHost(): GpuHost {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (!nav?.gpu) {
    throw new Error(
      'WebGPU is not available: navigator.gpu is undefined (needs a WebGPU-capable browser and a secure context: https or http://127.0.0.1)',
    );
  }
  return { kind: 'browser', gpu: nav.gpu, release() {} };
}
