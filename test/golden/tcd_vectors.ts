// tcd_vectors/: the spec's companion files (shared/spec/tcd.md: tcd_alphas_cumprod_f32.json, tcd_test_vectors.json).
// Compared: tcd_alphas_cumprod_f32.json, diffusers' float32 ᾱ table (index = timestep), bit for bit against the
// schedulers' float32 table (noise schedule from the root's scheduler.json base_config when present, else SDXL's).
// tcd_test_vectors.json is not compared here: no copy of it was available to write its reader against (the spec's
// values are in test/fixtures/scheduler/spec_vectors.json and test/schedulers.test.ts); the run says so by name.
// test/fixtures/tcd_vectors holds the table only (see its SOURCE.txt).
import { describe, expect, it } from 'vitest';
import { TCDScheduler, fromDiffusersConfig } from '../../src/schedulers/index.js';
import { goldenExists, joinPath, readJson } from '../golden_io.js';
import { type ErrorRow, type GoldenSuite, maxUlpsRows, summaryLine } from './suite.js';

const NAME = 'tcd_vectors';
const TABLE = 'tcd_alphas_cumprod_f32.json';

export const tcdVectorsSuite: GoldenSuite = {
  name: NAME,
  lookedFor: [`tcd_vectors/${TABLE}`],
  present: (root) => goldenExists(joinPath(root, NAME), TABLE),
  define(root) {
    defineVectors(root, joinPath(root, NAME));
  },
};

/**
 * The ᾱ list of tcd_alphas_cumprod_f32.json: the file is a list of numbers, or an object holding exactly one list of
 * numbers (under any key). Anything else is an error naming what was found.
 */
export function alphaTable(json: unknown, where: string): number[] {
  const isTable = (v: unknown): v is number[] => Array.isArray(v) && v.length >= 2 && v.every((x) => typeof x === 'number' && Number.isFinite(x));
  if (isTable(json)) return json;
  if (json && typeof json === 'object' && !Array.isArray(json)) {
    const lists = Object.entries(json as Record<string, unknown>).filter(([, v]) => isTable(v));
    if (lists.length === 1) return lists[0][1] as number[];
    throw new Error(
      `${where}: expected a list of alphas_cumprod (index = timestep) or an object holding exactly one such list; found ${lists.length} numeric lists among keys ${Object.keys(json).join(', ')}`,
    );
  }
  throw new Error(`${where}: expected a list of alphas_cumprod (index = timestep), got ${Array.isArray(json) ? 'a list that is not all finite numbers' : typeof json}`);
}

function defineVectors(root: string, dir: string): void {
  describe(`${NAME}: the spec's companion vectors`, () => {
    it(`${TABLE}: diffusers' float32 ᾱ, bit for bit`, () => {
      console.log(`[golden ${NAME}] ${dir}`);
      const want = alphaTable(readJson<unknown>(dir, TABLE), joinPath(dir, TABLE));
      const base = readJson<{ base_config?: Record<string, unknown> }>(root, 'scheduler.json')?.base_config;
      const got = new TCDScheduler({ ...(base ? fromDiffusersConfig(base) : {}), precision: 'float32' }).alphasCumprod;
      expect(want.length, `${TABLE} entries vs the schedule's numTrainTimesteps`).toBe(got.length);
      const rows: ErrorRow[] = maxUlpsRows(got, want, (t) => `ᾱ[${t}]`);
      summaryLine(NAME, TABLE, rows, '0 ulp', 'ulp');
      expect(rows.filter(([, u]) => u !== 0).map(([n, u]) => `${n}: ${u} ulp`), 'entries differing from diffusers').toEqual([]);
      if (goldenExists(dir, 'tcd_test_vectors.json')) console.log(`[golden ${NAME}] not compared: tcd_test_vectors.json (no reader for its layout yet)`);
    });
  });
}
