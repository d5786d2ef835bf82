// Trainer data, GPU side: precompute a captioned image set through the tiny SDXL folder's VAE encoder and text
// encoders into a LatentCache; read back equals encoding the same examples directly (VAE latent_dist on the host,
// encodePrompt); an interrupted run resumes without recomputing finished shards; mismatched settings are refused.
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jpeg from 'jpeg-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { makeTinySdxl } from '../scripts/make_tiny_sdxl.js';
import { dirSource } from '../src/io/model_source.js';
import { encodePng } from '../src/pipeline/png.js';
import { Tensor } from '../src/tensor.js';
import { encodePrompt } from '../src/text/encode_prompt.js';
import {
  CacheMismatchError,
  LatentCache,
  LatentCacheError,
  LatentCacheSource,
  type PrecomputeModels,
  type PrecomputeOptions,
  SeededRng,
  deriveSeed,
  latentNoise,
  listCaptionedImages,
  loadPrecomputeModels,
  precomputeDataset,
  prepareImage,
  readImageFile,
} from '../src/trainer/data/index.js';
import { ensureTinySdxl } from '../web/server.mjs';
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
let models: PrecomputeModels;
let root: string;
let dataDir: string;

const RES = 32;
const SEED = 5;

function rgbBytes(w: number, h: number, seed: number): Uint8Array {
  return Uint8Array.from(seeded(w * h * 3, seed, 0, 256), (v) => Math.min(255, Math.floor(v)));
}

beforeAll(async () => {
  gpu = await testGpu();
  const tiny = await ensureTinySdxl({ make: makeTinySdxl });
  models = await loadPrecomputeModels(gpu, dirSource(tiny));
  root = await mkdtemp(join(tmpdir(), 'tcd-precompute-'));
  dataDir = join(root, 'data');
  await mkdir(dataDir);
  // Three sizes (landscape, portrait, square) and both formats.
  await writeFile(join(dataDir, 'a.png'), encodePng({ data: rgbBytes(48, 36, 1), width: 48, height: 36, channels: 3 }));
  await writeFile(join(dataDir, 'a.txt'), 'a red cube on a table');
  await writeFile(join(dataDir, 'b.png'), encodePng({ data: rgbBytes(33, 57, 2), width: 33, height: 57, channels: 3 }));
  await writeFile(join(dataDir, 'b.txt'), 'a photo of a cat');
  const c = rgbBytes(40, 40, 3);
  const rgba = new Uint8Array(40 * 40 * 4);
  for (let p = 0; p < 1600; p++) rgba.set([c[3 * p], c[3 * p + 1], c[3 * p + 2], 255], 4 * p);
  await writeFile(join(dataDir, 'c.jpg'), jpeg.encode({ data: rgba, width: 40, height: 40 }, 90).data);
  await writeFile(join(dataDir, 'c.txt'), 'blue sky');
});

afterAll(async () => {
  models?.dispose();
  await gpu?.destroy();
  if (root) await rm(root, { recursive: true, force: true });
});

async function options(outDir: string, extra: Partial<PrecomputeOptions> = {}): Promise<PrecomputeOptions> {
  return {
    gpu,
    vae: models.vae,
    tokenizers: models.tokenizers,
    textEncoders: models.textEncoders,
    modelId: models.modelId,
    items: await listCaptionedImages(dataDir),
    outDir,
    resolution: RES,
    randomFlip: true,
    seed: SEED,
    copiesPerImage: 2,
    batchSize: 2,
    shardSize: 2,
    ...extra,
  };
}

