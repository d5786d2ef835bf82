// Stands in for 'vitest' in the browser test bundle (scripts/build-browser.mjs): describe / it / hooks register into a
// suite tree per test file (collected by test/browser/harness.ts, which runs it), and `expect` is Jest's `expect`
// package, with vitest's optional message argument prefixed to a failure.
import { expect as jestExpect } from 'expect';

export type Fn = () => unknown;
/** vitest's test context (the part the tests use): ctx.skip() ends the test as skipped. */
export interface TestContext {
  task: { name: string };
  skip(note?: string): never;
}
export type TestFn = (ctx: TestContext) => unknown;

/** Thrown by ctx.skip(); the harness reports the test as skipped. */
export class SkipSignal extends Error {
  constructor(readonly note?: string) {
    super(note ?? 'skipped by the test');
  }
}

export interface TestNode {
  kind: 'test';
  name: string;
  fn?: TestFn;
  timeout?: number;
  skip?: boolean;
}

export interface SuiteNode {
  kind: 'suite';
  name: string;
  children: (TestNode | SuiteNode)[];
  beforeAll: Fn[];
  afterAll: Fn[];
  beforeEach: Fn[];
  afterEach: Fn[];
}

const newSuite = (name: string): SuiteNode => ({ kind: 'suite', name, children: [], beforeAll: [], afterAll: [], beforeEach: [], afterEach: [] });

let current: SuiteNode = newSuite('');

/** Starts collecting a test file's registrations; returns its root suite. */
export function startFile(name: string): SuiteNode {
  current = newSuite(name);
  return current;
}

type TestOptions = number | { timeout?: number };
const timeoutOf = (o?: TestOptions) => (typeof o === 'number' ? o : o?.timeout);

function register(name: string, fn: TestFn | undefined, opts?: TestOptions, skip = false): void {
  current.children.push({ kind: 'test', name, fn, timeout: timeoutOf(opts), skip: skip || !fn });
}

function suite(name: string, fn: () => void, skip = false): void {
  const s = newSuite(name);
  current.children.push(s);
  const parent = current;
  current = s;
  try {
    fn();
  } finally {
    current = parent;
  }
  if (skip) markSkipped(s);
}

function markSkipped(s: SuiteNode): void {
  for (const c of s.children) {
    if (c.kind === 'test') c.skip = true;
    else markSkipped(c);
  }
}

export const it = Object.assign((name: string, fn?: TestFn, opts?: TestOptions) => register(name, fn, opts), {
  skip: (name: string, fn?: TestFn, opts?: TestOptions) => register(name, fn, opts, true),
  skipIf: (cond: unknown) => (name: string, fn?: TestFn, opts?: TestOptions) => register(name, fn, opts, !!cond),
  runIf: (cond: unknown) => (name: string, fn?: TestFn, opts?: TestOptions) => register(name, fn, opts, !cond),
});
export const test = it;
export const describe = Object.assign((name: string, fn: () => void) => suite(name, fn), {
  skip: (name: string, fn: () => void) => suite(name, fn, true),
});
export const beforeAll = (fn: Fn) => void current.beforeAll.push(fn);
export const afterAll = (fn: Fn) => void current.afterAll.push(fn);
export const beforeEach = (fn: Fn) => void current.beforeEach.push(fn);
export const afterEach = (fn: Fn) => void current.afterEach.push(fn);

const withMessage = (e: unknown, message: string): unknown => {
  if (e instanceof Error) e.message = `${message}: ${e.message}`;
  return e;
};

/** Wraps matchers (and .not / .resolves / .rejects chains) so a failure starts with vitest's message argument. */
function labelled<T extends object>(target: T, message: string): T {
  return new Proxy(target, {
    get(obj, key, recv) {
      const v = Reflect.get(obj, key, recv);
      if (typeof v === 'function') {
        return (...args: unknown[]) => {
          try {
            const r = v.apply(obj, args);
            return r instanceof Promise ? r.catch((e) => Promise.reject(withMessage(e, message))) : r;
          } catch (e) {
            throw withMessage(e, message);
          }
        };
      }
      return v && typeof v === 'object' ? labelled(v, message) : v;
    },
  });
}

export const expect = Object.assign(
  (actual: unknown, message?: string) => (message ? labelled(jestExpect(actual), message) : jestExpect(actual)),
  jestExpect,
) as unknown as typeof jestExpect & ((actual: unknown, message?: string) => ReturnType<typeof jestExpect>);
