// Fused attention: parity of the forward (O, LSE) and backward (dQ, dK, dV) with the float64 reference, against the
// same computation composed from matmul + softmax kernels, and finite-difference checks of the gradients.
//
// On lavapipe the default variant is the rolled small tile (compile time); the H100 tiles are run explicitly (rolled,
// at headDim 32 so they fit 32 KiB of workgroup storage) and the unrolled code path on a small tile at headDim 8.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { DTypeError, ShapeError } from '../runtime/errors.js';
import {
  ATTENTION_TILES,
  ATTENTION_TILES_CPU,
  SUBGROUP_TILES,
  type AttentionTile,
  attention,
  attentionBackward,
  attentionSharedBytes,
  attentionTileProblem,
  attentionWithLse,
  chooseAttentionTile,
  isCpuAdapter,
} from '../src/kernels/attention.js';
import { binary } from '../src/kernels/elementwise.js';
import { matmul, matmulBackward } from '../src/kernels/matmul.js';
import { softmax, softmaxBackward } from '../src/kernels/softmax.js';
import { attentionBackwardRef, attentionRef } from '../src/reference/attention.js';
import { Tensor } from '../src/tensor.js';
import { type Tolerance, dot, expectClose, finiteDiff, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// f32 dot products over headDim (≤ 64 terms) and sums over ≤ 130 keys of values ≤ 2 in magnitude: observed errors
// are ~1e-6 absolute; the bounds leave ~10× margin. Gradients chain three more f32 GEMMs, hence the looser bound.
const FWD_TOL: Tolerance = { atol: 1e-5, rtol: 1e-4 };
const BWD_TOL: Tolerance = { atol: 3e-5, rtol: 3e-4 };

interface Case {
  B: number;
  N: number;
  M: number;
  heads: number;
  hd: number;
  causal?: boolean;
  scale?: number;
  tile?: AttentionTile;
  tileDq?: AttentionTile;
  tileDkdv?: AttentionTile;
  roll?: boolean;
  seed?: number;
  /** Range of q and k values (scores grow with its square). */
  qk?: number;
}

function data(c: Case) {
  const C = c.heads * c.hd;
  const s = c.seed ?? 1;
  const r = c.qk ?? 2;
  return {
    q: seeded(c.B * c.N * C, s, -r, r),
    k: seeded(c.B * c.M * C, s + 1, -r, r),
    v: seeded(c.B * c.M * C, s + 2),
    dO: seeded(c.B * c.N * C, s + 3),
  };
}

const name = (c: Case) =>
  `B${c.B} heads ${c.heads} N ${c.N} M ${c.M} headDim ${c.hd}${c.causal ? ' causal' : ''}${c.scale !== undefined ? ` scale ${c.scale}` : ''}` +
  `${c.tile ? ` tile ${JSON.stringify(c.tile)}` : ''}${c.roll !== undefined ? ` roll ${c.roll}` : ''}`;

const dimsOf = (c: Case) => ({ B: c.B, N: c.N, M: c.M, heads: c.heads, headDim: c.hd, causal: c.causal, scale: c.scale });
const optsOf = (c: Case) => ({ heads: c.heads, causal: c.causal, scale: c.scale, tile: c.tile, tileDq: c.tileDq, tileDkdv: c.tileDkdv, roll: c.roll });

function upload(c: Case, d: ReturnType<typeof data>) {
  const C = c.heads * c.hd;
  return {
    q: Tensor.fromArray(gpu, d.q, [c.B, c.N, C], { label: 'q' }),
    k: Tensor.fromArray(gpu, d.k, [c.B, c.M, C], { label: 'k' }),
    v: Tensor.fromArray(gpu, d.v, [c.B, c.M, C], { label: 'v' }),
  };
}

async function checkForward(c: Case, tol = FWD_TOL) {
  const d = data(c);
  const t = upload(c, d);
  const { o, lse } = attentionWithLse(t.q, t.k, t.v, optsOf(c));
  expect(o.shape).toEqual([c.B, c.N, c.heads * c.hd]);
  expect(lse.shape).toEqual([c.B, c.heads, c.N]);
  const ref = attentionRef(d.q, d.k, d.v, dimsOf(c));
  expectClose(await o.toArray(), ref.o, tol, `O ${name(c)}`);
  expectClose(await lse.toArray(), ref.lse, tol, `LSE ${name(c)}`);
  [t.q, t.k, t.v, o, lse].forEach((x) => x.release());
}

async function checkBackward(c: Case) {
  const d = data(c);
  const t = upload(c, d);
  const { o, lse } = attentionWithLse(t.q, t.k, t.v, optsOf(c));
  const dO = Tensor.fromArray(gpu, d.dO, o.shape, { label: 'dO' });
  const g = attentionBackward(t.q, t.k, t.v, o, lse, dO, optsOf(c));
  expect(g.dq.shape).toEqual(t.q.shape);
  expect(g.dk.shape).toEqual(t.k.shape);
  expect(g.dv.shape).toEqual(t.v.shape);
  const ref = attentionBackwardRef(d.q, d.k, d.v, d.dO, dimsOf(c));
  expectClose(await g.dq.toArray(), ref.dq, BWD_TOL, `dQ ${name(c)}`);
  expectClose(await g.dk.toArray(), ref.dk, BWD_TOL, `dK ${name(c)}`);
  expectClose(await g.dv.toArray(), ref.dv, BWD_TOL, `dV ${name(c)}`);
  [t.q, t.k, t.v, o, lse, dO, g.dq, g.dk, g.dv].forEach((x) => x.release());
}

describe('attention forward vs float64 reference', () => {
  // N not a multiple of any tile (1, 7, 77, 130 queries: one partial block, several blocks).
  for (const N of [1, 7, 77, 130]) it(`self-attention ${N} tokens`, () => checkForward({ B: 1, N, M: N, heads: 2, hd: 64 }));
  // SDXL cross-attention has 77 text tokens; M = 1 is the single-key edge (softmax ≡ 1, O = V).
  it('cross-attention, 77 keys', () => checkForward({ B: 1, N: 50, M: 77, heads: 2, hd: 64 }));
  it('cross-attention, 1 key', () => checkForward({ B: 1, N: 33, M: 1, heads: 2, hd: 64 }));
  // CLIP text encoder: causal self-attention over 77 tokens.
  it('causal, 77 tokens', () => checkForward({ B: 1, N: 77, M: 77, heads: 2, hd: 64, causal: true }));
  it('causal, 1 token', () => checkForward({ B: 1, N: 1, M: 1, heads: 2, hd: 64, causal: true }));
  it('causal with fewer keys than queries, and with more', async () => {
    await checkForward({ B: 1, N: 35, M: 20, heads: 2, hd: 64, causal: true });
    await checkForward({ B: 1, N: 20, M: 35, heads: 2, hd: 64, causal: true });
  });
  it('batch 2, 3 heads (causal and not)', async () => {
    await checkForward({ B: 2, N: 19, M: 23, heads: 3, hd: 64 });
    await checkForward({ B: 2, N: 23, M: 23, heads: 3, hd: 64, causal: true });
  });
  it('custom scale', () => checkForward({ B: 1, N: 21, M: 17, heads: 2, hd: 64, scale: 0.3 }));
  it('headDim 40 (output columns not a multiple of the thread group)', async () => {
    await checkForward({ B: 2, N: 21, M: 30, heads: 3, hd: 40 });
    await checkForward({ B: 1, N: 30, M: 30, heads: 2, hd: 40, causal: true });
  });
  // Scores near 300 carry f32 rounding of ~300·log2(e)·2^-24 per product term (and GPU exp2 is accurate to ~2 ulp
  // only), so probabilities are good to ~1e-4 relative, not 1e-6 (measured on the H100: 3.2e-5 absolute).
  it('large scores (|s| up to ~300) stay finite and accurate: the online max keeps exp2 in range', () =>
    checkForward({ B: 1, N: 40, M: 70, heads: 2, hd: 64, qk: 10, scale: 0.5 }, { atol: 1e-4, rtol: 1e-3 }));
  it('causal row 0 attends to key 0 only: O = V[0], LSE = scale·q₀·k₀', async () => {
    const c: Case = { B: 1, N: 5, M: 5, heads: 2, hd: 64, causal: true };
    const d = data(c);
    const t = upload(c, d);
    const { o, lse } = attentionWithLse(t.q, t.k, t.v, optsOf(c));
    const go = await o.toArray();
    const gl = await lse.toArray();
    const C = c.heads * c.hd;
    for (let h = 0; h < c.heads; h++) {
      const sl = (a: ArrayLike<number>) => Array.from(a).slice(h * c.hd, (h + 1) * c.hd);
      expectClose(sl(go), sl(d.v), { atol: 1e-6, rtol: 1e-6 }, `O row 0 head ${h}`);
      const s = dot(sl(d.q), sl(d.k)) / Math.sqrt(c.hd);
      expectClose([gl[h * c.N]], [s], { atol: 1e-5, rtol: 1e-5 }, `LSE row 0 head ${h}`);
    }
    expect(go.length).toBe(c.N * C);
    [t.q, t.k, t.v, o, lse].forEach((x) => x.release());
  });
  it('attention() returns O only, equal to attentionWithLse', async () => {
    const c: Case = { B: 1, N: 9, M: 11, heads: 2, hd: 64 };
    const d = data(c);
    const t = upload(c, d);
    const o1 = attention(t.q, t.k, t.v, { heads: 2 });
    const { o: o2, lse } = attentionWithLse(t.q, t.k, t.v, { heads: 2 });
    expect(Array.from(await o1.toArray())).toEqual(Array.from(await o2.toArray()));
    [t.q, t.k, t.v, o1, o2, lse].forEach((x) => x.release());
  });
});

// On CPU adapters each of these pipelines takes tens of seconds to compile (cached by Mesa afterwards), so they run
// there only with TCD_ATTENTION_FULL=1 (skipped otherwise); on GPUs they always run, and there the default variant
// the other tests use is the unrolled H100 tile itself.
const fullTiles = () => !isCpuAdapter(gpu) || process.env.TCD_ATTENTION_FULL === '1';
const FULL_TILES_SKIP = 'CPU adapter: these pipelines take tens of seconds each to compile; TCD_ATTENTION_FULL=1 runs them';

describe('attention tiles', () => {
  // The H100 tiles (256 threads of 2 rows / 1 row, padded rows) at headDim 32, where they fit 32 KiB. Forward: the
  // first general tile (the subgroup one before it is headDim 64 only, tested above).
  const generalForward = ATTENTION_TILES.forward.find((t) => !t.sg)!;
  const h100 = {
    fwd: generalForward,
    dq: ATTENTION_TILES.bwd_dq.find((t) => !t.sg)!,
    dkdv: ATTENTION_TILES.bwd_dkdv.find((t) => !t.sg)!,
  };
  for (const causal of [false, true]) {
    it(`H100 tiles (rolled) forward and backward${causal ? ', causal' : ''}`, async (ctx) => {
      if (!fullTiles()) ctx.skip(FULL_TILES_SKIP);
      const c: Case = { B: 1, N: 70, M: 77, heads: 2, hd: 32, causal, tile: h100.fwd, tileDq: h100.dq, tileDkdv: h100.dkdv, roll: true };
      await checkForward(c);
      await checkBackward(c);
    });
  }
  // The unrolled code path (the default on GPUs): same arithmetic, constant trip counts.
  it('unrolled loops, forward and backward, causal and not', async (ctx) => {
    if (!fullTiles()) ctx.skip(FULL_TILES_SKIP);
    const tile = { br: 16, bc: 16, tm: 2, tx: 8 };
    for (const causal of [false, true]) {
      const c: Case = { B: 1, N: 37, M: 29, heads: 2, hd: 8, causal, tile, tileDq: tile, tileDkdv: tile, roll: false };
      await checkForward(c);
      await checkBackward(c);
    }
  });
  // The subgroup forward (kernels/attention_subgroup.wgsl, headDim 64; the default on GPUs with subgroups): partial
  // query and key tiles, batch 2, causal and not, CLIP's 77 × 77 causal case, and several K/V tiles (double buffer).
  it('subgroup forward (headDim 64): partial tiles, causal and not', async (ctx) => {
    const tile = { br: 64, bc: 16, tm: 4, tx: 4, sg: true };
    if (!gpu.hasSubgroups) {
      expect(attentionTileProblem(gpu, 'forward', tile, 64)).toMatch(/subgroups/);
      ctx.skip(`no subgroups on ${gpu.describe()}`);
    }
    for (const causal of [false, true]) await checkForward({ B: 2, N: 45, M: 71, heads: 2, hd: 64, causal, tile, roll: false });
    await checkForward({ B: 1, N: 77, M: 77, heads: 1, hd: 64, causal: true, tile, roll: false });
    await checkForward({ B: 1, N: 130, M: 50, heads: 3, hd: 64, causal: true, tile, roll: false });
    // 2 rows per quad (32 queries per workgroup).
    const two = { br: 32, bc: 16, tm: 2, tx: 4, sg: true };
    for (const causal of [false, true]) await checkForward({ B: 2, N: 45, M: 71, heads: 2, hd: 64, causal, tile: two, roll: false });
    expect(attentionTileProblem(gpu, 'bwd_dq', tile, 64)).toMatch(/subgroup \(sg\) tiles for bwd_dq are/);
    expect(attentionTileProblem(gpu, 'forward', tile, 32)).toMatch(/headDim 64/);
  });
  // The subgroup backward (dK/dV: 2 keys per quad, 32 per workgroup; dQ: 2 queries per quad): partial blocks and
  // tiles, several tiles, causal and not (incl. N > M and N < M), with the general forward's O and LSE.
  it('subgroup backward (headDim 64): partial tiles, causal and not', async (ctx) => {
    const sg = { tileDq: SUBGROUP_TILES.bwd_dq, tileDkdv: SUBGROUP_TILES.bwd_dkdv };
    if (!gpu.hasSubgroups) {
      expect(attentionTileProblem(gpu, 'bwd_dq', sg.tileDq, 64)).toMatch(/subgroups/);
      ctx.skip(`no subgroups on ${gpu.describe()}`);
    }
    const tile = ATTENTION_TILES_CPU[0];
    for (const causal of [false, true]) await checkBackward({ B: 2, N: 45, M: 71, heads: 2, hd: 64, causal, tile, ...sg });
    await checkBackward({ B: 1, N: 77, M: 77, heads: 1, hd: 64, causal: true, tile, ...sg });
    await checkBackward({ B: 1, N: 70, M: 35, heads: 2, hd: 64, causal: true, tile, ...sg });
  });
  it('headDim 64 needs 45 KiB for the 64-query forward tile: chosen only where it fits', () => {
    // forward: X 64·17 + Y 2·32·17 + P 64·9 + red 64·8/4 vec4s; dQ: 2·64·17 + 2·16·17 + 64·5;
    // dK/dV: 2·32·17 + 2·32·17 + 2·32·9 vec4s + 2·32 f32.
    expect(attentionSharedBytes('forward', generalForward, 64)).toBe(46080);
    // The subgroup forward: double-buffered K and V tiles of 16 keys × 16 vec4s.
    expect(attentionSharedBytes('forward', { br: 64, bc: 16, tm: 4, tx: 4, sg: true }, 64)).toBe(16384);
    expect(attentionSharedBytes('bwd_dq', h100.dq, 64)).toBe(48640);
    expect(attentionSharedBytes('bwd_dkdv', h100.dkdv, 64)).toBe(44288);
    const max = gpu.limits.maxComputeWorkgroupStorageSize;
    for (const entry of ['forward', 'bwd_dq', 'bwd_dkdv'] as const)
      for (const hd of [32, 40, 64, 80, 128]) {
        const t = chooseAttentionTile(gpu, entry, hd);
        expect(attentionTileProblem(gpu, entry, t, hd)).toBeNull();
        expect(attentionSharedBytes(entry, t, hd)).toBeLessThanOrEqual(max);
      }
    expect(attentionTileProblem(gpu, 'forward', { br: 64, bc: 32, tm: 4, tx: 6 }, 64)).toMatch(/multiple of 4/);
    expect(attentionTileProblem(gpu, 'forward', { br: 64, bc: 64, tm: 8, tx: 4 }, 64)).toMatch(/score registers/);
  });
});

// [B, T, heads·hd] → [B·heads, T, hd] (host-side head split for the composed reference).
function splitHeads(x: Float32Array, B: number, T: number, heads: number, hd: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < heads; h++)
        for (let c = 0; c < hd; c++) out[((b * heads + h) * T + t) * hd + c] = x[(b * T + t) * heads * hd + h * hd + c];
  return out;
}

