// Which golden folder a run compares, and which of its components: TCD_GOLDEN (default test/fixtures) is a root laid
// out like the shared golden folder (tiny_unet/, tcd_loop.*, scheduler.json, tiny_vae/, …) or one component's own
// folder (e.g. …/tiny_unet, whatever its name), treated as a root holding just that component. TCD_GOLDEN_SUITES
// (comma-separated component names) limits the run to those suites. Nothing found is an error naming the folder and
// everything looked for.
import { asComponentRoot, goldenDir, goldenExists } from '../golden_io.js';
import type { GoldenSuite } from './suite.js';

export interface GoldenSelection {
  /** The folder given (TCD_GOLDEN or the default). */
  given: string;
  /** The root the suites read (`given`, or a temporary root holding `given` as its one component). */
  root: string;
  run: GoldenSuite[];
  absent: GoldenSuite[];
}

const env = (): Record<string, string | undefined> => (globalThis as { process?: { env?: Record<string, string> } }).process?.env ?? {};

export function selectGolden(all: GoldenSuite[], fallback = 'test/fixtures'): GoldenSelection {
  const given = goldenDir(fallback);
  const from = env().TCD_GOLDEN ? `TCD_GOLDEN=${given}` : `the default golden folder ${given}`;
  if (!goldenExists(given)) throw new Error(`${from}: no such folder`);
  const only = env().TCD_GOLDEN_SUITES?.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = (only ?? []).filter((n) => !all.some((s) => s.name === n));
  if (unknown.length) throw new Error(`TCD_GOLDEN_SUITES: unknown suite ${unknown.join(', ')} (known: ${all.map((s) => s.name).join(', ')})`);
  const suites = only?.length ? all.filter((s) => only.includes(s.name)) : all;

  let root = given;
  let run = suites.filter((s) => s.present(given));
  if (run.length === 0) {
    // One component's own folder: the first suite that recognises it as its component.
    for (const s of suites) {
      const r = asComponentRoot(given, s.name);
      if (r && s.present(r)) {
        root = r;
        run = [s];
        console.log(`[golden] ${given} is a ${s.name}/ folder`);
        break;
      }
    }
  }
  if (run.length === 0) {
    const looked = suites.map((s) => `  ${s.name}: ${s.lookedFor.join(', ')}`).join('\n');
    throw new Error(
      `${from}: no golden component found. Looked for (under the folder, or the folder itself being one component's folder):\n${looked}`,
    );
  }
  return { given, root, run, absent: suites.filter((s) => !run.includes(s)) };
}
