// The precomputed-dataset cache (written by precomputeDataset, read by the trainer). Node only. A folder:
//   index.json              {format, version, complete, config, count, shardSize, shards: [{file, start, count}],
//                            examples: [{id, caption, copy, originalSize, cropTopLeft, flipped}]}  (atomic writes)
//   shard-00000.safetensors F32 latents [n, C, h, w] (scaled: the UNet's input space), prompt_embeds [n, 77, D1 + D2],
//                           pooled_prompt_embeds [n, P], time_ids [n, 6]; __metadata__ holds the config hash, its
//                           first example and count, and its examples (JSON), so a shard is complete or absent.
// Example e of the cache is copy (e mod copiesPerImage) of dataset item ⌊e / copiesPerImage⌋. Unconditional (zero)
// embeddings are not cached: the trainer makes them.
import { type ByteSource, fileSource } from '../../io/byte_source.js';
import { type SafetensorsHeader, readHeader } from '../../io/safetensors.js';
import type { ExampleSource, TrainingExample } from '../examples.js';

export const CACHE_FORMAT = 'tcd-latent-cache';
export const CACHE_VERSION = 1;
export const CACHE_TENSORS = ['latents', 'prompt_embeds', 'pooled_prompt_embeds', 'time_ids'] as const;

export class LatentCacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LatentCacheError';
  }
}

/** Raised when a cache was made with settings other than the ones asked for; lists every difference. */
export class CacheMismatchError extends LatentCacheError {
  constructor(
    dir: string,
    readonly differences: { key: string; cache: unknown; asked: unknown }[],
  ) {
    super(
      `latent cache ${dir} was made with other settings: ` +
        differences.map((d) => `${d.key} is ${JSON.stringify(d.cache)} in the cache, ${JSON.stringify(d.asked)} asked`).join('; ') +
        ' (precompute again into another folder, or pass the cache\'s settings)',
    );
    this.name = 'CacheMismatchError';
  }
}

/** Everything that decides a cache's contents. */
export interface CacheConfig {
  /** Identity of the model (modelFingerprint of the folder, or a caller's id). */
  modelId: string;
  resolution: number;
  centerCrop: boolean;
  randomFlip: boolean;
  seed: number;
  copiesPerImage: number;
  /** latent_dist.sample() (diffusers' training scripts) or its mean. */
  latentSample: 'sample' | 'mode';
  scalingFactor: number;
  /** The VAE's per-channel latent statistics, when its config has them (SDXL: none). */
  latentsMean?: number[];
  latentsStd?: number[];
  /** Background colour images with alpha were composited over (null: alpha dropped). */
  background: [number, number, number] | null;
  /** Hash of the dataset's ids and captions. */
  datasetHash: string;
  /** Per-example shapes. */
  shapes: { latents: number[]; promptEmbeds: number[]; pooledPromptEmbeds: number[]; timeIds: number[] };
}

export interface CachedExampleInfo {
  id: string;
  caption: string;
  copy: number;
  originalSize: [number, number];
  cropTopLeft: [number, number];
  flipped: boolean;
}

export interface CacheIndex {
  format: typeof CACHE_FORMAT;
  version: number;
  complete: boolean;
  config: CacheConfig;
  configHash: string;
  count: number;
  shardSize: number;
  shards: { file: string; start: number; count: number }[];
  examples?: CachedExampleInfo[];
}

export interface CachedExample {
  latents: Float32Array;
  promptEmbeds: Float32Array;
  pooledPromptEmbeds: Float32Array;
  timeIds: Float32Array;
  info: CachedExampleInfo;
}

export interface CachedBatch {
  /** [B, C, h, w]. */
  latents: { data: Float32Array; shape: number[] };
  /** [B, 77, D]. */
  promptEmbeds: { data: Float32Array; shape: number[] };
  /** [B, P]. */
  pooledPromptEmbeds: { data: Float32Array; shape: number[] };
  /** [B, 6]. */
  timeIds: { data: Float32Array; shape: number[] };
  info: CachedExampleInfo[];
}

/** What the trainer asks of a cache; only the keys given are compared. */
export type CacheExpectation = Partial<Pick<CacheConfig, 'modelId' | 'resolution' | 'centerCrop' | 'randomFlip' | 'latentSample' | 'scalingFactor' | 'seed' | 'copiesPerImage'>> & {
  /** Per-example shapes the models need, e.g. { promptEmbeds: [77, 2048], pooledPromptEmbeds: [1280], latents: [4, 128, 128] }. */
  shapes?: Partial<CacheConfig['shapes']>;
};

