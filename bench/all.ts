// The benchmark files `npm run bench` runs. An explicit list (not a directory scan) so the runner also works when
// esbuild bundles it into one file for the GPU machine (scripts/bundle-gpu.mjs → .gpu-dist/bench.mjs).
//
// Adding bench/<name>.bench.ts (exporting `cases: BenchCase[]`, see bench/case.ts): add two lines here,
//   import * as <name> from './<name>.bench.js';
// and `<name>,` in SUITES. Under tsx, bench/run.ts also picks up a *.bench.ts file missing from this list (and
// says so), but the GPU-machine bundle only sees what is listed here.
import * as adamw from './adamw.bench.js';
import * as attention from './attention.bench.js';
import * as conv2d from './conv2d.bench.js';
import type { BenchCase } from './case.js';
import type { DType } from '../src/dtype.js';
import * as elementwise from './elementwise.bench.js';
import * as geglu from './geglu.bench.js';
import * as group_norm from './group_norm.bench.js';
import * as layer_norm from './layer_norm.bench.js';
import * as lora_matmul from './lora_matmul.bench.js';
import * as matmul from './matmul.bench.js';
import * as reduce from './reduce.bench.js';
import * as resample from './resample.bench.js';
import * as softmax from './softmax.bench.js';

export interface BenchSuite {
  cases: BenchCase[];
  /** Element types the suite's kernels run in (default f32 only); a case's own `dtypes` overrides it. */
  dtypes?: readonly DType[];
}

/** File stem (bench/<stem>.bench.ts) → module. */
export const SUITES: Record<string, BenchSuite> = {
  matmul,
  lora_matmul,
  conv2d,
  attention,
  group_norm,
  layer_norm,
  elementwise,
  reduce,
  softmax,
  geglu,
  resample,
  adamw,
};
