// Fused attention (f32) on SDXL shapes: self-attention at the 128² latent (level 1: 10 heads × 4096 tokens) and the
// 64² level (20 heads × 1024), cross-attention against 77 text tokens, CLIP's causal 77-token self-attention, and the
// backward of each (dQ, dK, dV from the saved LSE; includes the D = rowsum(dO ⊙ O) pass).
// Throughput is GFLOP/s of the FlashAttention convention: forward 4·B·heads·N·M·headDim (Q·Kᵀ and P·V; softmax not
// counted), backward 2.5× that (five N×M×headDim GEMMs; the kernels recompute Q·Kᵀ and dO·Vᵀ in both passes, so
// they execute 3.5×). Causal cases count only unmasked (query, key) pairs.
//
// TCD_ATTENTION_SWEEP=1 adds the tuning sweep: the 10-head 4096² forward and backward under every tile listed below
// (kernel 'attention sweep' / 'attention backward sweep'; e.g. `TCD_ATTENTION_SWEEP=1 npm run bench -- --filter
// 'attention'`). A tile this device cannot run (workgroup storage, invocations) fails its row with the reason.
import { pytorchH100 } from './anchors.js';
import type { BenchCase, Reference } from './case.js';
import { type AttentionTile, SUBGROUP_TILES, attention, attentionBackward, attentionFlops, attentionWithLse } from '../src/kernels/attention.js';
import { Tensor, numel, type Shape } from '../src/tensor.js';
import { filled } from './inputs.js';

type Gpu = Parameters<BenchCase['setup']>[0];

interface AttnShape {
  B: number;
  heads: number;
  N: number;
  M: number;
  hd: number;
  causal?: boolean;
}

const shapeName = (s: AttnShape) => `${s.B}x${s.heads} heads, q ${s.N}, kv ${s.M}, d ${s.hd}${s.causal ? ', causal' : ''}`;

function flopsOf(s: AttnShape): number {
  if (!s.causal) return attentionFlops(s.B, s.heads, s.N, s.M, s.hd);
  let pairs = 0;
  for (let n = 0; n < s.N; n++) pairs += Math.min(n + 1, s.M);
  return 4 * s.B * s.heads * pairs * s.hd;
}

interface Tiles {
  tile?: AttentionTile;
  tileDq?: AttentionTile;
  tileDkdv?: AttentionTile;
}

function inputs(gpu: Gpu, s: AttnShape) {
  const C = s.heads * s.hd;
  return {
    q: filled(gpu, [s.B, s.N, C], 'q', 1),
    k: filled(gpu, [s.B, s.M, C], 'k', 2),
    v: filled(gpu, [s.B, s.M, C], 'v', 3),
  };
}

function forwardCase(s: AttnShape, quick: boolean, reference?: Reference, tiles: Tiles = {}, kernel = 'attention'): BenchCase {
  return {
    kernel,
    shape: tiles.tile ? `${shapeName(s)} tile ${JSON.stringify(tiles.tile)}` : shapeName(s),
    flops: flopsOf(s),
    quick,
    reference,
    setup(gpu) {
      const { q, k, v } = inputs(gpu, s);
      const opts = { heads: s.heads, causal: s.causal, tile: tiles.tile };
      return {
        run: () => attention(q, k, v, opts).release(),
        dispose: () => [q, k, v].forEach((t) => t.release()),
      };
    },
  };
}

function backwardCase(s: AttnShape, quick: boolean, tiles: Tiles = {}, kernel = 'attention backward'): BenchCase {
  return {
    kernel,
    shape: tiles.tileDq ? `${shapeName(s)} dq ${JSON.stringify(tiles.tileDq)} dkdv ${JSON.stringify(tiles.tileDkdv)}` : shapeName(s),
    flops: 2.5 * flopsOf(s),
    quick,
    setup(gpu) {
      const { q, k, v } = inputs(gpu, s);
      const opts = { heads: s.heads, causal: s.causal, tileDq: tiles.tileDq, tileDkdv: tiles.tileDkdv };
      const { o, lse } = attentionWithLse(q, k, v, opts);
      const dO = filled(gpu, o.shape, 'dO', 4);
      return {
        run: () => {
          const g = attentionBackward(q, k, v, o, lse, dO, opts);
          g.dq.release();
          g.dk.release();
          g.dv.release();
        },
        dispose: () => [q, k, v, o, lse, dO].forEach((t) => t.release()),
      };
    },
  };
}

// SDXL at 1024²: level-1 transformer blocks attend over 128·128 / 4 = 4096 tokens with 10 heads of 64, level 2 over
// 1024 tokens with 20 heads; cross-attention keys are the 77 text tokens. CLIP-L: 12 heads × 64, causal, 77 tokens.
const SELF_L1: AttnShape = { B: 1, heads: 10, N: 4096, M: 4096, hd: 64 };
const SELF_L2: AttnShape = { B: 1, heads: 20, N: 1024, M: 1024, hd: 64 };
const CROSS_L1: AttnShape = { B: 1, heads: 10, N: 4096, M: 77, hd: 64 };
const CLIP: AttnShape = { B: 1, heads: 12, N: 77, M: 77, hd: 64, causal: true };
// Quick (lavapipe-sized) versions.
const SELF_SMALL: AttnShape = { B: 1, heads: 2, N: 256, M: 256, hd: 64 };
const CROSS_SMALL: AttnShape = { B: 1, heads: 2, N: 256, M: 77, hd: 64 };

