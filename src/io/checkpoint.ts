// Weight sources for the model loaders: one interface over a diffusers component folder (single file, .fp16 variant
// or sharded index), a plain safetensors file and an original SGM single-file checkpoint (keys mapped to diffusers
// names, spec sdxl.md §4). Headers are read when the checkpoint is opened; tensors are read one at a time.
import { bytesSource, fileSource, type ByteSource } from './byte_source.js';
import { readHeader, readTensorF16Bits, readTensorF32, type SafetensorsHeader, type TensorEntry } from './safetensors.js';
import {
  SGM_PREFIX,
  openClipToDiffusers,
  renameLegacyVaeAttention,
  sgmUnetToDiffusers,
  sgmVaeToDiffusers,
  type UnetLayout,
} from './sgm_keys.js';

export type Component = 'unet' | 'vae' | 'text_encoder' | 'text_encoder_2';
export const COMPONENTS: readonly Component[] = ['unet', 'vae', 'text_encoder', 'text_encoder_2'];

export type CheckpointFormat = 'diffusers' | 'diffusers-sharded' | 'safetensors' | 'sgm';

export interface CheckpointTensor {
  /** diffusers name. */
  name: string;
  /** Shape as the diffusers model expects it. */
  shape: number[];
  /** On-disk dtype ('F32', 'F16', 'BF16', …). */
  dtype: string;
  /** Where it comes from: `file:key`, plus the transform (rows i/3, transpose, squeeze) when one applies. */
  source: string;
}

export interface Checkpoint {
  /** The path (or source name) that was opened. */
  readonly path: string;
  readonly format: CheckpointFormat;
  readonly component?: Component;
  /** The safetensors files in use. */
  readonly files: readonly string[];
  /** diffusers names, sorted. */
  readonly names: readonly string[];
  readonly tensors: ReadonlyMap<string, CheckpointTensor>;
  /** Source keys that map to no tensor of this component (other components of an SGM file, EMA copies, buffers). */
  readonly ignored: readonly string[];
  /** `__metadata__` of the (first) file. */
  readonly metadata: Readonly<Record<string, string>>;
  has(name: string): boolean;
  /** Tensor info; throws naming the checkpoint when absent. */
  info(name: string): CheckpointTensor;
  /** Reads one tensor as f32 (F16/BF16 converted), in the diffusers layout. */
  read(name: string): Promise<Float32Array>;
  /** Reads one tensor as f16 bits (F16 bytes as they are, no f32 copy), in the diffusers layout. */
  readF16(name: string): Promise<Uint16Array>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Which model to take from a pipeline folder or an SGM single file. Default 'unet'. */
  component?: Component;
  /**
   * 'fp16' takes `*.fp16.safetensors` (error if absent), 'default' the plain file (error if absent). Unset: the plain
   * file when present, else the fp16 variant, else a sharded index.
   */
  variant?: 'fp16' | 'default';
  /** UNet layout for SGM index arithmetic (SDXL and SD1.x: layersPerBlock 2). */
  unetLayout?: UnetLayout;
}

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

/** How a diffusers tensor is read from a file. */
interface Ref {
  src: ByteSource;
  header: SafetensorsHeader;
  key: string;
  third?: 0 | 1 | 2;
  transpose?: boolean;
}

function shapeOf(ref: Ref, squeeze?: boolean): number[] {
  const e = ref.header.tensors.get(ref.key)!;
  let s = [...e.shape];
  if (ref.third !== undefined) s[0] = s[0] / 3;
  if (ref.transpose) s = [s[1], s[0]];
  if (squeeze && s.length === 4 && s[2] === 1 && s[3] === 1) s = [s[0], s[1]];
  return s;
}

