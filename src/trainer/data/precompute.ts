// Precompute: encode a captioned image set once (VAE latents and both text encoders) into a LatentCache folder, so a
// training run never runs the VAE encoder or CLIP. Node only (reads image files, writes the cache).
//   latents       = scale(vae.encode(pixels).latent_dist.sample(ε))   — diffusers' LCM/TCD SDXL script: sample(), VAE
//                   in float32 (this library's VAE is float32); scale = ·scaling_factor (or the VAE's latent stats)
//   prompt_embeds = concat(text_encoder(ids).hidden_states[−2], text_encoder_2(ids).hidden_states[−2])   [77, D1 + D2]
//   pooled        = text_encoder_2's text_embeds (projected)                                           [P]
//   time_ids      = original_size + crop_top_left + (res, res)
// Determinism: example e (copy c of item i, e = i·copies + c) draws its crop and flip from SeededRng(deriveSeed(seed,
// e)) and its VAE noise ε from the counter-based normal generator keyed (seed, stream e), so every example is the same
// whatever the batch size, the shard size or where a run was interrupted.
// Resume: shards are written atomically and index.json first records the plan; a second call with the same settings
// keeps every shard already written (checked by its config hash and range) and computes only the rest.
import type { Gpu } from '../../../runtime/device.js';
import { randomKey } from '../../kernels/random.js';
import { type ModelSource, findWeightFile, openSourceCheckpoint, sourcePath } from '../../io/model_source.js';
import { fileSource } from '../../io/byte_source.js';
import { readHeader, writeFileAtomic, writeSafetensors } from '../../io/safetensors.js';
import { checkLayout, readTokenizerFiles, TOKENIZER_DIRS } from '../../pipeline/model_folder.js';
import { normalRef } from '../../reference/random.js';
import { Tensor } from '../../tensor.js';
import { ClipTextModel } from '../../text/clip_text_model.js';
import type { ClipTextConfigJson } from '../../text/clip_config.js';
import { ClipTokenizer } from '../../text/clip_tokenizer.js';
import { encodePrompt } from '../../text/encode_prompt.js';
import { AutoencoderKL } from '../../vae/autoencoder_kl.js';
import type { VaeConfigJson } from '../../vae/config.js';
import type { RgbImage } from '../../vae/image.js';
import type { CaptionedImage } from './captioned_images.js';
import { readImageFile } from './image_decode.js';
import {
  CACHE_FORMAT,
  CACHE_VERSION,
  type CacheConfig,
  type CacheIndex,
  type CachedExampleInfo,
  CacheMismatchError,
  LatentCacheError,
  compareConfig,
  configHash,
  hashString,
  readCacheIndex,
  shardFileName,
  stableJson,
} from './latent_cache.js';
import { SeededRng, deriveSeed } from './rng.js';
import { prepareImage } from './transforms.js';

/** The models precompute needs: the VAE (its encoder) and both tokenizer / text encoder pairs. */
export interface PrecomputeModels {
  vae: AutoencoderKL;
  tokenizers: readonly [ClipTokenizer, ClipTokenizer];
  textEncoders: readonly [ClipTextModel, ClipTextModel];
  /** Identity of the weights, recorded in the cache (modelFingerprint). */
  modelId: string;
  dispose(): void;
}

export interface PrecomputeOptions {
  gpu: Gpu;
  vae: AutoencoderKL;
  tokenizers: readonly [ClipTokenizer, ClipTokenizer];
  textEncoders: readonly [ClipTextModel, ClipTextModel];
  /** Identity of the model, recorded and compared on resume / by the trainer. */
  modelId: string;
  items: readonly CaptionedImage[];
  outDir: string;
  resolution: number;
  centerCrop?: boolean;
  randomFlip?: boolean;
  seed?: number;
  /** Augmented copies per image (each its own crop, flip and VAE noise); default 1. */
  copiesPerImage?: number;
  /** Examples per GPU pass (VAE encode and text encoders); default 1. */
  batchSize?: number;
  /** Examples per shard file; default 64. */
  shardSize?: number;
  /** 'sample' (default, as diffusers' script) or 'mode' (the distribution's mean). */
  latentSample?: 'sample' | 'mode';
  /** Colour under transparent pixels (default white; null drops alpha like PIL's convert("RGB")). */
  background?: [number, number, number] | null;
  /** Replace an existing cache made with other settings instead of failing. */
  overwrite?: boolean;
  onProgress?: (p: PrecomputeProgress) => void;
}