describe('attention vs the composition matmul → softmax → matmul', () => {
  for (const causal of [false, true]) {
    it(`forward and backward, B2 heads 3 N 37 M 45${causal ? ', causal (additive mask)' : ''}`, async () => {
      const c: Case = { B: 2, N: 37, M: causal ? 37 : 45, heads: 3, hd: 64, causal };
      const { B, N, M, heads, hd } = c;
      const d = data(c);
      const t = upload(c, d);
      const { o, lse } = attentionWithLse(t.q, t.k, t.v, optsOf(c));
      const dO = Tensor.fromArray(gpu, d.dO, o.shape);
      const g = attentionBackward(t.q, t.k, t.v, o, lse, dO, optsOf(c));

      const qh = Tensor.fromArray(gpu, splitHeads(d.q, B, N, heads, hd), [B * heads, N, hd]);
      const kh = Tensor.fromArray(gpu, splitHeads(d.k, B, M, heads, hd), [B * heads, M, hd]);
      const vh = Tensor.fromArray(gpu, splitHeads(d.v, B, M, heads, hd), [B * heads, M, hd]);
      const dOh = Tensor.fromArray(gpu, splitHeads(d.dO, B, N, heads, hd), [B * heads, N, hd]);
      const scale = 1 / Math.sqrt(hd);
      let s = matmul(qh, kh, { transB: true, alpha: scale });
      let mask: Tensor | undefined;
      if (causal) {
        const m = new Float32Array(N * M);
        for (let i = 0; i < N; i++) for (let j = i + 1; j < M; j++) m[i * M + j] = -1e30;
        mask = Tensor.fromArray(gpu, m, [N, M]);
        const masked = binary('add', s, mask);
        s.release();
        s = masked;
      }
      const p = softmax(s);
      const oh = matmul(p, vh);
      expectClose(await o.toArray(), splitBack(await oh.toArray(), B, N, heads, hd), FWD_TOL, 'O vs composed');

      const gpv = matmulBackward(p, vh, dOh);
      const ds = softmaxBackward(p, gpv.da!);
      const gqk = matmulBackward(qh, kh, ds, { transB: true, alpha: scale });
      expectClose(await g.dv.toArray(), splitBack(await gpv.db!.toArray(), B, M, heads, hd), BWD_TOL, 'dV vs composed');
      expectClose(await g.dq.toArray(), splitBack(await gqk.da!.toArray(), B, N, heads, hd), BWD_TOL, 'dQ vs composed');
      expectClose(await g.dk.toArray(), splitBack(await gqk.db!.toArray(), B, M, heads, hd), BWD_TOL, 'dK vs composed');
      [t.q, t.k, t.v, o, lse, dO, g.dq, g.dk, g.dv, qh, kh, vh, dOh, s, p, oh, gpv.da!, gpv.db!, ds, gqk.da!, gqk.db!].forEach((x) => x.release());
      mask?.release();
    });
  }
});

