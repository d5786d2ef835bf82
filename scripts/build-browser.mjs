// Browser builds (esbuild, ESM, platform browser):
//   dist/browser/{index,kernels,autograd}.js + chunks/   the library entries — package.json `exports` → "browser"
//   dist/web/demo.js             the demo page's script (web/demo.ts)
//   dist/browser-test/*.js       the kernel test files + the in-page harness (test/browser/), for npm run test:browser
// Node-only code stays out of the browser path: runtime/host_node.ts (dawn.node) and the `webgpu` package become
// stubs that throw, and node:* modules become stubs whose functions throw "… is not available in browsers". Node
// modules may only be reached by `await import()` inside Node-only functions (fileSource, dirSource, …): the library
// and demo builds fail on a static import of one, and on any real node:* / webgpu import left in the output.
//   node scripts/build-browser.mjs [--lib] [--demo] [--tests]      (no flag: all three)
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Test files run in the browser (same files as under vitest). Whole files that need the file system are left out
 * here; single Node-only tests are skipped by name in test/browser/skips.mjs.
 */
export const BROWSER_TEST_FILES = [
  'elementwise', 'reduce', 'softmax', 'matmul', 'lora_matmul', 'conv2d', 'group_norm', 'layer_norm', 'attention',
  'geglu', 'resample', 'timestep_embedding', 'tcd_step', 'adamw', 'autograd', 'nn_ops', 'runtime', 'safetensors',
  'unet_weights', 'unet_shapes', 'f16_numerics', 'loss_scaler', 'matmul_subgroup_matrix',
  // The golden suites' entry; test/browser/run.mjs limits it to tiny_unet (TCD_GOLDEN_SUITES) over test/fixtures.
  'golden',
  // Browser-specific regressions (test/browser/*.test.ts; vitest runs them in Node too).
  'browser/activation_range',
];

const NODE_ONLY_HINT = 'not available in browsers: use blobSource (a File/Blob) or bytesSource (a Uint8Array) for model files';

// Names a stub exports per module (static imports need them to exist; dynamic imports destructure them).
const STUB_EXPORTS = {
  fs: ['existsSync', 'readFileSync', 'writeFileSync', 'mkdtempSync', 'mkdirSync', 'readdirSync', 'statSync', 'renameSync',
    'unlinkSync', 'rmSync', 'openSync', 'closeSync', 'readSync', 'writeSync', 'createReadStream', 'createWriteStream', 'symlinkSync'],
  'fs/promises': ['open', 'stat', 'readdir', 'readFile', 'writeFile', 'rename', 'unlink', 'mkdir', 'rm', 'mkdtemp'],
  path: ['join', 'resolve', 'dirname', 'basename', 'extname', 'relative', 'isAbsolute', 'normalize'],
  os: ['tmpdir', 'homedir', 'platform', 'cpus'],
  url: ['fileURLToPath', 'pathToFileURL'],
  module: ['createRequire'],
  child_process: ['execFile', 'execFileSync', 'spawn', 'spawnSync'],
};

function stubSource(mod, names, hint) {
  const lines = [`const fail = (name) => () => { throw new Error(\`${mod}: \${name} is ${hint}\`); };`];
  for (const n of names) lines.push(`export const ${n} = fail(${JSON.stringify(n)});`);
  lines.push(`export default new Proxy({}, { get: (_, k) => (typeof k === 'string' ? fail(k) : undefined) });`);
  return lines.join('\n');
}

/** node:* and bare Node built-ins, dawn.node (`webgpu`) and runtime/host_node.js → throwing stubs. */
export function nodeStubPlugin() {
  const builtins = new Set(builtinModules);
  return {
    name: 'node-stubs',
    setup(b) {
      b.onResolve({ filter: /^node:/ }, (a) => ({ path: a.path.slice(5), namespace: 'node-stub' }));
      b.onResolve({ filter: /^[a-z_/]+$/ }, (a) => (builtins.has(a.path) ? { path: a.path, namespace: 'node-stub' } : undefined));
      b.onResolve({ filter: /^webgpu$/ }, () => ({ path: 'webgpu', namespace: 'dawn-stub' }));
      b.onResolve({ filter: /\/host_node\.js$/ }, () => ({ path: 'host_node', namespace: 'dawn-stub' }));
      b.onLoad({ filter: /.*/, namespace: 'node-stub' }, (a) => ({
        contents: stubSource(`node:${a.path}`, STUB_EXPORTS[a.path] ?? [], NODE_ONLY_HINT),
        loader: 'js',
      }));
      b.onLoad({ filter: /.*/, namespace: 'dawn-stub' }, () => ({
        contents: stubSource('dawn.node', ['nodeHost', 'create', 'globals'], 'not available in browsers (the browser uses navigator.gpu)'),
        loader: 'js',
      }));
    },
  };
}

