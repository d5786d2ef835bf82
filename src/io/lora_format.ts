// LoRA files: parsing every SDXL key style in use into one normalised adapter list, host-side fuse/unfuse math,
// and saving in the peft/diffusers format that diffusers' load_lora_weights reads (spec sdxl.md §5).
//
// Key styles (after an optional component prefix `unet.` / `text_encoder.` / `text_encoder_2.`, then an optional
// `base_model.model.`):
//   peft/diffusers   <module>.lora_A.weight / .lora_B.weight (also .lora_A.<adapter>.weight)
//   old diffusers    <attn>.processor.to_q_lora.down.weight / .up.weight (to_out_lora → to_out.0),
//                    <module>.lora.down.weight, <module>.lora_linear_layer.down.weight, <module>.lora_layer.down.weight
//   kohya            lora_unet_<module with '.'→'_'>.lora_down.weight / .lora_up.weight / .alpha, in diffusers module
//                    names or SGM names (lora_unet_input_blocks_4_1_…); lora_te1_/lora_te2_/lora_te_ for text encoders.
// Kohya names are resolved by lookup against the model's real module list (no string surgery).
import { fileSource, type ByteSource } from './byte_source.js';
import { FLOAT_DTYPES, readHeader, readTensorF32, writeSafetensors, type SafetensorsHeader, type TensorToWrite } from './safetensors.js';
import { diffusersUnetToSgm } from './sgm_keys.js';
import { nearby } from './checkpoint.js';

export type LoraComponent = 'unet' | 'text_encoder' | 'text_encoder_2';
export type LoraFormat = 'peft' | 'diffusers-old' | 'kohya';

export interface LoraMatrix {
  shape: number[];
  data: Float32Array;
}

export interface LoraAdapter {
  /** diffusers module path inside the component, e.g. 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q'. */
  module: string;
  /** lora_A / lora_down: [r, in] (Linear) or [r, in, kh, kw] (Conv2d, the base conv's kernel). */
  A: LoraMatrix;
  /** lora_B / lora_up: [out, r] (Linear) or [out, r, 1, 1] (Conv2d). */
  B: LoraMatrix;
  rank: number;
  alpha: number;
  /** alpha / rank (alpha / √rank with rsLoRA). The fused update is W + scale·B·A. */
  scale: number;
  format: LoraFormat;
  /** The file keys this adapter came from. */
  keys: { A: string; B: string; alpha?: string };
}

export interface SkippedKey {
  key: string;
  reason: string;
}

/** The LoraConfig fields that change the math (peft names). */
export interface LoraConfigLike {
  r?: number;
  lora_alpha?: number;
  alpha_pattern?: Record<string, number>;
  rank_pattern?: Record<string, number>;
  use_rslora?: boolean;
  use_dora?: boolean;
  target_modules?: string[] | string;
}

export interface LoraSet {
  source: string;
  component: LoraComponent;
  formats: LoraFormat[];
  adapters: LoraAdapter[];
  /** Keys not applied to `component` (other components' LoRA), each with the reason. Never dropped silently. */
  skipped: SkippedKey[];
  metadata: Record<string, string>;
  /** The LoraConfig in effect: opts.config over `lora_adapter_metadata` from the file. */
  config: LoraConfigLike;
}

/**
 * The model's modules: a Map module → weight shape (enables shape checks; see checkpoint.ts moduleShapes), or module
 * paths / parameter names (`….weight` / `….bias` are stripped).
 */
export type ModuleSet = ReadonlyMap<string, readonly number[]> | Iterable<string>;

export interface ParseLoraOptions {
  /** Which component's adapters to return; keys of other components are reported in `skipped`. Default 'unet'. */
  component?: LoraComponent;
  /** Needed for kohya keys; when given, every adapter's module must exist (and match shapes if known). */
  modules?: ModuleSet;
  /** Overrides the file's LoraConfig (e.g. the lora_config.json next to a peft file without metadata). */
  config?: LoraConfigLike;
}

export class LoraFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoraFormatError';
  }
}

