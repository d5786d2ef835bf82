// In-page test harness (dist/browser-test/harness.js, loaded by test/browser/index.html): imports each bundled test
// file, collects its describe/it tree through the vitest shim and runs it as vitest would (hooks per suite, tests in
// order), reporting every result to the runner (test/browser/run.mjs) through window.__tcdReport as it finishes.
import { Gpu } from '../../runtime/device.js';
import { type Fn, SkipSignal, type SuiteNode, type TestContext, type TestNode, startFile } from './vitest_shim.js';

export interface SkipRule {
  file: string;
  /** Full name as reported: describe titles and the test title joined by ' > '. */
  test: string;
  reason: string;
}

export interface RunOptions {
  files: string[];
  skips: SkipRule[];
  /** process.env for the tests (TCD_EXPECT_ADAPTER, …). */
  env: Record<string, string>;
  testTimeoutMs: number;
  /** Only tests whose "file > full name" matches (a regex source). */
  grep?: string;
}

export interface TestResult {
  file: string;
  ancestorTitles: string[];
  title: string;
  fullName: string;
  state: 'passed' | 'failed' | 'skipped';
  durationMs: number;
  error?: string;
  skipReason?: string;
  logs: string[];
}

export type Report =
  | { type: 'adapter'; summary: ReturnType<Gpu['summary']>; describe: string }
  | { type: 'file'; file: string; tests: number }
  | { type: 'test'; result: TestResult }
  | { type: 'fatal'; error: string };

declare global {
  interface Window {
    __tcdReport?: (r: Report) => Promise<void>;
    __tcdRunTests: (opts: RunOptions) => Promise<TestResult[]>;
  }
}

const ANSI = /\x1b\[[0-9;]*m/g;

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const stack = (e.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l)).slice(0, 6).join('\n');
    return `${e.name}: ${e.message}`.replace(ANSI, '') + (stack ? `\n${stack}` : '');
  }
  return String(e);
}