const JEST_MESSAGE_UTIL_STUB = `
export const separateMessageFromStack = (content) => {
  const s = String(content ?? '');
  const i = s.search(/\\n\\s+at /);
  return i < 0 ? { message: s, stack: '' } : { message: s.slice(0, i), stack: s.slice(i + 1) };
};
export const formatStackTrace = (stack) => (stack ? '\\n' + stack : '');
export const formatExecError = (e) => String(e?.stack ?? e);
`;

const common = {
  absWorkingDir: root,
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  sourcemap: true,
  logLevel: 'warning',
  legalComments: 'none',
};

/** Fails if a browser bundle still imports dawn.node or Node modules. */
function assertBrowserClean(files) {
  const bad = [];
  for (const f of files) {
    if (!f.endsWith('.js')) continue;
    const text = readFileSync(f, 'utf8');
    const re = /(?:\bimport\s*\(\s*|\bfrom\s*|\brequire\s*\(\s*|\bimport\s+)["'](webgpu|node:[\w/]+)["']/g;
    for (const m of text.matchAll(re)) bad.push(`${f}: imports ${m[1]}`);
  }
  if (bad.length) throw new Error(`browser bundle reaches Node-only modules:\n  ${bad.join('\n  ')}`);
}

/**
 * Fails when a module of the browser build imports a Node built-in or dawn.node statically: such a module would be
 * Node-only at load, not just in the functions that need the file system.
 */
export function assertNoStaticNodeImports(metafile, what) {
  const bad = [];
  for (const [file, input] of Object.entries(metafile.inputs))
    for (const im of input.imports)
      if (/^(node-stub|dawn-stub):/.test(im.path) && im.kind !== 'dynamic-import') bad.push(`${file}: ${im.kind} '${im.original ?? im.path}'`);
  if (bad.length)
    throw new Error(
      `${what}: Node-only modules imported statically (move them into \`await import()\` inside the Node-only function, ` +
        `or keep the file out of the browser build):\n  ${bad.join('\n  ')}`,
    );
}

function genWgsl() {
  execFileSync(process.execPath, [join(root, 'scripts/gen-wgsl.mjs')], { stdio: 'inherit' });
}

/**
 * The package's browser entries (package.json `exports` → "browser"), split so that `tcd-webgpu`,
 * `tcd-webgpu/kernels` and `tcd-webgpu/autograd` share one copy of each module (one Tensor class) in chunks/.
 */
export const LIBRARY_ENTRIES = { index: 'src/index.ts', kernels: 'src/kernels/index.ts', autograd: 'src/autograd/index.ts' };

export async function buildLibrary() {
  const outdir = join(root, 'dist/browser');
  rmSync(outdir, { recursive: true, force: true });
  const r = await build({
    ...common,
    entryPoints: Object.entries(LIBRARY_ENTRIES).map(([out, src]) => ({ in: join(root, src), out })),
    outdir,
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    // No maps: they would point at sources the package does not ship, and double its size.
    sourcemap: false,
    plugins: [nodeStubPlugin()],
    metafile: true,
  });
  assertNoStaticNodeImports(r.metafile, 'dist/browser/');
  assertBrowserClean(Object.keys(r.metafile.outputs).map((f) => join(root, f)));
  return join(outdir, 'index.js');
}

export async function buildDemo() {
  const outdir = join(root, 'dist/web');
  const r = await build({ ...common, entryPoints: [join(root, 'web/demo.ts')], outdir, plugins: [nodeStubPlugin()], metafile: true });
  const outs = Object.keys(r.metafile.outputs).map((f) => join(root, f));
  assertNoStaticNodeImports(r.metafile, 'dist/web/demo.js');
  assertBrowserClean(outs);
  return outdir;
}

/** Test files + harness; `vitest` → the in-page shim, test/golden_io.js → its fetch-based twin. */
export async function buildTests(files = BROWSER_TEST_FILES) {
  const outdir = join(root, 'dist/browser-test');
  rmSync(outdir, { recursive: true, force: true });
  const missing = files.filter((f) => !existsSync(join(root, 'test', `${f}.test.ts`)));
  const present = files.filter((f) => !missing.includes(f));
  const goldenTwin = join(root, 'test/browser/golden_io.ts');
  if (!existsSync(join(root, 'dist/browser/index.js'))) await buildLibrary(); // the consumer entry imports it
  const r = await build({
    ...common,
    entryPoints: [
      { in: join(root, 'test/browser/harness.ts'), out: 'harness' },
      { in: join(root, 'test/browser/consumer.mjs'), out: 'consumer' },
      ...present.map((f) => ({ in: join(root, 'test', `${f}.test.ts`), out: `${f}.test` })),
    ],
    outdir,
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    alias: { vitest: join(root, 'test/browser/vitest_shim.ts') },
    // Jest's expect pulls in Node-flavoured CommonJS (graceful-fs, chalk): give it `global`.
    define: { global: 'globalThis' },
    plugins: [
      {
        name: 'golden-io-twin',
        setup(b) {
          b.onResolve({ filter: /\/golden_io\.js$/ }, (a) =>
            a.importer === goldenTwin ? undefined : { path: goldenTwin },
          );
        },
      },
      {
        // Jest's expect uses jest-message-util only to format a thrown value's stack; the real one reads source files
        // and uses path / __dirname at load. A page needs the plain stack.
        name: 'jest-message-util-stub',
        setup(b) {
          b.onResolve({ filter: /^jest-message-util$/ }, () => ({ path: 'jest-message-util', namespace: 'jmu-stub' }));
          b.onLoad({ filter: /.*/, namespace: 'jmu-stub' }, () => ({ contents: JEST_MESSAGE_UTIL_STUB, loader: 'js' }));
        },
      },
      nodeStubPlugin(),
    ],
    metafile: true,
  });
  // The consumer must have reached the library through package.json exports, not through the sources.
  const consumer = Object.values(r.metafile.outputs).find((o) => o.entryPoint === 'test/browser/consumer.mjs');
  const viaPackage = consumer && Object.keys(r.metafile.inputs).some((i) => i === 'dist/browser/index.js');
  if (!viaPackage) throw new Error("test/browser/consumer.mjs: 'tcd-webgpu' did not resolve to dist/browser/index.js (package.json exports → browser)");
  return { outdir, files: present, missing };
}

export async function buildAll(which = { lib: true, demo: true, tests: true }) {
  genWgsl();
  const t0 = Date.now();
  const done = [];
  if (which.lib) done.push(`library → ${rel(await buildLibrary())}`);
  if (which.demo) done.push(`demo → ${rel(await buildDemo())}/demo.js`);
  if (which.tests) {
    const t = await buildTests();
    done.push(`${t.files.length} test files → ${rel(t.outdir)}${t.missing.length ? ` (missing: ${t.missing.join(', ')})` : ''}`);
  }
  console.log(`build:browser (${Date.now() - t0} ms): ${done.join('; ')}`);
}

const rel = (p) => p.slice(root.length + 1);

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log('usage: node scripts/build-browser.mjs [--lib] [--demo] [--tests]   (no flag: all)\n' +
      '  --lib    dist/browser/{index,kernels,autograd}.js (the package entries for browsers)\n  --demo   dist/web/demo.js\n' +
      '  --tests  dist/browser-test/ (test files + harness for npm run test:browser)');
    process.exit(0);
  }
  const unknown = args.filter((a) => !['--lib', '--demo', '--tests'].includes(a));
  if (unknown.length) {
    console.error(`unknown argument(s): ${unknown.join(' ')} (see --help)`);
    process.exit(2);
  }
  const all = args.length === 0;
  await buildAll({ lib: all || args.includes('--lib'), demo: all || args.includes('--demo'), tests: all || args.includes('--tests') }).catch((e) => {
    console.error(`build:browser failed: ${e instanceof Error ? e.message : e}`);
    process.exit(1);
  });
}
