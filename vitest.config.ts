import { defineConfig } from 'vitest/config';

// Mesa's CPU drivers (lavapipe) spend most of a cold test run in LLVM optimising each shader; the tests use tiny
// shapes, so unoptimised shaders run them just as well and cut a cold run ~5× (128 s → 25 s for group_norm).
// Other drivers ignore the variable. Set GALLIVM_PERF yourself to override.
process.env.GALLIVM_PERF ??= 'nopt';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // dawn.node is a native addon: run test files in child processes, not worker threads.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 300_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
