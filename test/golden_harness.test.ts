// The golden harness itself (test/golden.test.ts, test/golden/): which folder and components a run compares, the
// error for a folder with none, the LoRA scale as lora_config.json documents it, and that the suites both pass a
// consistent golden made differently and fail a perturbed one. The last two run the tiny_unet and tcd_loop suites in
// a child vitest on folders built in a temporary directory from test/fixtures:
//   - lora_alpha ≠ r: every lora_B doubled, lora_config.json scale 0.5 and lora_alpha 2·r. The adapted model is the
//     same function, so outputs, activations, loop steps and every other gradient are unchanged; the lora_B
//     gradients halve (∂y/∂B' = scale'·A·x = ½·∂y/∂B). Must pass.
//   - the same folder with one element moved by 1% of the tensor's scale in each of: the UNet output, one act.*, one
//     grad.* and one loop step (each far over its tolerance, and each in a different tensor, so every failure
//     names its own tensor). Must fail, each perturbed tensor named in the failure of the test that compares it.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { bytesSource } from '../src/io/byte_source.js';
import { readHeader } from '../src/io/safetensors.js';
import { GOLDEN_SUITES } from './golden/index.js';
import { alphaTable, tcdVectorsSuite } from './golden/tcd_vectors.js';
import { selectGolden } from './golden/root.js';
import { documentedLoraScale } from './golden_io.js';

