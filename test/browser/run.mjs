// npm run test:browser — the kernel tests, the tiny-UNet golden and the demo page in headless Chromium (WebGPU on
// Chromium's SwiftShader adapter on a GPU-less machine; see /work/shared/spec/browser.md):
//   1. builds dist/browser, dist/web and dist/browser-test (scripts/build-browser.mjs);
//   2. serves them on 127.0.0.1 (web/server.mjs) and runs the test files in one page through playwright-core;
//   3. the demo page: its kernel table, then the SDXL TCD pipeline on the tiny folder out/tiny-sdxl (generated when
//      absent) through the page's controls; the canvas must match the Node CLI's PNG for the same prompt / seed / steps
//      / γ (computed alongside, on dawn.node); writes a screenshot; loads the page again in a Chromium without
//      --enable-unsafe-webgpu and asserts the "no WebGPU" message;
//   4. writes out/browser-test/results.json + results.html; exits 1 on any failure.
// Options: --grep <regex> (tests whose "file > name" matches), --files a,b (test files), --no-build, --no-demo,
// --full (the slow golden-gradient tests too), --verbose (every test's console output), --out <dir>. Env: CHROMIUM_PATH (default /usr/bin/chromium),
// TCD_BROWSER_EXPECT_ADAPTER (regex the page's adapter must match, e.g. swiftshader).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import pngjs from 'pngjs';
import { BROWSER_TEST_FILES, buildAll, root } from '../../scripts/build-browser.mjs';
import { TINY_SDXL_DIR, ensureTinySdxl, startServer } from '../../web/server.mjs';
import { BROWSER_SKIPS, BROWSER_SLOW } from './skips.mjs';
import { writeResultsHtml } from './report.mjs';

const HELP = `usage: npm run test:browser -- [options]
  --grep <regex>   only tests whose "file > describe > test" matches
  --files a,b      only these test files (default: ${BROWSER_TEST_FILES.join(', ')})
  --no-build       use the existing dist/ bundles
  --no-demo        skip the demo-page checks (kernel table, SDXL sample vs Node, screenshot, no-WebGPU message)
  --full           also the slow tests (golden LoRA gradients, checkpointing: minutes on SwiftShader); env TCD_BROWSER_FULL=1
  --verbose        print every test's console output (default: failures and the golden test only)
  --out <dir>      results folder (default out/browser-test)
env: CHROMIUM_PATH (default /usr/bin/chromium), TCD_BROWSER_EXPECT_ADAPTER (regex for the adapter, e.g. swiftshader)`;

// browser.md §1: the one flag WebGPU needs on a GPU-less box, plus hygiene flags (playwright adds --headless,
// --no-sandbox and a fresh profile).
export const HYGIENE_ARGS = ['--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu', ...HYGIENE_ARGS];

function parseArgs(argv) {
  const o = { grep: undefined, files: BROWSER_TEST_FILES, build: true, demo: true, full: process.env.TCD_BROWSER_FULL === '1', verbose: false, out: join(root, 'out/browser-test') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--help' || a === '-h') {
      console.log(HELP);
      process.exit(0);
    } else if (a === '--grep') o.grep = next();
    else if (a === '--files') o.files = next().split(',').filter(Boolean);
    else if (a === '--no-build') o.build = false;
    else if (a === '--no-demo') o.demo = false;
    else if (a === '--full') o.full = true;
    else if (a === '--verbose') o.verbose = true;
    else if (a === '--out') o.out = next();
    else throw new Error(`unknown argument ${a} (see --help)`);
  }
  const unknown = o.files.filter((f) => !BROWSER_TEST_FILES.includes(f));
  if (unknown.length) throw new Error(`--files: not browser test files: ${unknown.join(', ')} (known: ${BROWSER_TEST_FILES.join(', ')})`);
  if (o.grep) new RegExp(o.grep); // fail early on a bad regex
  return o;
}

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const { PNG } = pngjs;
const execFileP = promisify(execFile);

async function launch(args) {
  if (!existsSync(CHROMIUM))
    throw new Error(`Chromium not found at ${CHROMIUM}: install it with \`bash scripts/setup-vulkan.sh --browser\` (Debian chromium) or set CHROMIUM_PATH`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 120_000 });
}

const fmtMs = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);
const indent = (s, pad = '      ') => s.split('\n').map((l) => pad + l).join('\n');

