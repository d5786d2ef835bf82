// Node host: dawn.node from the npm package `webgpu`. Kept out of the browser bundle (runtime/index_browser.ts).
import type { GpuHost, HostOptions } from './host.js';

export async function nodeHost(opts: HostOptions = {}): Promise<GpuHost> {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const { create, globals } = await import('webgpu');
  // GPUBufferUsage, GPUMapMode, ... as globals, as in a browser.
  Object.assign(globalThis, globals);
  const args: string[] = [];
  const fromEnv = (v: string | undefined) => (v ? v.split(',').filter(Boolean) : []);
  const enable = [...new Set([...(opts.enableToggles ?? []), ...fromEnv(process.env.TCD_ENABLE_TOGGLES)])];
  const disable = [...new Set([...(opts.disableToggles ?? []), ...fromEnv(process.env.TCD_DISABLE_TOGGLES)])];
  if (enable.length) args.push(`enable-dawn-features=${enable.join(',')}`);
  if (disable.length) args.push(`disable-dawn-features=${disable.join(',')}`);
  const adapterName = opts.adapterName ?? process.env.TCD_ADAPTER;
  const backend = opts.backend ?? process.env.TCD_BACKEND;
  if (adapterName) args.push(`adapter=${adapterName}`);
  if (backend) args.push(`backend=${backend}`);
  let gpu: GPU | null = create(args) as GPU;
  return {
    kind: 'node',
    get gpu(): GPU {
      if (!gpu) throw new Error('GPU host already released');
      return gpu;
    },
    release() {
      gpu = null;
    },
  };
}