export interface PrecomputeProgress {
  /** Examples done (including those of shards kept from an earlier run). */
  done: number;
  total: number;
  /** Shards kept from an earlier run, and written by this call so far. */
  shardsSkipped: number;
  shardsWritten: number;
  shards: number;
}

export interface PrecomputeResult {
  dir: string;
  count: number;
  shardsWritten: number;
  shardsSkipped: number;
  config: CacheConfig;
}

/** The VAE noise ε of example `index` (standard normal, [n] values; counter-based: the same on every run). */
export function latentNoise(seed: number, index: number, n: number): Float32Array {
  return Float32Array.from(normalRef(n, randomKey({ seed, stream: index })));
}

/**
 * A fingerprint of an SDXL folder's VAE and text side: configs, tokenizers, and each weight file's name, size and
 * three 64 KiB samples of its bytes (start, middle, end: cheap, and different for any two trainings of one shape).
 */
export async function modelFingerprint(source: ModelSource, opts: { variant?: 'fp16' | 'default' } = {}): Promise<string> {
  const layout = await checkLayout(source, { weights: false });
  const parts: string[] = [stableJson({ vae: layout.configs.vae, te1: layout.configs.text_encoder, te2: layout.configs.text_encoder_2 })];
  for (const dir of TOKENIZER_DIRS) {
    const t = await readTokenizerFiles(source, dir);
    parts.push(hashString(t.vocab), hashString(t.merges), t.specialTokensMap ?? '');
  }
  for (const c of ['vae', 'text_encoder', 'text_encoder_2']) {
    const w = await findWeightFile(source, c, opts.variant);
    if (!w) throw new Error(`precompute: no ${c} weights in ${sourcePath(source, c)}/`);
    const src = await source.open(`${c}/${w.file}`);
    try {
      const chunk = Math.min(65536, src.size);
      const samples = await Promise.all([0, Math.floor((src.size - chunk) / 2), src.size - chunk].map((at) => src.read(at, chunk)));
      parts.push(`${c}/${w.file}:${src.size}:${samples.map((b) => hashString(String.fromCharCode(...b.subarray(0, 32768)) + String.fromCharCode(...b.subarray(32768)))).join(',')}`);
    } finally {
      await src.close();
    }
  }
  return hashString(parts.join('\n'));
}

/** Loads what precompute needs from an SDXL folder source: the VAE encoder, both tokenizers and text encoders. */
export async function loadPrecomputeModels(gpu: Gpu, source: ModelSource, opts: { variant?: 'fp16' | 'default' } = {}): Promise<PrecomputeModels> {
  const layout = await checkLayout(source, { weights: false });
  const tokenizer = async (dir: string) => new ClipTokenizer(await readTokenizerFiles(source, dir), { name: sourcePath(source, dir) });
  const tokenizers = [await tokenizer(TOKENIZER_DIRS[0]), await tokenizer(TOKENIZER_DIRS[1])] as const;
  const owned: { dispose(): void }[] = [];
  try {
    const encoders: ClipTextModel[] = [];
    for (const [i, c] of (['text_encoder', 'text_encoder_2'] as const).entries()) {
      const ckpt = await openSourceCheckpoint(source, c, { component: c, variant: opts.variant });
      try {
        encoders.push(await ClipTextModel.load(gpu, layout.configs[c] as ClipTextConfigJson, ckpt, { withProjection: i === 1 }));
        owned.push(encoders[i]);
      } finally {
        await ckpt.close();
      }
    }
    const vae = new AutoencoderKL(gpu, layout.configs.vae as VaeConfigJson, { parts: 'encoder' });
    owned.push(vae);
    const ckpt = await openSourceCheckpoint(source, 'vae', { component: 'vae', variant: opts.variant });
    try {
      await vae.loadWeights(ckpt);
    } finally {
      await ckpt.close();
    }
    return {
      vae,
      tokenizers,
      textEncoders: encoders as [ClipTextModel, ClipTextModel],
      modelId: await modelFingerprint(source, opts),
      dispose: () => owned.forEach((m) => m.dispose()),
    };
  } catch (e) {
    owned.forEach((m) => m.dispose());
    throw e;
  }
}

function checkInt(v: number, what: string, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`precompute: ${what} must be an integer >= ${min}, got ${v}`);
  return v;
}

