// Kernel cases for the demo page: each runs one library kernel on seeded data and returns the GPU result next to
// the float64 CPU reference (src/reference/*), so the page can show the error and the time.
import {
  type Gpu,
  Tensor,
  attention,
  conv2d,
  groupNorm,
  layerNorm,
  matmul,
  silu,
  softmax,
  sum,
  tcdStep,
  tcdStepScalars,
  timestepEmbedding,
} from '../src/index.js';
import { attentionRef } from '../src/reference/attention.js';
import { conv2dRef } from '../src/reference/conv2d.js';
import { unaryRef } from '../src/reference/elementwise.js';
import { groupNormRef } from '../src/reference/group_norm.js';
import { layerNormRef } from '../src/reference/layer_norm.js';
import { matmulRef } from '../src/reference/matmul.js';
import { sumAxisRef } from '../src/reference/reduce.js';
import { softmaxRef } from '../src/reference/softmax.js';
import { tcdStepRef } from '../src/reference/tcd_step.js';
import { timestepEmbeddingRef } from '../src/reference/timestep_embedding.js';
import { seededUniform } from './random.js';

export interface CaseRun {
  /** Output tensor (read back by the caller after timing). */
  out: Tensor;
  /** Inputs to release afterwards. */
  inputs: Tensor[];
}

export interface KernelCase {
  name: string;
  shape: string;
  /** Enqueues the kernel on fresh inputs. */
  run(gpu: Gpu): CaseRun;
  /** The float64 reference of the same inputs. */
  reference(): ArrayLike<number>;
}

const up = (gpu: Gpu, data: Float32Array, shape: number[], label: string) => Tensor.fromArray(gpu, data, shape, { label });

/** A case whose inputs are seeded arrays made once, so the GPU run and the reference see the same numbers. */
function kernelCase(
  name: string,
  shape: string,
  inputs: { shape: number[]; lo?: number; hi?: number }[],
  gpuRun: (gpu: Gpu, t: Tensor[]) => Tensor,
  ref: (a: Float32Array[]) => ArrayLike<number>,
): KernelCase {
  const data = inputs.map((s, i) => seededUniform(s.shape.reduce((p, d) => p * d, 1), 17 + i, s.lo ?? -1, s.hi ?? 1));
  return {
    name,
    shape,
    run(gpu) {
      const ts = data.map((d, i) => up(gpu, d, inputs[i].shape, `${name}.in${i}`));
      return { out: gpuRun(gpu, ts), inputs: ts };
    },
    reference: () => ref(data),
  };
}

const ALPHAS = (() => {
  // SDXL's scaled_linear ᾱ table (float64 here; the step uses it as float32 values).
  const T = 1000;
  const a = new Float64Array(T);
  let prod = 1;
  for (let i = 0; i < T; i++) {
    const s = Math.sqrt(0.00085) + ((Math.sqrt(0.012) - Math.sqrt(0.00085)) * i) / (T - 1);
    prod *= 1 - s * s;
    a[i] = Math.fround(prod);
  }
  return a;
})();

