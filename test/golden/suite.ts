// What every golden suite is (one module per component under test/golden/, run by test/golden.test.ts) and what they
// share: the GPU of the run, the summary line each prints, and how a missing part is reported.
import { expect } from 'vitest';
import type { Gpu } from '../../runtime/device.js';
import { maxUlps, testGpu } from '../helpers.js';

export interface GoldenSuite {
  /** Component name as printed and as looked for, e.g. 'tiny_unet', 'tcd_loop', 'tcd_train_step'. */
  name: string;
  /** What is looked for under the golden root, for the 'nothing found' message, e.g. ['tiny_unet/config.json']. */
  lookedFor: string[];
  /** True when this component is present under root. */
  present(root: string): boolean;
  /** Registers describe()/it() blocks comparing the component under root (other components beside it may be used, e.g. tiny_unet/). */
  define(root: string): void;
}

/**
 * The dtype the models compute in (TCD_DTYPE=f32|f16, default f32), printed in each summary line. f16 runs the same
 * f32/f64 goldens with f16 tolerances (each suite states its pair through `tolFor`).
 */
export type GoldenDType = 'f32' | 'f16';
export const GOLDEN_DTYPE: GoldenDType = readGoldenDType();

function readGoldenDType(): GoldenDType {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.TCD_DTYPE ?? 'f32';
  if (v !== 'f32' && v !== 'f16') throw new Error(`TCD_DTYPE: expected 'f32' or 'f16', received '${v}'`);
  return v;
}

/** The tolerance of the run's dtype: `f32` for f32 runs, `f16` for TCD_DTYPE=f16. */
export function tolFor(f32: number, f16: number): number {
  return GOLDEN_DTYPE === 'f16' ? f16 : f32;
}

/**
 * Components that run in f32 whatever TCD_DTYPE says (the text encoders, the VAE — SDXL's overflows in f16 and is
 * upcast as diffusers does — and the host/GPU scheduler math): their lines say f32, the dtype they ran in.
 */
const F32_ONLY = new Set(['tiny_vae', 'tiny_clip', 'clip_tokenizer', 'scheduler', 'tcd_vectors']);

/** The dtype a suite's models ran in. */
export function dtypeOf(suite: string): GoldenDType {
  return F32_ONLY.has(suite) ? 'f32' : GOLDEN_DTYPE;
}

/** Fails loudly when TCD_DTYPE=f16 on a device without shader-f16 (never a silent f32 run). */
export function requireGoldenDType(gpu: Gpu): void {
  if (GOLDEN_DTYPE === 'f16' && !gpu.hasF16) throw new Error(`TCD_DTYPE=f16: the device does not offer shader-f16 (${gpu.describe()})`);
}

let shared: Promise<Gpu> | undefined;

/** The one Gpu of a golden run (suites share pipelines and pool); test/golden.test.ts destroys it at the end. */
export function goldenGpu(): Promise<Gpu> {
  shared ??= testGpu();
  return shared;
}

export async function destroyGoldenGpu(): Promise<void> {
  const g = shared;
  shared = undefined;
  if (g) await (await g).destroy();
}

export function skipped(suite: string, what: string): void {
  console.log(`[golden ${suite}] skipped: ${what}`);
}

/** A row per compared tensor: name and max|got − want| / max|want|. */
export type ErrorRow = [name: string, error: number];

/** `[golden <suite>] f32 <what>: N compared, worst <name> <error> (tolerance …)`: the line every comparison prints. */
export function summaryLine(suite: string, what: string, rows: ErrorRow[], tolerance: string, unit = ''): void {
  const worst = rows.reduce((a, b) => (!(b[1] <= a[1]) ? b : a), rows[0] ?? ['(none)', 0]);
  const e = unit ? `${worst[1]} ${unit}` : worst[1].toExponential(2);
  console.log(`[golden ${suite}] ${dtypeOf(suite)} ${what}: ${rows.length} compared, worst ${worst[0]} ${e} (tolerance ${tolerance})`);
}

/**
 * Prints the summary line of one comparison (suite, dtype, what, count, worst tensor and its error, tolerance) and
 * fails naming every tensor over the tolerance. `verbose` also prints every row.
 */
export function reportRows(suite: string, what: string, rows: ErrorRow[], tol: number, verbose = true): void {
  if (verbose) for (const [k, e] of rows) console.log(`  ${k}: ${e.toExponential(2)}`);
  summaryLine(suite, what, rows, String(tol));
  expect(rows.length, `${what}: tensors compared`).toBeGreaterThan(0);
  // Every tensor over the tolerance is named in the message itself (an assertion's printed array is abbreviated).
  const bad = rows.filter(([, e]) => !(e <= tol)).map(([n, e]) => `${n}: ${e.toExponential(2)}`);
  expect(bad, `${suite} ${what}: ${bad.length} over ${tol} (max|got−want| / max|want|): ${bad.join(', ')}`).toEqual([]);
}

/** One row per element: its name and its float32 ulp distance (got vs want rounded to float32). */
export function maxUlpsRows(got: ArrayLike<number>, want: ArrayLike<number>, name: (i: number) => string): ErrorRow[] {
  return Array.from({ length: want.length }, (_, i) => [name(i), maxUlps([got[i]], [want[i]])] as ErrorRow);
}