/** Runs one batch of examples through the VAE and the text encoders: host arrays in cache layout. */
async function encodeBatch(
  o: PrecomputeOptions,
  config: CacheConfig,
  pixels: Float32Array[],
  captions: string[],
  indices: number[],
): Promise<{ latents: Float32Array; promptEmbeds: Float32Array; pooled: Float32Array }> {
  const { gpu, vae, resolution: res } = o;
  const B = pixels.length;
  const image = new Float32Array(B * 3 * res * res);
  pixels.forEach((p, b) => image.set(p, b * p.length));
  const x = Tensor.fromArray(gpu, image, [B, 3, res, res], { label: 'precompute.pixels' });
  const n = config.shapes.latents.reduce((p, d) => p * d, 1);
  let latents: Float32Array;
  try {
    const dist = await vae.encode(x);
    try {
      let z: Tensor;
      if (config.latentSample === 'mode') z = dist.mode();
      else {
        const eps = new Float32Array(B * n);
        indices.forEach((e, b) => eps.set(latentNoise(config.seed, e, n), b * n));
        z = dist.sample(eps);
      }
      const scaled = vae.scaleLatents(z);
      z.release();
      latents = await scaled.toArray();
      scaled.release();
    } finally {
      dist.dispose();
    }
  } finally {
    x.release();
  }
  const text = encodePrompt(o.tokenizers, o.textEncoders, captions);
  try {
    return { latents, promptEmbeds: await text.promptEmbeds.toArray(), pooled: await text.pooledPromptEmbeds.toArray() };
  } finally {
    text.release();
  }
}

/**
 * Encodes `items` into a cache folder (see latent_cache.ts), resuming an unfinished one made with the same settings.
 * Throws CacheMismatchError when outDir holds a cache made with other settings (unless overwrite).
 */
