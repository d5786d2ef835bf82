// Stands in for 'vitest' in the GPU-machine bundles (scripts/bundle-gpu.mjs): the same test files run under
// node:test with Jest's `expect`, so no node_modules need to travel to the GPU machine.
import { after, before, describe as nodeDescribe, it as nodeIt } from 'node:test';
import { expect as jestExpect } from 'expect';

// vitest's expect takes an optional message as second argument; Jest's takes one.
export const expect = Object.assign((actual: unknown, _message?: string) => jestExpect(actual), jestExpect);
export const describe = nodeDescribe;
export const it = nodeIt;
export const test = nodeIt;
export const beforeAll = (fn: () => unknown) => before(fn as () => Promise<void>);
export const afterAll = (fn: () => unknown) => after(fn as () => Promise<void>);
