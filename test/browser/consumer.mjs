// A consumer of the published entry: `import … from 'tcd-webgpu'` bundled for the browser resolves through
// package.json `exports` (condition "browser") to dist/browser/index.js (scripts/build-browser.mjs checks that).
// The harness runs it first, as the test "package entry".
import { Gpu, Tensor, silu } from 'tcd-webgpu';

/** Creates a device through the package entry and runs one kernel; returns a line for the report. */
export async function consumerCheck() {
  const gpu = await Gpu.create();
  try {
    const x = Tensor.fromArray(gpu, [-2, -1, 0, 1, 2], [5], { label: 'x' });
    const y = silu(x);
    const got = await y.toArray();
    const want = [-2, -1, 0, 1, 2].map((v) => v / (1 + Math.exp(-v)));
    const err = Math.max(...want.map((w, i) => Math.abs(got[i] - w)));
    if (!(err < 1e-6)) throw new Error(`silu through 'tcd-webgpu': max error ${err} (got ${Array.from(got)}, want ${want})`);
    x.release();
    y.release();
    return `silu via 'tcd-webgpu' on ${gpu.describe()}: max error ${err.toExponential(2)}`;
  } finally {
    await gpu.destroy();
  }
}
