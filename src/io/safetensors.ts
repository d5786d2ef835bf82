// safetensors reader and writer. The reader validates the whole header before any tensor is read (length, JSON,
// dtypes, shapes, offsets inside the data section, exact tiling without overlap) and then reads tensor by tensor,
// so a 10 GB UNet never sits in host memory twice. The writer writes a temporary file and renames it into place.
import { f16BitsToF32, f32ToF16Bits, toF16Bits } from '../dtype.js';
import type { ByteSource } from './byte_source.js';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';
const ELEMENT_BYTES: Record<string, number> = { F64: 8, I64: 8, U64: 8, F32: 4, I32: 4, U32: 4, F16: 2, BF16: 2, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1 };
/** Float dtypes the loader converts to f32. */
export const FLOAT_DTYPES = ['F32', 'F16', 'BF16'] as const;
const MAX_HEADER = 100_000_000;

export class SafetensorsError extends Error {
  constructor(file: string, detail: string) {
    super(`${file}: malformed safetensors: ${detail}`);
    this.name = 'SafetensorsError';
  }
}

export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  tensors: Map<string, TensorEntry>;
  /** Absolute file offset of the data section. */
  dataStart: number;
}

function u64le(b: Uint8Array): number {
  const v = new DataView(b.buffer, b.byteOffset, 8);
  const lo = v.getUint32(0, true);
  const hi = v.getUint32(4, true);
  return hi * 2 ** 32 + lo;
}

