// Result rows, the printed table and the JSON report of `npm run bench`, and the reporting pieces every bench shares
// (bench/sdxl_*.ts too): aligned text tables, byte units, timed progress lines, atomic JSON files, the dry-run plan.
import type { AdapterSummary } from '../runtime/device.js';
import { writeFileAtomic } from '../src/io/safetensors.js';
import type { Reference } from './case.js';
import type { DryRunHost } from './dry_run_host.js';
import type { Profile } from './op_breakdown.js';

export const GiB = 2 ** 30;
/** Bytes as GiB with 2 decimals (no unit). */
export const gib = (b: number): string => (b / GiB).toFixed(2);
/** Bytes as 'x.xx GiB' from 1 GiB on, else 'x.x MiB'. */
export const fmtBytes = (b: number): string => (Math.abs(b) >= GiB ? `${gib(b)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);

/** An aligned text table: header, dashes, rows; columns from `rightFrom` on are right-aligned (numbers). */
export function textTable(header: string[], rows: string[][], rightFrom = 1): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i >= rightFrom ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ');
  return [line(header), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

/** A progress logger on stderr: '[  12.3 s] message', seconds since this call. */
export function timedProgress(): (s: string) => void {
  const t0 = performance.now();
  return (s) => console.error(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${s}`);
}

/** Writes a bench's JSON result document atomically (temp + rename), one value per line-ish (indent 1). */
export async function writeJsonReport(path: string, doc: unknown): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(`${JSON.stringify(doc, null, 1)}\n`));
}

/** The memory plan of a --dry-run: largest buffer and binding against maxStorageBufferBindingSize, counts. */
export function dryRunPlan(dry: DryRunHost, maxStorageBufferBindingSize: number, title: string): string {
  const s = dry.stats;
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  return [
    '',
    title,
    `  largest buffer:  ${mib(s.largestBuffer.bytes)} MiB ('${s.largestBuffer.label}')`,
    `  largest binding: ${mib(s.largestBinding.bytes)} MiB (${s.largestBinding.label}) — maxStorageBufferBindingSize ${(maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB: ${s.largestBinding.bytes <= maxStorageBufferBindingSize ? 'fits' : 'DOES NOT FIT'}`,
    `  buffers created: ${s.buffersCreated}; dispatches recorded: ${s.dispatches}`,
  ].join('\n');
}

export type Unit = 'GFLOP/s' | 'GB/s' | 'call/s';

export interface Row {
  kernel: string;
  shape: string;
  /** Median per run (ms); null when the case failed or was skipped. */
  median_ms: number | null;
  min_ms?: number | null;
  runs?: number;
  throughput: number | null;
  unit: Unit | null;
  reference?: Reference;
  /** throughput / reference.value, only when reference.adapter matches the adapter. */
  ratio: number | null;
  /** How the time was taken: 'gpu-timestamps', 'wall', 'host (benchmark.js)', a peer's own method, ... */
  timing: string;
  /** Wall time per run (ms), runs back to back. */
  wall_ms?: number;
  dispatches?: number;
  /** Peer rows: which library ran ('tfjs-webgpu', 'gpu.js headlessgl', ...). */
  peer?: string;
  note?: string;
  /** Why the row was not run (time budget, ...); not a failure. */
  skipped?: string;
  error?: string;
}

export interface Report {
  date: string;
  adapter: string;
  summary: AdapterSummary;
  toggles: { enabled: string[]; disabled: string[] };
  options: Record<string, unknown>;
  rows: Row[];
  /** Lines about peers that could not run. */
  peers_unavailable: string[];
}

export function throughputOf(ms: number | null, work: { flops?: number; bytes?: number }): { value: number | null; unit: Unit | null } {
  if (work.flops) return { value: ms ? work.flops / (ms * 1e6) : null, unit: 'GFLOP/s' };
  if (work.bytes) return { value: ms ? work.bytes / (ms * 1e6) : null, unit: 'GB/s' };
  return { value: null, unit: null };
}

/** ratio = throughput / reference, only when the reference applies to this adapter. */
export function ratioOf(throughput: number | null, ref: Reference | undefined, adapter: string): number | null {
  if (!ref || throughput === null || !ref.value) return null;
  if (ref.adapter && !new RegExp(ref.adapter, 'i').test(adapter)) return null;
  return throughput / ref.value;
}

function num(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(digits);
}

export function formatTable(rows: Row[]): string {
  const refIds = new Map<string, number>();
  const header = ['kernel', 'shape', 'median ms', 'throughput', 'reference', 'ratio', 'timing'];
  const body = rows.map((r) => {
    let ref = '-';
    if (r.reference) {
      let id = refIds.get(r.reference.source);
      if (id === undefined) refIds.set(r.reference.source, (id = refIds.size + 1));
      ref = `${num(r.reference.value)} [${id}]`;
    }
    const tp = r.throughput !== null && r.unit ? `${num(r.throughput)} ${r.unit}` : '-';
    const timing = r.error ? `FAILED: ${r.error}` : r.skipped ? `skipped: ${r.skipped}` : r.note ? `${r.timing} (${r.note})` : r.timing;
    return [r.kernel, r.shape, num(r.median_ms), tp, ref, r.ratio === null ? '-' : r.ratio.toFixed(3), timing];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (i === 6 ? 0 : b[i].length))));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 6 ? c : i >= 2 && i <= 5 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
  const out = [line(header), line(widths.map((w, i) => (i === 6 ? '------' : '-'.repeat(w)))), ...body.map(line)];
  if (refIds.size) {
    out.push('', 'references (ratio only where the reference names this adapter):');
    for (const [src, id] of refIds) out.push(`  [${id}] ${src}`);
  }
  return out.join('\n');
}

export function toJson(report: Report): string {
  return JSON.stringify(report, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2);
}

/** Our matmul rows beside the peers' rows of the same shape (GFLOP/s), when peers ran. */
export function formatPeerComparison(rows: Row[]): string | undefined {
  const peers = [...new Set(rows.filter((r) => r.peer).map((r) => r.peer!))];
  if (!peers.length) return undefined;
  const shapes = [...new Set(rows.filter((r) => r.peer).map((r) => r.shape))];
  const cell = (r: Row | undefined) => (r?.throughput ? num(r.throughput) : r?.skipped ? 'skipped' : r?.error ? 'failed' : '-');
  const header = ['matmul GFLOP/s', 'ours', ...peers];
  const body = shapes.map((shape) => [
    shape,
    cell(rows.find((r) => !r.peer && r.kernel === 'matmul' && r.shape === shape)),
    ...peers.map((p) => cell(rows.find((r) => r.peer === p && r.shape === shape))),
  ]);
  return textTable(header, body);
}

/** The per-op-type GPU time of a profiled run (bench/op_breakdown.ts) as a table. */
export function opTypeTable(p: Profile): string {
  return textTable(
    ['op type', 'ms', 'share', 'of it backward ms', 'dispatches'],
    p.groups.map((g) => [g.group, g.ms.toFixed(2), `${((100 * g.ms) / p.gpu_ms).toFixed(1)} %`, g.backward_ms.toFixed(2), String(g.dispatches)]),
  );
}