const cases: BenchCase[] = [
  forwardCase(SELF_L1, false, pytorchH100('sdpa_self_10h_4096x4096_d64_fp32_tf32off')),
  forwardCase(SELF_L2, false),
  forwardCase(CROSS_L1, false, pytorchH100('sdpa_cross_10h_4096x77_d64_fp32_tf32off')),
  forwardCase(CLIP, false),
  backwardCase(SELF_L1, false),
  backwardCase(SELF_L2, false),
  backwardCase(CROSS_L1, false),
  backwardCase(CLIP, false),
  forwardCase(SELF_SMALL, true),
  forwardCase(CROSS_SMALL, true),
  forwardCase({ ...CLIP, heads: 2 }, true),
  backwardCase(SELF_SMALL, true),
  backwardCase(CROSS_SMALL, true),
];

// Tiles worth timing on a 48 KiB GPU at headDim 64 (br queries × bc keys, tm rows per thread, tx threads per row
// group; see AttentionTile). Shared bytes at headDim 64 in the comments.
export const SWEEP_FORWARD: readonly AttentionTile[] = [
  { br: 64, bc: 16, tm: 4, tx: 4, sg: true }, //     attention_subgroup.wgsl: 64 threads, quads share 4 rows, 16 KiB
  { br: 32, bc: 16, tm: 2, tx: 4, sg: true }, //     the same with 2 rows per quad (twice the workgroups)
  { br: 64, bc: 32, tm: 2, tx: 8, xp: 1 }, //       256 threads, 2×4 scores, conflict-free row reads, 46 KiB (default)
  { br: 64, bc: 32, tm: 1, tx: 8, xp: 1 }, //       512 threads, 1×4 scores, 46 KiB
  { br: 64, bc: 32, tm: 2, tx: 8, xp: 1, pp: 0 }, //  45 KiB
  { br: 64, bc: 32, tm: 4, tx: 8 }, //              128 threads, 4×4 scores, 44 KiB (former default)
];
export const SWEEP_BACKWARD: readonly { dq: AttentionTile; dkdv: AttentionTile }[] = [
  { dq: SUBGROUP_TILES.bwd_dq, dkdv: SUBGROUP_TILES.bwd_dkdv }, // attention_subgroup.wgsl: quads of 2 rows
  { dq: SUBGROUP_TILES.bwd_dq, dkdv: { br: 32, bc: 32, tm: 1, tx: 8, xp: 1 } },
  { dq: { br: 64, bc: 16, tm: 2, tx: 8, xp: 1 }, dkdv: SUBGROUP_TILES.bwd_dkdv },
  { dq: { br: 64, bc: 16, tm: 2, tx: 8, xp: 1 }, dkdv: { br: 32, bc: 32, tm: 1, tx: 8, xp: 1 } }, // general (H100 13.4 ms)
  { dq: { br: 32, bc: 32, tm: 1, tx: 8, xp: 1 }, dkdv: { br: 32, bc: 32, tm: 1, tx: 8, xp: 1 } }, // 256 threads, 15.0 ms
  { dq: { br: 32, bc: 32, tm: 2, tx: 8, xp: 1 }, dkdv: { br: 32, bc: 32, tm: 2, tx: 8, xp: 1 } }, // 128 threads, 15.6 ms
  { dq: { br: 32, bc: 16, tm: 1, tx: 8, xp: 1 }, dkdv: { br: 32, bc: 16, tm: 1, tx: 8, xp: 1 } },
  { dq: { br: 32, bc: 32, tm: 4, tx: 8 }, dkdv: { br: 32, bc: 32, tm: 4, tx: 8 } }, // 64 threads (former default)
];

const sweep = typeof process !== 'undefined' && process.env?.TCD_ATTENTION_SWEEP === '1';
if (sweep) {
  for (const tile of SWEEP_FORWARD) cases.push(forwardCase(SELF_L1, false, undefined, { tile }, 'attention sweep'));
  for (const tile of SWEEP_FORWARD.filter((t) => t.sg)) cases.push(forwardCase(SELF_L2, false, undefined, { tile }, 'attention sweep'));
  for (const t of SWEEP_BACKWARD)
    cases.push(backwardCase(SELF_L1, false, { tileDq: t.dq, tileDkdv: t.dkdv }, 'attention backward sweep'));
}

/** The kernels have f16 variants (`npm run bench -- --dtype f16`). */
export const dtypes = ['f32', 'f16'] as const;

export { cases };
