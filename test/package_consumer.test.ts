// The npm package as a new user meets it: `npm pack` (its prepack builds dist/ from the sources), the tarball installed
// into an empty ESM project, then (1) the README's examples ("Using a kernel directly", "Sharing a device with an
// engine") run unchanged in Node on the test adapter, their numbers checked against float64 CPU products, and the
// subpath entries; (2) TypeScript consumers type-checked against the shipped .d.ts (moduleResolution nodenext and
// bundler, skipLibCheck off); (3) the examples bundled for browsers with esbuild, which must take the browser build and
// reach no node: module; (4) `npx tcd sample --help` (the compiled bin, no tsx). The examples are read from README.md,
// so a README example that stops working fails here.
//
// Offline: the consumer gets a package-lock.json whose entries (resolved URL + integrity) are copied from this
// repository's lock, so `npm ci` takes the runtime dependencies from the npm cache that the repository's `npm ci` filled
// (`--prefer-offline`: the registry is asked only for what the cache lacks).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { build, transform } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unaryRef } from '../src/reference/elementwise.js';
import { matmulRef } from '../src/reference/matmul.js';
import { expectClose } from './helpers.js';

const execFileP = promisify(execFile);
const root = resolve('.');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const TSC = join(root, 'node_modules/typescript/bin/tsc');
/** The packed size the issue asks for (before any bundled model). */
const MAX_PACKED_BYTES = 2 * 1024 * 1024;

/** The ```ts block under a README heading (`## …` or `### …`). */
function readmeExample(heading: string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`README.md has no section '${heading}'`);
  const m = /```ts\n([\s\S]*?)```/.exec(readme.slice(at));
  if (!m) throw new Error(`README.md '${heading}' has no \`\`\`ts block`);
  return m[1];
}

async function sh(cmd: string, args: string[], cwd: string, timeout = 240_000): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileP(cmd, args, { cwd, timeout, maxBuffer: 64 << 20, env: { ...process.env, npm_config_update_notifier: 'false' } });
  } catch (e) {
    const err = e as Error & { stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
}

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  dev?: boolean;
  [k: string]: unknown;
}

/**
 * The consumer's lock: tcd-webgpu from the tarball plus the closure of its runtime dependencies, each entry copied
 * from the repository's lock at the same node_modules path (Node's lookup: nested first, then hoisted).
 */
function consumerLock(tarball: string, integrity: string, pkg: { dependencies: Record<string, string>; bin: Record<string, string>; version: string; license: string }): object {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const packages: Record<string, LockEntry> = {
    '': { name: 'consumer', dependencies: { 'tcd-webgpu': `file:${tarball}` } },
    'node_modules/tcd-webgpu': { version: pkg.version, resolved: `file:${tarball}`, integrity, license: pkg.license, dependencies: pkg.dependencies, bin: pkg.bin },
  };
  const find = (from: string, name: string): string => {
    for (let dir = from; ; dir = dir.slice(0, dir.lastIndexOf('/node_modules/'))) {
      const p = `${dir ? `${dir}/` : ''}node_modules/${name}`;
      if (lock.packages[p]) return p;
      if (!dir.includes('/node_modules/')) break;
    }
    if (lock.packages[`node_modules/${name}`]) return `node_modules/${name}`;
    throw new Error(`package-lock.json has no entry for '${name}' (needed from ${from || 'the root'})`);
  };
  const queue = Object.keys(pkg.dependencies).map((name) => find('', name));
  while (queue.length) {
    const p = queue.pop()!;
    if (packages[p]) continue;
    const { dev, devOptional, peer, ...entry } = lock.packages[p];
    packages[p] = entry;
    for (const name of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) {
      try {
        queue.push(find(p, name));
      } catch (e) {
        if (!entry.optionalDependencies?.[name]) throw e;
      }
    }
  }
  return { name: 'consumer', lockfileVersion: 3, requires: true, packages };
}

