// The SDXL VAE (AutoencoderKL) on the tiny diffusers VAE of test/fixtures/tiny_vae (its parity with diffusers is the
// tiny_vae golden suite, test/golden/vae.ts): weight loading (legacy names, 1×1-conv attention weights, named key
// errors); tiled decode and encode against a float64 re-implementation of diffusers' blend over per-tile untiled
// passes; the automatic slice / tile plan; the binding-size bound; the uint8 conversion.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { LimitError } from '../runtime/errors.js';
import { Var } from '../src/autograd/tape.js';
import { Tensor } from '../src/tensor.js';
import { StateDictError, type StateDictEntry } from '../src/unet/weights.js';
import { AutoencoderKL } from '../src/vae/autoencoder_kl.js';
import type { VaeConfigJson } from '../src/vae/config.js';
import { roundHalfEven } from '../src/schedulers/numeric.js';
import { bytesToImage, imageToBytes, toByte } from '../src/vae/image.js';
import { decodeTileGeometry, encodeTileGeometry } from '../src/vae/tiling.js';
import { type GoldenFile, openGolden, readJson, relMaxErr } from './golden_io.js';
import { testGpu } from './helpers.js';

const DIR = resolve('test/fixtures/tiny_vae');

let gpu: Gpu;
let config: VaeConfigJson | undefined;
let weights: GoldenFile | undefined;
let io: GoldenFile | undefined;
let vae: AutoencoderKL | undefined;

function skipped(what: string): void {
  console.log(`skipped: ${what}`);
}

beforeAll(async () => {
  gpu = await testGpu();
  config = readJson<VaeConfigJson>(DIR, 'config.json');
  weights = await openGolden(DIR, 'weights.safetensors');
  io = await openGolden(DIR, 'io.safetensors');
  console.log(`[fixture] ${DIR}`);
  if (config && weights) {
    vae = new AutoencoderKL(gpu, config);
    await vae.loadWeights(weights.src);
  }
});

afterAll(async () => {
  vae?.dispose();
  for (const f of [weights, io]) await f?.close();
  await gpu?.destroy();
});

function report(rows: [string, number][], tol: number): void {
  for (const [k, e] of rows) console.log(`  ${k}: ${e.toExponential(2)}`);
  const bad = rows.filter(([, e]) => !(e <= tol));
  expect(bad.map(([n, e]) => `${n}: ${e.toExponential(2)}`), `tensors over ${tol} (max|got−want| / max|want|)`).toEqual([]);
}

async function goldenTensor(name: string): Promise<Tensor> {
  return Tensor.fromArray(gpu, await io!.f32(name), io!.shape(name), { label: name });
}

async function read(t: Tensor): Promise<Float32Array> {
  const a = await t.toArray();
  t.release();
  return a;
}

const ready = (what: string, keys: string[]) => {
  if (!vae || !io) return skipped(`${what} (no config.json / weights.safetensors / io.safetensors in ${DIR})`), false;
  const absent = keys.filter((k) => !io!.has(k));
  if (absent.length) return skipped(`${what} (io.safetensors lacks ${absent.join(', ')})`), false;
  return true;
};