async function readRef(ref: Ref): Promise<Float32Array>;
async function readRef(ref: Ref, f16: true): Promise<Uint16Array>;
async function readRef(ref: Ref, f16 = false): Promise<Float32Array | Uint16Array> {
  const e = ref.header.tensors.get(ref.key)!;
  const reader = f16 ? readTensorF16Bits : readTensorF32;
  if (ref.third !== undefined) {
    // Packed q/k/v rows are contiguous: read just this third's byte range.
    const bytes = (e.end - e.begin) / 3;
    const part: TensorEntry = { ...e, shape: [e.shape[0] / 3, ...e.shape.slice(1)], begin: e.begin + ref.third * bytes, end: e.begin + (ref.third + 1) * bytes };
    return reader(ref.src, { ...ref.header, tensors: new Map([[ref.key, part]]) }, ref.key);
  }
  const data = await reader(ref.src, ref.header, ref.key);
  if (!ref.transpose) return data;
  const [r, c] = e.shape;
  const out = f16 ? new Uint16Array(data.length) : new Float32Array(data.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = data[i * c + j];
  return out;
}

function describeRef(ref: Ref, squeeze?: boolean): string {
  let s = `${ref.src.name}:${ref.key}`;
  if (ref.third !== undefined) s += ` rows ${ref.third}/3`;
  if (ref.transpose) s += ' transposed';
  if (squeeze) s += ' squeezed';
  return s;
}

class MappedCheckpoint implements Checkpoint {
  readonly names: readonly string[];
  readonly tensors: ReadonlyMap<string, CheckpointTensor>;
  constructor(
    readonly path: string,
    readonly format: CheckpointFormat,
    readonly component: Component | undefined,
    readonly files: readonly string[],
    private readonly refs: Map<string, Ref>,
    infos: Map<string, CheckpointTensor>,
    readonly ignored: readonly string[],
    readonly metadata: Readonly<Record<string, string>>,
    private readonly sources: ByteSource[],
  ) {
    this.names = [...infos.keys()].sort();
    this.tensors = infos;
  }
  has(name: string): boolean {
    return this.refs.has(name);
  }
  info(name: string): CheckpointTensor {
    const t = this.tensors.get(name);
    if (!t) throw new CheckpointError(`${this.path}: no tensor '${name}' (${this.names.length} tensors${nearby(name, this.names)})`);
    return t;
  }
  async read(name: string): Promise<Float32Array> {
    const ref = this.refs.get(name);
    if (!ref) this.info(name);
    return readRef(ref!);
  }
  async readF16(name: string): Promise<Uint16Array> {
    const ref = this.refs.get(name);
    if (!ref) this.info(name);
    return readRef(ref!, true);
  }
  async close(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.close()));
  }
}

/** ", e.g. 'a', 'b'" — names sharing the longest prefix with `name`, to make a missing-name error actionable. */
export function nearby(name: string, names: readonly string[], k = 3): string {
  if (names.length === 0) return '';
  const common = (a: string, b: string) => {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return i;
  };
  const best = [...names].sort((a, b) => common(name, b) - common(name, a) || (a < b ? -1 : 1)).slice(0, k);
  return `; closest: ${best.map((n) => `'${n}'`).join(', ')}`;
}

class Builder {
  refs = new Map<string, Ref>();
  infos = new Map<string, CheckpointTensor>();
  ignored: string[] = [];
  constructor(private readonly what: string) {}
  add(name: string, ref: Ref, squeeze?: boolean): void {
    const prev = this.infos.get(name);
    if (prev) throw new CheckpointError(`${this.what}: two tensors map to '${name}': ${prev.source} and ${describeRef(ref, squeeze)}`);
    const e = ref.header.tensors.get(ref.key)!;
    this.refs.set(name, ref);
    this.infos.set(name, { name, shape: shapeOf(ref, squeeze), dtype: e.dtype, source: describeRef(ref, squeeze) });
  }
}

/** True when the keys look like an original SGM/LDM single-file checkpoint. */
export function isSgmCheckpoint(keys: Iterable<string>): boolean {
  for (const k of keys)
    if (k.startsWith(SGM_PREFIX.unet) || k.startsWith(SGM_PREFIX.vae) || k.startsWith('conditioner.embedders.') || k.startsWith('cond_stage_model.'))
      return true;
  return false;
}

/** An SGM VAE saved on its own (sdxl_vae.safetensors from SGM): `encoder.down.0.block.0…` with no prefix. */
function isBareSgmVae(keys: Iterable<string>): boolean {
  for (const k of keys) if (/^(encoder\.down\.\d+\.block\.|decoder\.up\.\d+\.block\.)/.test(k)) return true;
  return false;
}

