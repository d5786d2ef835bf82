// `npm pack` / `npm publish` run this (package.json "prepack"): builds everything the package ships from a clean clone.
//   1. src/kernels/wgsl_sources.generated.ts   kernels/*.wgsl embedded (scripts/gen-wgsl.mjs)
//   2. dist/runtime, dist/src                  tsc -p tsconfig.build.json: ES modules + .d.ts (Node entry, types, bin)
//   3. dist/browser/                           esbuild browser entries (scripts/build-browser.mjs --lib)
// Stale output is removed first, so a file deleted from src/ cannot linger in the tarball.
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (...args) => execFileSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
const t0 = Date.now();
for (const d of ['dist/src', 'dist/runtime', 'dist/browser']) rmSync(join(root, d), { recursive: true, force: true });
run(join(root, 'scripts/gen-wgsl.mjs'));
run(createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'));
run(join(root, 'scripts/build-browser.mjs'), '--lib');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
for (const [name, rel] of Object.entries(pkg.bin)) {
  const file = join(root, rel);
  if (!readFileSync(file, 'utf8').startsWith('#!/usr/bin/env node\n')) throw new Error(`prepack: bin '${name}' (${rel}) lacks the node shebang`);
  chmodSync(file, 0o755);
}
console.log(`prepack: built dist/ in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