let work: string;
let app: string;
let packed: { size: number; unpackedSize: number; entryCount: number; files: { path: string }[]; integrity: string; filename: string };
let pkgJson: { dependencies: Record<string, string>; devDependencies: Record<string, string>; bin: Record<string, string>; version: string; license: string; files: string[] };
/** The README examples this test runs, type-checks and bundles. */
const EXAMPLES = {
  kernel: readmeExample('## Using a kernel directly'),
  engine: readmeExample('### Sharing a device with an engine'),
};

/**
 * Runs a README example unchanged in the consumer project, recording the tensors it makes (Tensor.fromArray's data;
 * Tensor.fromBuffer's engine buffer range, read back afterwards with plain WebGPU) and what it prints. `navigator`
 * gives it a browser's globals from the `webgpu` package (navigator.gpu, GPUBufferUsage, ...), as an engine has them.
 */
async function runExample(name: keyof typeof EXAMPLES, navigator: boolean) {
  const { code } = await transform(EXAMPLES[name], { loader: 'ts', format: 'esm', target: 'es2022' });
  await writeFile(join(app, `example-${name}.mjs`), code);
  await writeFile(
    join(app, `run-${name}.mjs`),
    `import { writeFileSync } from 'node:fs';
import { Tensor } from 'tcd-webgpu';
${navigator ? `import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
Object.defineProperty(globalThis, 'navigator', { value: { gpu: create([]) }, configurable: true });` : ''}
const inputs = {};
const external = [];
const fromArray = Tensor.fromArray;
Tensor.fromArray = function (gpu, data, shape, opts) {
  inputs[opts?.label ?? 'tensor' + Object.keys(inputs).length] = { data: Array.from(data), shape: [...shape], adapter: gpu.describe() };
  return fromArray.call(this, gpu, data, shape, opts);
};
const fromBuffer = Tensor.fromBuffer;
Tensor.fromBuffer = function (gpu, buffer, shape, opts) {
  const t = fromBuffer.call(this, gpu, buffer, shape, opts);
  external.push({ name: opts?.label ?? 'external' + external.length, device: gpu.device, buffer, offset: t.byteOffset, bytes: t.bytes, shape: [...shape], adapter: gpu.describe() });
  return t;
};
const printed = [];
const log = console.log;
console.log = (...args) => {
  printed.push(args.map((a) => (ArrayBuffer.isView(a) ? { values: Array.from(a) } : String(a))));
  log(...args.map((a) => (ArrayBuffer.isView(a) ? '<' + a.constructor.name + ' of ' + a.length + '>' : a)));
};
await import('./example-${name}.mjs');
for (const e of external) {
  const staging = e.device.createBuffer({ size: e.bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = e.device.createCommandEncoder();
  enc.copyBufferToBuffer(e.buffer, e.offset, staging, 0, e.bytes);
  e.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  inputs[e.name] = { data: Array.from(new Float32Array(staging.getMappedRange())), shape: e.shape, adapter: e.adapter };
}
writeFileSync('result-${name}.json', JSON.stringify({ inputs, printed }));
process.exit(0); // a navigator.gpu of dawn.node keeps Node alive
`,
  );
  const t = performance.now();
  const run = await sh(process.execPath, [`run-${name}.mjs`], app);
  console.log(`  README example '${name}' (${((performance.now() - t) / 1000).toFixed(1)} s): ${run.stdout.trim().replace(/\n/g, ' | ')}`);
  const r = JSON.parse(await readFile(join(app, `result-${name}.json`), 'utf8')) as {
    inputs: Record<string, { data: number[]; shape: number[]; adapter: string }>;
    printed: (string | { values: number[] })[][];
  };
  const want = process.env.TCD_EXPECT_ADAPTER;
  for (const [k, v] of Object.entries(r.inputs))
    if (want) expect(v.adapter, `${k}: adapter must match TCD_EXPECT_ADAPTER=${want}`).toMatch(new RegExp(want, 'i'));
  const arrays = r.printed.map((p) => p[0]).filter((p): p is { values: number[] } => typeof p === 'object');
  return { inputs: r.inputs, printed: arrays.map((a) => a.values) };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'tcd-package-'));
  app = join(work, 'app');
  await mkdir(app);
  let t = performance.now();
  // `npm pack` runs prepack (scripts/prepack.mjs): embedded WGSL, tsc, the browser bundle.
  const { stdout } = await sh(NPM, ['pack', '--json', '--pack-destination', work], root, 420_000);
  packed = JSON.parse(stdout.slice(stdout.search(/^\[/m)))[0]; // after any prepack output
  const packMs = performance.now() - t;
  pkgJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { 'tcd-webgpu': `file:../${packed.filename}` } }, null, 2));
  await writeFile(join(app, 'package-lock.json'), JSON.stringify(consumerLock(`../${packed.filename}`, packed.integrity, pkgJson), null, 2));
  t = performance.now();
  await sh(NPM, ['ci', '--prefer-offline', '--no-audit', '--no-fund'], app);
  console.log(
    `  npm pack: ${(packMs / 1000).toFixed(1)} s, ${packed.filename} ${(packed.size / 1024).toFixed(0)} KiB packed, ` +
      `${(packed.unpackedSize / 1024).toFixed(0)} KiB unpacked, ${packed.entryCount} files; npm ci in the consumer: ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
}, 600_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('npm package', () => {
  it('holds what runs and little else, under 2 MB', () => {
    const files = packed.files.map((f) => f.path);
    expect(packed.size, `packed size ${packed.size} bytes`).toBeLessThan(MAX_PACKED_BYTES);
    for (const f of ['LICENSE', 'THIRD_PARTY_NOTICES.md', 'README.md', 'package.json', 'dist/src/index.js', 'dist/src/index.d.ts',
      'dist/src/kernels/index.js', 'dist/src/autograd/index.js', 'dist/src/cli/bin.js', 'dist/src/kernels/wgsl_sources.generated.js',
      'dist/runtime/device.js', 'dist/browser/index.js', 'dist/browser/kernels.js', 'dist/browser/autograd.js'])
      expect(files, `tarball must hold ${f}`).toContain(f);
    const stray = files.filter((f) => /^(test|bench|scripts|web|kernels|bin)\/|^src\/|\.map$|(?<!\.d)\.ts$/.test(f));
    expect(stray, 'sources, tests, benches, maps in the tarball').toEqual([]);
  });

  it('lists as runtime dependencies only what the shipped code imports (or its .d.ts reference)', async () => {
    const dir = join(app, 'node_modules/tcd-webgpu/dist');
    let shipped = '';
    for (const f of await readdir(dir, { recursive: true }))
      // Whole-line comments dropped: a doc comment may quote an import (`import { X } from 'tcd-webgpu/trainer'`).
      if (/\.(js|d\.ts)$/.test(f) && !f.startsWith('browser'))
        shipped += (await readFile(join(dir, f), 'utf8')).replace(/^\s*(\/\/(?!\/)|\*|\/\*\*).*$/gm, '');
    const used = (name: string) =>
      [`from '${name}`, `from "${name}`, `import('${name}`, `import("${name}`, `types="${name}"`].some((p) => shipped.includes(p));
    expect(Object.keys(pkgJson.dependencies).filter((d) => !used(d)), 'runtime dependencies nothing shipped uses').toEqual([]);
    // And the other way: every package the shipped JavaScript imports is a runtime dependency.
    const imported = new Set<string>();
    for (const m of shipped.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*)['"]((?:@[\w.-]+\/)?[\w.-]+)[^'"]*['"]/g))
      if (!m[1].startsWith('.') && !builtinModules.includes(m[1]) && !m[0].includes('node:')) imported.add(m[1]);
    expect([...imported].filter((d) => !(d in pkgJson.dependencies)), 'imported but not a runtime dependency').toEqual([]);
    for (const dev of ['tsx', 'typescript', 'esbuild', 'vitest']) expect(pkgJson.devDependencies).toHaveProperty(dev);
  });

  it('names in THIRD_PARTY_NOTICES.md every package bundled into the browser build', async () => {
    const dir = join(app, 'node_modules/tcd-webgpu/dist/browser');
    const js = [...(await readdir(dir, { recursive: true }))].filter((f) => f.endsWith('.js'));
    const bundled = new Set<string>();
    for (const f of js)
      for (const m of (await readFile(join(dir, f), 'utf8')).matchAll(/^\/\/ node_modules\/((?:@[^/]+\/)?[^/]+)\//gm)) bundled.add(m[1]);
    expect(bundled.size, 'esbuild marks inlined packages with // node_modules/… comments').toBeGreaterThan(0);
    const notices = readFileSync(join(app, 'node_modules/tcd-webgpu/THIRD_PARTY_NOTICES.md'), 'utf8');
    for (const name of bundled) expect(notices, `THIRD_PARTY_NOTICES.md must name ${name}`).toContain(`### ${name}`);
  });

  it('(1) runs the README kernel example in Node: silu(x·wᵀ) equals the float64 CPU product', async () => {
    const { inputs, printed } = await runExample('kernel', false);
    const { x, w } = inputs;
    expect(x.shape).toEqual([64, 128]);
    expect(w.shape).toEqual([256, 128]);
    expect(printed.length, 'the example prints y').toBe(1);
    const ref = matmulRef(x.data, x.shape, w.data, w.shape, { transB: true });
    expectClose(printed[0], Array.from(ref.y, (v) => unaryRef('silu', v)), { atol: 1e-5, rtol: 1e-4 }, 'README kernel example y');
  });

  it('(1) runs the README engine example in Node: x·x on the engine buffer, read back by the engine, equals the CPU product', async () => {
    const { inputs, printed } = await runExample('engine', true);
    const x = Object.values(inputs)[0];
    expect(Object.keys(inputs).length, 'one engine buffer wrapped').toBe(1);
    expect(x.shape).toEqual([4, 4]);
    expect(printed.length, 'the example prints y').toBe(1);
    expectClose(printed[0], matmulRef(x.data, x.shape, x.data, x.shape).y, { atol: 1e-5, rtol: 1e-5 }, 'README engine example y');
  });

  it('(1) the subpath entries share the top-level classes; tcd-webgpu/kernels exports every kernel wrapper', async () => {
    await writeFile(
      join(app, 'subpaths.mjs'),
      `import { readdirSync } from 'node:fs';
import * as top from 'tcd-webgpu';
import * as kernels from 'tcd-webgpu/kernels';
import * as autograd from 'tcd-webgpu/autograd';
const problems = [];
for (const [k, v] of Object.entries(kernels)) if (top[k] !== v) problems.push('tcd-webgpu/kernels ' + k + ' is not the top-level ' + k);
for (const [k, v] of Object.entries(autograd)) if (top.autograd[k] !== v) problems.push('tcd-webgpu/autograd ' + k + ' is not autograd.' + k);
if (Object.keys(autograd).length !== Object.keys(top.autograd).length) problems.push('tcd-webgpu/autograd and autograd differ in size');
const dir = new URL('./node_modules/tcd-webgpu/dist/src/kernels/', import.meta.url);
for (const f of readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'index.js')) {
  const mod = await import(new URL(f, dir).href);
  for (const [k, v] of Object.entries(mod)) if (top[k] === v && kernels[k] !== v) problems.push('tcd-webgpu exports ' + k + ' (src/kernels/' + f + ') but tcd-webgpu/kernels does not');
}
console.log(JSON.stringify({ problems, kernels: Object.keys(kernels).length, autograd: Object.keys(autograd).length }));
`,
    );
    const { stdout } = await sh(process.execPath, ['subpaths.mjs'], app);
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { problems: string[]; kernels: number; autograd: number };
    expect(r.problems).toEqual([]);
    expect(r.kernels).toBeGreaterThan(20);
    expect(r.autograd).toBeGreaterThan(5);
  });

  it('(2) type-checks a TypeScript consumer against the shipped .d.ts (nodenext and bundler)', async () => {
    for (const [name, code] of Object.entries(EXAMPLES)) await writeFile(join(app, `readme-${name}.ts`), code);
    await writeFile(
      join(app, 'engine.ts'),
      `import { Gpu, Tensor, conv2d, ShapeError, autograd } from 'tcd-webgpu';
import { matmul, attention } from 'tcd-webgpu/kernels';
import { Var } from 'tcd-webgpu/autograd';
export async function run(device: GPUDevice, buffer: GPUBuffer): Promise<Float32Array> {
  const gpu: Gpu = Gpu.fromDevice(device);
  const a: Tensor = Tensor.fromBuffer(gpu, buffer, [4, 4], { dtype: 'f32', offset: 0 });
  const y = matmul(a, a);
  gpu.flush();
  const e: ShapeError | undefined = undefined;
  void [conv2d, attention, e, autograd.Tape, Var];
  return y.toArray();
}
`,
    );
    const base = { strict: true, target: 'ES2022', lib: ['ES2022', 'DOM'], types: [], noEmit: true, skipLibCheck: false };
    const tsconfig = (name: string, opts: object, files: string[]) =>
      writeFile(join(app, `tsconfig.${name}.json`), JSON.stringify({ compilerOptions: { ...base, ...opts }, files }));
    const consumers = ['readme-kernel.ts', 'readme-engine.ts', 'engine.ts'];
    await tsconfig('nodenext', { module: 'NodeNext', moduleResolution: 'NodeNext' }, consumers);
    await tsconfig('bundler', { module: 'ESNext', moduleResolution: 'Bundler' }, consumers);
    // The check has teeth: a wrong call fails against the same declarations.
    await writeFile(join(app, 'wrong.ts'), `import { Tensor, matmul } from 'tcd-webgpu';\nexport const y = matmul(Tensor, { transB: 'yes' });\n`);
    await tsconfig('wrong', { module: 'NodeNext', moduleResolution: 'NodeNext' }, ['wrong.ts']);
    const tsc = (name: string) => sh(process.execPath, [TSC, '-p', `tsconfig.${name}.json`], app);
    await Promise.all([tsc('nodenext'), tsc('bundler'), expect(tsc('wrong')).rejects.toThrow(/wrong\.ts\(2,\d+\): error TS2345/)]);
  });

  it('(3) bundles the README examples for browsers: the browser build, no node: module, no dawn.node', async () => {
    for (const [name, code] of Object.entries(EXAMPLES)) await writeFile(join(app, `readme-${name}.ts`), code);
    await writeFile(join(app, 'subpaths.ts'), `export * as kernels from 'tcd-webgpu/kernels';\nexport * as autograd from 'tcd-webgpu/autograd';\n`);
    const r = await build({
      absWorkingDir: app,
      entryPoints: ['readme-kernel.ts', 'readme-engine.ts', 'subpaths.ts'],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      outdir: 'out-browser',
      splitting: true,
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(r.metafile.inputs);
    for (const entry of ['index', 'kernels', 'autograd']) expect(inputs, 'took the browser build').toContain(`node_modules/tcd-webgpu/dist/browser/${entry}.js`);
    expect(inputs.filter((i) => /tcd-webgpu\/dist\/(src|runtime)\/|node_modules\/webgpu\//.test(i)), 'Node build or dawn.node in the bundle').toEqual([]);
    for (const [file, out] of Object.entries(r.metafile.outputs)) {
      if (!file.endsWith('.js')) continue;
      expect(out.imports.filter((i) => i.external).map((i) => i.path), `${file}: external imports`).toEqual([]);
      const text = await readFile(join(app, file), 'utf8');
      expect(text.match(/(?:\bimport\s*\(\s*|\bfrom\s*|\brequire\s*\(\s*)["'](webgpu|node:[\w/]+)["']/g) ?? [], `${file}: Node imports`).toEqual([]);
    }
  });

  it('(4) `npx tcd sample --help` runs the compiled bin', async () => {
    const bin = await readFile(join(app, 'node_modules/tcd-webgpu', pkgJson.bin.tcd), 'utf8');
    expect(bin.startsWith('#!/usr/bin/env node\n'), 'shebang').toBe(true);
    expect(pkgJson.bin.tcd).toMatch(/^dist\/.*\.js$/);
    const { stdout } = await sh('npx', ['--offline', 'tcd', 'sample', '--help'], app);
    expect(stdout).toMatch(/--model/);
    expect(stdout).toMatch(/--prompt/);
    const top = await sh('npx', ['--offline', 'tcd', '--help'], app);
    expect(top.stdout).toMatch(/sample/);
  });
});