/** Runs the test files in one page; prints each result as it arrives. */
async function runTests(browser, base, o, log, state) {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.exposeFunction('__tcdReport', (r) => {
    if (r.type === 'adapter') {
      state.adapter = r;
      log(`adapter: ${r.describe}${r.summary.isFallbackAdapter ? ' (fallback adapter)' : ''}`);
      const l = r.summary.limits;
      log(`  limits: ${l.maxComputeInvocationsPerWorkgroup} invocations/workgroup, ${l.maxStorageBuffersPerShaderStage} storage buffers/stage, ` +
        `binding ${l.maxStorageBufferBindingSize} B, storage offset alignment ${l.minStorageBufferOffsetAlignment}`);
    } else if (r.type === 'fatal') {
      state.fatal = r.error;
    } else if (r.type === 'file') {
      log(`${r.file}.test.ts (${r.tests} tests)`);
    } else if (r.type === 'test') {
      const t = r.result;
      state.results.push(t);
      const mark = t.state === 'passed' ? 'ok  ' : t.state === 'failed' ? 'FAIL' : 'skip';
      log(`  ${mark} ${t.fullName}${t.state === 'skipped' ? ` (${t.skipReason})` : ` ${fmtMs(t.durationMs)}`}`);
      const showLogs = o.verbose || t.state === 'failed' || t.file === 'golden';
      if (showLogs && t.logs.length) log(indent(t.logs.join('\n')));
      if (t.error) log(indent(t.error));
    }
  });
  await page.goto(`${base}/test/browser/index.html`);
  await page.waitForFunction(() => typeof window.__tcdRunTests === 'function', null, { timeout: 60_000 });
  const env = {};
  if (process.env.TCD_BROWSER_EXPECT_ADAPTER) env.TCD_EXPECT_ADAPTER = process.env.TCD_BROWSER_EXPECT_ADAPTER;
  for (const k of ['TCD_IMMEDIATE', 'TCD_ATTENTION_FULL', 'TCD_CONV_ALL_TILES']) if (process.env[k]) env[k] = process.env[k];
  // The golden entry runs the tiny-UNet suite on test/fixtures in the page (the other suites run under Node).
  env.TCD_GOLDEN_SUITES = process.env.TCD_GOLDEN_SUITES ?? 'tiny_unet';
  await page.evaluate((opts) => window.__tcdRunTests(opts), {
    files: o.files,
    skips: o.full ? BROWSER_SKIPS : [...BROWSER_SKIPS, ...BROWSER_SLOW],
    env,
    testTimeoutMs: 600_000,
    grep: o.grep,
  });
  await page.close();
  if (pageErrors.length) state.pageErrors = pageErrors;
  return state;
}

/**
 * The demo page's sampler settings for the check (kept small: the run must fit the CI budget on a 2-core machine).
 * The same settings go to the Node CLI for the reference image.
 */
export const DEMO_SAMPLE = { prompt: 'a red fox in the snow', steps: 2, eta: 0.3, seed: 5, size: 64 };

/**
 * Browser vs Node parity of the decoded 8-bit image. Both run the same f32 kernels on different software Vulkan
 * implementations (SwiftShader in Chromium, lavapipe under dawn.node), so results differ by float rounding, which can
 * move a value across an 8-bit rounding boundary: at most 2 levels per channel, and 1 in 20 values, may differ
 * (measured: 1 level, 0.4% of values).
 */
export const PARITY = { maxAbs: 2, maxDifferingFraction: 0.05 };

/** The same prompt/seed/steps/γ through the Node pipeline (bin/tcd.mjs → out/…/node-reference.png) on dawn.node. */
async function nodeReference(outDir) {
  const png = join(outDir, 'node-reference.png');
  const s = DEMO_SAMPLE;
  const args = ['sample', '--model', TINY_SDXL_DIR, '--prompt', s.prompt, '--steps', s.steps, '--eta', s.eta, '--seed', s.seed, '--width', s.size, '--height', s.size, '--out', png,
    // f32 like the page (SwiftShader has no shader-f16): a like-for-like check of the browser path against Node's.
    '--dtype', 'f32'];
  const t0 = Date.now();
  const { stdout, stderr } = await execFileP(process.execPath, [join(root, 'bin/tcd.mjs'), ...args.map(String)], {
    cwd: root,
    env: { ...process.env, GALLIVM_PERF: process.env.GALLIVM_PERF ?? 'nopt' },
    maxBuffer: 16 * 2 ** 20,
  });
  const img = PNG.sync.read(readFileSync(png));
  const device = /^device: (.*)$/m.exec(stderr)?.[1] ?? 'unknown device';
  return { png, width: img.width, height: img.height, rgba: new Uint8Array(img.data), device, ms: Date.now() - t0, summary: stdout.trim() };
}

