// Peer: TF.js WebGPU backend (@tensorflow/tfjs-core + @tensorflow/tfjs-backend-webgpu) on the same dawn.node GPU
// object as ours. The backend registers at import time only if navigator.gpu exists, so it is set first.
// Times: tf.time's kernelMs (TF.js's own timestamp queries) where the device offers 'timestamp-query', and the wall
// clock from matMul to queue.onSubmittedWorkDone (no readback) in any case.
import type { Gpu } from '../../runtime/device.js';
import { median } from '../measure.js';
import {
  type PeerOptions,
  type PeerResult,
  RatePredictor,
  bySize,
  failedRow,
  inShapeOrder,
  matmulRow,
  now,
  runsWithin,
  seededF32,
  skippedRow,
} from './common.js';
import type { MatmulShape } from './shapes.js';

const PEER = 'tfjs-webgpu';
let loaded: Tf | undefined;

interface TfTensor {
  dispose(): void;
  data(): Promise<unknown>;
}
interface Tf {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  backend(): unknown;
  getBackend(): string;
  tensor2d(values: Float32Array, shape: [number, number]): TfTensor;
  matMul(a: TfTensor, b: TfTensor): TfTensor;
  time(f: () => void): Promise<{ kernelMs: number | { error: string }; wallMs: number }>;
  version_core?: string;
  version?: Record<string, string>;
}
/** The WebGPU backend internals used to submit without a readback (see shared spec notes on TF.js in Node). */
interface TfWebGpuBackend {
  device: GPUDevice;
  supportTimestampQuery?: boolean;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

/** Makes navigator.gpu the given GPU object (Node 21+ has a navigator getter, hence defineProperty). */
export function exposeNavigatorGpu(gpuObject: GPU): void {
  const g = globalThis as { navigator?: { gpu?: unknown; userAgent?: string } };
  if (g.navigator?.gpu === gpuObject) return;
  Object.defineProperty(globalThis, 'navigator', {
    value: { gpu: gpuObject, userAgent: g.navigator?.userAgent ?? `Node.js/${process.versions.node}` },
    configurable: true,
    writable: true,
  });
}

/** Runs `f` with TF.js's "install tfjs-node" banner (and other console chatter) collected instead of printed. */
async function quietly<T>(f: () => Promise<T>, notes: string[]): Promise<T> {
  const { log, warn, info } = console;
  const keep = (...args: unknown[]) => notes.push(args.map(String).join(' '));
  console.log = console.warn = console.info = keep;
  try {
    return await f();
  } finally {
    Object.assign(console, { log, warn, info });
  }
}

export async function tfjsPeer(gpu: Gpu, shapes: MatmulShape[], opts: PeerOptions): Promise<PeerResult> {
  const notes: string[] = [];
  let tf: Tf;
  try {
    exposeNavigatorGpu(gpu.host.gpu);
    tf = await quietly(async () => {
      const core = (await import('@tensorflow/tfjs-core')) as unknown as Partial<Tf> & { default?: Tf };
      await import('@tensorflow/tfjs-backend-webgpu');
      // CommonJS through import(): the API is on the namespace or on its default.
      const t = (typeof core.setBackend === 'function' ? core : core.default) as Tf;
      if (!(await t.setBackend('webgpu'))) throw new Error('tf.setBackend("webgpu") returned false');
      await t.ready();
      return t;
    }, notes);
  } catch (e) {
    return { rows: [], unavailable: `${PEER}: not available (${(e as Error).message.split('\n')[0]})` };
  }
  loaded = tf;
  const backend = tf.backend() as TfWebGpuBackend;
  const version = tf.version_core ?? tf.version?.['tfjs-core'] ?? '?';
  const timestamps = !!backend.supportTimestampQuery;
  opts.log(`${PEER}: TF.js ${version} WebGPU backend on the same adapter (its own device); timing: ${timestamps ? 'tf.time kernelMs (GPU timestamps) + wall' : 'wall (no timestamp-query)'}`);
  const submit = async () => {
    backend.ensureCommandEncoderReady();
    backend.endComputePassEncoder();
    backend.submitQueue();
    await backend.device.queue.onSubmittedWorkDone();
  };
  const rows = [];
  const predictor = new RatePredictor();
  for (const s of bySize(shapes)) {
    const timing = timestamps ? 'tf.time kernelMs (GPU timestamps)' : 'wall (matMul → onSubmittedWorkDone)';
    const skip = predictor.skipReason(s, opts);
    if (skip) {
      rows.push(skippedRow(PEER, s, timing, skip));
      continue;
    }
    let a: TfTensor | undefined;
    let b: TfTensor | undefined;
    try {
      a = tf.tensor2d(seededF32(s.m * s.k, 1), [s.m, s.k]);
      b = tf.tensor2d(seededF32(s.k * s.n, 2), [s.k, s.n]);
      // Warm-up (shader compile, buffer pool), with one readback.
      let one = Infinity;
      for (let i = 0; i < Math.max(1, opts.warmup); i++) {
        const t0 = now();
        const c = tf.matMul(a, b);
        if (i === 0) await c.data();
        else await submit();
        one = Math.min(one, now() - t0);
        c.dispose();
        if (i > 0 && one * 2 > opts.budgetS * 1000) break; // the first call includes compilation
      }
      predictor.record(s, one);
      const runs = runsWithin(opts, timestamps ? 2 * one : one); // two loops: wall, then tf.time
      if (runs === 0) {
        rows.push(skippedRow(PEER, s, timing, `one run takes ${one.toFixed(0)} ms (budget ${opts.budgetS} s)`));
        continue;
      }
      const wall: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t0 = now();
        const c = tf.matMul(a, b);
        await submit();
        wall.push(now() - t0);
        c.dispose();
      }
      const kernel: number[] = [];
      if (timestamps) {
        for (let i = 0; i < runs; i++) {
          let c: TfTensor | undefined;
          const info = await tf.time(() => {
            c = tf.matMul(a!, b!);
          });
          c?.dispose();
          if (typeof info.kernelMs === 'number' && info.kernelMs > 0) kernel.push(info.kernelMs);
        }
      }
      rows.push(
        kernel.length
          ? matmulRow(PEER, s, kernel, timing, { wall_ms: median(wall) })
          : matmulRow(PEER, s, wall, 'wall (matMul → onSubmittedWorkDone)', { wall_ms: median(wall), note: timestamps ? 'kernelMs was 0' : undefined }),
      );
    } catch (e) {
      rows.push(failedRow(PEER, s, timing, (e as Error).message.split('\n')[0]));
    } finally {
      a?.dispose();
      b?.dispose();
    }
  }
  const chatter = notes.filter((n) => !/tfjs-node|Hi there/.test(n));
  if (chatter.length) opts.log(`${PEER} said: ${chatter.join(' | ').slice(0, 400)}`);
  return { rows: inShapeOrder(rows, shapes) };
}

/** Destroys TF.js's device, if TF.js was loaded (call before process exit). */
export function tfjsShutdown(): void {
  try {
    if (loaded?.getBackend() === 'webgpu') (loaded.backend() as TfWebGpuBackend).device.destroy();
  } catch {
    // already gone
  }
}