/** diffusers' LORA_ADAPTER_METADATA_KEY. */
export const LORA_ADAPTER_METADATA_KEY = 'lora_adapter_metadata';
/** diffusers' default LoRA weight file name. */
export const LORA_WEIGHT_NAME = 'pytorch_lora_weights.safetensors';

const COMPONENT_PREFIXES: [string, LoraComponent][] = [
  // Longest first: 'text_encoder_2.' before 'text_encoder.'.
  ['text_encoder_2.', 'text_encoder_2'],
  ['text_encoder.', 'text_encoder'],
  ['unet.', 'unet'],
];
const KOHYA_PREFIXES: [string, LoraComponent][] = [
  ['lora_unet_', 'unet'],
  ['lora_te1_', 'text_encoder'],
  ['lora_te2_', 'text_encoder_2'],
  ['lora_te_', 'text_encoder'],
];

type Role = 'A' | 'B' | 'alpha';
interface Classified {
  key: string;
  format: LoraFormat;
  component: LoraComponent;
  /** Module path (peft/old) or the kohya underscore body (resolved later). */
  module: string;
  role: Role;
  adapterName?: string;
}

/** Classifies one key, or returns a reason string for keys that are LoRA-like but unsupported, or null if unknown. */
function classify(key: string): Classified | { unsupported: string } | null {
  for (const [p, component] of KOHYA_PREFIXES) {
    if (!key.startsWith(p)) continue;
    const m = /^([A-Za-z0-9_]+)\.(lora_down\.weight|lora_up\.weight|alpha|dora_scale|lora_mid\.weight|hada_\w+|lokr_\w+|diff|diff_b|[\w.]+)$/.exec(key.slice(p.length));
    if (!m) return null;
    const role = m[2] === 'lora_down.weight' ? 'A' : m[2] === 'lora_up.weight' ? 'B' : m[2] === 'alpha' ? 'alpha' : null;
    if (!role) {
      if (m[2] === 'dora_scale') return { unsupported: 'DoRA (dora_scale) LoRAs are not supported' };
      return { unsupported: `kohya/LyCORIS tensor kind '${m[2]}' is not supported (only lora_down/lora_up/alpha)` };
    }
    return { key, format: 'kohya', component, module: m[1], role };
  }
  let rest = key;
  let component: LoraComponent = 'unet';
  for (const [p, c] of COMPONENT_PREFIXES)
    if (rest.startsWith(p)) {
      component = c;
      rest = rest.slice(p.length);
      break;
    }
  if (rest.startsWith('base_model.model.')) rest = rest.slice('base_model.model.'.length);
  let m = /^(.+)\.lora_(A|B)(?:\.([A-Za-z0-9_-]+))?\.weight$/.exec(rest);
  if (m) return { key, format: 'peft', component, module: m[1], role: m[2] as 'A' | 'B', adapterName: m[3] };
  if (/\.lora_(A|B)(\.[A-Za-z0-9_-]+)?\.bias$/.test(rest)) return { unsupported: 'LoRA bias terms (lora_B.bias) are not supported' };
  if (/lora_magnitude_vector/.test(rest)) return { unsupported: 'DoRA (lora_magnitude_vector) LoRAs are not supported' };
  m = /^(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/.exec(rest);
  if (m) return { key, format: 'diffusers-old', component, module: `${m[1]}.${m[2] === 'to_out' ? 'to_out.0' : m[2]}`, role: m[3] === 'down' ? 'A' : 'B' };
  // Old text-encoder attention-processor style: …self_attn.to_q_lora.down.weight → …self_attn.q_proj.
  m = /^(.+\.self_attn)\.to_(q|k|v|out)_lora\.(down|up)\.weight$/.exec(rest);
  if (m) return { key, format: 'diffusers-old', component, module: `${m[1]}.${m[2]}_proj`, role: m[3] === 'down' ? 'A' : 'B' };
  m = /^(.+)\.(?:lora|lora_linear_layer|lora_layer)\.(down|up)\.weight$/.exec(rest);
  if (m) return { key, format: 'diffusers-old', component, module: m[1], role: m[2] === 'down' ? 'A' : 'B' };
  m = /^(.+)\.alpha$/.exec(rest);
  if (m) return { key, format: 'peft', component, module: m[1], role: 'alpha' };
  return null;
}

/** Module path → weight shape (undefined when only names are known). */
function normaliseModules(modules: ModuleSet): Map<string, readonly number[] | undefined> {
  const out = new Map<string, readonly number[] | undefined>();
  if (modules instanceof Map) {
    for (const [k, v] of modules as ReadonlyMap<string, readonly number[]>) out.set(k, v);
    return out;
  }
  for (const n of modules as Iterable<string>) {
    const m = /^(.*)\.(weight|bias)$/.exec(n);
    const mod = m ? m[1] : n;
    if (!out.has(mod)) out.set(mod, undefined);
  }
  return out;
}

/**
 * Lookup tables for kohya names: '<module with . → _>' → module, for diffusers names and (UNet) SGM names.
 * Names that two modules share are kept as ambiguous.
 */
export function kohyaNameTable(modules: Iterable<string>, component: LoraComponent = 'unet'): Map<string, string | string[]> {
  const mods = [...modules];
  const table = new Map<string, string | string[]>();
  const put = (k: string, m: string) => {
    const prev = table.get(k);
    if (prev === undefined) table.set(k, m);
    else if (prev !== m) table.set(k, [...new Set([...(Array.isArray(prev) ? prev : [prev]), m])]);
  };
  for (const m of mods) put(m.replaceAll('.', '_'), m);
  if (component === 'unet') {
    const upAttn = new Set<number>();
    for (const m of mods) {
      const x = /^up_blocks\.(\d+)\.attentions\./.exec(m);
      if (x) upAttn.add(Number(x[1]));
    }
    for (const m of mods) {
      const s = diffusersUnetToSgm(m, (b) => upAttn.has(b));
      if (s !== null) put(s.replaceAll('.', '_'), m);
    }
  }
  return table;
}

function sampleKeys(keys: readonly string[], k = 4): string {
  return keys.slice(0, k).map((x) => `'${x}'`).join(', ') + (keys.length > k ? `, … (${keys.length} keys)` : '');
}

/** Reads a 0-d (or 1-element) tensor of any numeric dtype — kohya writes alpha as F32, F16, BF16 or I64. */
async function readScalar(src: ByteSource, header: SafetensorsHeader, key: string): Promise<number> {
  const e = header.tensors.get(key)!;
  const n = e.shape.reduce((p, d) => p * d, 1);
  if (n !== 1) throw new LoraFormatError(`${src.name}: '${key}' should hold one value; it has shape [${e.shape.join(', ')}]`);
  if ((FLOAT_DTYPES as readonly string[]).includes(e.dtype)) return (await readTensorF32(src, header, key))[0];
  const b = await src.read(header.dataStart + e.begin, e.end - e.begin);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (e.dtype) {
    case 'F64':
      return v.getFloat64(0, true);
    case 'I64':
      return Number(v.getBigInt64(0, true));
    case 'I32':
      return v.getInt32(0, true);
    case 'I16':
      return v.getInt16(0, true);
    case 'I8':
      return v.getInt8(0);
    case 'U8':
      return v.getUint8(0);
    default:
      throw new LoraFormatError(`${src.name}: '${key}' has dtype ${e.dtype}; expected a number`);
  }
}

/** The LoraConfig from `__metadata__.lora_adapter_metadata` for one component (keys may carry a `unet.` prefix). */
export function configFromMetadata(metadata: Record<string, string>, component: LoraComponent): LoraConfigLike {
  const raw = metadata[LORA_ADAPTER_METADATA_KEY];
  if (!raw) return {};
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    throw new LoraFormatError(`__metadata__.${LORA_ADAPTER_METADATA_KEY} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null) return {};
  const obj = json as Record<string, unknown>;
  const prefixes = COMPONENT_PREFIXES.map(([p]) => p);
  const keys = Object.keys(obj);
  const prefixed = keys.filter((k) => prefixes.some((p) => k.startsWith(p)));
  let picked: Record<string, unknown>;
  if (prefixed.length === 0) picked = obj;
  else {
    const p = `${component}.`;
    picked = {};
    for (const k of keys) if (k.startsWith(p) && !(component === 'text_encoder' && k.startsWith('text_encoder_2.'))) picked[k.slice(p.length)] = obj[k];
  }
  const cfg: LoraConfigLike = {};
  if (typeof picked.r === 'number') cfg.r = picked.r;
  if (typeof picked.lora_alpha === 'number') cfg.lora_alpha = picked.lora_alpha;
  if (picked.alpha_pattern && typeof picked.alpha_pattern === 'object') cfg.alpha_pattern = picked.alpha_pattern as Record<string, number>;
  if (picked.rank_pattern && typeof picked.rank_pattern === 'object') cfg.rank_pattern = picked.rank_pattern as Record<string, number>;
  if (typeof picked.use_rslora === 'boolean') cfg.use_rslora = picked.use_rslora;
  if (typeof picked.use_dora === 'boolean') cfg.use_dora = picked.use_dora;
  if (Array.isArray(picked.target_modules) || typeof picked.target_modules === 'string') cfg.target_modules = picked.target_modules as string[] | string;
  return cfg;
}

/** peft's pattern lookup: the key matches a module if `(.*\.)?key$` matches it (key as a regex, as peft does). */
function patternValue(pattern: Record<string, number> | undefined, module: string): number | undefined {
  if (!pattern) return undefined;
  for (const [k, v] of Object.entries(pattern)) {
    let hit: boolean;
    try {
      hit = new RegExp(`^(.*\\.)?(${k})$`).test(module);
    } catch {
      hit = module === k || module.endsWith('.' + k);
    }
    if (hit) return v;
  }
  return undefined;
}

/** Parses a LoRA safetensors source into adapters for one component. */
export async function parseLora(src: ByteSource, opts: ParseLoraOptions = {}): Promise<LoraSet> {
  const component = opts.component ?? 'unet';
  const header = await readHeader(src);
  const keys = [...header.tensors.keys()];
  if (keys.length === 0) throw new LoraFormatError(`${src.name}: LoRA file holds no tensors`);
  const classified: Classified[] = [];
  const unknown: string[] = [];
  const unsupported: string[] = [];
  for (const k of keys) {
    const c = classify(k);
    if (c === null) unknown.push(k);
    else if ('unsupported' in c) unsupported.push(`'${k}': ${c.unsupported}`);
    else classified.push(c);
  }
  if (classified.length === 0 || classified.every((c) => c.role === 'alpha'))
    throw new LoraFormatError(
      `${src.name}: unknown LoRA format: keys like ${sampleKeys(keys)}` +
        (unsupported.length ? `; ${unsupported[0]}` : '') +
        `. Expected peft '<module>.lora_A.weight'/'lora_B.weight' (optionally 'unet.' prefixed), old diffusers '….lora.down.weight' / '….processor.to_q_lora.down.weight', or kohya 'lora_unet_<module>.lora_down.weight'/'lora_up.weight'/'alpha'`,
    );
  if (unsupported.length) throw new LoraFormatError(`${src.name}: unsupported LoRA tensors: ${unsupported.slice(0, 3).join('; ')}${unsupported.length > 3 ? ` (${unsupported.length} in all)` : ''}`);
  if (unknown.length) throw new LoraFormatError(`${src.name}: unrecognised keys in a LoRA file: ${sampleKeys(unknown)}`);
  const adapterNames = [...new Set(classified.map((c) => c.adapterName).filter((n): n is string => n !== undefined))];
  if (adapterNames.length > 1) throw new LoraFormatError(`${src.name}: keys of several peft adapters (${adapterNames.join(', ')}); save one adapter per file`);

  const skipped: SkippedKey[] = [];
  const mine = classified.filter((c) => {
    if (c.component === component) return true;
    skipped.push({ key: c.key, reason: `${c.component} LoRA key; this parse applies ${component} adapters only` });
    return false;
  });

  const modules = opts.modules ? normaliseModules(opts.modules) : undefined;
  // Resolve kohya bodies to module paths.
  const kohya = mine.filter((c) => c.format === 'kohya');
  if (kohya.length) {
    if (!modules)
      throw new LoraFormatError(
        `${src.name}: kohya LoRA keys (e.g. '${kohya[0].key}') name modules with '_' for '.'; pass the model's module list (opts.modules) to resolve them`,
      );
    const table = kohyaNameTable(modules.keys(), component);
    const unresolved = new Set<string>();
    for (const c of kohya) {
      const hit = table.get(c.module);
      if (hit === undefined) unresolved.add(c.key.replace(/\..*$/, ''));
      else if (Array.isArray(hit)) throw new LoraFormatError(`${src.name}: kohya key '${c.key}' is ambiguous: it matches modules ${hit.map((h) => `'${h}'`).join(', ')}`);
      else c.module = hit;
    }
    if (unresolved.size) {
      const names = [...unresolved];
      const bodies = [...table.keys()];
      throw new LoraFormatError(
        `${src.name}: ${names.length} kohya LoRA module name(s) match no ${component} module (tried diffusers and SGM names with '.'→'_'): ${sampleKeys(names, 5)}` +
          nearby(names[0].replace(/^lora_(unet|te[12]?)_/, ''), bodies),
      );
    }
  }

  // Group by module.
  const groups = new Map<string, Partial<Record<Role, Classified>>>();
  for (const c of mine) {
    const g = groups.get(c.module) ?? {};
    if (g[c.role]) throw new LoraFormatError(`${src.name}: '${c.key}' and '${g[c.role]!.key}' both give ${c.role} of module '${c.module}'`);
    g[c.role] = c;
    groups.set(c.module, g);
  }
  if (modules) {
    const missing = [...groups.keys()].filter((m) => !modules.has(m));
    if (missing.length)
      throw new LoraFormatError(
        `${src.name}: ${missing.length} LoRA module(s) not found in the ${component} model: ${sampleKeys(missing, 5)}` + nearby(missing[0], [...modules.keys()]),
      );
  }

  const config: LoraConfigLike = { ...configFromMetadata(header.metadata, component), ...(opts.config ?? {}) };
  if (config.use_dora) throw new LoraFormatError(`${src.name}: LoraConfig has use_dora = true; DoRA is not supported`);
  const adapters: LoraAdapter[] = [];
  for (const [module, g] of [...groups].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (!g.A || !g.B) {
      const have = (g.A ?? g.B ?? g.alpha)!.key;
      throw new LoraFormatError(`${src.name}: module '${module}' has ${g.A ? 'lora_A/down' : g.B ? 'lora_B/up' : 'only an alpha'} ('${have}') but no ${g.A ? 'lora_B/up' : 'lora_A/down'} tensor`);
    }
    const aShape = [...header.tensors.get(g.A.key)!.shape];
    const bShape = [...header.tensors.get(g.B.key)!.shape];
    const rank = aShape[0];
    const shapeErr = (why: string) =>
      new LoraFormatError(`${src.name}: module '${module}': ${why} (A '${g.A!.key}' [${aShape.join(', ')}], B '${g.B!.key}' [${bShape.join(', ')}])`);
    if (aShape.length !== 2 && aShape.length !== 4) throw shapeErr('A must be 2-D [r, in] or 4-D [r, in, kh, kw]');
    if (bShape.length !== aShape.length) throw shapeErr('A and B must have the same rank (2-D or 4-D)');
    if (bShape[1] !== rank) throw shapeErr(`B's second dimension ${bShape[1]} differs from the rank ${rank}`);
    if (bShape.length === 4 && (bShape[2] !== 1 || bShape[3] !== 1)) throw shapeErr('a conv B must be [out, r, 1, 1]');
    const w = modules?.get(module);
    if (w) checkAgainstWeight(module, aShape, bShape, w, shapeErr);
    const [A, B] = await Promise.all([readTensorF32(src, header, g.A.key), readTensorF32(src, header, g.B.key)]);
    let alpha = NaN;
    if (g.alpha) {
      alpha = await readScalar(src, header, g.alpha.key);
      if (!Number.isFinite(alpha)) throw new LoraFormatError(`${src.name}: module '${module}': alpha ${alpha} is not finite`);
    }
    adapters.push({
      module,
      A: { shape: aShape, data: A },
      B: { shape: bShape, data: B },
      rank,
      alpha,
      scale: NaN,
      format: g.A.format,
      keys: { A: g.A.key, B: g.B.key, ...(g.alpha ? { alpha: g.alpha.key } : {}) },
    });
  }
  // Modules without an .alpha tensor, as diffusers builds its LoraConfig (get_peft_kwargs / _create_lora_config):
  // the config's alpha_pattern / lora_alpha, else the most common .alpha of the file, else the most common rank
  // (with uniform ranks, that is alpha = rank: scale 1).
  const fileAlphas = adapters.filter((a) => a.keys.alpha).map((a) => a.alpha);
  const defaultAlpha = config.lora_alpha ?? (fileAlphas.length ? mostCommon(fileAlphas) : mostCommon(adapters.map((a) => a.rank)));
  for (const a of adapters) {
    if (!a.keys.alpha) a.alpha = patternValue(config.alpha_pattern, a.module) ?? defaultAlpha;
    a.scale = config.use_rslora ? a.alpha / Math.sqrt(a.rank) : a.alpha / a.rank;
  }
  const formats = [...new Set(adapters.map((a) => a.format))];
  return { source: src.name, component, formats, adapters, skipped, metadata: header.metadata, config };
}