describe('AutoencoderKL weights', () => {
  async function stateDict(): Promise<Map<string, StateDictEntry>> {
    const sd = new Map<string, StateDictEntry>();
    for (const k of weights!.keys()) sd.set(k, { data: await weights!.f32(k), shape: weights!.shape(k) });
    return sd;
  }

  it('legacy attention names (query/key/value/proj_attn) and 1×1-conv attention weights load to the same model', async () => {
    if (!ready('legacy names', ['latents', 'decoded'])) return;
    const legacy = new Map<string, StateDictEntry>();
    const names = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' } as Record<string, string>;
    let renamed = 0;
    for (const [k, e] of await stateDict()) {
      const m = /^(.*\.attentions\.0\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(k);
      if (!m) {
        legacy.set(k, e);
        continue;
      }
      renamed++;
      // Old checkpoints stored these as 1×1 convs.
      legacy.set(`${m[1]}${names[m[2]]}.${m[3]}`, m[3] === 'weight' ? { data: e.data, shape: [...e.shape, 1, 1] } : e);
    }
    const attnTensors = [...vae!.parameters.keys()].filter((k) => /\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\./.test(k));
    expect(renamed).toBe(attnTensors.length);
    const old = new AutoencoderKL(gpu, config!, { parts: 'decoder' });
    await old.loadWeights(legacy);
    const z = await goldenTensor('latents');
    const a = await read(await old.decode(z, { tiling: false }));
    const b = await read(await vae!.decode(z, { tiling: false }));
    expect(relMaxErr(a, b), 'legacy-named weights vs diffusers-named').toBe(0);
    z.release();
    old.dispose();
  });

  it('missing, unexpected and mis-shaped keys are all listed by name', async () => {
    if (!ready('key errors', [])) return;
    const sd = await stateDict();
    sd.delete('decoder.conv_in.bias');
    sd.set('decoder.extra.weight', { data: new Float32Array(2), shape: [2] });
    const w = sd.get('decoder.conv_out.weight')!;
    sd.set('decoder.conv_out.weight', { data: w.data.subarray(0, w.data.length - w.shape[1] * 9), shape: [w.shape[0] - 1, ...w.shape.slice(1)] });
    const m = new AutoencoderKL(gpu, config!);
    const err = await m.loadWeights(sd).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StateDictError);
    const e = err as StateDictError;
    expect(e.missing.join('\n')).toMatch(/decoder\.conv_in\.bias/);
    expect(e.unexpected.join('\n')).toMatch(/decoder\.extra\.weight/);
    expect(e.mismatched.map((x) => x.name)).toEqual(['decoder.conv_out.weight']);
    expect(e.message).toMatch(/missing \(1\)[\s\S]*unexpected \(1\)[\s\S]*wrong shape \(1\)/);
    m.dispose();
  });
});

/**
 * diffusers' tiled_decode / tiled_encode written out in float64 over per-tile outputs: rows[i][j] is the untiled
 * output of tile (i, j); the blends modify the tiles in place in row-major order.
 */
function referenceBlend(rows: Float64Array[][], shapes: number[][][], blend: number, rowLimit: number, B: number, C: number): { data: Float64Array; H: number; W: number } {
  const at = (i: number, j: number) => ({ d: rows[i][j], h: shapes[i][j][2], w: shapes[i][j][3] });
  for (let i = 0; i < rows.length; i++)
    for (let j = 0; j < rows[i].length; j++) {
      const b = at(i, j);
      if (i > 0) {
        const a = at(i - 1, j);
        const e = Math.min(a.h, b.h, blend);
        for (let p = 0; p < B * C; p++)
          for (let y = 0; y < e; y++)
            for (let x = 0; x < b.w; x++)
              b.d[(p * b.h + y) * b.w + x] = a.d[(p * a.h + a.h - e + y) * a.w + x] * (1 - y / e) + b.d[(p * b.h + y) * b.w + x] * (y / e);
      }
      if (j > 0) {
        const a = at(i, j - 1);
        const e = Math.min(a.w, b.w, blend);
        for (let p = 0; p < B * C; p++)
          for (let y = 0; y < b.h; y++)
            for (let x = 0; x < e; x++)
              b.d[(p * b.h + y) * b.w + x] = a.d[(p * a.h + y) * a.w + a.w - e + x] * (1 - x / e) + b.d[(p * b.h + y) * b.w + x] * (x / e);
      }
    }
  const hs = rows.map((_, i) => Math.min(rowLimit, shapes[i][0][2]));
  const ws = rows[0].map((_, j) => Math.min(rowLimit, shapes[0][j][3]));
  const H = hs.reduce((a, b) => a + b, 0);
  const W = ws.reduce((a, b) => a + b, 0);
  const out = new Float64Array(B * C * H * W);
  let y0 = 0;
  rows.forEach((row, i) => {
    let x0 = 0;
    row.forEach((_, j) => {
      const t = at(i, j);
      for (let p = 0; p < B * C; p++) for (let y = 0; y < hs[i]; y++) for (let x = 0; x < ws[j]; x++) out[(p * H + y0 + y) * W + x0 + x] = t.d[(p * t.h + y) * t.w + x];
      x0 += ws[j];
    });
    y0 += hs[i];
  });
  return { data: out, H, W };
}