/** Per-channel RGB differences of two RGBA images. */
function compareRgba(a, b) {
  let maxAbs = 0;
  let sum = 0;
  let differing = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    if (i % 4 === 3) continue;
    const d = Math.abs(a[i] - b[i]);
    maxAbs = Math.max(maxAbs, d);
    sum += d;
    if (d) differing++;
    n++;
  }
  return { maxAbs, meanAbs: sum / n, differingFraction: differing / n, values: n };
}

/**
 * The demo page: the kernel table, then the sampler run through its controls (prompt, sliders, seed, Sample) on the
 * tiny SDXL folder this server serves; the canvas must hold a non-constant image equal (PARITY) to the Node pipeline's
 * PNG for the same settings. Writes the screenshot.
 */
async function demoCheck(browser, base, outDir, reference, log) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const t0 = Date.now();
  await page.goto(`${base}/web/index.html?autorun=kernels`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.kernels ?? ''), null, { timeout: 300_000 });
  const s = DEMO_SAMPLE;
  await page.fill('#prompt', s.prompt);
  await page.fill('#seed', String(s.seed));
  await page.selectOption('#size', String(s.size));
  for (const [id, v] of [['#steps', s.steps], ['#eta', s.eta]])
    await page.$eval(id, (e, v) => {
      e.value = String(v);
      e.dispatchEvent(new Event('input', { bubbles: true }));
    }, v);
  const tSample = Date.now();
  await page.click('#sample');
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.sampler ?? ''), null, { timeout: 300_000 });
  const sampleMs = Date.now() - tSample;
  const info = await page.evaluate(() => {
    const c = document.querySelector('#sample-canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const raw = window.__tcdSample;
    // The canvas must hold exactly the pipeline's pixels (RGB, opaque).
    let canvasMismatch = raw ? 0 : -1;
    if (raw) for (let i = 0; i < raw.width * raw.height; i++) for (let ch = 0; ch < 3; ch++) if (d[4 * i + ch] !== raw.data[raw.channels * i + ch]) canvasMismatch++;
    const colors = new Set();
    let min = 255, max = 0;
    for (let i = 0; i < d.length; i += 4) {
      colors.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      for (let ch = 0; ch < 3; ch++) (min = Math.min(min, d[i + ch])), (max = Math.max(max, d[i + ch]));
    }
    return {
      sampler: document.body.dataset.sampler,
      kernels: document.body.dataset.kernels,
      kernelRows: [...document.querySelectorAll('#kernel-rows tr')].map((tr) => [...tr.cells].map((c) => c.textContent).join(' | ')),
      samplerText: document.querySelector('#sampler-status')?.textContent ?? '',
      timingRows: [...document.querySelectorAll('#timing-rows tr')].map((tr) => [...tr.cells].map((c) => c.textContent).join(' ')),
      adapterText: document.querySelector('#adapter')?.textContent ?? '',
      mode: document.body.dataset.samplerMode ?? '',
      settings: raw ? { prompt: raw.prompt, steps: raw.steps, eta: raw.eta, seed: raw.seed, size: raw.size, timesteps: raw.timesteps } : undefined,
      canvas: { width: c.width, height: c.height, rgba: Array.from(d) },
      canvasMismatch,
      pixels: { min, max, distinctColors: colors.size },
    };
  });
  await page.locator('#sampler').scrollIntoViewIfNeeded();
  const png = join(outDir, 'demo.png');
  await page.screenshot({ path: `${png}.tmp.png`, fullPage: true });
  renameSync(`${png}.tmp.png`, png);
  // The other way in: the same folder picked with the <input webkitdirectory> (fileListSource over real Files).
  let picked = { state: 'not run' };
  if (info.sampler === 'done') {
    await page.setInputFiles('#model-files', TINY_SDXL_DIR);
    await page.waitForFunction(
      () => document.body.dataset.sampler === 'error' || (document.body.dataset.sampler === 'done' && /^tiny-sdxl: /.test(document.querySelector('#model-name')?.textContent ?? '')),
      null,
      { timeout: 120_000 },
    );
    picked = await page.evaluate(() => ({ state: document.body.dataset.sampler, model: document.querySelector('#model-name')?.textContent ?? '', status: document.querySelector('#sampler-status')?.textContent ?? '' }));
  }
  await page.close();

  const problems = [];
  if (info.kernels !== 'done') problems.push(`kernel table ended in '${info.kernels}':\n${info.kernelRows.join('\n')}`);
  if (info.sampler !== 'done') problems.push(`sampler ended in '${info.sampler}': ${info.samplerText}`);
  if (!/vendor|architecture/i.test(info.adapterText)) problems.push(`adapter info not shown (got '${info.adapterText.slice(0, 200)}')`);
  const want = { prompt: s.prompt, steps: s.steps, eta: s.eta, seed: s.seed, size: s.size };
  if (info.sampler === 'done') {
    const got = info.settings && { prompt: info.settings.prompt, steps: info.settings.steps, eta: info.settings.eta, seed: info.settings.seed, size: info.settings.size };
    if (JSON.stringify(got) !== JSON.stringify(want)) problems.push(`the page sampled with ${JSON.stringify(got)}, not the controls' ${JSON.stringify(want)}`);
    if (info.canvas.width !== s.size || info.canvas.height !== s.size) problems.push(`canvas is ${info.canvas.width}×${info.canvas.height}, expected ${s.size}×${s.size}`);
    if (info.canvasMismatch !== 0) problems.push(`canvas differs from the pipeline's pixels in ${info.canvasMismatch} values`);
    if (info.pixels.distinctColors < 16 || info.pixels.max - info.pixels.min < 32) problems.push(`image looks blank / flat: ${JSON.stringify(info.pixels)}`);
  }
  if (info.sampler === 'done' && (picked.state !== 'done' || !/^tiny-sdxl: [\d,]+ parameters/.test(picked.model)))
    problems.push(`loading the folder through the file input: ${picked.state}: ${picked.model} ${picked.status}`);
  let parity;
  if (reference.error) problems.push(`Node reference run failed: ${reference.error}`);
  else if (info.sampler === 'done') {
    const ref = reference.value;
    if (ref.width !== info.canvas.width || ref.height !== info.canvas.height) problems.push(`Node image is ${ref.width}×${ref.height}, page canvas ${info.canvas.width}×${info.canvas.height}`);
    else {
      parity = { ...compareRgba(Uint8Array.from(info.canvas.rgba), ref.rgba), tolerance: PARITY, node: ref.device, nodeMs: ref.ms };
      if (parity.maxAbs > PARITY.maxAbs || parity.differingFraction > PARITY.maxDifferingFraction)
        problems.push(`page image vs Node pipeline: max |Δ| ${parity.maxAbs} levels, ${(100 * parity.differingFraction).toFixed(2)}% of values differ ` +
          `(tolerance ≤ ${PARITY.maxAbs} levels, ≤ ${100 * PARITY.maxDifferingFraction}%)`);
    }
  }
  if (consoleErrors.length) problems.push(`page errors: ${consoleErrors.join(' | ')}`);
  const ok = problems.length === 0;
  log(`  ${ok ? 'ok  ' : 'FAIL'} demo page: kernels + ${info.mode || 'sampler'} (sampling ${fmtMs(sampleMs)}), screenshot ${relative(process.cwd(), png)} ${fmtMs(Date.now() - t0)}`);
  log(indent(['kernel | shape | max abs err | max rel err | first run | second run | GPU time |', ...info.kernelRows].join('\n')));
  log(indent(info.samplerText));
  log(indent(info.timingRows.join('\n')));
  if (parity)
    log(indent(`vs Node pipeline (${parity.node}, ${fmtMs(parity.nodeMs)}): max |Δ| ${parity.maxAbs} levels, mean |Δ| ${parity.meanAbs.toFixed(4)}, ` +
      `${(100 * parity.differingFraction).toFixed(2)}% of ${parity.values} values differ (tolerance ≤ ${PARITY.maxAbs} levels, ≤ ${100 * PARITY.maxDifferingFraction}%)`));
  log(indent(`file input (webkitdirectory): ${picked.model || picked.state}`));
  for (const p of problems) log(indent(p));
  const { canvas, ...kept } = info;
  return { name: 'demo page: SDXL TCD sample vs Node + screenshot', ok, screenshot: png, info: { ...kept, sampleMs, pixels: info.pixels, parity, picked }, problems };
}