function checkAgainstWeight(module: string, a: number[], b: number[], w: readonly number[], err: (why: string) => Error): void {
  const kernel = (s: readonly number[]) => s.slice(2).reduce((p, d) => p * d, 1);
  if (b[0] !== w[0]) throw err(`B has ${b[0]} outputs; the weight of '${module}' is [${w.join(', ')}]`);
  if (a[1] !== w[1]) throw err(`A has ${a[1]} inputs; the weight of '${module}' is [${w.join(', ')}]`);
  if (kernel(a) !== kernel(w)) throw err(`A's kernel [${a.slice(2).join(', ')}] does not match the weight [${w.join(', ')}]`);
}

/** Node: parses a LoRA file by path. */
export async function loadLoraFile(path: string, opts: ParseLoraOptions = {}): Promise<LoraSet> {
  const src = await fileSource(path);
  try {
    return await parseLora(src, opts);
  } finally {
    await src.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Fuse / unfuse on host arrays.

/** One low-rank term scale·B·A. */
export interface LoraTerm {
  A: { shape: readonly number[]; data: ArrayLike<number> };
  B: { shape: readonly number[]; data: ArrayLike<number> };
  scale: number;
}

/** An adapter as a term, times a user weight (diffusers' set_adapters weight / fuse_lora lora_scale). */
export function loraTerm(adapter: LoraAdapter, weight = 1): LoraTerm {
  return { A: adapter.A, B: adapter.B, scale: adapter.scale * weight };
}

interface PreparedTerm {
  r: number;
  /** A.flatten(1) transposed, [cols, r], float64. */
  At: Float64Array;
  B: ArrayLike<number>;
  scale: number;
}

function prepare(weightShape: readonly number[], terms: readonly LoraTerm[]): { out: number; cols: number; prepared: PreparedTerm[] } {
  const out = weightShape[0];
  const cols = weightShape.slice(1).reduce((p, d) => p * d, 1);
  const prepared = terms.map((t) => {
    const r = t.A.shape[0];
    if (!(r > 0) || t.A.data.length !== r * cols || t.B.shape[0] !== out || t.B.data.length !== out * r)
      throw new LoraFormatError(`LoRA term A [${t.A.shape.join(', ')}], B [${t.B.shape.join(', ')}] does not fit a weight [${weightShape.join(', ')}]`);
    const At = new Float64Array(cols * r);
    const A = t.A.data;
    for (let k = 0; k < r; k++) for (let j = 0; j < cols; j++) At[j * r + k] = A[k * cols + j];
    return { r, At, B: t.B.data, scale: t.scale };
  });
  return { out, cols, prepared };
}

/** acc[j] = Σ_terms scale·Σ_k B[o,k]·A[k,j] for one output row o, in float64. */
function rowDelta(o: number, cols: number, prepared: readonly PreparedTerm[], acc: Float64Array, bRow: Float64Array): void {
  acc.fill(0);
  for (const { r, At, B, scale } of prepared) {
    for (let k = 0; k < r; k++) bRow[k] = scale * B[o * r + k];
    for (let j = 0; j < cols; j++) {
      const base = j * r;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let k = 0;
      for (; k + 4 <= r; k += 4) {
        s0 += bRow[k] * At[base + k];
        s1 += bRow[k + 1] * At[base + k + 1];
        s2 += bRow[k + 2] * At[base + k + 2];
        s3 += bRow[k + 3] * At[base + k + 3];
      }
      for (; k < r; k++) s0 += bRow[k] * At[base + k];
      acc[j] += s0 + s1 + (s2 + s3);
    }
  }
}

/**
 * ΔW = Σ scale·(B.flatten(1) @ A.flatten(1)) reshaped to `weightShape`, accumulated in float64.
 * Linear: W [out, in], A [r, in], B [out, r]. Conv: W [out, in, kh, kw], A [r, in, kh, kw], B [out, r, 1, 1].
 * Cost: out·in·kh·kw·r multiply-adds per term on the host (a rank-64 SDXL LoRA is ~1.4·10^11: fuse big models on
 * the GPU; these helpers are the float64 reference and serve small models).
 */
export function loraDelta(weightShape: readonly number[], terms: readonly LoraTerm[]): Float64Array {
  const { out, cols, prepared } = prepare(weightShape, terms);
  const delta = new Float64Array(out * cols);
  const maxR = Math.max(1, ...prepared.map((p) => p.r));
  const bRow = new Float64Array(maxR);
  const acc = new Float64Array(cols);
  for (let o = 0; o < out; o++) {
    rowDelta(o, cols, prepared, acc, bRow);
    delta.set(acc, o * cols);
  }
  return delta;
}

/** W ← W + Σ scale·B·A, in place (float64 sum, one f32 rounding per element); returns `weight`. */
export function fuseLora(weight: Float32Array, weightShape: readonly number[], terms: LoraTerm | readonly LoraTerm[]): Float32Array {
  return applyDelta(weight, weightShape, Array.isArray(terms) ? terms : [terms as LoraTerm], 1);
}

/** W ← W − Σ scale·B·A with the same terms: undoes fuseLora up to f32 rounding of the fused weight. */
export function unfuseLora(weight: Float32Array, weightShape: readonly number[], terms: LoraTerm | readonly LoraTerm[]): Float32Array {
  return applyDelta(weight, weightShape, Array.isArray(terms) ? terms : [terms as LoraTerm], -1);
}

function applyDelta(weight: Float32Array, weightShape: readonly number[], terms: readonly LoraTerm[], sign: 1 | -1): Float32Array {
  const n = weightShape.reduce((p, d) => p * d, 1);
  if (weight.length !== n) throw new LoraFormatError(`weight has ${weight.length} elements; shape [${weightShape.join(', ')}] needs ${n}`);
  const { out, cols, prepared } = prepare(weightShape, terms);
  const bRow = new Float64Array(Math.max(1, ...prepared.map((p) => p.r)));
  const acc = new Float64Array(cols);
  for (let o = 0; o < out; o++) {
    rowDelta(o, cols, prepared, acc, bRow);
    const row = o * cols;
    for (let j = 0; j < cols; j++) weight[row + j] = weight[row + j] + sign * acc[j];
  }
  return weight;
}

/**
 * Collects several LoRA sets (e.g. the TCD LoRA and a style LoRA), each with its user weight, into the terms per
 * module that fuseLora takes.
 */
export function termsByModule(sets: readonly { lora: LoraSet | readonly LoraAdapter[]; weight?: number }[]): Map<string, LoraTerm[]> {
  const out = new Map<string, LoraTerm[]>();
  for (const { lora, weight = 1 } of sets) {
    const adapters = Array.isArray(lora) ? (lora as readonly LoraAdapter[]) : (lora as LoraSet).adapters;
    for (const a of adapters) {
      const list = out.get(a.module) ?? [];
      list.push(loraTerm(a, weight));
      out.set(a.module, list);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Saving (peft/diffusers format, read by diffusers' load_lora_weights).

export interface LoraToSave {
  module: string;
  A: { shape: readonly number[]; data: ArrayLike<number> };
  B: { shape: readonly number[]; data: ArrayLike<number> };
  /** Default: the rank (scale 1). */
  alpha?: number;
}

export interface SaveLoraOptions {
  /** Key prefix and metadata namespace. Default 'unet'. */
  component?: LoraComponent;
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Extra `__metadata__` entries (strings). */
  metadata?: Record<string, string>;
}

function mostCommon(values: number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0];
  for (const [v, c] of counts) if (c > counts.get(best)! || (c === counts.get(best)! && v < best)) best = v;
  return best;
}

function sortedJson(value: unknown, indent = 2): string {
  const sort = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sort) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])])) : v;
  return JSON.stringify(sort(value), null, indent);
}

