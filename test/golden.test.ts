// Every golden suite whose component is in the golden folder (TCD_GOLDEN, default test/fixtures; see
// test/golden/root.ts): `TCD_GOLDEN=<dir> npm run test:golden`. Components absent from the folder are listed as
// skipped by name; a folder with none of them fails, naming what was looked for. Suites: test/golden/index.ts.
import { afterAll, describe, it } from 'vitest';
import { GOLDEN_SUITES } from './golden/index.js';
import { selectGolden } from './golden/root.js';
import { GOLDEN_DTYPE, destroyGoldenGpu } from './golden/suite.js';

const sel = selectGolden(GOLDEN_SUITES);
console.log(
  `[golden] ${sel.given} (${GOLDEN_DTYPE}): comparing ${sel.run.map((s) => s.name).join(', ')}` +
    (sel.absent.length ? `; skipped (absent): ${sel.absent.map((s) => s.name).join(', ')}` : ''),
);

afterAll(destroyGoldenGpu);

for (const s of sel.run) s.define(sel.root);
for (const s of sel.absent)
  describe.skip(`${s.name}: skipped, absent from ${sel.given} (looked for ${s.lookedFor.join(', ')})`, () => {
    it('not compared', () => undefined);
  });