export async function precomputeDataset(o: PrecomputeOptions): Promise<PrecomputeResult> {
  const { mkdir, unlink } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const res = checkInt(o.resolution, 'resolution', 1);
  const { vae } = o;
  if (vae.parts === 'decoder') throw new Error('precompute: the VAE was built without its encoder (parts: \'decoder\')');
  if (res % vae.config.downscale) throw new RangeError(`precompute: resolution ${res} must be a multiple of the VAE's ${vae.config.downscale} pixels per latent`);
  const copies = checkInt(o.copiesPerImage ?? 1, 'copiesPerImage', 1);
  const batchSize = checkInt(o.batchSize ?? 1, 'batchSize', 1);
  const shardSize = checkInt(o.shardSize ?? 64, 'shardSize', 1);
  const seed = checkInt(o.seed ?? 0, 'seed', 0);
  if (!o.items.length) throw new Error('precompute: no items (listCaptionedImages gives them)');
  const [te1, te2] = o.textEncoders;
  const tokens = te1.config.maxPositions;
  const latentSide = res / vae.config.downscale;
  const config: CacheConfig = {
    modelId: o.modelId,
    resolution: res,
    centerCrop: !!o.centerCrop,
    randomFlip: !!o.randomFlip,
    seed,
    copiesPerImage: copies,
    latentSample: o.latentSample ?? 'sample',
    scalingFactor: vae.config.scalingFactor,
    latentsMean: vae.config.latentsMean,
    latentsStd: vae.config.latentsStd,
    background: o.background === undefined ? [255, 255, 255] : o.background,
    datasetHash: hashString(stableJson(o.items.map((i) => [i.id, i.caption]))),
    shapes: {
      latents: [vae.config.latentChannels, latentSide, latentSide],
      promptEmbeds: [tokens, te1.config.hiddenSize + te2.config.hiddenSize],
      pooledPromptEmbeds: [te2.config.projectionDim],
      timeIds: [6],
    },
  };
  const hash = configHash(config);
  const count = o.items.length * copies;
  const shards = Array.from({ length: Math.ceil(count / shardSize) }, (_, s) => ({
    file: shardFileName(s),
    start: s * shardSize,
    count: Math.min(shardSize, count - s * shardSize),
  }));
  const index: CacheIndex = { format: CACHE_FORMAT, version: CACHE_VERSION, complete: false, config, configHash: hash, count, shardSize, shards };

  await mkdir(o.outDir, { recursive: true });
  const indexPath = join(o.outDir, 'index.json');
  const old = await readCacheIndex(o.outDir);
  if (old && (old.configHash !== hash || old.shardSize !== shardSize) && !o.overwrite) {
    // Every key of the new config (dataset hash, background, latent statistics too), against the old one.
    const diffs = compareConfig(old.config, config as unknown as Parameters<typeof compareConfig>[1]);
    if (old.shardSize !== shardSize) diffs.push({ key: 'shardSize', cache: old.shardSize, asked: shardSize });
    throw new CacheMismatchError(o.outDir, diffs.length ? diffs : [{ key: 'configHash', cache: old.configHash, asked: hash }]);
  }
  const resuming = old !== undefined && old.configHash === hash && old.shardSize === shardSize;
  if (!resuming && old) for (const s of old.shards) await unlink(join(o.outDir, s.file)).catch(() => {});
  await writeFileAtomic(indexPath, new TextEncoder().encode(JSON.stringify(index, null, 1)));

  const examples: CachedExampleInfo[] = new Array(count);
  let done = 0;
  let shardsSkipped = 0;
  let shardsWritten = 0;
  const progress = () => o.onProgress?.({ done, total: count, shardsSkipped, shardsWritten, shards: shards.length });
  let decoded: { item: number; img: RgbImage } | undefined;

  for (const shard of shards) {
    const path = join(o.outDir, shard.file);
    const kept = resuming ? await readShardExamples(path, hash, shard) : undefined;
    if (kept) {
      kept.forEach((ex, k) => (examples[shard.start + k] = ex));
      shardsSkipped++;
      done += shard.count;
      progress();
      continue;
    }
    const lat = new Float32Array(shard.count * config.shapes.latents.reduce((p, d) => p * d, 1));
    const pe = new Float32Array(shard.count * config.shapes.promptEmbeds.reduce((p, d) => p * d, 1));
    const pooled = new Float32Array(shard.count * config.shapes.pooledPromptEmbeds[0]);
    const timeIds = new Float32Array(shard.count * 6);
    for (let b0 = 0; b0 < shard.count; b0 += batchSize) {
      const rows = Math.min(batchSize, shard.count - b0);
      const pixels: Float32Array[] = [];
      const captions: string[] = [];
      const indices: number[] = [];
      for (let r = 0; r < rows; r++) {
        const e = shard.start + b0 + r;
        const itemIdx = Math.floor(e / copies);
        const item = o.items[itemIdx];
        if (decoded?.item !== itemIdx) decoded = { item: itemIdx, img: await readImageFile(item.imagePath, { background: config.background }) };
        const p = prepareImage(decoded.img, { resolution: res, centerCrop: config.centerCrop, randomFlip: config.randomFlip }, new SeededRng(deriveSeed(seed, e)));
        pixels.push(p.pixels);
        captions.push(item.caption);
        indices.push(e);
        timeIds.set(p.timeIds, (b0 + r) * 6);
        examples[e] = { id: item.id, caption: item.caption, copy: e % copies, originalSize: p.originalSize, cropTopLeft: p.cropTopLeft, flipped: p.flipped };
      }
      const enc = await encodeBatch(o, config, pixels, captions, indices);
      lat.set(enc.latents, b0 * (lat.length / shard.count));
      pe.set(enc.promptEmbeds, b0 * (pe.length / shard.count));
      pooled.set(enc.pooled, b0 * (pooled.length / shard.count));
      done += rows;
      progress();
    }
    const s = config.shapes;
    await writeSafetensors(
      path,
      {
        latents: { dtype: 'F32', shape: [shard.count, ...s.latents], data: lat },
        prompt_embeds: { dtype: 'F32', shape: [shard.count, ...s.promptEmbeds], data: pe },
        pooled_prompt_embeds: { dtype: 'F32', shape: [shard.count, ...s.pooledPromptEmbeds], data: pooled },
        time_ids: { dtype: 'F32', shape: [shard.count, 6], data: timeIds },
      },
      { config_hash: hash, start: String(shard.start), count: String(shard.count), examples: JSON.stringify(examples.slice(shard.start, shard.start + shard.count)) },
    );
    shardsWritten++;
    progress();
  }
  index.complete = true;
  index.examples = examples;
  await writeFileAtomic(indexPath, new TextEncoder().encode(JSON.stringify(index, null, 1)));
  return { dir: o.outDir, count, shardsWritten, shardsSkipped, config };
}

/** A finished shard's examples, or undefined when it is absent or not this config's (it is then recomputed). */
async function readShardExamples(path: string, hash: string, shard: { start: number; count: number }): Promise<CachedExampleInfo[] | undefined> {
  const src = await fileSource(path).catch(() => undefined);
  if (!src) return undefined;
  try {
    const { metadata } = await readHeader(src);
    if (metadata.config_hash !== hash || Number(metadata.start) !== shard.start || Number(metadata.count) !== shard.count) return undefined;
    const ex = JSON.parse(metadata.examples ?? '[]') as CachedExampleInfo[];
    return ex.length === shard.count ? ex : undefined;
  } catch (e) {
    if (e instanceof LatentCacheError) throw e;
    return undefined; // a malformed shard (cannot happen with atomic writes, but a user may copy one in): recompute
  } finally {
    await src.close();
  }
}
