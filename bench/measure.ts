// Times one bench case: warm-up, then N runs, each timed with GPU timestamp queries (sum of the run's dispatches),
// or with the wall clock around gpu.sync() where the device lacks 'timestamp-query'.
import type { Gpu } from '../runtime/device.js';

export type TimingMethod = 'gpu-timestamps' | 'wall';

export interface Measurement {
  /** Per-run times (ms): GPU time of the run's dispatches, or wall time of run + sync. */
  ms: number[];
  timing: TimingMethod;
  /** Timed dispatches per run (timestamps only). */
  dispatches?: number;
  /** Wall time per run (ms) with the runs enqueued back to back and one sync at the end. */
  wallMs: number;
  /** Why the timing differs from what was asked, or why runs were cut. */
  note?: string;
}

export interface MeasureOptions {
  warmup: number;
  runs: number;
  /** Cap on the timed part (s): fewer runs (at least 3) when one run would take longer. */
  budgetS: number;
  /** Time with the wall clock even where timestamps are offered. */
  wall?: boolean;
  /**
   * Keep the GPU busy with back-to-back runs for at least this long before timing (default 300 ms): GPUs such as
   * the H100 drop their clocks when idle for a moment (e.g. while inputs are filled on the host), and a handful of
   * short warm-up runs does not bring them back up.
   */
  warmMs?: number;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const now = () => performance.now();

export async function measure(gpu: Gpu, run: () => void, opts: MeasureOptions): Promise<Measurement> {
  // Warm-up: pipeline builds, pool allocations, first-use clears. The last warm-up run estimates one run's time.
  let perRunWall = 0;
  for (let i = 0; i < Math.max(1, opts.warmup); i++) {
    const t = now();
    run();
    await gpu.sync();
    perRunWall = now() - t;
  }
  const warmMs = Math.min(opts.warmMs ?? 300, opts.budgetS * 1000);
  const warmStart = now();
  while (now() - warmStart < warmMs) {
    const batch = Math.max(1, Math.min(64, Math.ceil(20 / Math.max(perRunWall, 0.01))));
    for (let i = 0; i < batch; i++) {
      run();
      gpu.queue.flush();
    }
    await gpu.sync();
  }
  let runs = opts.runs;
  let note: string | undefined;
  if (perRunWall * runs > opts.budgetS * 1000) {
    runs = Math.max(3, Math.floor((opts.budgetS * 1000) / perRunWall));
    if (runs < opts.runs) note = `runs cut to ${runs} (time budget ${opts.budgetS} s)`;
    else runs = opts.runs;
  }

  if (gpu.hasTimestamps && !opts.wall) {
    const profiler = gpu.startProfiling();
    try {
      await profiler.collect(); // drop anything stale
      // One profiled run tells how many timed dispatches a run issues.
      run();
      await gpu.sync();
      const k = (await profiler.collect()).length;
      if (k > 0) {
        // Runs back to back (one submit each), one sync; split the times into runs of k dispatches.
        const t0 = now();
        for (let i = 0; i < runs; i++) {
          run();
          gpu.queue.flush();
        }
        await gpu.sync();
        const wallMs = (now() - t0) / runs;
        const times = await profiler.collect();
        if (times.length === runs * k) {
          const ms: number[] = [];
          for (let i = 0; i < runs; i++) {
            let s = 0;
            for (let j = 0; j < k; j++) s += times[i * k + j].ms;
            ms.push(s);
          }
          return { ms, timing: 'gpu-timestamps', dispatches: k, wallMs, note };
        }
        // Some intervals were dropped (invalid): time each run on its own.
        const ms: number[] = [];
        for (let i = 0; i < runs; i++) {
          run();
          await gpu.sync();
          const t = await profiler.collect();
          if (t.length) ms.push(t.reduce((a, b) => a + b.ms, 0));
        }
        if (ms.length) return { ms, timing: 'gpu-timestamps', dispatches: k, wallMs, note: join(note, 'timed run by run') };
      }
      note = join(note, k === 0 ? 'no dispatch went through gpu.queue: wall clock' : 'no valid timestamps: wall clock');
    } finally {
      gpu.stopProfiling();
    }
  }

  const ms: number[] = [];
  const t0 = now();
  for (let i = 0; i < runs; i++) {
    const t = now();
    run();
    await gpu.sync();
    ms.push(now() - t);
  }
  return { ms, timing: 'wall', wallMs: (now() - t0) / runs, note };
}

function join(a: string | undefined, b: string): string {
  return a ? `${a}; ${b}` : b;
}
