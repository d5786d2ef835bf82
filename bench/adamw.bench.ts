// AdamW on 2^26 f32 parameters in one tensor and spread over 256 tensors (a LoRA-like parameter list: one dispatch
// per tensor), unclipped and with global-norm clipping (globalL2Norm + the fused clipped update). Memory-bound:
// GB/s of bytes read + written — the update reads p, g, m, v and writes p, m, v (28 B per element); clipping adds
// one read of g (the norm). Reference: H100 HBM3 peak (a roofline).
import { hbmRooflineH100 } from './anchors.js';
import type { BenchCase } from './case.js';
import { Tensor } from '../src/tensor.js';
import { type AdamWSlot, adamwStep } from '../src/kernels/adamw.js';
import { globalL2Norm } from '../src/kernels/reduce.js';


function slots(gpu: Parameters<BenchCase['setup']>[0], n: number, parts: number): AdamWSlot[] {
  const len = n / parts;
  const p = new Float32Array(len);
  const g = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    p[i] = ((i * 7919) % 2001) / 20000 - 0.05;
    g[i] = ((i * 104729) % 2001) / 1000 - 1;
  }
  return Array.from({ length: parts }, (_, k) => ({
    param: Tensor.fromArray(gpu, p, [len], { label: `p${k}` }),
    grad: Tensor.fromArray(gpu, g, [len], { label: `g${k}` }),
    m: Tensor.zeros(gpu, [len], 'f32', `m${k}`),
    v: Tensor.zeros(gpu, [len], 'f32', `v${k}`),
  }));
}

function adamwCase(log2n: number, parts: number, clip: boolean, quick: boolean): BenchCase {
  const n = 2 ** log2n;
  return {
    kernel: clip ? 'adamw + clip (l2 norm, fused scale)' : 'adamw',
    shape: parts === 1 ? `2^${log2n}` : `${parts} x 2^${log2n - Math.log2(parts)}`,
    bytes: (clip ? 32 : 28) * n,
    quick,
    reference: hbmRooflineH100(),
    setup(gpu) {
      const s = slots(gpu, n, parts);
      let step = 0;
      return {
        run: () => {
          step++;
          if (clip) {
            const norm = globalL2Norm(s.map((x) => x.grad));
            adamwStep(s, step, { lr: 1e-4 }, { norm, maxNorm: 1 });
            norm.release();
          } else adamwStep(s, step, { lr: 1e-4 });
        },
        dispose: () => s.forEach((x) => [x.param, x.grad, x.m, x.v].forEach((t) => t.release())),
      };
    },
  };
}


export const cases: BenchCase[] = [
  adamwCase(26, 1, false, false),
  adamwCase(26, 1, true, false),
  adamwCase(24, 256, false, false),
  adamwCase(24, 256, true, false),
  // Quick (lavapipe-sized).
  adamwCase(16, 1, false, true),
  adamwCase(16, 1, true, true),
  adamwCase(16, 16, true, true),
];