function mapSgm(b: Builder, src: ByteSource, header: SafetensorsHeader, component: Component, layout?: UnetLayout): void {
  const keys = [...header.tensors.keys()];
  const ref = (key: string, extra: Partial<Ref> = {}): Ref => ({ src, header, key, ...extra });
  if (component === 'unet') {
    for (const k of keys) {
      const name = k.startsWith(SGM_PREFIX.unet) ? sgmUnetToDiffusers(k.slice(SGM_PREFIX.unet.length), layout) : null;
      if (name === null) b.ignored.push(k);
      else b.add(name, ref(k));
    }
  } else if (component === 'vae') {
    const prefix = keys.some((k) => k.startsWith(SGM_PREFIX.vae)) ? SGM_PREFIX.vae : keys.some((k) => k.startsWith(SGM_PREFIX.vaeAlt + 'encoder.')) ? SGM_PREFIX.vaeAlt : '';
    const inner = keys.filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
    let numUp = 0;
    for (const k of inner) {
      const m = /^decoder\.up\.(\d+)\./.exec(k);
      if (m) numUp = Math.max(numUp, Number(m[1]) + 1);
    }
    for (const k of keys) {
      const mapped = k.startsWith(prefix) ? sgmVaeToDiffusers(k.slice(prefix.length), numUp) : null;
      if (mapped === null) b.ignored.push(k);
      else b.add(mapped.name, ref(k), mapped.squeeze);
    }
  } else if (component === 'text_encoder') {
    for (const k of keys) {
      if (k.startsWith(SGM_PREFIX.textEncoder)) b.add(k.slice(SGM_PREFIX.textEncoder.length), ref(k));
      else b.ignored.push(k);
    }
  } else {
    for (const k of keys) {
      const parts = k.startsWith(SGM_PREFIX.textEncoder2) ? openClipToDiffusers(k.slice(SGM_PREFIX.textEncoder2.length)) : null;
      if (parts === null) {
        b.ignored.push(k);
        continue;
      }
      const e = header.tensors.get(k)!;
      for (const p of parts) {
        if (p.third !== undefined && (e.shape.length < 1 || e.shape[0] % 3 !== 0))
          throw new CheckpointError(`${src.name}: '${k}' has shape [${e.shape.join(', ')}]; expected a leading dimension divisible by 3 (packed q/k/v)`);
        if (p.transpose && e.shape.length !== 2) throw new CheckpointError(`${src.name}: '${k}' has shape [${e.shape.join(', ')}]; expected 2-D`);
        b.add(p.name, ref(k, { third: p.third, transpose: p.transpose }));
      }
    }
  }
}

function mapPlain(b: Builder, src: ByteSource, header: SafetensorsHeader, keys: Iterable<string>, component?: Component): void {
  for (const k of keys) {
    const name = renameLegacyVaeAttention(k);
    // Legacy VAE attention weights may be 1×1 convs; diffusers' AutoencoderKL uses Linear.
    const squeeze = component === 'vae' && /\.attentions\.\d+\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(name);
    b.add(name, { src, header, key: k }, squeeze);
  }
}

/**
 * A checkpoint over one safetensors source (works in browsers with blobSource): an SGM single file is mapped to
 * diffusers names for `component`; any other file is taken as already in diffusers naming.
 */
export async function openSafetensorsCheckpoint(src: ByteSource, opts: OpenOptions = {}): Promise<Checkpoint> {
  return openSingle(src, opts, 'safetensors');
}

async function openSingle(src: ByteSource, opts: OpenOptions, plainFormat: CheckpointFormat): Promise<Checkpoint> {
  const header = await readHeader(src);
  const keys = [...header.tensors.keys()];
  const b = new Builder(src.name);
  const component = opts.component;
  if (isSgmCheckpoint(keys) || (component === 'vae' && isBareSgmVae(keys))) {
    const c = component ?? 'unet';
    mapSgm(b, src, header, c, opts.unetLayout);
    if (b.infos.size === 0)
      throw new CheckpointError(
        `${src.name}: SGM checkpoint has no ${c} tensors (expected keys under '${sgmPrefixOf(c)}'; saw keys like ${sample(keys)})`,
      );
    return new MappedCheckpoint(src.name, 'sgm', c, [src.name], b.refs, b.infos, b.ignored, header.metadata, [src]);
  }
  mapPlain(b, src, header, keys, component);
  return new MappedCheckpoint(src.name, plainFormat, component, [src.name], b.refs, b.infos, b.ignored, header.metadata, [src]);
}