describe('precompute → LatentCache', () => {
  let full: string;

  it('the cache holds what encoding each example directly gives', async () => {
    full = join(root, 'full');
    const t0 = performance.now();
    const r = await precomputeDataset(await options(full));
    console.log(`[precompute] 6 examples at ${RES}², batch 2: ${(performance.now() - t0).toFixed(0)} ms`);
    expect([r.count, r.shardsWritten, r.shardsSkipped]).toEqual([6, 3, 0]);

    const cache = await LatentCache.open(full, { resolution: RES, modelId: models.modelId, shapes: { promptEmbeds: [77, 32] } });
    expect(cache.length).toBe(6);
    expect(cache.shapes).toEqual({ latents: [4, RES / 8, RES / 8], promptEmbeds: [77, 32], pooledPromptEmbeds: [32], timeIds: [6] });
    const items = await listCaptionedImages(dataDir);
    const nLat = 4 * (RES / 8) ** 2;
    for (let e = 0; e < 6; e++) {
      const got = await cache.get(e);
      const item = items[Math.floor(e / 2)];
      expect(got.info.id).toBe(item.id);
      expect(got.info.copy).toBe(e % 2);
      // The transform with example e's generator; the cache's time ids are its bookkeeping.
      const p = prepareImage(await readImageFile(item.imagePath), { resolution: RES, randomFlip: true }, new SeededRng(deriveSeed(SEED, e)));
      expect(Array.from(got.timeIds)).toEqual(p.timeIds);
      expect(got.info.cropTopLeft).toEqual(p.cropTopLeft);
      // Latents: scaling_factor · (mean + std · ε), from the encoder's distribution read back to the host.
      const x = Tensor.fromArray(gpu, p.pixels, [1, 3, RES, RES]);
      const dist = await models.vae.encode(x);
      const [mean, std] = [await dist.mean.toArray(), await dist.std.toArray()];
      dist.dispose();
      x.release();
      const eps = latentNoise(SEED, e, nLat);
      const want = Float64Array.from(mean, (m, i) => 0.13025 * (m + std[i] * eps[i]));
      expectClose(got.latents, want, { atol: 1e-5, rtol: 1e-4 }, `latents of example ${e}`);
      // Text: encodePrompt of the caption alone.
      const text = encodePrompt(models.tokenizers, models.textEncoders, item.caption);
      expectClose(got.promptEmbeds, await text.promptEmbeds.toArray(), { atol: 1e-5, rtol: 1e-4 }, `prompt_embeds of example ${e}`);
      expectClose(got.pooledPromptEmbeds, await text.pooledPromptEmbeds.toArray(), { atol: 1e-5, rtol: 1e-4 }, `pooled of example ${e}`);
      text.release();
    }
    // The two copies of an image differ (own noise; crop / flip where the draws differ).
    const [c0, c1] = [await cache.get(0), await cache.get(1)];
    expect(c0.latents.some((v, i) => v !== c1.latents[i])).toBe(true);
    // batch() stacks.
    const b = await cache.batch([5, 0]);
    expect(b.latents.shape).toEqual([2, 4, RES / 8, RES / 8]);
    expect(Array.from(b.latents.data.subarray(nLat))).toEqual(Array.from(c0.latents));
    expect(b.info.map((i) => i.id)).toEqual(['c', 'a']);
    // The trainer's TrainingExample view of the same rows.
    const ex = await new LatentCacheSource(cache).get(1);
    expect([ex.latentShape, ex.promptShape]).toEqual([[4, RES / 8, RES / 8], [77, 32]]);
    expect([ex.latents, ex.pooled, ex.timeIds]).toEqual([c1.latents, c1.pooledPromptEmbeds, Array.from(c1.timeIds)]);
    await cache.close();
  });

  it('an interrupted run resumes: finished shards are kept, not recomputed; the result equals an uninterrupted run', async () => {
    const dir = join(root, 'resume');
    await expect(
      precomputeDataset(
        await options(dir, {
          onProgress: (p) => {
            if (p.shardsWritten === 1) throw new Error('interrupted');
          },
        }),
      ),
    ).rejects.toThrow('interrupted');
    await expect(LatentCache.open(dir)).rejects.toThrow(LatentCacheError);
    await expect(LatentCache.open(dir)).rejects.toThrow(/unfinished/);
    const first = await stat(join(dir, 'shard-00000.safetensors'));
    const seen: number[] = [];
    const r = await precomputeDataset(await options(dir, { onProgress: (p) => seen.push(p.done) }));
    expect([r.shardsSkipped, r.shardsWritten]).toEqual([1, 2]);
    expect(seen[0]).toBe(2); // the kept shard counts as done at once
    const again = await stat(join(dir, 'shard-00000.safetensors'));
    expect([again.mtimeMs, again.ino]).toEqual([first.mtimeMs, first.ino]);
    for (let s = 0; s < 3; s++) {
      const f = `shard-0000${s}.safetensors`;
      expect(Buffer.compare(await readFile(join(dir, f)), await readFile(join(full, f))), f).toBe(0);
    }
    // A complete cache with the same settings: nothing to do.
    const r2 = await precomputeDataset(await options(dir));
    expect([r2.shardsSkipped, r2.shardsWritten]).toEqual([3, 0]);
  });

  it('mismatched settings: the trainer\'s open and a second precompute are refused, naming each difference', async () => {
    await expect(LatentCache.open(full, { resolution: 64, centerCrop: true })).rejects.toThrow(CacheMismatchError);
    await expect(LatentCache.open(full, { resolution: 64, centerCrop: true, modelId: models.modelId })).rejects.toThrow(
      `resolution is 32 in the cache, 64 asked; centerCrop is false in the cache, true asked`,
    );
    await expect(LatentCache.open(full, { modelId: 'other' })).rejects.toThrow(/modelId is ".*" in the cache, "other" asked/);
    await expect(LatentCache.open(full, { shapes: { pooledPromptEmbeds: [1280] } })).rejects.toThrow('shapes.pooledPromptEmbeds is [32] in the cache, [1280] asked');
    await expect(precomputeDataset(await options(full, { centerCrop: true }))).rejects.toThrow(/centerCrop is false in the cache, true asked \(/);
    const fewer = (await listCaptionedImages(dataDir)).slice(1);
    await expect(precomputeDataset({ ...(await options(full)), items: fewer })).rejects.toThrow(/: datasetHash is "[0-9a-f]{16}" in the cache, "[0-9a-f]{16}" asked \(/);
    const dir = join(root, 'over');
    await precomputeDataset(await options(dir, { copiesPerImage: 1, shardSize: 8 }));
    const r = await precomputeDataset(await options(dir, { copiesPerImage: 1, shardSize: 8, latentSample: 'mode', overwrite: true }));
    expect(r.shardsWritten).toBe(1);
    expect((await LatentCache.open(dir, { latentSample: 'mode' })).length).toBe(3);
  });
});
