// Builds .gpu-dist/bench-peers.mjs: the bench runner with the peers (TF.js WebGPU, gpu.js) bundled in, for the GPU
// machine, where no node_modules travel (scripts/bundle-gpu.mjs's .gpu-dist/bench.mjs keeps them external, so
// there the peers report "not available"). dawn.node ('webgpu') and headless-gl ('gl', native) stay external.
//   node bench/bundle_peers.mjs   then on the GPU machine:   source .gpu/enter.sh; node .gpu-dist/bench-peers.mjs --peers
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
await build({
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: true,
  external: ['webgpu', 'gl'],
  logLevel: 'warning',
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  entryPoints: [join(root, 'bench/run.ts')],
  outfile: join(root, '.gpu-dist/bench-peers.mjs'),
});
console.log('bundled bench + peers into .gpu-dist/bench-peers.mjs');
