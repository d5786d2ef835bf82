// Stands in for 'vitest' in the GPU-machine bundles (scripts/bundle-gpu.mjs): the same test files run under
// node:test with Jest's `expect`, so no node_modules need to travel to the GPU machine.
import { after, before, describe as nodeDescribe, it as nodeIt } from 'node:test';
import { expect as jestExpect } from 'expect';

// vitest's expect takes an optional message as second argument; Jest's takes one.
export const expect = Object.assign((actual: unknown, _message?: string) => jestExpect(actual), jestExpect);
export const describe = nodeDescribe;

/** Thrown by the test context's skip(): ends the test body there, as vitest's ctx.skip() does. */
class Skipped extends Error {}
type NodeBody = (t: { skip(note?: string): void }) => unknown;

// vitest's ctx.skip(note) throws, so nothing after it runs; node:test's t.skip(note) only marks the test skipped and
// lets the body go on (into the very calls the skip guards against). The body gets a context whose skip() marks the
// test skipped with the note and then stops it.
function vitestBody(fn: NodeBody): NodeBody {
  return async (t) => {
    const ctx = new Proxy(t, {
      get(target, p) {
        if (p === 'skip')
          return (note?: string) => {
            target.skip(note ?? 'skipped by the test (no reason given)');
            throw new Skipped(note);
          };
        const v = Reflect.get(target, p, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    try {
      await fn(ctx);
    } catch (e) {
      if (!(e instanceof Skipped)) throw e;
    }
  };
}
// vitest's (name, body, timeout) and node's (name, options, body): only the body is rewrapped.
const vitestIt = (base: (...a: never[]) => unknown) => (name: string, ...rest: unknown[]) =>
  (base as (...a: unknown[]) => unknown)(name, ...rest.map((a) => (typeof a === 'function' ? vitestBody(a as NodeBody) : a)));

export const it = Object.assign(vitestIt(nodeIt), { skip: vitestIt(nodeIt.skip), only: vitestIt(nodeIt.only), todo: nodeIt.todo });
export const test = it;
export const beforeAll = (fn: () => unknown) => before(fn as () => Promise<void>);
export const afterAll = (fn: () => unknown) => after(fn as () => Promise<void>);