/** x[:, :, y0:y0+th, x0:x0+tw] of a host NCHW array (clipped like Python slicing). */
function cropHost(data: Float32Array, shape: readonly number[], y0: number, x0: number, th: number, tw = th): { data: Float32Array; shape: number[] } {
  const [B, C, H, W] = shape;
  const h = Math.min(th, H - y0);
  const w = Math.min(tw, W - x0);
  const out = new Float32Array(B * C * h * w);
  for (let p = 0; p < B * C; p++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[(p * h + y) * w + x] = data[(p * H + y0 + y) * W + x0 + x];
  return { data: out, shape: [B, C, h, w] };
}

/** Per-tile untiled passes (`pass`) blended in float64 as diffusers does. */
async function tiledReference(
  input: Float32Array,
  shape: readonly number[],
  tileIn: number,
  stride: number,
  blend: number,
  rowLimit: number,
  outC: number,
  pass: (t: Tensor) => Promise<Tensor>,
): Promise<{ data: Float64Array; H: number; W: number }> {
  const [B, , H, W] = shape;
  const rows: Float64Array[][] = [];
  const shapes: number[][][] = [];
  for (let y = 0; y < H; y += stride) {
    const row: Float64Array[] = [];
    const rowShapes: number[][] = [];
    for (let x = 0; x < W; x += stride) {
      const c = cropHost(input, shape, y, x, tileIn);
      const t = Tensor.fromArray(gpu, c.data, c.shape);
      const o = await pass(t);
      rowShapes.push([...o.shape]);
      row.push(Float64Array.from(await read(o)));
      t.release();
    }
    rows.push(row);
    shapes.push(rowShapes);
  }
  return referenceBlend(rows, shapes, blend, rowLimit, B, outC);
}

/** Untiled encoder pass → moments tensor (the caller releases it). */
function encodeMoments(t: Tensor): Tensor {
  const v = new Var(t.reshape(t.shape));
  const y = vae!.encodeForward(v);
  v.dispose();
  return y.value;
}

describe('AutoencoderKL tiling', () => {
  it('tile ≥ image: tiled decode is the untiled decode, bit for bit', async () => {
    if (!ready('tiling', ['latents'])) return;
    const z = await goldenTensor('latents');
    const plan = vae!.planDecode(z.shape, { tiling: true });
    expect(plan.mode).toBe('full');
    const a = await read(await vae!.decode(z, { tiling: true }));
    const b = await read(await vae!.decode(z, { tiling: false }));
    expect(a).toEqual(b);
    z.release();
  });

  it('real tiles: decode equals a float64 blend of per-tile untiled decodes; report the difference to untiled', async () => {
    if (!ready('tiled decode', ['latents'])) return;
    const full = await goldenTensor('latents');
    const d = vae!.config.downscale;
    const [, L, h, w] = full.shape;
    // The golden latents with 4-latent tiles; then a non-square crop whose edge tiles are narrower than the blend
    // (diffusers' min(a, b, blend_extent)).
    const cases = [
      { hh: h, ww: w, tile: 4, f: 0.25 },
      { hh: h - 1, ww: Math.max(2, w - 3), tile: 6, f: 0.5 },
    ];
    const host = await full.toArray();
    for (const c of cases) {
      const sub = cropHost(host.subarray(0, L * h * w), [1, L, h, w], 0, 0, c.hh, c.ww).data;
      const z = Tensor.fromArray(gpu, sub, [1, L, c.hh, c.ww]);
      const tileSampleSize = c.tile * d;
      const g = decodeTileGeometry(tileSampleSize, d, c.f);
      const opts = { tiling: true, tileSampleSize, tileOverlapFactor: c.f } as const;
      const plan = vae!.planDecode(z.shape, opts);
      expect(plan.mode).toBe('tiled');
      console.log(`  latents ${z.shape}: ${plan.tiles} tiles of ${g.tileIn} latents (step ${g.stride}), blend ${g.blend} px, keep ${g.rowLimit} px`);
      let progress = 0;
      const tiled = await vae!.decode(z, { ...opts, onProgress: (done, total) => (progress = done / total) });
      expect(progress).toBe(1);
      const want = await tiledReference(sub, z.shape, g.tileIn, g.stride, g.blend, g.rowLimit, vae!.config.outChannels, (t) => vae!.decode(t, { tiling: false }));
      expect([want.H, want.W], 'diffusers tiling keeps the image size here').toEqual([c.hh * d, c.ww * d]);
      expect(tiled.shape).toEqual([1, vae!.config.outChannels, want.H, want.W]);
      const got = await read(tiled);
      report([[`tiled decode of ${c.hh}×${c.ww} vs float64 blend of tile decodes`, relMaxErr(got, want.data)]], 1e-6);
      const untiled = await read(await vae!.decode(z, { tiling: false }));
      // Tiles see less context (GroupNorm statistics, attention): a measurement, not a parity check.
      console.log(`  tiled vs untiled (different by design): ${relMaxErr(got, untiled).toExponential(2)}`);
      z.release();
    }
    full.release();
  });

  it('tiled encode equals a float64 blend of per-tile untiled encodes', async () => {
    if (!ready('tiled encode', ['image'])) return;
    const image = await goldenTensor('image');
    const d = vae!.config.downscale;
    const tileSampleSize = 4 * d;
    // Overlap 0.5: a 2-row blend (at 0.25 a 4-latent tile blends one row, which is a plain copy).
    const g = encodeTileGeometry(tileSampleSize, d, 0.5);
    const plan = vae!.planEncode(image.shape, { tiling: true, tileSampleSize, tileOverlapFactor: 0.5 });
    expect(plan.mode).toBe('tiled');
    const dist = await vae!.encode(image, { tiling: true, tileSampleSize, tileOverlapFactor: 0.5 });
    const moments = await tiledReference(await image.toArray(), image.shape, g.tileIn, g.stride, g.blend, g.rowLimit, 2 * vae!.config.latentChannels, (t) =>
      Promise.resolve(encodeMoments(t)),
    );
    const L = vae!.config.latentChannels;
    const plane = L * moments.H * moments.W;
    const mean = moments.data.subarray(0, plane);
    const logvar = Array.from(moments.data.subarray(plane, 2 * plane), (v) => Math.min(20, Math.max(-30, v)));
    report(
      [
        ['tiled mean vs float64 blend', relMaxErr(await dist.mean.toArray(), mean)],
        ['tiled logvar vs float64 blend', relMaxErr(await dist.logvar.toArray(), logvar)],
      ],
      1e-6,
    );
    dist.dispose();
    image.release();
  });

  it("auto: one pass when it fits, else one sample at a time (exact), else tiles that fit the binding limit", async () => {
    if (!ready('auto plan', ['latents'])) return;
    const z1 = await io!.f32('latents');
    const [, L, h, w] = io!.shape('latents');
    const z2 = Float32Array.from(z1, (v, i) => -v + 0.01 * (i % 7));
    const batch = Tensor.fromArray(gpu, Float32Array.of(...z1, ...z2), [2, L, h, w]);
    const full = vae!.decoderPeakBytes([2, L, h, w]);
    const one = vae!.decoderPeakBytes([1, L, h, w]);
    expect(vae!.planDecode(batch.shape, { maxBindingBytes: full }).mode).toBe('full');
    const sliced = vae!.planDecode(batch.shape, { maxBindingBytes: full - 4 });
    expect(sliced.mode).toBe('sliced');
    const tiledPlan = vae!.planDecode(batch.shape, { maxBindingBytes: one - 4 });
    expect(tiledPlan.mode).toBe('tiled');
    expect(tiledPlan.tileSampleSize! < vae!.config.sampleSize).toBe(true);
    expect(() => vae!.planDecode(batch.shape, { tiling: false, maxBindingBytes: full - 4 })).toThrow(LimitError);

    // Sliced = each sample decoded on its own.
    const slicedOut = await read(await vae!.decode(batch, { maxBindingBytes: full - 4 }));
    const each = [z1, z2].map((z) => Tensor.fromArray(gpu, z, [1, L, h, w]));
    const singles: number[] = [];
    for (const t of each) singles.push(...(await read(await vae!.decode(t, { tiling: false }))));
    expect(relMaxErr(slicedOut, singles), 'sliced vs per-sample decodes').toBe(0);
    // Auto tiles = explicit tiles of the planned size, per sample.
    const autoTiled = await read(await vae!.decode(batch, { maxBindingBytes: one - 4 }));
    const explicit: number[] = [];
    for (const t of each) explicit.push(...(await read(await vae!.decode(t, { tiling: true, tileSampleSize: tiledPlan.tileSampleSize }))));
    expect(relMaxErr(autoTiled, explicit), 'auto tiles vs explicit tiles').toBe(0);
    for (const t of [batch, ...each]) t.release();
  });

  it('the planned peak bounds every binding a pass makes (so auto plans never meet a LimitError)', async () => {
    if (!ready('peak bound', ['latents', 'image'])) return;
    const z = await goldenTensor('latents');
    const image = await goldenTensor('image');
    const original = gpu.checkBinding;
    let seen = 0;
    gpu.checkBinding = (bytes: number, what: string) => {
      seen = Math.max(seen, bytes);
      original.call(gpu, bytes, what);
    };
    const saved = { ...vae!.attention };
    const rows: string[] = [];
    try {
      for (const impl of ['flash', 'matmul'] as const) {
        vae!.attention.impl = impl;
        seen = 0;
        (await vae!.decode(z, { tiling: false })).release();
        const dec = vae!.decoderPeakBytes(z.shape);
        rows.push(`decode (${impl}): bound ${seen} bytes, planned ${dec}`);
        expect(seen, `decode (${impl}) binding`).toBeLessThanOrEqual(dec);
        seen = 0;
        (await vae!.encode(image, { tiling: false })).dispose();
        const enc = vae!.encoderPeakBytes(image.shape);
        rows.push(`encode (${impl}): bound ${seen} bytes, planned ${enc}`);
        expect(seen, `encode (${impl}) binding`).toBeLessThanOrEqual(enc);
      }
    } finally {
      gpu.checkBinding = original;
      Object.assign(vae!.attention, saved);
    }
    console.log(`  ${rows.join('\n  ')}`);
    z.release();
    image.release();
  });

  it('SDXL plan: a 1024² decode binds 1 GiB in one pass (256 channels at 1024²), tiled to fit 128 MiB', () => {
    const sdxl: VaeConfigJson = {
      _class_name: 'AutoencoderKL',
      block_out_channels: [128, 256, 512, 512],
      down_block_types: new Array(4).fill('DownEncoderBlock2D'),
      up_block_types: new Array(4).fill('UpDecoderBlock2D'),
      latent_channels: 4,
      layers_per_block: 2,
      norm_num_groups: 32,
      sample_size: 1024,
      scaling_factor: 0.13025,
    };
    const m = new AutoencoderKL(gpu, sdxl, { attention: 'flash' });
    // The real diffusers state dict of the SDXL VAE: every name and shape.
    const real = JSON.parse(readFileSync('test/fixtures/sdxl_keys/vae_state_dict_shapes.json', 'utf8')) as Record<string, number[]>;
    expect(Object.fromEntries([...m.parameters].map(([k, p]) => [k, [...p.shape]]))).toEqual(real);
    expect(m.parameters.size).toBe(248);
    expect([...m.parameters.values()].reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0)).toBe(83_653_863);
    const shape = [1, 4, 128, 128];
    // up_blocks.2's upsampler output: [1, 256, 1024, 1024] float32.
    expect(m.decoderPeakBytes(shape)).toBe(256 * 1024 * 1024 * 4);
    expect(m.planDecode(shape, { maxBindingBytes: 2 ** 31 }).mode).toBe('full');
    const small = m.planDecode(shape, { maxBindingBytes: 128 * 2 ** 20 });
    expect(small).toMatchObject({ mode: 'tiled', tileSampleSize: 256 });
    console.log(`  128 MiB: ${small.tiles} tiles of ${small.tileSampleSize} px; 1 GiB (browsers): ${m.planDecode(shape, { maxBindingBytes: 2 ** 30 }).mode}`);
    // Encoding 1024²: conv_in output [1, 128, 1024, 1024].
    expect(m.encoderPeakBytes([1, 3, 1024, 1024])).toBe(128 * 1024 * 1024 * 4);
  });
});

describe('image conversion', () => {
  it('toByte: (x/2 + 0.5) clamped, ·255, numpy round-half-even; bytesToImage inverts to 2·(u/255) − 1', () => {
    // numpy rounds exact halves to the even neighbour.
    expect([0.5, 1.5, 2.5, 3.4999, 3.5, 254.5].map(roundHalfEven)).toEqual([0, 2, 2, 3, 4, 254]);
    expect(toByte(-1)).toBe(0);
    expect(toByte(1)).toBe(255);
    expect(toByte(-7)).toBe(0);
    expect(toByte(3)).toBe(255);
    expect(toByte(Number.NaN)).toBe(0);
    // 0 → 0.5·255 = 127.5, a float32 tie: numpy rounds to 128 (even).
    expect(toByte(0)).toBe(128);
    // Every byte survives bytes → [-1, 1] → bytes.
    const all = Uint8Array.from({ length: 256 * 3 }, (_, i) => i % 256);
    const img = { data: all, width: 256, height: 1, channels: 3 };
    const back = imageToBytes(bytesToImage(img), [1, 3, 1, 256]);
    expect(back.data).toEqual(all);
  });
});
