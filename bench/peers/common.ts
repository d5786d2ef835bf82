// Shared bits of the peer baselines (TF.js WebGPU, gpu.js): options, row building, seeded inputs.
import { median } from '../measure.js';
import type { Row } from '../report.js';
import type { MatmulShape } from './shapes.js';

export interface PeerOptions {
  warmup: number;
  runs: number;
  /** Seconds a peer may spend on one shape's timed runs; slower shapes run fewer times or are skipped. */
  budgetS: number;
  log: (line: string) => void;
}

export interface PeerResult {
  rows: Row[];
  /** Set when the peer could not run at all (package missing, no backend). */
  unavailable?: string;
}

export function flops(s: MatmulShape): number {
  return 2 * s.m * s.k * s.n;
}

export function matmulRow(peer: string, s: MatmulShape, ms: number[], timing: string, extra: Partial<Row> = {}): Row {
  const med = ms.length ? median(ms) : null;
  return {
    kernel: `matmul (${peer})`,
    shape: s.label,
    median_ms: med,
    min_ms: ms.length ? Math.min(...ms) : null,
    runs: ms.length,
    throughput: med ? flops(s) / (med * 1e6) : null,
    unit: 'GFLOP/s',
    ratio: null,
    timing,
    peer,
    ...extra,
  };
}

export function failedRow(peer: string, s: MatmulShape, timing: string, error: string): Row {
  return { kernel: `matmul (${peer})`, shape: s.label, median_ms: null, throughput: null, unit: 'GFLOP/s', ratio: null, timing, peer, error };
}

export function skippedRow(peer: string, s: MatmulShape, timing: string, why: string): Row {
  return { kernel: `matmul (${peer})`, shape: s.label, median_ms: null, throughput: null, unit: 'GFLOP/s', ratio: null, timing, peer, skipped: why };
}

export function seededF32(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

/** How many timed runs fit the budget given one run's time; 0 means skip. */
export function runsWithin(opts: PeerOptions, oneRunMs: number): number {
  const budgetMs = opts.budgetS * 1000;
  if (oneRunMs * 2 > budgetMs) return 0;
  return Math.max(2, Math.min(opts.runs, Math.floor(budgetMs / oneRunMs)));
}

export const now = () => performance.now();

/** Shapes smallest first, so the rate measured on one shape predicts the next (and hopeless ones are skipped). */
export function bySize(shapes: MatmulShape[]): MatmulShape[] {
  return [...shapes].sort((a, b) => flops(a) - flops(b));
}

/** Puts rows back into the order of `shapes`. */
export function inShapeOrder(rows: Row[], shapes: MatmulShape[]): Row[] {
  const at = new Map(shapes.map((s, i) => [s.label, i]));
  return [...rows].sort((a, b) => (at.get(a.shape) ?? 0) - (at.get(b.shape) ?? 0));
}

/** Predicts one call's time from the throughput of the last shape run (or an initial guess). */
export class RatePredictor {
  private gflopPerMs: number;
  constructor(initialGflopPerS = 0) {
    this.gflopPerMs = initialGflopPerS / 1000;
  }
  record(s: MatmulShape, ms: number): void {
    if (ms > 0) this.gflopPerMs = flops(s) / 1e9 / ms;
  }
  /** Why `s` should be skipped (one call cannot fit twice in the budget), or undefined. */
  skipReason(s: MatmulShape, opts: PeerOptions): string | undefined {
    if (!this.gflopPerMs) return undefined;
    const ms = flops(s) / 1e9 / this.gflopPerMs;
    return ms * 2 > opts.budgetS * 1000 ? `about ${(ms / 1000).toFixed(1)} s a call predicted (budget ${opts.budgetS} s)` : undefined;
  }
}