export async function readHeader(src: ByteSource): Promise<SafetensorsHeader> {
  const bad = (d: string) => new SafetensorsError(src.name, d);
  if (src.size < 8) throw bad(`file is ${src.size} bytes, shorter than the 8-byte header length`);
  const n = u64le(await src.read(0, 8));
  if (n > MAX_HEADER) throw bad(`header length ${n} exceeds the ${MAX_HEADER}-byte limit`);
  if (8 + n > src.size) throw bad(`header length ${n} runs past the end of the ${src.size}-byte file (truncated?)`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await src.read(8, n)));
  } catch (e) {
    throw bad(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('header JSON is not an object');
  const dataStart = 8 + n;
  const dataLen = src.size - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorEntry>();
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null) throw bad('__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw bad(`__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) throw bad(`entry '${name}' is not an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in ELEMENT_BYTES)) throw bad(`tensor '${name}': unknown dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0))
      throw bad(`tensor '${name}': shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[0] > off[1])
      throw bad(`tensor '${name}': data_offsets ${JSON.stringify(off)} is not [begin, end] with begin <= end`);
    const shape = e.shape as number[];
    const want = shape.reduce((p, d) => p * d, 1) * ELEMENT_BYTES[e.dtype];
    if (off[1] - off[0] !== want)
      throw bad(`tensor '${name}': ${e.dtype} ${JSON.stringify(shape)} needs ${want} bytes but data_offsets span ${off[1] - off[0]}`);
    if (off[1] > dataLen)
      throw bad(`tensor '${name}': data_offsets end ${off[1]} is past the ${dataLen}-byte data section (file truncated?)`);
    tensors.set(name, { name, dtype: e.dtype, shape, begin: off[0], end: off[1] });
  }
  // Offsets must tile the data section: sorted, no overlap, no gap, ending at its end.
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  let pos = 0;
  for (const t of sorted) {
    if (t.begin < pos) throw bad(`tensor '${t.name}' [${t.begin}, ${t.end}) overlaps the previous tensor (ends at ${pos})`);
    if (t.begin > pos) throw bad(`gap in the data section before tensor '${t.name}' (bytes ${pos}..${t.begin})`);
    pos = t.end;
  }
  if (pos !== dataLen) throw bad(`tensors cover ${pos} bytes of a ${dataLen}-byte data section`);
  return { metadata, tensors, dataStart };
}

/** Reads one tensor as f32 (F32, F16 and BF16 are converted). */
export async function readTensorF32(src: ByteSource, header: SafetensorsHeader, name: string): Promise<Float32Array> {
  const e = header.tensors.get(name);
  if (!e) throw new Error(`${src.name}: no tensor '${name}'`);
  if (!(FLOAT_DTYPES as readonly string[]).includes(e.dtype))
    throw new SafetensorsError(src.name, `tensor '${name}' has dtype ${e.dtype}; expected one of ${FLOAT_DTYPES.join(', ')}`);
  const bytes = await src.read(header.dataStart + e.begin, e.end - e.begin);
  const n = (e.end - e.begin) / ELEMENT_BYTES[e.dtype];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  if (e.dtype === 'F32') for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
  else if (e.dtype === 'F16') for (let i = 0; i < n; i++) out[i] = f16BitsToF32(view.getUint16(2 * i, true));
  else {
    const u = new Uint32Array(1);
    const f = new Float32Array(u.buffer);
    for (let i = 0; i < n; i++) {
      u[0] = view.getUint16(2 * i, true) << 16;
      out[i] = f[0];
    }
  }
  return out;
}

/**
 * Reads one tensor as IEEE half bits, as an f16 GPU tensor stores it: F16 bytes are taken as they are (no f32 copy),
 * F32 and BF16 are rounded to nearest even (overflow gives ±Infinity, which the caller may reject).
 */
export async function readTensorF16Bits(src: ByteSource, header: SafetensorsHeader, name: string): Promise<Uint16Array> {
  const e = header.tensors.get(name);
  if (!e) throw new Error(`${src.name}: no tensor '${name}'`);
  if (e.dtype !== 'F16') return toF16Bits(await readTensorF32(src, header, name));
  const bytes = await src.read(header.dataStart + e.begin, e.end - e.begin);
  const n = (e.end - e.begin) / 2;
  // Safetensors is little-endian; so are the hosts WebGPU runs on, but a DataView makes that explicit.
  if (LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface TensorToWrite {
  dtype: 'F32' | 'F16' | 'BF16';
  shape: readonly number[];
  data: ArrayLike<number>;
}

/**
 * Serialises tensors with a space-padded header; values converted to the requested dtype. Like the reference writer,
 * tensors are ordered by element size (descending), then name, so every tensor is aligned to its element size.
 */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const names = Object.keys(tensors).sort(
    (a, b) => ELEMENT_BYTES[tensors[b].dtype] - ELEMENT_BYTES[tensors[a].dtype] || (a < b ? -1 : a > b ? 1 : 0),
  );
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let pos = 0;
  for (const name of names) {
    const t = tensors[name];
    const n = t.shape.reduce((p, d) => p * d, 1);
    if (t.data.length !== n) throw new Error(`tensor '${name}': shape [${t.shape.join(', ')}] holds ${n} elements, data has ${t.data.length}`);
    const bytes = n * ELEMENT_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [pos, pos + bytes] };
    pos += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + pos);
  const view = new DataView(out.buffer);
  view.setUint32(0, padded, true);
  view.setUint32(4, 0, true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  json = new Uint8Array(0);
  let at = 8 + padded;
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (const name of names) {
    const t = tensors[name];
    for (let i = 0; i < t.data.length; i++) {
      if (t.dtype === 'F32') view.setFloat32(at + 4 * i, t.data[i], true);
      else if (t.dtype === 'F16') view.setUint16(at + 2 * i, f32ToF16Bits(t.data[i]), true);
      else {
        f[0] = t.data[i];
        // Round to nearest even into the top 16 bits.
        const x = u[0];
        view.setUint16(at + 2 * i, (x + 0x7fff + ((x >>> 16) & 1)) >>> 16, true);
      }
    }
    at += t.data.length * ELEMENT_BYTES[t.dtype];
  }
  return out;
}

/** Node only: writes a safetensors file atomically (temporary file in the same folder, then rename). */
export async function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Promise<void> {
  const bytes = encodeSafetensors(tensors, metadata);
  await writeFileAtomic(path, bytes);
}

export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const { writeFile, rename, unlink } = await import('node:fs/promises');
  const tmp = `${path}.tmp-${process.pid}-${Date.now().toString(36)}`;
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}
