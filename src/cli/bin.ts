#!/usr/bin/env node
// The installed `tcd` command: package.json "bin" points at its compiled form, dist/src/cli/bin.js (plain Node, no
// tsx). In a checkout, bin/tcd.mjs runs the TypeScript sources instead.
import { main } from './main.js';

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`tcd: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
}