function sgmPrefixOf(c: Component): string {
  return { unet: SGM_PREFIX.unet, vae: SGM_PREFIX.vae, text_encoder: SGM_PREFIX.textEncoder, text_encoder_2: SGM_PREFIX.textEncoder2 }[c];
}

function sample(keys: readonly string[], k = 3): string {
  return keys.length === 0 ? '(none)' : keys.slice(0, k).map((x) => `'${x}'`).join(', ') + (keys.length > k ? ', …' : '');
}

/** Parsed `*.safetensors.index.json`. */
export interface ShardIndex {
  weight_map: Record<string, string>;
  metadata?: Record<string, unknown>;
}

export function parseShardIndex(text: string, name: string): ShardIndex {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${name}: sharded index is not valid JSON (${(e as Error).message})`);
  }
  const wm = (json as { weight_map?: unknown })?.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) throw new CheckpointError(`${name}: sharded index has no "weight_map" object`);
  for (const [k, v] of Object.entries(wm))
    if (typeof v !== 'string' || v.length === 0 || v.includes('/') || v.includes('\\') || v === '.' || v === '..')
      throw new CheckpointError(`${name}: weight_map['${k}'] = ${JSON.stringify(v)} is not a shard file name`);
  return json as ShardIndex;
}

/**
 * A checkpoint over a sharded index; `openShard(file)` opens a shard (Node: fileSource in the index's folder;
 * browser: the matching File). Every shard header is read up front, so a missing or truncated shard fails here.
 */
export async function openShardedCheckpoint(
  index: ShardIndex,
  indexName: string,
  openShard: (file: string) => Promise<ByteSource>,
  opts: OpenOptions = {},
): Promise<Checkpoint> {
  const files = [...new Set(Object.values(index.weight_map))].sort();
  if (files.length === 0) throw new CheckpointError(`${indexName}: sharded index has an empty weight_map`);
  const opened: { src: ByteSource; header: SafetensorsHeader }[] = [];
  const closeAll = () => Promise.all(opened.map((o) => o.src.close()));
  try {
    for (const f of files) {
      let src: ByteSource;
      try {
        src = await openShard(f);
      } catch (e) {
        throw new CheckpointError(`${indexName}: missing shard file '${f}' referenced by the index (${(e as Error).message})`);
      }
      try {
        opened.push({ src, header: await readHeader(src) });
      } catch (e) {
        await src.close();
        throw e;
      }
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  const byFile = new Map(files.map((f, i) => [f, opened[i]]));
  const b = new Builder(indexName);
  try {
    for (const [key, file] of Object.entries(index.weight_map)) {
      const { src, header } = byFile.get(file)!;
      if (!header.tensors.has(key))
        throw new CheckpointError(`${indexName}: weight_map puts '${key}' in '${file}', but that shard has no such tensor`);
      mapPlain(b, src, header, [key], opts.component);
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  return new MappedCheckpoint(indexName, 'diffusers-sharded', opts.component, opened.map((o) => o.src.name), b.refs, b.infos, b.ignored, opened[0].header.metadata, opened.map((o) => o.src));
}

/** Base file names by component folder: diffusers models vs transformers text encoders. */
const WEIGHT_BASES = ['diffusion_pytorch_model', 'model'];

/** Candidate file names in a component folder, in preference order for a variant choice. */
function candidates(variant: OpenOptions['variant']): { kind: 'single' | 'index'; file: (base: string) => string }[] {
  const plain = [
    { kind: 'single' as const, file: (b: string) => `${b}.safetensors` },
    { kind: 'index' as const, file: (b: string) => `${b}.safetensors.index.json` },
  ];
  const fp16 = [
    { kind: 'single' as const, file: (b: string) => `${b}.fp16.safetensors` },
    // diffusers/transformers insert the variant before the last extension; accept the other spelling too.
    { kind: 'index' as const, file: (b: string) => `${b}.safetensors.index.fp16.json` },
    { kind: 'index' as const, file: (b: string) => `${b}.fp16.safetensors.index.json` },
  ];
  if (variant === 'fp16') return fp16;
  if (variant === 'default') return plain;
  return [plain[0], fp16[0], plain[1], ...fp16.slice(1)];
}

/**
 * The weight files a component folder may hold, in the order openCheckpoint prefers them (each candidate kind with
 * the diffusers base name, then the transformers one). Shared with hosts that probe a folder file by file.
 */
export function weightFileCandidates(variant: OpenOptions['variant']): { kind: 'single' | 'index'; file: string }[] {
  return candidates(variant).flatMap((c) => WEIGHT_BASES.map((base) => ({ kind: c.kind, file: c.file(base) })));
}

/**
 * Node: opens model weights at `path`, which may be
 * - a diffusers pipeline folder (has `model_index.json` or a `<component>/` subfolder): uses `<path>/<component>/`;
 * - a component folder: `diffusion_pytorch_model[.fp16].safetensors`, `model[.fp16].safetensors` (text encoders) or a
 *   sharded `*.safetensors.index.json`;
 * - a `.safetensors` file: an SGM single file (mapped for `component`) or a file in diffusers naming;
 * - a `*.safetensors.index.json` file.
 */
export async function openCheckpoint(path: string, opts: OpenOptions = {}): Promise<Checkpoint> {
  const { stat, readdir, readFile } = await import('node:fs/promises');
  const { join, dirname, basename, resolve } = await import('node:path');
  const st = await stat(path).catch(() => null);
  if (!st) throw new CheckpointError(`${path}: no such file or folder`);
  if (st.isFile()) {
    if (path.endsWith('.json')) {
      const index = parseShardIndex(await readFile(path, 'utf8'), path);
      const dir = dirname(path);
      return openShardedCheckpoint(index, path, (f) => fileSource(join(dir, f)), opts);
    }
    const src = await fileSource(path);
    try {
      return await openSafetensorsCheckpoint(src, opts);
    } catch (e) {
      await src.close();
      throw e;
    }
  }
  let component = opts.component ?? 'unet';
  let dir = path;
  let entries = await readdir(dir);
  const sub = join(path, component);
  if (entries.includes(component) && (await stat(sub)).isDirectory()) {
    dir = sub;
    entries = await readdir(dir);
  } else if (entries.includes('model_index.json')) {
    throw new CheckpointError(`${path}: pipeline folder has no ${component}/ subfolder; found: ${listing(entries)}`);
  } else if (!opts.component && (COMPONENTS as readonly string[]).includes(basename(resolve(path)))) {
    // A component folder opened directly: its name says which model it holds.
    component = basename(resolve(path)) as Component;
  }
  for (const c of weightFileCandidates(opts.variant)) {
    if (!entries.includes(c.file)) continue;
    const p = join(dir, c.file);
    if (c.kind === 'index') {
      const index = parseShardIndex(await readFile(p, 'utf8'), p);
      return openShardedCheckpoint(index, p, (s) => fileSource(join(dir, s)), { ...opts, component });
    }
    const src = await fileSource(p);
    try {
      return await openSingle(src, { ...opts, component }, 'diffusers');
    } catch (e) {
      await src.close();
      throw e;
    }
  }
  const want = candidates(opts.variant)
    .map((c) => c.file(component.startsWith('text_encoder') ? 'model' : 'diffusion_pytorch_model'))
    .join(', ');
  const where = dir === path ? path : `${path} (${component}/)`;
  throw new CheckpointError(`no ${component} weights in ${where}: looked for ${want}; found: ${listing(entries)}`);
}

function listing(entries: string[]): string {
  if (entries.length === 0) return '(empty folder)';
  const s = [...entries].sort();
  return s.slice(0, 20).join(', ') + (s.length > 20 ? `, … (${s.length} entries)` : '');
}

/** An in-memory checkpoint (tests, or weights already fetched): `{ 'file.safetensors': bytes }` single file. */
export function openBytesCheckpoint(bytes: Uint8Array, name = 'memory.safetensors', opts: OpenOptions = {}): Promise<Checkpoint> {
  return openSafetensorsCheckpoint(bytesSource(bytes, name), opts);
}

/** Module path → weight shape for every `<module>.weight` of a checkpoint (for LoRA resolution and checks). */
export function moduleShapes(tensors: ReadonlyMap<string, { shape: readonly number[] }> | Record<string, readonly number[]>): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const entries: [string, readonly number[]][] =
    tensors instanceof Map ? [...tensors].map(([k, v]) => [k, v.shape]) : Object.entries(tensors as Record<string, readonly number[]>);
  for (const [k, shape] of entries) if (k.endsWith('.weight')) out.set(k.slice(0, -'.weight'.length), [...shape]);
  return out;
}
