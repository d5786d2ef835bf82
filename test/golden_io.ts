// Reading golden folders: safetensors of any numeric dtype (the goldens hold I64 timesteps and F64 references next
// to F32), optional files, the LoRA scale as lora_config.json documents it, and the parity metric the golden tests
// report. test/browser/golden_io.ts is the browser twin (same exports, over HTTP); code that runs in both uses only
// these functions for paths and files (node:path / node:fs are stubs in the browser bundle).
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type ByteSource, fileSource } from '../src/io/byte_source.js';
import { type SafetensorsHeader, readHeader, readTensorF32 } from '../src/io/safetensors.js';

export interface GoldenFile {
  src: ByteSource;
  header: SafetensorsHeader;
  has(name: string): boolean;
  keys(): string[];
  shape(name: string): number[];
  /** Any numeric dtype, as float64 (I64 via BigInt: exact for |v| < 2^53). */
  read(name: string): Promise<Float64Array>;
  f32(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

/** The golden folder: TCD_GOLDEN, else the default (relative to the working directory, as vitest and node:test run). */
export function goldenDir(fallback: string): string {
  return resolve(process.env.TCD_GOLDEN ?? fallback);
}

/** dir/file without node:path (shared with the browser twin). */
export function joinPath(dir: string, file: string): string {
  return file ? `${dir.replace(/\/+$/, '')}/${file}` : dir;
}

/** Whether dir/file exists (file '' = the folder itself). */
export function goldenExists(dir: string, file = ''): boolean {
  return existsSync(join(dir, file));
}

const componentRoots: string[] = [];

/**
 * A temporary root holding only `name` → dir (a symbolic link): lets a folder of one component (e.g. …/tiny_unet,
 * whatever it is called) be checked as a golden root containing just that component. Removed at exit.
 */
export function asComponentRoot(dir: string, name: string): string | undefined {
  const root = mkdtempSync(join(tmpdir(), 'tcd-golden-'));
  // Registered on first use: this module is also loaded in the browser bundle (through its twin), without `process`.
  if (componentRoots.push(root) === 1) process.on('exit', () => componentRoots.forEach((d) => rmSync(d, { recursive: true, force: true })));
  symlinkSync(resolve(dir), join(root, name), 'dir');
  return root;
}

export async function openGolden(dir: string, file: string): Promise<GoldenFile | undefined> {
  const path = join(dir, file);
  if (!existsSync(path)) return undefined;
  const src = await fileSource(path);
  return goldenFromSource(src, path);
}

/** A GoldenFile over an open source (`where` names it in errors); shared by this file and the browser twin. */
export async function goldenFromSource(src: ByteSource, where: string): Promise<GoldenFile> {
  const header = await readHeader(src);
  const entry = (name: string) => {
    const e = header.tensors.get(name);
    if (!e) throw new Error(`${where}: no tensor '${name}'`);
    return e;
  };
  const g: GoldenFile = {
    src,
    header,
    has: (name) => header.tensors.has(name),
    keys: () => [...header.tensors.keys()],
    shape: (name) => entry(name).shape,
    async read(name) {
      const e = entry(name);
      if (e.dtype === 'F32' || e.dtype === 'F16' || e.dtype === 'BF16') return Float64Array.from(await readTensorF32(src, header, name));
      const bytes = await src.read(header.dataStart + e.begin, e.end - e.begin);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const n = e.shape.reduce((p, d) => p * d, 1);
      const out = new Float64Array(n);
      if (e.dtype === 'F64') for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      else if (e.dtype === 'I64') for (let i = 0; i < n; i++) out[i] = Number(view.getBigInt64(8 * i, true));
      else if (e.dtype === 'I32') for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
      else throw new Error(`${where}: tensor '${name}' has unsupported dtype ${e.dtype}`);
      return out;
    },
    async f32(name) {
      return Float32Array.from(await g.read(name));
    },
    close: () => src.close(),
  };
  return g;
}

export function readJson<T>(dir: string, file: string): T | undefined {
  const path = join(dir, file);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as T) : undefined;
}

export interface LoraConfigJson {
  r: number;
  lora_alpha: number;
  /** The multiplier itself: y = base(x) + scale·B(A(x)) (the golden's `naming` field); lora_alpha / r when absent. */
  scale?: number;
}

/** The LoRA multiplier a lora_config.json documents: `scale` when present, else lora_alpha / r. */
export function documentedLoraScale(cfg: LoraConfigJson, where: string): number {
  const scale = cfg.scale ?? cfg.lora_alpha / cfg.r;
  if (!Number.isFinite(scale)) throw new Error(`${where}: no usable LoRA scale (scale ${cfg.scale}, lora_alpha ${cfg.lora_alpha}, r ${cfg.r})`);
  return scale;
}

/** max|got − want| / max|want| (the golden tests' parity metric). */
export function relMaxErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} vs ${want.length}`);
  let err = 0;
  let ref = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
    ref = Math.max(ref, Math.abs(want[i]));
  }
  return ref === 0 ? err : err / ref;
}