async function withTimeout(fn: Fn, ms: number, what: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(fn),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// Console output of the running test goes into its result (and still to the page console).
let logSink: string[] | undefined;
for (const level of ['log', 'info', 'warn', 'error'] as const) {
  const orig = console[level].bind(console);
  console[level] = (...args: unknown[]) => {
    logSink?.push(args.map((a) => (typeof a === 'string' ? a : a instanceof Error ? errorText(a) : safeJson(a))).join(' ').replace(ANSI, ''));
    orig(...args);
  };
}
function safeJson(a: unknown): string {
  try {
    return JSON.stringify(a);
  } catch {
    return String(a);
  }
}
// Errors that escape a test's promise chain are charged to the test that is running.
let stray: unknown[] = [];
window.addEventListener('unhandledrejection', (ev) => stray.push(ev.reason));
window.addEventListener('error', (ev) => stray.push(ev.error ?? ev.message));

const report = async (r: Report) => {
  await window.__tcdReport?.(r);
};

function countTests(s: SuiteNode): number {
  return s.children.reduce((n, c) => n + (c.kind === 'test' ? 1 : countTests(c)), 0);
}

class FileRun {
  readonly results: TestResult[] = [];
  /** Output of beforeAll hooks, attached to the next test's logs (vitest prints it at file level). */
  private hookLogs: string[] = [];
  constructor(
    readonly file: string,
    readonly opts: RunOptions,
    readonly grep: RegExp | undefined,
  ) {}

  private skipRule(fullName: string): SkipRule | undefined {
    return this.opts.skips.find((s) => s.file === this.file && s.test === fullName);
  }

  private async emit(r: TestResult): Promise<void> {
    if (this.hookLogs.length) r.logs = [...this.hookLogs.splice(0), ...r.logs];
    this.results.push(r);
    await report({ type: 'test', result: r });
  }

  private result(ancestors: string[], title: string, state: TestResult['state'], extra: Partial<TestResult> = {}): TestResult {
    return { file: this.file, ancestorTitles: ancestors, title, fullName: [...ancestors, title].join(' > '), state, durationMs: 0, logs: [], ...extra };
  }

  /** Whether any test under s will run (hooks of suites with nothing to run are not called, as in vitest). */
  private runnable(s: SuiteNode, ancestors: string[]): boolean {
    return s.children.some((c) =>
      c.kind === 'test' ? this.willRun(c, ancestors) : this.runnable(c, c.name ? [...ancestors, c.name] : ancestors),
    );
  }

  private willRun(t: TestNode, ancestors: string[]): boolean {
    const full = [...ancestors, t.name].join(' > ');
    return !t.skip && !this.skipRule(full) && (!this.grep || this.grep.test(`${this.file} > ${full}`));
  }

  async suite(s: SuiteNode, ancestors: string[], each: { before: Fn[]; after: Fn[] }, inherited?: string): Promise<void> {
    const run = !inherited && this.runnable(s, ancestors);
    let hookError: string | undefined = inherited;
    if (run) {
      for (const h of s.beforeAll) {
        const logs: string[] = [];
        logSink = logs;
        try {
          await withTimeout(h, this.opts.testTimeoutMs, 'beforeAll');
        } catch (e) {
          hookError = `beforeAll failed: ${errorText(e)}`;
          break;
        } finally {
          logSink = undefined;
          this.hookLogs.push(...logs);
        }
      }
    }
    const eachHooks = { before: [...each.before, ...s.beforeEach], after: [...s.afterEach, ...each.after] };
    for (const c of s.children) {
      if (c.kind === 'suite') await this.suite(c, c.name ? [...ancestors, c.name] : ancestors, eachHooks, hookError);
      else await this.test(c, ancestors, eachHooks, hookError);
    }
    if (run) {
      for (const h of s.afterAll) {
        try {
          await withTimeout(h, this.opts.testTimeoutMs, 'afterAll');
        } catch (e) {
          await this.emit(this.result(ancestors, '(afterAll)', 'failed', { error: errorText(e) }));
        }
      }
    }
  }

  async test(t: TestNode, ancestors: string[], each: { before: Fn[]; after: Fn[] }, hookError?: string): Promise<void> {
    const full = [...ancestors, t.name].join(' > ');
    const rule = this.skipRule(full);
    if (!this.willRun(t, ancestors)) {
      if (this.grep && !this.grep.test(`${this.file} > ${full}`)) return; // filtered out: not reported at all
      await this.emit(this.result(ancestors, t.name, 'skipped', { skipReason: rule?.reason ?? 'it.skip' }));
      return;
    }
    if (hookError) {
      await this.emit(this.result(ancestors, t.name, 'failed', { error: hookError }));
      return;
    }
    const logs: string[] = [];
    logSink = logs;
    stray = [];
    const t0 = performance.now();
    let error: string | undefined;
    let skipNote: string | undefined;
    const ctx: TestContext = {
      task: { name: t.name },
      skip(note?: string): never {
        throw new SkipSignal(note);
      },
    };
    try {
      for (const h of each.before) await h();
      await withTimeout(() => t.fn!(ctx), Math.max(t.timeout ?? 0, this.opts.testTimeoutMs), 'test');
    } catch (e) {
      if (e instanceof SkipSignal) skipNote = e.note ?? 'skipped by the test (ctx.skip())';
      else error = errorText(e);
    }
    try {
      for (const h of each.after) await h();
    } catch (e) {
      error ??= `afterEach failed: ${errorText(e)}`;
    }
    await new Promise((r) => setTimeout(r, 0)); // let a stray rejection surface
    if (!error && stray.length) error = `uncaught during the test: ${stray.map(errorText).join('\n')}`;
    logSink = undefined;
    const durationMs = performance.now() - t0;
    if (skipNote && !error) await this.emit(this.result(ancestors, t.name, 'skipped', { durationMs, skipReason: skipNote, logs }));
    else await this.emit(this.result(ancestors, t.name, error ? 'failed' : 'passed', { durationMs, error, logs }));
  }
}

/** The published entry: test/browser/consumer.mjs imports 'tcd-webgpu' (bundled through package.json exports). */
async function packageEntryCheck(): Promise<TestResult> {
  const title = "import { Gpu, Tensor, silu } from 'tcd-webgpu' (package.json exports → browser) creates a device and runs a kernel";
  const r: TestResult = { file: 'package', ancestorTitles: [], title, fullName: title, state: 'passed', durationMs: 0, logs: [] };
  const t0 = performance.now();
  try {
    const url = new URL('./consumer.js', import.meta.url).href;
    const mod = (await import(url)) as { consumerCheck(): Promise<string> };
    r.logs.push(await mod.consumerCheck());
  } catch (e) {
    r.state = 'failed';
    r.error = errorText(e);
  }
  r.durationMs = performance.now() - t0;
  return r;
}

window.__tcdRunTests = async (opts: RunOptions): Promise<TestResult[]> => {
  const g = globalThis as { process?: { env: Record<string, string> } };
  g.process ??= { env: {} };
  Object.assign(g.process.env, opts.env);
  const grep = opts.grep ? new RegExp(opts.grep) : undefined;
  try {
    const gpu = await Gpu.create();
    await report({ type: 'adapter', summary: gpu.summary(), describe: gpu.describe() });
    await gpu.destroy();
  } catch (e) {
    await report({ type: 'fatal', error: errorText(e) });
    return [];
  }
  const all: TestResult[] = [await packageEntryCheck()];
  await report({ type: 'test', result: all[0] });
  for (const file of opts.files) {
    const root = startFile(file);
    try {
      const url = new URL(`./${file}.test.js`, import.meta.url).href; // built at run time: esbuild leaves it alone
      await import(url);
    } catch (e) {
      const r: TestResult = { file, ancestorTitles: [], title: '(import)', fullName: '(import)', state: 'failed', durationMs: 0, error: errorText(e), logs: [] };
      all.push(r);
      await report({ type: 'test', result: r });
      continue;
    }
    await report({ type: 'file', file, tests: countTests(root) });
    const run = new FileRun(file, opts, grep);
    await run.suite(root, [], { before: [], after: [] });
    all.push(...run.results);
  }
  return all;
};
