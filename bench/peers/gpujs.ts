// Peer: gpu.js (npm `gpu.js`). Modes tried:
//   headlessgl — WebGL through headless-gl (npm `gl`, an optional native dependency of gpu.js); needs the native
//                build and a GL context (Mesa software GL works without a display here when it built);
//   cpu        — gpu.js's JavaScript CPU backend, only where headless-gl is unavailable;
//   webgpu     — gpu.js's WGSL backend on navigator.gpu (set to the same dawn.node GPU object as ours).
// Each row says which mode ran. Times are wall clock per kernel call including gpu.js's upload and readback
// (gpu.js has no readback-free timing), so they understate the kernels' own speed.
import { createRequire } from 'node:module';
import type { Gpu } from '../../runtime/device.js';
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
import { exposeNavigatorGpu } from './tfjs.js';

// A string, not a function: gpu.js parses the source, and a transpiler or bundler must not rewrite it.
const MATMUL_SOURCE = `function (a, b) {
  let sum = 0;
  for (let i = 0; i < this.constants.K; i++) {
    sum += a[this.thread.y][i] * b[i][this.thread.x];
  }
  return sum;
}`;

interface GpuJsKernel {
  (...args: unknown[]): unknown;
  destroy?(removeCanvasReferences?: boolean): void;
}
interface GpuJsInstance {
  createKernel(source: string, settings: Record<string, unknown>): GpuJsKernel;
  destroy(): unknown;
}
interface GpuJsModule {
  GPU: { new (settings: { mode: string }): GpuJsInstance; isHeadlessGLSupported: boolean; isWebGPUSupported: boolean };
  input(value: Float32Array, size: number[]): unknown;
}

const TIMING = 'wall per call, incl. upload + readback';

async function loadGpuJs(): Promise<GpuJsModule> {
  const mod = (await import('gpu.js')) as unknown as Partial<GpuJsModule> & { default?: GpuJsModule };
  const m = (mod.GPU ? mod : mod.default) as GpuJsModule | undefined;
  if (!m?.GPU) throw new Error('gpu.js has no GPU export');
  return m;
}

/** Why headless-gl cannot be used, or undefined when it can. */
async function headlessGlProblem(m: GpuJsModule): Promise<string | undefined> {
  try {
    if (m.GPU.isHeadlessGLSupported) return undefined;
  } catch (e) {
    return `headless-gl failed: ${(e as Error).message}`;
  }
  try {
    // require(), as gpu.js does (so NODE_PATH counts too); a variable name keeps bundlers from resolving it.
    const glName = 'gl';
    const gl = createRequire(import.meta.url)(glName) as (w: number, h: number) => unknown;
    const ctx = gl(1, 1);
    return ctx ? 'headless-gl made a context but gpu.js rejected it' : 'headless-gl (npm gl) loaded but could not create a GL context (no display / GL driver; try xvfb-run)';
  } catch (e) {
    return `headless-gl (npm gl, optional native dependency of gpu.js) is not installed or did not build: ${(e as Error).message.split('\n')[0]}`;
  }
}

async function runMode(m: GpuJsModule, mode: string, shapes: MatmulShape[], opts: PeerOptions): Promise<PeerResult['rows']> {
  const peer = `gpu.js ${mode}`;
  const gpujs = new m.GPU({ mode });
  const rows: PeerResult['rows'] = [];
  // gpu.js's CPU backend runs at about 0.1–1 GFLOP/s: guess 1 so that the first big shape is not tried blind.
  const predictor = new RatePredictor(mode === 'cpu' ? 1 : 0);
  try {
    for (const s of bySize(shapes)) {
      const skip = predictor.skipReason(s, opts);
      if (skip) {
        rows.push(skippedRow(peer, s, TIMING, skip));
        continue;
      }
      let kernel: GpuJsKernel | undefined;
      try {
        kernel = gpujs.createKernel(MATMUL_SOURCE, {
          output: [s.n, s.m],
          constants: { K: s.k },
          precision: 'single',
          loopMaxIterations: s.k,
        });
        const a = m.input(seededF32(s.m * s.k, 1), [s.k, s.m]);
        const b = m.input(seededF32(s.k * s.n, 2), [s.n, s.k]);
        const call = async () => {
          await kernel!(a, b);
        };
        let one = Infinity;
        for (let i = 0; i < Math.max(1, Math.min(opts.warmup, 2)); i++) {
          const t0 = now();
          await call();
          one = Math.min(one, now() - t0);
          if (i > 0 && one * 2 > opts.budgetS * 1000) break; // the first call includes compilation
        }
        predictor.record(s, one);
        const runs = runsWithin(opts, one);
        if (runs === 0) {
          rows.push(skippedRow(peer, s, TIMING, `one call takes ${(one / 1000).toFixed(1)} s (budget ${opts.budgetS} s)`));
          continue;
        }
        const ms: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t0 = now();
          await call();
          ms.push(now() - t0);
        }
        rows.push(matmulRow(peer, s, ms, TIMING));
      } catch (e) {
        rows.push(failedRow(peer, s, TIMING, (e as Error).message.split('\n')[0]));
      } finally {
        try {
          kernel?.destroy?.();
        } catch {
          // ignore
        }
      }
    }
  } finally {
    try {
      await gpujs.destroy();
    } catch {
      // ignore
    }
  }
  return inShapeOrder(rows, shapes);
}

export async function gpujsPeer(gpu: Gpu, shapes: MatmulShape[], opts: PeerOptions): Promise<PeerResult> {
  let m: GpuJsModule;
  try {
    m = await loadGpuJs();
  } catch (e) {
    return { rows: [], unavailable: `gpu.js: not available (${(e as Error).message.split('\n')[0]})` };
  }
  const rows: PeerResult['rows'] = [];
  const glProblem = await headlessGlProblem(m);
  if (glProblem === undefined) {
    opts.log('gpu.js: mode headlessgl (WebGL via headless-gl)');
    rows.push(...(await runMode(m, 'headlessgl', shapes, opts)));
  } else {
    opts.log(`gpu.js: ${glProblem}; running gpu.js in mode cpu instead`);
    rows.push(...(await runMode(m, 'cpu', shapes, opts)));
  }
  exposeNavigatorGpu(gpu.host.gpu);
  if (m.GPU.isWebGPUSupported) {
    opts.log('gpu.js: mode webgpu (its WGSL backend on navigator.gpu = the same dawn.node GPU)');
    rows.push(...(await runMode(m, 'webgpu', shapes, opts)));
  }
  return { rows, unavailable: glProblem ? `gpu.js headlessgl: ${glProblem}` : undefined };
}
