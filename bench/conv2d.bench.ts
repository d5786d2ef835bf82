// conv2d forward, input gradient, weight gradient and LoRA conv on SDXL UNet shapes (f32). Throughput is GFLOP/s
// of 2·B·Cout·Hout·Wout·Cin·kH·kW (the convention of the PyTorch anchors; bias adds not counted); gradients count
// the same useful flops as the forward (the stride-2 input gradient's kernel does 4× that, skipping zero taps).
// Each run includes the per-call weight packing (pass `packed` for frozen weights to skip it).
//
// TCD_CONV_SWEEP=1 adds the tuning sweep: the two anchored shapes under every tile preset (but small) and K splits
// 1–4 (kernel 'conv2d sweep'; e.g. `TCD_CONV_SWEEP=1 npm run bench -- --filter 'conv2d sweep'`). A preset this device
// cannot run (workgroup memory) fails its row with the reason.
import { pytorchH100 } from './anchors.js';
import type { BenchCase, Reference } from './case.js';
import {
  CONV_TILES,
  type ConvPlan,
  type ConvTile,
  conv2d,
  conv2dBackward,
  conv2dFlops,
  convGeometry,
  loraConv2d,
  loraConv2dBackward,
} from '../src/kernels/conv2d.js';
import { Tensor, numel, type Shape } from '../src/tensor.js';
import { filled } from './inputs.js';

type Gpu = Parameters<BenchCase['setup']>[0];

interface Shape4 {
  B: number;
  Cin: number;
  Cout: number;
  H: number;
  W: number;
  k: number;
  stride: number;
}

const pad = (s: Shape4) => (s.k === 3 ? 1 : 0);
const geometry = (s: Shape4) => convGeometry('bench', [s.B, s.Cin, s.H, s.W], [s.Cout, s.Cin, s.k, s.k], s.stride, pad(s));
const shapeName = (s: Shape4) => `${s.B}x${s.Cin}x${s.H}x${s.W} -> ${s.Cout}${s.stride > 1 ? ` s${s.stride}` : ''}`;
const kName = (s: Shape4) => `${s.k}x${s.k}`;

type Pass = 'forward' | 'dx' | 'dw';

function convCase(s: Shape4, pass: Pass, quick: boolean, reference?: Reference, plan?: Partial<ConvPlan>, kernel?: string): BenchCase {
  const g = geometry(s);
  return {
    kernel: kernel ?? (pass === 'forward' ? `conv2d ${kName(s)}` : `conv2d ${kName(s)} ${pass}`),
    shape: shapeName(s),
    flops: conv2dFlops(g),
    quick,
    reference,
    setup(gpu) {
      const x = filled(gpu, [s.B, s.Cin, s.H, s.W], 'x');
      // Weights scaled like a trained conv (|w| ≲ 1/sqrt(fan-in)) so values stay O(1).
      const w = filled(gpu, [s.Cout, s.Cin, s.k, s.k], 'w', 1, 1 / Math.sqrt(s.Cin * s.k * s.k));
      const bias = filled(gpu, [s.Cout], 'bias', 2);
      const dy = pass === 'forward' ? undefined : filled(gpu, [g.B, g.Cout, g.Hout, g.Wout], 'dy', 3);
      const opts = { stride: s.stride, padding: pad(s) };
      return {
        run: () => {
          if (pass === 'forward') conv2d(x, w, { ...opts, bias, plan }).release();
          else {
            const r = conv2dBackward(x, w, dy!, { ...opts, needInput: pass === 'dx', needWeight: pass === 'dw', plan, wgradPlan: plan });
            r.dx?.release();
            r.dw?.release();
          }
        },
        dispose: () => [x, w, bias, dy].forEach((t) => t?.release()),
      };
    },
  };
}