// [B·heads, T, hd] → [B, T, heads·hd].
function splitBack(x: Float32Array, B: number, T: number, heads: number, hd: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < heads; h++)
      for (let t = 0; t < T; t++)
        for (let c = 0; c < hd; c++) out[(b * T + t) * heads * hd + h * hd + c] = x[((b * heads + h) * T + t) * hd + c];
  return out;
}

describe('attention backward vs float64 reference', () => {
  it('self-attention 77 tokens, causal and not', async () => {
    await checkBackward({ B: 1, N: 77, M: 77, heads: 2, hd: 64 });
    await checkBackward({ B: 1, N: 77, M: 77, heads: 2, hd: 64, causal: true });
  });
  it('cross-attention, 77 keys and 1 key', async () => {
    await checkBackward({ B: 1, N: 50, M: 77, heads: 2, hd: 64 });
    await checkBackward({ B: 1, N: 33, M: 1, heads: 2, hd: 64 });
  });
  it('causal with fewer keys than queries, and with more', async () => {
    await checkBackward({ B: 1, N: 35, M: 20, heads: 2, hd: 64, causal: true });
    await checkBackward({ B: 1, N: 20, M: 35, heads: 2, hd: 64, causal: true });
  });
  it('batch 2, 3 heads, custom scale', () => checkBackward({ B: 2, N: 19, M: 23, heads: 3, hd: 64, scale: 0.2 }));
  it('headDim 40', () => checkBackward({ B: 2, N: 21, M: 30, heads: 3, hd: 40, causal: true }));
  // Scores up to ~300 carry f32 rounding of ~300·2⁻²⁴·√64 ≈ 1e-4 (absolute), which becomes the relative error of P
  // and of every gradient; hence 10× the usual bound.
  it('large scores', async () => {
    const c: Case = { B: 1, N: 40, M: 70, heads: 2, hd: 64, qk: 10, scale: 0.5 };
    const d = data(c);
    const t = upload(c, d);
    const { o, lse } = attentionWithLse(t.q, t.k, t.v, optsOf(c));
    const dO = Tensor.fromArray(gpu, d.dO, o.shape);
    const g = attentionBackward(t.q, t.k, t.v, o, lse, dO, optsOf(c));
    const ref = attentionBackwardRef(d.q, d.k, d.v, d.dO, dimsOf(c));
    const tol = { atol: 3e-4, rtol: 3e-3 };
    expectClose(await g.dq.toArray(), ref.dq, tol, 'dQ, large scores');
    expectClose(await g.dk.toArray(), ref.dk, tol, 'dK, large scores');
    expectClose(await g.dv.toArray(), ref.dv, tol, 'dV, large scores');
    [t.q, t.k, t.v, o, lse, dO, g.dq, g.dk, g.dv].forEach((x) => x.release());
  });
});