/** Without --enable-unsafe-webgpu there is no adapter: the demo must say so clearly. */
async function noWebgpuCheck(base, log) {
  const t0 = Date.now();
  const browser = await launch(HYGIENE_ARGS);
  try {
    const page = await browser.newPage();
    await page.goto(`${base}/web/index.html`);
    await page.waitForFunction(() => document.body.dataset.webgpu === 'unavailable' || document.body.dataset.webgpu === 'ready', null, { timeout: 60_000 });
    const r = await page.evaluate(() => ({ webgpu: document.body.dataset.webgpu, text: document.querySelector('#status')?.textContent ?? '' }));
    const ok = r.webgpu === 'unavailable' && /WebGPU is not available/.test(r.text);
    log(`  ${ok ? 'ok  ' : 'FAIL'} demo page without --enable-unsafe-webgpu shows the message ${fmtMs(Date.now() - t0)}`);
    log(indent(r.text.trim()));
    return { name: 'demo page without WebGPU shows a clear message', ok, info: r, problems: ok ? [] : [`status '${r.webgpu}': ${r.text}`] };
  } finally {
    await browser.close();
  }
}

/** A check that throws (timeout, crash) is a failed check, not a lost run. */
async function guardedCheck(name, fn, log) {
  try {
    return await fn();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    log(`  FAIL ${name}\n${indent(msg)}`);
    return { name, ok: false, problems: [msg] };
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const log = (s) => console.log(s);
  if (o.build) await buildAll({ lib: true, demo: o.demo, tests: true });
  mkdirSync(o.out, { recursive: true });
  // The demo's model and its Node reference image: made while the browser runs the test files.
  let reference;
  if (o.demo) {
    await ensureTinySdxl({ log });
    reference = nodeReference(o.out).then((value) => ({ value }), (e) => ({ error: (e.stderr || e.message || String(e)).trim() }));
  }
  const server = await startServer();
  log(`serving ${server.url}/ ; chromium ${CHROMIUM}`);
  const state = { adapter: undefined, fatal: undefined, results: [] };
  const checks = [];
  let browser;
  try {
    browser = await launch(WEBGPU_ARGS);
    log(`browser: ${browser.version()}`);
    state.browserVersion = browser.version();
    try {
      await runTests(browser, server.url, o, log, state);
    } catch (e) {
      // A crashed page or GPU process: keep the results that arrived and report the rest as the failure.
      state.fatal = `test page: ${e instanceof Error ? e.message : e}`;
    }
    if (o.demo && !state.fatal) {
      log('demo page');
      const ref = await reference;
      checks.push(await guardedCheck('demo page: SDXL TCD sample vs Node + screenshot', () => demoCheck(browser, server.url, o.out, ref, log), log));
      checks.push(await guardedCheck('demo page without WebGPU shows a clear message', () => noWebgpuCheck(server.url, log), log));
    }
  } finally {
    await browser?.close();
    await server.close();
    await reference; // never leave the Node reference run behind
  }
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const t of state.results) counts[t.state]++;
  const failedChecks = checks.filter((c) => !c.ok).length;
  const ok = !state.fatal && counts.failed === 0 && failedChecks === 0 && state.results.length > 0;
  const results = {
    ok,
    startedAt: new Date(t0).toISOString(),
    durationMs: Date.now() - t0,
    chromium: { path: CHROMIUM, version: state.browserVersion, args: WEBGPU_ARGS },
    adapter: state.adapter?.summary,
    adapterDescribe: state.adapter?.describe,
    fatal: state.fatal,
    pageErrors: state.pageErrors,
    counts,
    tests: state.results,
    checks: checks.map(({ name, ok, screenshot, info, problems }) => ({ name, ok, screenshot: screenshot && relative(o.out, screenshot), info, problems })),
  };
  const jsonPath = join(o.out, 'results.json');
  writeFileSync(`${jsonPath}.tmp`, JSON.stringify(results, null, 1));
  renameSync(`${jsonPath}.tmp`, jsonPath);
  const htmlPath = writeResultsHtml(results, o.out);
  if (state.fatal) log(`FATAL: ${state.fatal}`);
  log(`\n${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped; ${checks.length - failedChecks}/${checks.length} demo checks ` +
    `in ${fmtMs(Date.now() - t0)}\nresults: ${relative(process.cwd(), jsonPath)}, ${relative(process.cwd(), htmlPath)}`);
  process.exit(ok ? 0 : 1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