/** LoRA conv forward (h = conv(x, A), then W and B in one kernel) or backward (dx fused over W and A, dA, dB). */
function loraCase(s: Shape4, r: number, backward: boolean, quick: boolean): BenchCase {
  const g = geometry(s);
  const base = conv2dFlops(g);
  const down = conv2dFlops({ ...g, Cout: r });
  const up = 2 * g.B * g.Hout * g.Wout * r * g.Cout;
  return {
    kernel: backward ? `lora conv2d ${kName(s)} backward` : `lora conv2d ${kName(s)}`,
    shape: `${shapeName(s)} r=${r}`,
    // Forward: base + A + B. Backward: dh (up), dx (base + down), dA (down), dB (up).
    flops: backward ? 2 * up + base + 2 * down : base + down + up,
    quick,
    setup(gpu) {
      const x = filled(gpu, [s.B, s.Cin, s.H, s.W], 'x');
      const fan = Math.sqrt(s.Cin * s.k * s.k);
      const p = {
        w: filled(gpu, [s.Cout, s.Cin, s.k, s.k], 'w', 1, 1 / fan),
        bias: filled(gpu, [s.Cout], 'bias', 2),
        a: filled(gpu, [r, s.Cin, s.k, s.k], 'lora_A', 3, 1 / fan),
        b: filled(gpu, [s.Cout, r, 1, 1], 'lora_B', 4, 1 / Math.sqrt(r)),
        scale: 0.125,
      };
      const opts = { stride: s.stride, padding: pad(s) };
      const dy = filled(gpu, [g.B, g.Cout, g.Hout, g.Wout], 'dy', 5);
      // Backward: the forward's h (its y is not needed).
      let h: Tensor | undefined;
      if (backward) {
        const f = loraConv2d(x, p, opts);
        f.y.release();
        h = f.h;
      }
      return {
        run: () => {
          if (!backward) {
            const o = loraConv2d(x, p, opts);
            o.y.release();
            o.h.release();
          } else {
            const gr = loraConv2dBackward(x, p, dy, { ...opts, h });
            [gr.dx, gr.da, gr.db].forEach((t) => t?.release());
          }
        },
        dispose: () => [x, p.w, p.bias, p.a, p.b, dy, h].forEach((t) => t?.release()),
      };
    },
  };
}

const S320: Shape4 = { B: 1, Cin: 320, Cout: 320, H: 128, W: 128, k: 3, stride: 1 };
const S640: Shape4 = { B: 1, Cin: 640, Cout: 640, H: 64, W: 64, k: 3, stride: 1 };
const S1280: Shape4 = { B: 1, Cin: 1280, Cout: 1280, H: 32, W: 32, k: 3, stride: 1 };
const DOWN320: Shape4 = { ...S320, stride: 2 };
const SHORTCUT: Shape4 = { B: 1, Cin: 640, Cout: 1280, H: 32, W: 32, k: 1, stride: 1 };
// Quick (lavapipe-sized): one tile (the planner's small one) so the quick set builds two pipelines.
const QUICK: Shape4 = { B: 1, Cin: 32, Cout: 32, H: 16, W: 16, k: 3, stride: 1 };
const QUICK_S2: Shape4 = { ...QUICK, stride: 2 };

const REF_320 = pytorchH100('conv3x3_320_1x320x128x128_fp32_tf32off');
const REF_1280 = pytorchH100('conv3x3_1280_1x1280x32x32_fp32_tf32off');

function sweep(): BenchCase[] {
  const out: BenchCase[] = [];
  for (const [s, ref] of [
    [S320, REF_320],
    [S1280, REF_1280],
  ] as const)
    for (const [name, tile] of Object.entries(CONV_TILES) as [string, ConvTile][])
      for (const splitK of name === 'small' ? [] : [1, 2, 3, 4])
        out.push(convCase(s, 'forward', false, ref, { tile, splitK }, `conv2d sweep ${kName(s)} ${name} split ${splitK}`));
  return out;
}

const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};

/** The kernels have f16 variants (`npm run bench -- --dtype f16`). */
export const dtypes = ['f32', 'f16'] as const;

export const cases: BenchCase[] = [
  convCase(S320, 'forward', false, REF_320),
  convCase(S1280, 'forward', false, REF_1280),
  convCase(S640, 'forward', false),
  convCase(DOWN320, 'forward', false),
  convCase(SHORTCUT, 'forward', false),
  convCase(S320, 'dx', false),
  convCase(S320, 'dw', false),
  convCase(S1280, 'dx', false),
  convCase(S1280, 'dw', false),
  convCase(DOWN320, 'dx', false),
  loraCase(S320, 64, false, false),
  loraCase(S320, 64, true, false),
  loraCase(S1280, 64, false, false),
  loraCase(S1280, 64, true, false),
  convCase(QUICK, 'forward', true),
  convCase(QUICK_S2, 'dx', true),
  convCase(QUICK, 'dw', true),
  loraCase(QUICK, 8, true, true),
  ...(env.TCD_CONV_SWEEP === '1' ? sweep() : []),
];