describe('attention gradients vs finite differences of the GPU forward', () => {
  // L = Σ O ⊙ R; central differences of f32 forwards (eps 1e-2) against dQ, dK, dV at a few elements of each.
  for (const causal of [false, true]) {
    it(`dQ, dK, dV${causal ? ', causal' : ''}`, async () => {
      const c: Case = { B: 1, N: 6, M: causal ? 6 : 9, heads: 2, hd: 64, causal, qk: 1 };
      const d = data(c);
      const C = c.heads * c.hd;
      const R = seeded(c.B * c.N * C, 99);
      const t = upload(c, d);
      const { o, lse } = attentionWithLse(t.q, t.k, t.v, optsOf(c));
      const dO = Tensor.fromArray(gpu, R, o.shape);
      const g = attentionBackward(t.q, t.k, t.v, o, lse, dO, optsOf(c));
      const grads = [await g.dq.toArray(), await g.dk.toArray(), await g.dv.toArray()];
      const loss = async ([q, k, v]: Float32Array[]) => {
        const tq = Tensor.fromArray(gpu, q, [c.B, c.N, C]);
        const tk = Tensor.fromArray(gpu, k, [c.B, c.M, C]);
        const tv = Tensor.fromArray(gpu, v, [c.B, c.M, C]);
        const y = attention(tq, tk, tv, optsOf(c));
        const l = dot(await y.toArray(), R);
        [tq, tk, tv, y].forEach((x) => x.release());
        return l;
      };
      // Row 0 (one key under the mask), the last query / key, and elements of the second head.
      const picks = [
        [0, 5, C - 1, (c.N - 1) * C + 70],
        [3, C + 64, (c.M - 1) * C + 2, 2 * C + 100],
        [1, C + 65, (c.M - 1) * C + 127, 2 * C + 7],
      ];
      for (let w = 0; w < 3; w++) {
        const fd = await finiteDiff(loss, [d.q, d.k, d.v], w, picks[w]);
        expectClose(
          picks[w].map((i) => grads[w][i]),
          fd,
          { atol: 2e-3, rtol: 2e-2 },
          `${['dQ', 'dK', 'dV'][w]} vs finite differences`,
        );
      }
      [t.q, t.k, t.v, o, lse, dO, g.dq, g.dk, g.dv].forEach((x) => x.release());
    });
  }
});

