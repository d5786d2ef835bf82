// Host-side cost of issuing one small elementwise dispatch, timed with benchmark.js (the GPU work is tiny; this is
// the JavaScript + Dawn encode/submit cost per kernel call that a model with thousands of kernels pays).
import BenchmarkModule from 'benchmark';
// benchmark.js loads lodash and platform through its own require() wrapper, which a bundler cannot follow: hand them
// over explicitly so the esbuild bundle (GPU machine, no node_modules) works too. Neither ships types.
// @ts-ignore untyped package
import lodash from 'lodash';
// @ts-ignore untyped package
import platform from 'platform';
import type { Gpu } from '../runtime/device.js';
import { binary } from '../src/kernels/elementwise.js';
import { Tensor } from '../src/tensor.js';
import { median } from './measure.js';
import type { Row } from './report.js';

const Benchmark = BenchmarkModule.runInContext({ _: lodash, platform }) as typeof BenchmarkModule;

export interface HostCase {
  kernel: string;
  shape: string;
  quick: boolean;
  /** One iteration; `flush` submits after every call instead of letting the submitter batch (64 per submit). */
  flush: boolean;
}

export const HOST_CASES: HostCase[] = [
  { kernel: 'host: add dispatch (batched submit)', shape: '1024 + 1024', quick: true, flush: false },
  { kernel: 'host: add dispatch + submit', shape: '1024 + 1024', quick: true, flush: true },
];

export async function hostOverheadRow(gpu: Gpu, c: HostCase, maxTimeS: number): Promise<Row> {
  const n = 1024;
  const a = Tensor.fromArray(gpu, new Float32Array(n).fill(1), [n], { label: 'a' });
  const b = Tensor.fromArray(gpu, new Float32Array(n).fill(2), [n], { label: 'b' });
  const base: Row = { kernel: c.kernel, shape: c.shape, median_ms: null, throughput: null, unit: 'call/s', ratio: null, timing: 'host (benchmark.js)' };
  try {
    // Warm: pipeline build, pool buffers.
    for (let i = 0; i < 8; i++) binary('add', a, b).release();
    await gpu.sync();
    let calls = 0;
    const fn = c.flush
      ? () => {
          binary('add', a, b).release();
          gpu.queue.flush();
          calls++;
        }
      : () => {
          binary('add', a, b).release();
          calls++;
        };
    const bench = new Benchmark(c.kernel, fn, { maxTime: maxTimeS, minSamples: 5, initCount: 16 });
    bench.run({ async: false });
    await gpu.sync();
    if (bench.error) throw bench.error;
    const perCallMs = median(bench.stats.sample) * 1000;
    return {
      ...base,
      median_ms: perCallMs,
      runs: bench.stats.sample.length,
      throughput: 1000 / perCallMs,
      timing: `host (benchmark.js, ±${bench.stats.rme.toFixed(1)}%, ${calls} calls)`,
    };
  } catch (e) {
    return { ...base, error: (e as Error).message };
  } finally {
    a.release();
    b.release();
  }
}