export const KERNEL_CASES: KernelCase[] = [
  kernelCase('elementwise silu', '[65536]', [{ shape: [65536], lo: -6, hi: 6 }], (_, [x]) => silu(x), ([x]) => Float64Array.from(x, (v) => unaryRef('silu', v))),
  kernelCase(
    'matmul + bias + gelu (erf)',
    '[96, 128] · [64, 128]ᵀ',
    [{ shape: [96, 128] }, { shape: [64, 128] }, { shape: [64] }],
    (_, [a, b, bias]) => matmul(a, b, { transB: true, bias, activation: 'gelu_erf' }),
    ([a, b, bias]) => matmulRef(a, [96, 128], b, [64, 128], { transB: true, bias, activation: 'gelu_erf' }).y,
  ),
  kernelCase('reduce sum (axis 1)', '[64, 1000, 3]', [{ shape: [64, 1000, 3] }], (_, [x]) => sum(x, 1), ([x]) => sumAxisRef(x, [64, 1000, 3], 1)[0]),
  kernelCase('softmax', '[64, 77]', [{ shape: [64, 77], lo: -4, hi: 4 }], (_, [x]) => softmax(x), ([x]) => softmaxRef(x, 77)),
  kernelCase(
    'layer_norm (affine)',
    '[64, 320]',
    [{ shape: [64, 320] }, { shape: [320] }, { shape: [320] }],
    (_, [x, weight, bias]) => keepY(layerNorm(x, { weight, bias, eps: 1e-5 })),
    ([x, w, b]) => layerNormRef(x, 64, 320, w, b, 1e-5).y,
  ),
  kernelCase(
    'group_norm + silu',
    '[2, 64, 16, 16], 8 groups',
    [{ shape: [2, 64, 16, 16] }, { shape: [64] }, { shape: [64] }],
    (_, [x, g, b]) => keepY(groupNorm(x, g, b, { groups: 8, eps: 1e-5, silu: true })),
    ([x, g, b]) => groupNormRef(x, [2, 64, 16, 16], g, b, 8, 1e-5, true).y,
  ),
  kernelCase(
    'conv2d 3×3, pad 1, bias',
    '[1, 32, 24, 24] ⊛ [32, 32, 3, 3]',
    [{ shape: [1, 32, 24, 24] }, { shape: [32, 32, 3, 3], lo: -0.2, hi: 0.2 }, { shape: [32] }],
    (_, [x, w, bias]) => conv2d(x, w, { padding: 1, bias }),
    ([x, w, b]) => conv2dRef(x, w, { B: 1, Cin: 32, H: 24, W: 24, Cout: 32, kH: 3, kW: 3, stride: 1, padY: 1, padX: 1 }, b),
  ),
  kernelCase(
    'attention (2 heads × 32)',
    'Q [1, 256, 64], K/V [1, 77, 64]',
    [{ shape: [1, 256, 64] }, { shape: [1, 77, 64] }, { shape: [1, 77, 64] }],
    (_, [q, k, v]) => attention(q, k, v, { heads: 2 }),
    ([q, k, v]) => attentionRef(q, k, v, { B: 1, N: 256, M: 77, heads: 2, headDim: 32 }).o,
  ),
  kernelCase(
    'timestep embedding',
    '[8] → [8, 320]',
    [{ shape: [8], lo: 0, hi: 999 }],
    (_, [t]) => timestepEmbedding(t, 320, { flipSinToCos: true, downscaleFreqShift: 0 }),
    ([t]) => timestepEmbeddingRef(t, 320, { flipSinToCos: true, downscaleFreqShift: 0, torchF32: true }),
  ),
  kernelCase(
    'TCD step (γ 0.3)',
    '[1, 4, 64, 64]',
    [{ shape: [1, 4, 64, 64] }, { shape: [1, 4, 64, 64] }, { shape: [1, 4, 64, 64] }],
    (_, [x, eps, noise]) => {
      const r = tcdStep(x, eps, tcdStepScalars(ALPHAS, 759, 499, 0.3), noise);
      r.predNoisedSample.release();
      r.predOriginalSample.release();
      return r.prevSample;
    },
    ([x, eps, noise]) => tcdStepRef(x, eps, noise, ALPHAS, 759, 499, 0.3).prev,
  ),
];

/** The normalized output of a norm result; its saved statistics are released. */
function keepY(r: { y: Tensor; mean: Tensor; rstd: Tensor }): Tensor {
  r.mean.release();
  r.rstd.release();
  return r.y;
}

export interface CaseResult {
  maxAbs: number;
  /** max|got − want| / max|want| */
  relMax: number;
  /** Wall time of the first run: upload, pipeline compilation, dispatch, readback. */
  firstMs: number;
  /** Wall time of a second run (pipelines cached). */
  warmMs: number;
  /** GPU time of the second run's dispatches (timestamp queries), where the device has them. */
  gpuMs?: number;
}

export async function runCase(gpu: Gpu, c: KernelCase): Promise<CaseResult> {
  const once = async (profile: boolean) => {
    const prof = profile && gpu.hasTimestamps ? gpu.startProfiling() : undefined;
    const t0 = performance.now();
    const r = c.run(gpu);
    const got = await r.out.toArray();
    const ms = performance.now() - t0;
    let gpuMs: number | undefined;
    if (prof) {
      gpu.stopProfiling();
      gpuMs = (await prof.collect()).reduce((s, t) => s + t.ms, 0);
    }
    r.out.release();
    r.inputs.forEach((t) => t.release());
    return { got, ms, gpuMs };
  };
  const first = await once(false);
  const warm = await once(true);
  const want = c.reference();
  let maxAbs = 0;
  let ref = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(warm.got[i] - want[i]);
    maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
    ref = Math.max(ref, Math.abs(want[i]));
  }
  if (warm.got.length !== want.length) maxAbs = Infinity;
  return { maxAbs, relMax: ref === 0 ? maxAbs : maxAbs / ref, firstMs: first.ms, warmMs: warm.ms, gpuMs: warm.gpuMs };
}
