// The shape of a benchmark case. Each kernel family has bench/<name>.bench.ts exporting `cases: BenchCase[]`;
// bench/run.ts times them with GPU timestamps (warm-up, median of N) and prints a table / JSON.
import type { Gpu } from '../runtime/device.js';
import type { DType } from '../src/dtype.js';

export interface Reference {
  /** Throughput of the reference in the case's unit (GFLOP/s for flops cases, GB/s for bytes cases). */
  value: number;
  /** Where the figure comes from, e.g. 'PyTorch 2.11 cuBLAS SGEMM, TF32 off, H100 (anchors/pytorch_h100.json)'. */
  source: string;
  /** Only meaningful on this adapter (regex on Gpu.describe()); e.g. 'NVIDIA|nvidia'. */
  adapter?: string;
}

export interface BenchCase {
  /** Kernel name as it appears in the table, e.g. 'matmul'. */
  kernel: string;
  /** Human-readable shape, e.g. '4096x4096x4096'. */
  shape: string;
  /** Floating point operations per run (for GFLOP/s). */
  flops?: number;
  /** Bytes moved per run (for GB/s), used when flops is absent. */
  bytes?: number;
  /** Part of `--quick` (must be small enough for lavapipe: the whole quick set runs in < 1 minute there). */
  quick?: boolean;
  reference?: Reference;
  /**
   * Element types the case runs in (`npm run bench -- --dtype f16` runs those listing 'f16', with f16 inputs from
   * bench/inputs.ts filled()); default: its suite's `dtypes` export, else f32 only.
   */
  dtypes?: readonly DType[];
  /** Why the case cannot run on this device (a feature it needs is not offered), or null: the row is left out. */
  unavailable?(gpu: Gpu): string | null;
  /** Allocates inputs; returns run() that enqueues exactly one execution (no readback) and dispose(). */
  setup(gpu: Gpu): Promise<{ run(): void; dispose(): void }> | { run(): void; dispose(): void };
}
