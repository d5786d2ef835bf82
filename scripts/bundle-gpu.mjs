// Bundles what runs on the GPU machine into .gpu-dist/ (one file per entry, no node_modules needed there):
//   .gpu-dist/tests/<name>.test.mjs  the vitest files, run under node:test (vitest → test/gpu/vitest_shim.ts)
//   .gpu-dist/bench.mjs              npm run bench
//   .gpu-dist/sdxl_unet.mjs          bench/sdxl_unet.ts (whole SDXL UNet: forward, LoRA training step; --help)
//   .gpu-dist/sdxl_pipeline.mjs      bench/sdxl_pipeline.ts (prompt → PNG with every SDXL part, stage times; --help)
//   .gpu-dist/sdxl_distill.mjs       bench/sdxl_distill.ts (one TCD distillation step on the SDXL UNet; --help)
//   .gpu-dist/export_lora_parity.mjs scripts/export_lora_parity.ts (LoRA + UNet outputs for scripts/check_lora_diffusers.py)
//   .gpu-dist/emoji/<name>.mjs       scripts/emoji/*.ts (teacher training, classifier, Table 1, checkpoint packing)
//   .gpu-dist/cli.mjs                src/cli/main.ts, the `tcd` command (bin/tcd.mjs needs tsx); test/cli.test.ts
//                                    runs it when it runs from .gpu-dist/tests/ (or whatever TCD_CLI names)
// dawn.node stays external ('webgpu'): .gpu/enter.sh links the carried copy. Run with:
//   source .gpu/enter.sh; node --test .gpu-dist/tests/*.test.mjs   |   node .gpu-dist/bench.mjs
import { build } from 'esbuild';
import { readdirSync, readFileSync, rmSync, existsSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, '.gpu-dist');
rmSync(out, { recursive: true, force: true });
const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['webgpu', 'gpu.js', 'gl', '@tensorflow/*'],
  logLevel: 'warning',
  // Bundled CommonJS deps (expect) call require(); give ESM bundles one.
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; import { fileURLToPath as __f2p } from 'node:url'; const require = __cr(import.meta.url); const __filename = __f2p(import.meta.url); const __dirname = __filename.replace(/[\\/][^\\/]*$/, '');",
  },
};
// src/cli/main.ts runs main() when its file is the process's entry; bundled into a test file, import.meta.url is the
// test's own file, which `node --test` runs as argv[1]: main() would run with the test's argv (usage, exit code 2).
// In the test bundles the CLI is only imported (test/cli_distill.test.ts), so the entry guard is compiled out there.
const MAIN_GUARD = 'if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url))';
const cliMainNotEntry = {
  name: 'cli-main-not-entry',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/]cli[\\/]main\.ts$/ }, (a) => {
      const src = readFileSync(a.path, 'utf8');
      if (!src.includes(MAIN_GUARD)) throw new Error(`scripts/bundle-gpu.mjs: ${a.path} no longer has the entry guard '${MAIN_GUARD}'; update MAIN_GUARD`);
      return { contents: src.replace(MAIN_GUARD, 'if (false)'), loader: 'ts' };
    });
  },
};
// package_consumer packs and installs the npm package: it needs npm and the repository, which the GPU machine lacks.
const tests = readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts') && f !== 'package_consumer.test.ts');
await build({
  ...common,
  entryPoints: tests.map((f) => join(root, 'test', f)),
  outdir: join(out, 'tests'),
  outExtension: { '.js': '.mjs' },
  // Shared code (the library, expect) goes into chunks instead of into every test file.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  alias: { vitest: join(root, 'test/gpu/vitest_shim.ts') },
  plugins: [cliMainNotEntry],
});
// Tests find fixtures next to themselves (new URL('./fixtures/…', import.meta.url)); a relative link keeps that true.
symlinkSync('../../test/fixtures', join(out, 'tests', 'fixtures'));
// Code under scripts/ finds them as '../test/fixtures' from its own file, which in a chunk is tests/test/fixtures.
symlinkSync('../../test', join(out, 'tests', 'test'));
// web/server.mjs (bundled into tests) resolves its inputs and out/ from the parent of the file it lands in: .gpu-dist/
// for a test file, .gpu-dist/tests/ for a chunk (where it is when two tests import it): mirror the repo in both.
for (const d of ['scripts', 'src', 'test']) symlinkSync(`../${d}`, join(out, d));
for (const d of ['scripts', 'src']) symlinkSync(`../../${d}`, join(out, 'tests', d));
// The programs, in one build that shares their code through chunks (.gpu-dist/chunks/): bundled one by one, each
// held the whole library (~1 MB apiece, ~10 MB in all, of the 64 MiB a GPU run carries).
//   bench.mjs           npm run bench
//   sdxl_unet.mjs       the whole-UNet benchmark (random weights; SDXL config and PyTorch anchors bundled in)
//   sdxl_pipeline.mjs   prompt → PNG pipeline benchmark (random weights; configs bundled, CLIP tokenizer from test/fixtures)
//   sdxl_distill.mjs    one TCD distillation step on the whole SDXL UNet (random weights; config bundled)
//   export_lora_parity.mjs  the TypeScript half of the diffusers LoRA check (then scripts/check_lora_diffusers.py)
//   cli.mjs             the CLI: main.ts runs main() when it is the process's entry file, which this file is
//   emoji/<name>.mjs    the emoji teacher scripts (scripts/emoji/*.ts)
const programs = {
  sdxl_unet: 'bench/sdxl_unet.ts',
  sdxl_pipeline: 'bench/sdxl_pipeline.ts',
  sdxl_distill: 'bench/sdxl_distill.ts',
  export_lora_parity: 'scripts/export_lora_parity.ts',
  cli: 'src/cli/main.ts',
};
if (existsSync(join(root, 'bench/run.ts'))) programs.bench = 'bench/run.ts';
for (const f of readdirSync(join(root, 'scripts/emoji')).filter((f) => f.endsWith('.ts'))) programs[`emoji/${f.slice(0, -3)}`] = `scripts/emoji/${f}`;
await build({
  ...common,
  entryPoints: Object.fromEntries(Object.entries(programs).map(([k, v]) => [k, join(root, v)])),
  outdir: out,
  outExtension: { '.js': '.mjs' },
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
});
console.log(`bundled ${tests.length} test files + ${Object.keys(programs).join(', ')} into .gpu-dist/`);