/** 64-bit FNV-1a of a string (two 32-bit lanes), as 16 hex digits: a fingerprint, not a cryptographic hash. */
export function hashString(s: string): string {
  let a = 0x811c9dc5;
  let b = 0xcbf29ce4;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c ^ (a >>> 7), 0x01000193) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}

/** Stable JSON (sorted keys) for hashing configs. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v as object)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

export function configHash(config: CacheConfig): string {
  return hashString(stableJson(config));
}

export function shardFileName(i: number): string {
  return `shard-${String(i).padStart(5, '0')}.safetensors`;
}

/** Differences between a cache config and an expectation. */
export function compareConfig(config: CacheConfig, expect: CacheExpectation): { key: string; cache: unknown; asked: unknown }[] {
  const diffs: { key: string; cache: unknown; asked: unknown }[] = [];
  for (const [k, v] of Object.entries(expect)) {
    if (v === undefined || k === 'shapes') continue;
    const have = (config as unknown as Record<string, unknown>)[k];
    if (stableJson(have) !== stableJson(v)) diffs.push({ key: k, cache: have, asked: v });
  }
  for (const [k, v] of Object.entries(expect.shapes ?? {}))
    if (v !== undefined && stableJson(config.shapes[k as keyof CacheConfig['shapes']]) !== stableJson(v))
      diffs.push({ key: `shapes.${k}`, cache: config.shapes[k as keyof CacheConfig['shapes']], asked: v });
  return diffs;
}