/**
 * Tensors and `__metadata__` in the layout of diffusers' StableDiffusionXLPipeline.save_lora_weights:
 * `unet.<module>.lora_A.weight` / `lora_B.weight`, `{"format": "pt", "lora_adapter_metadata": JSON}` where the JSON
 * is the LoraConfig with `unet.`-prefixed keys (r, lora_alpha, target_modules = the module paths, rank_pattern and
 * alpha_pattern for modules that differ from the most common value). No `.alpha` tensors: diffusers refuses
 * non-kohya files with keys lacking "lora".
 */
export function encodeLoraTensors(adapters: readonly LoraToSave[], opts: SaveLoraOptions = {}): { tensors: Record<string, TensorToWrite>; metadata: Record<string, string> } {
  const component = opts.component ?? 'unet';
  const dtype = opts.dtype ?? 'F32';
  if (adapters.length === 0) throw new LoraFormatError('no LoRA adapters to save');
  const tensors: Record<string, TensorToWrite> = {};
  const ranks: number[] = [];
  const alphas: number[] = [];
  for (const a of adapters) {
    const r = a.A.shape[0];
    if (a.B.shape[1] !== r) throw new LoraFormatError(`module '${a.module}': A [${a.A.shape.join(', ')}] and B [${a.B.shape.join(', ')}] disagree on the rank`);
    const ka = `${component}.${a.module}.lora_A.weight`;
    if (tensors[ka]) throw new LoraFormatError(`module '${a.module}' appears twice`);
    tensors[ka] = { dtype, shape: a.A.shape, data: a.A.data };
    tensors[`${component}.${a.module}.lora_B.weight`] = { dtype, shape: a.B.shape, data: a.B.data };
    ranks.push(r);
    alphas.push(a.alpha ?? r);
  }
  const r = mostCommon(ranks);
  const alpha = mostCommon(alphas);
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  adapters.forEach((a, i) => {
    if (ranks[i] !== r) rankPattern[a.module] = ranks[i];
    if (alphas[i] !== alpha) alphaPattern[a.module] = alphas[i];
  });
  const config: Record<string, unknown> = {
    alpha_pattern: alphaPattern,
    bias: 'none',
    init_lora_weights: true,
    lora_alpha: alpha,
    lora_dropout: 0,
    peft_type: 'LORA',
    r,
    rank_pattern: rankPattern,
    target_modules: adapters.map((a) => a.module).sort(),
    use_dora: false,
    use_rslora: false,
  };
  const prefixed = Object.fromEntries(Object.entries(config).map(([k, v]) => [`${component}.${k}`, v]));
  return { tensors, metadata: { ...(opts.metadata ?? {}), format: 'pt', [LORA_ADAPTER_METADATA_KEY]: sortedJson(prefixed) } };
}

/** Node: writes a LoRA atomically (temporary file + rename) in the peft/diffusers format; see encodeLoraTensors. */
export async function saveLora(path: string, adapters: readonly LoraToSave[], opts: SaveLoraOptions = {}): Promise<void> {
  const { tensors, metadata } = encodeLoraTensors(adapters, opts);
  await writeSafetensors(path, tensors, metadata);
}