describe('attention input checks', () => {
  it('rejects mismatched shapes and dtypes, naming expected and received', () => {
    const q = Tensor.zeros(gpu, [1, 4, 128]);
    const k = Tensor.zeros(gpu, [1, 6, 128]);
    const kBad = Tensor.zeros(gpu, [1, 6, 96]);
    const vBad = Tensor.zeros(gpu, [1, 5, 128]);
    const kBatch = Tensor.zeros(gpu, [2, 6, 128]);
    const k0 = Tensor.zeros(gpu, [1, 0, 128]);
    const q2 = Tensor.zeros(gpu, [4, 128]);
    expect(() => attention(q, kBad, k, { heads: 2 })).toThrow(/same channels \(expected 128\)/);
    expect(() => attention(q, k, vBad, { heads: 2 })).toThrow(/same number of keys \(expected 6\)/);
    expect(() => attention(q, kBatch, kBatch, { heads: 2 })).toThrow(/batch sizes differ \(expected 1/);
    expect(() => attention(q, k, k, { heads: 3 })).toThrow(/channels 128 do not split into 3 heads/);
    expect(() => attention(q, k, k, { heads: 64 })).toThrow(/headDim 2 .* multiple of 4/);
    expect(() => attention(q, k0, k0, { heads: 2 })).toThrow(/at least one key, got M = 0/);
    expect(() => attention(q2, k, k, { heads: 2 })).toThrow(ShapeError);
    const lse = Tensor.zeros(gpu, [1, 2, 5]);
    expect(() => attentionBackward(q, k, k, q, lse, q, { heads: 2 })).toThrow(/lse \[1, 2, 5\] must be \[B, heads, N\] = \[1, 2, 4\]/);
    expect(() => attentionBackward(q, k, k, q2, lse, q, { heads: 2 })).toThrow(/o \[4, 128\] must have q's shape/);
    if (gpu.hasF16) {
      const h = Tensor.zeros(gpu, [1, 4, 128], 'f16');
      expect(() => attention(h, k, k, { heads: 2 })).toThrow(DTypeError);
      h.release();
    }
    expect(() => attention(q, k, k, { heads: 2, tile: { br: 64, bc: 30, tm: 4, tx: 8 } })).toThrow(/bc must be a multiple of tx/);
    [q, k, kBad, vBad, kBatch, k0, q2, lse].forEach((x) => x.release());
  });
  it('zero queries give empty outputs', async () => {
    const q = Tensor.zeros(gpu, [1, 0, 64]);
    const k = Tensor.zeros(gpu, [1, 3, 64]);
    const { o, lse } = attentionWithLse(q, k, k, { heads: 1 });
    expect(o.shape).toEqual([1, 0, 64]);
    expect(lse.shape).toEqual([1, 1, 0]);
    await gpu.sync();
    [q, k, o, lse].forEach((x) => x.release());
  });
});