/** Reads and checks index.json (undefined when absent). */
export async function readCacheIndex(dir: string): Promise<CacheIndex | undefined> {
  const { readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const path = join(dir, 'index.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let index: CacheIndex;
  try {
    index = JSON.parse(text) as CacheIndex;
  } catch (e) {
    throw new LatentCacheError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (index?.format !== CACHE_FORMAT) throw new LatentCacheError(`${path}: not a latent cache index (format ${JSON.stringify(index?.format)}, expected "${CACHE_FORMAT}")`);
  if (index.version !== CACHE_VERSION) throw new LatentCacheError(`${path}: cache version ${index.version}; this build reads version ${CACHE_VERSION}`);
  return index;
}

const OPEN_SHARDS = 8;

/** A finished cache, read example by example (only the rows asked for are read from disk). */
export class LatentCache {
  private readonly open = new Map<number, Promise<{ src: ByteSource; header: SafetensorsHeader }>>();

  private constructor(
    readonly dir: string,
    readonly index: CacheIndex,
  ) {}

  /**
   * Opens a complete cache; with `expect`, throws CacheMismatchError when the cache was made with other settings
   * (model, resolution, crop mode, scaling factor, shapes …).
   */
  static async open(dir: string, expect: CacheExpectation = {}): Promise<LatentCache> {
    const index = await readCacheIndex(dir);
    if (!index) throw new LatentCacheError(`latent cache ${dir}: no index.json (run precompute into this folder first)`);
    if (!index.complete)
      throw new LatentCacheError(`latent cache ${dir}: unfinished (${index.shards.length} shards planned; run precompute again with the same settings to resume)`);
    const diffs = compareConfig(index.config, expect);
    if (diffs.length) throw new CacheMismatchError(dir, diffs);
    return new LatentCache(dir, index);
  }

  get config(): CacheConfig {
    return this.index.config;
  }

  get length(): number {
    return this.index.count;
  }

  get shapes(): CacheConfig['shapes'] {
    return this.index.config.shapes;
  }

  async get(i: number): Promise<CachedExample> {
    const b = await this.batch([i]);
    return {
      latents: b.latents.data,
      promptEmbeds: b.promptEmbeds.data,
      pooledPromptEmbeds: b.pooledPromptEmbeds.data,
      timeIds: b.timeIds.data,
      info: b.info[0],
    };
  }

  /** Example i as the distiller's TrainingExample (src/trainer/examples.ts). */
  async example(i: number): Promise<TrainingExample> {
    const e = await this.get(i);
    const s = this.shapes;
    return {
      latents: e.latents,
      latentShape: [s.latents[0], s.latents[1], s.latents[2]],
      promptEmbeds: e.promptEmbeds,
      promptShape: [s.promptEmbeds[0], s.promptEmbeds[1]],
      pooled: e.pooledPromptEmbeds,
      timeIds: Array.from(e.timeIds),
    };
  }

  /** Examples `indices` stacked along a new first axis. */
  async batch(indices: readonly number[]): Promise<CachedBatch> {
    const s = this.shapes;
    const per = {
      latents: s.latents.reduce((p, d) => p * d, 1),
      prompt_embeds: s.promptEmbeds.reduce((p, d) => p * d, 1),
      pooled_prompt_embeds: s.pooledPromptEmbeds.reduce((p, d) => p * d, 1),
      time_ids: s.timeIds.reduce((p, d) => p * d, 1),
    };
    const B = indices.length;
    const out = {
      latents: new Float32Array(B * per.latents),
      prompt_embeds: new Float32Array(B * per.prompt_embeds),
      pooled_prompt_embeds: new Float32Array(B * per.pooled_prompt_embeds),
      time_ids: new Float32Array(B * per.time_ids),
    };
    const info: CachedExampleInfo[] = [];
    for (const [b, i] of indices.entries()) {
      if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new RangeError(`latent cache ${this.dir}: example ${i} of ${this.length}`);
      const shardIdx = Math.floor(i / this.index.shardSize);
      const shard = this.index.shards[shardIdx];
      const row = i - shard.start;
      const { src, header } = await this.shard(shardIdx);
      for (const name of CACHE_TENSORS) {
        const e = header.tensors.get(name);
        const n = per[name];
        if (!e || e.dtype !== 'F32' || e.shape[0] !== shard.count || e.end - e.begin !== shard.count * n * 4)
          throw new LatentCacheError(`${src.name}: tensor '${name}' is ${e ? `${e.dtype} [${e.shape.join(', ')}]` : 'missing'}; expected F32 [${shard.count}, …] of ${n} values each`);
        const bytes = await src.read(header.dataStart + e.begin + row * n * 4, n * 4);
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const dst = out[name];
        for (let k = 0; k < n; k++) dst[b * n + k] = view.getFloat32(4 * k, true);
      }
      const ex = this.index.examples?.[i];
      if (!ex) throw new LatentCacheError(`latent cache ${this.dir}: index.json has no entry for example ${i}`);
      info.push(ex);
    }
    return {
      latents: { data: out.latents, shape: [B, ...s.latents] },
      promptEmbeds: { data: out.prompt_embeds, shape: [B, ...s.promptEmbeds] },
      pooledPromptEmbeds: { data: out.pooled_prompt_embeds, shape: [B, ...s.pooledPromptEmbeds] },
      timeIds: { data: out.time_ids, shape: [B, ...s.timeIds] },
      info,
    };
  }

  /** Closes the open shard files. */
  async close(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    for (const p of all) await (await p).src.close();
  }

  private shard(i: number): Promise<{ src: ByteSource; header: SafetensorsHeader }> {
    let p = this.open.get(i);
    if (p) {
      // Most recently used last.
      this.open.delete(i);
      this.open.set(i, p);
      return p;
    }
    if (this.open.size >= OPEN_SHARDS) {
      const [oldest, op] = this.open.entries().next().value as [number, Promise<{ src: ByteSource }>];
      this.open.delete(oldest);
      void op.then((o) => o.src.close()).catch(() => {});
    }
    p = (async () => {
      const { join } = await import('node:path');
      const path = join(this.dir, this.index.shards[i].file);
      const src = await fileSource(path).catch((e: NodeJS.ErrnoException) => {
        throw new LatentCacheError(e.code === 'ENOENT' ? `latent cache ${this.dir}: shard ${path} is missing` : `${path}: ${e.message}`);
      });
      return { src, header: await readHeader(src) };
    })();
    this.open.set(i, p);
    p.catch(() => this.open.delete(i));
    return p;
  }
}

/**
 * A cache as the distiller's ExampleSource. Crops, flips and VAE noise were drawn at precompute time (one set per
 * copy), so the Rng get() is handed goes unused.
 */
export class LatentCacheSource implements ExampleSource {
  constructor(readonly cache: LatentCache) {}

  get length(): number {
    return this.cache.length;
  }

  get(i: number): Promise<TrainingExample> {
    return this.cache.example(i);
  }

  dispose(): void {
    void this.cache.close();
  }
}