const FIXTURES = resolve('test/fixtures');
const work = mkdtempSync(join(tmpdir(), 'tcd-golden-harness-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs fn with process.env[k] = v for each entry (undefined deletes), restoring the previous values. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (o: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(o)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  };
  set(vars);
  try {
    return fn();
  } finally {
    set(saved);
  }
}

const select = (dir: string | undefined, suites?: string) => withEnv({ TCD_GOLDEN: dir, TCD_GOLDEN_SUITES: suites }, () => selectGolden(GOLDEN_SUITES));

describe('golden root', () => {
  it('default: test/fixtures, every suite present', () => {
    const sel = select(undefined);
    expect(sel.root).toBe(FIXTURES);
    expect(sel.run.map((s) => s.name)).toEqual(GOLDEN_SUITES.map((s) => s.name));
    expect(sel.absent).toEqual([]);
  });

  it('a folder with no component fails, naming the folder and every file looked for', () => {
    const empty = join(work, 'empty');
    mkdirSync(empty);
    for (const dir of [empty, join(FIXTURES, 'sdxl_keys')]) {
      let msg = '';
      try {
        select(dir);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toContain(`TCD_GOLDEN=${dir}: no golden component found`);
      for (const s of GOLDEN_SUITES) for (const l of s.lookedFor) expect(msg).toContain(l);
    }
    expect(() => select(join(work, 'no-such-dir'))).toThrow(/no-such-dir: no such folder/);
    expect(() => select(FIXTURES, 'tiny_unet,unet')).toThrow(/unknown suite unet \(known: tiny_unet, /);
  });

  it("one component's folder, whatever its name, is a root holding just that component", () => {
    const renamed = join(work, 'my_unet_copy');
    cpSync(join(FIXTURES, 'tiny_unet'), renamed, { recursive: true });
    for (const [dir, name] of [
      [renamed, 'tiny_unet'],
      [join(FIXTURES, 'tiny_vae'), 'tiny_vae'],
      [join(FIXTURES, 'clip_tokenizer'), 'clip_tokenizer'],
      [join(FIXTURES, 'tcd_loop'), 'tcd_loop'],
    ]) {
      const sel = select(dir);
      expect(sel.run.map((s) => s.name), dir).toEqual([name]);
      expect(sel.run[0].present(sel.root)).toBe(true);
      expect(sel.absent.map((s) => s.name)).not.toContain(name);
    }
    // A VAE folder is not mistaken for a UNet one (config.json's _class_name decides).
    expect(select(join(FIXTURES, 'tiny_vae')).run.map((s) => s.name)).toEqual(['tiny_vae']);
  });

  it('TCD_GOLDEN_SUITES limits the run; the others are listed as absent', () => {
    const sel = select(FIXTURES, 'tcd_loop, scheduler');
    expect(sel.run.map((s) => s.name)).toEqual(['tcd_loop', 'scheduler']);
    expect(select(FIXTURES, '').run.length, 'an empty TCD_GOLDEN_SUITES selects every suite').toBe(GOLDEN_SUITES.length);
  });
});

describe('tcd_vectors: the ᾱ table file', () => {
  it('a list, or an object holding exactly one numeric list; anything else names what it found', () => {
    expect(alphaTable([0.9, 0.8], 'f')).toEqual([0.9, 0.8]);
    expect(alphaTable({ note: 'x', alphas_cumprod: [0.9, 0.8] }, 'f')).toEqual([0.9, 0.8]);
    expect(() => alphaTable({ a: [1, 2], b: [3, 4] }, 'f.json')).toThrow(/f\.json: .* found 2 numeric lists among keys a, b/);
    expect(() => alphaTable([1, 'x'], 'f.json')).toThrow(/f\.json: .* a list that is not all finite numbers/);
  });
});

// The tcd_vectors suite on the table in the object form (test/fixtures/tcd_vectors holds the list form; the golden
// run compares that one).
{
  const root = join(work, 'vectors');
  mkdirSync(join(root, 'tcd_vectors'), { recursive: true });
  const table = JSON.parse(readFileSync(join(FIXTURES, 'tcd_vectors', 'tcd_alphas_cumprod_f32.json'), 'utf8')) as number[];
  writeFileSync(join(root, 'tcd_vectors', 'tcd_alphas_cumprod_f32.json'), JSON.stringify({ alphas_cumprod: table }));
  expect(tcdVectorsSuite.present(root)).toBe(true);
  tcdVectorsSuite.define(root);
}

describe('LoRA scale', () => {
  it("lora_config.json's scale is the multiplier itself; lora_alpha / r only when it is absent", () => {
    expect(documentedLoraScale({ r: 4, lora_alpha: 8, scale: 0.5 }, 'x')).toBe(0.5);
    expect(documentedLoraScale({ r: 4, lora_alpha: 8 }, 'x')).toBe(2);
    expect(() => documentedLoraScale({ r: 0, lora_alpha: 0 } as never, 'cfg.json')).toThrow(/cfg\.json: no usable LoRA scale/);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// Golden folders made from the fixture, and child runs of the suites on them.

/** Rewrites tensors of a safetensors file in place (F32 / F64 only); every other byte is kept. */
async function patchTensors(path: string, edit: (name: string, values: Float64Array) => boolean): Promise<void> {
  const bytes = new Uint8Array(readFileSync(path));
  const header = await readHeader(bytesSource(bytes, path));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const [name, e] of header.tensors) {
    if (e.dtype !== 'F32' && e.dtype !== 'F64') continue;
    const size = e.dtype === 'F32' ? 4 : 8;
    const at = header.dataStart + e.begin;
    const n = (e.end - e.begin) / size;
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = size === 4 ? view.getFloat32(at + 4 * i, true) : view.getFloat64(at + 8 * i, true);
    if (!edit(name, v)) continue;
    for (let i = 0; i < n; i++) size === 4 ? view.setFloat32(at + 4 * i, v[i], true) : view.setFloat64(at + 8 * i, v[i], true);
  }
  writeFileSync(path, bytes);
}

/** The fixture's tiny_unet + tcd_loop in the shared layout, with lora_alpha = 2·r, scale 0.5 and every lora_B doubled. */
async function alphaNotRFolder(dir: string): Promise<void> {
  const unet = join(dir, 'tiny_unet');
  mkdirSync(unet, { recursive: true });
  for (const f of ['config.json', 'weights.safetensors', 'io.safetensors', 'lora.safetensors', 'grads.safetensors'])
    copyFileSync(join(FIXTURES, 'tiny_unet', f), join(unet, f));
  for (const f of ['tcd_loop.json', 'tcd_loop.safetensors']) copyFileSync(join(FIXTURES, 'tcd_loop', f), join(dir, f));
  writeFileSync(
    join(dir, 'scheduler.json'),
    JSON.stringify({ base_config: JSON.parse(readFileSync(join(FIXTURES, 'tcd_loop', 'scheduler_config.json'), 'utf8')) }),
  );
  const cfg = JSON.parse(readFileSync(join(FIXTURES, 'tiny_unet', 'lora_config.json'), 'utf8'));
  expect(cfg.lora_alpha / cfg.r, 'the fixture has alpha = r').toBe(1);
  writeFileSync(join(unet, 'lora_config.json'), JSON.stringify({ ...cfg, lora_alpha: 2 * cfg.r, scale: 0.5 }, null, 1));
  let doubled = 0;
  let halved = 0;
  await patchTensors(join(unet, 'lora.safetensors'), (name, v) => {
    if (!name.endsWith('.lora_B.weight')) return false;
    v.forEach((x, i) => (v[i] = 2 * x));
    return ++doubled > 0;
  });
  await patchTensors(join(unet, 'grads.safetensors'), (name, v) => {
    if (!/^grad\..*\.lora_B\.weight$/.test(name)) return false;
    v.forEach((x, i) => (v[i] = x / 2));
    return ++halved > 0;
  });
  expect(doubled, 'lora_B tensors doubled').toBeGreaterThan(0);
  expect(halved, 'lora_B gradients halved').toBe(doubled);
}

/** Moves the element of largest magnitude by 1% of max|v|: 100× the forward tolerance, 500× the loop's. */
const bump = (v: Float64Array) => {
  let k = 0;
  for (let i = 1; i < v.length; i++) if (Math.abs(v[i]) > Math.abs(v[k])) k = i;
  v[k] += 0.01 * Math.abs(v[k]);
  return true;
};

interface ChildTest {
  fullName: string;
  status: string;
  failureMessages: string[];
}

/** The tiny_unet and tcd_loop suites on `dir` in a child vitest (node:test on the bundle); exit code, per-test results. */
function runSuites(dir: string): { code: number | null; tests: ChildTest[]; output: string } {
  const json = join(dir, 'child-results.json');
  // A file, not `node -e`: run() passes the parent's execArgv (-e included) on to the test file's process.
  const driver = join(dir, 'node_test_driver.mjs');
  if (BUNDLED) writeFileSync(driver, NODE_TEST_DRIVER);
  const args = BUNDLED ? [driver, GOLDEN_BUNDLE, json] : [VITEST, 'run', 'test/golden.test.ts', '--reporter=json', `--outputFile=${json}`];
  const r = spawnSync(process.execPath, args, {
    // NODE_TEST_CONTEXT (set by a parent `node --test`) would make the driver's run() refuse to run files.
    env: { ...process.env, NODE_TEST_CONTEXT: undefined, TCD_GOLDEN: dir, TCD_GOLDEN_SUITES: 'tiny_unet,tcd_loop' },
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
    timeout: 280_000,
  });
  const output = `${r.stdout}\n${r.stderr}`;
  let tests: ChildTest[] = [];
  try {
    const res = JSON.parse(readFileSync(json, 'utf8')) as { testResults: { assertionResults: ChildTest[] }[] };
    tests = res.testResults.flatMap((f) => f.assertionResults);
  } catch {
    // No report: the exit code and output below say why.
  }
  return { code: r.status, tests, output };
}

// The child runs need vitest itself, which the GPU-machine bundle (.gpu-dist, run under node:test) lacks: there the
// child runs the bundled golden.test.mjs through node:test's run() and writes the same shape vitest's JSON has.
const BUNDLED = import.meta.url.includes('/.gpu-dist/tests/');
const GOLDEN_BUNDLE = BUNDLED ? fileURLToPath(new URL('./golden.test.mjs', import.meta.url)) : '';
const NODE_TEST_DRIVER = `
import { run } from 'node:test';
import { writeFileSync } from 'node:fs';
const [file, json] = process.argv.slice(2);
const assertionResults = [];
for await (const { type, data } of run({ files: [file], concurrency: 1 })) {
  if (type === 'test:stdout' || type === 'test:stderr') process.stdout.write(data.message);
  if ((type !== 'test:pass' && type !== 'test:fail') || data.details?.type === 'suite') continue;
  const error = data.details?.error;
  assertionResults.push({
    fullName: data.name,
    status: type === 'test:fail' ? 'failed' : data.skip ? 'skipped' : 'passed',
    failureMessages: type === 'test:fail' ? [String(error?.cause?.message ?? error?.message ?? error)] : [],
  });
}
writeFileSync(json, JSON.stringify({ testResults: [{ assertionResults }] }));
process.exitCode = assertionResults.some((t) => t.status === 'failed') ? 1 : 0;
`;
const VITEST = 'node_modules/vitest/vitest.mjs';
const childIt = BUNDLED || existsSync(VITEST) ? it : it.skip;

describe('golden folders made from the fixture (child runs of the tiny_unet and tcd_loop suites)', () => {
  childIt('lora_alpha ≠ r (scale 0.5, lora_B doubled, lora_B gradients halved): passes', async () => {
    const dir = join(work, 'alpha_ne_r');
    await alphaNotRFolder(dir);
    const t0 = performance.now();
    const r = runSuites(dir);
    console.log(`  child run ${((performance.now() - t0) / 1000).toFixed(1)} s, exit ${r.code}`);
    for (const l of r.output.split('\n').filter((l) => l.includes('[golden '))) console.log(`  ${l.trim()}`);
    const failed = r.tests.filter((t) => t.status !== 'passed');
    expect(failed.map((t) => `${t.fullName}: ${t.failureMessages.join(' ').slice(0, 500)}`), 'tests not passed').toEqual([]);
    expect(r.tests.length, `tests run (output: ${r.output.slice(-2000)})`).toBe(4);
    expect(r.code, 'exit code').toBe(0);
  });

  childIt('the same folder with the output, one act.*, one grad.* and one loop step perturbed: fails, naming each', async () => {
    const dir = join(work, 'perturbed');
    await alphaNotRFolder(dir);
    const unet = join(dir, 'tiny_unet');
    const grad = 'grad.mid_block.attentions.0.transformer_blocks.0.attn2.to_v.lora_B.weight';
    const perturbed = { output: 'output', act: 'act.mid_block', grad, loop: 'step1.prev_sample' };
    const hit = new Set<string>();
    const only = (names: string[]) => (name: string, v: Float64Array) => names.includes(name) && hit.add(name) && bump(v);
    await patchTensors(join(unet, 'io.safetensors'), only([perturbed.output, perturbed.act]));
    await patchTensors(join(unet, 'grads.safetensors'), only([perturbed.grad]));
    await patchTensors(join(dir, 'tcd_loop.safetensors'), only([perturbed.loop]));
    expect([...hit].sort(), 'perturbed tensors exist').toEqual(Object.values(perturbed).sort());

    const r = runSuites(dir);
    expect(r.code, 'exit code').not.toBe(0);
    const failure = (title: string) => {
      const t = r.tests.find((x) => x.fullName.includes(title));
      expect(t, `${title} ran (output: ${r.output.slice(-2000)})`).toBeDefined();
      expect(t!.status, title).toBe('failed');
      return t!.failureMessages.join('\n');
    };
    // The failures list 'name: error' per tensor over tolerance (reportRows): exactly the perturbed ones.
    const named = (msg: string) => [...new Set([...msg.matchAll(/(?<![\w.])([\w.]+): \d\.\d\de[-+]\d+/g)].map((m) => m[1]))].sort();
    expect(named(failure('forward: output and every act.* activation'))).toEqual([perturbed.act, perturbed.output].sort());
    expect(named(failure('LoRA (unfused)'))).toEqual([perturbed.grad]);
    expect(named(failure('every step: model output'))).toEqual([perturbed.loop]);
    console.log(`  perturbed: ${Object.values(perturbed).join(', ')}: each named in its test's failure`);
  });
});
