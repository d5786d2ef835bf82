// safetensors: round trip, conversion of F16/BF16, validation errors that name the problem, atomic writes.
import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bytesSource, fileSource } from '../src/io/byte_source.js';
import { SafetensorsError, encodeSafetensors, readHeader, readTensorF32, writeSafetensors } from '../src/io/safetensors.js';
import { seeded } from './helpers.js';

function rawFile(header: object | string, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors', () => {
  it('round-trips F32, F16 and BF16 with metadata and a 0-rank tensor, aligned per element size', async () => {
    const w = seeded(6, 1);
    const h = seeded(5, 2);
    const bytes = encodeSafetensors(
      {
        'unet.w': { dtype: 'F32', shape: [2, 3], data: w },
        'a.half': { dtype: 'F16', shape: [5], data: h },
        'b.bf': { dtype: 'BF16', shape: [5], data: h },
        alpha: { dtype: 'F32', shape: [], data: [8] },
      },
      { format: 'pt' },
    );
    const src = bytesSource(bytes, 'mem.safetensors');
    const hdr = await readHeader(src);
    expect(hdr.metadata).toEqual({ format: 'pt' });
    expect([...hdr.tensors.keys()].sort()).toEqual(['a.half', 'alpha', 'b.bf', 'unet.w']);
    for (const t of hdr.tensors.values()) expect((hdr.dataStart + t.begin) % (t.dtype === 'F32' ? 4 : 2)).toBe(0);
    expect(Array.from(await readTensorF32(src, hdr, 'unet.w'))).toEqual(Array.from(w));
    expect(Array.from(await readTensorF32(src, hdr, 'alpha'))).toEqual([8]);
    const half = await readTensorF32(src, hdr, 'a.half');
    const bf = await readTensorF32(src, hdr, 'b.bf');
    h.forEach((v, i) => {
      expect(Math.abs(half[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -24);
      expect(Math.abs(bf[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8);
    });
  });

  const data8 = new Uint8Array(8);
  const cases: [string, Uint8Array, RegExp][] = [
    ['a file shorter than 8 bytes', new Uint8Array(3), /shorter than the 8-byte header length/],
    ['a header length past the end (truncated)', (() => { const b = rawFile({}, new Uint8Array()); new DataView(b.buffer).setUint32(0, 999, true); return b; })(), /runs past the end/],
    ['a header that is not JSON', rawFile('{"x": [1,', new Uint8Array()), /not valid UTF-8 JSON/],
    ['an unknown dtype', rawFile({ t: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }, data8), /unknown dtype "F33"/],
    ['a bad shape', rawFile({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, data8), /shape \[-2\]/],
    ['offsets that do not match the shape', rawFile({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data8), /needs 12 bytes but data_offsets span 8/],
    ['offsets past the data section', rawFile({ t: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, data8), /past the 8-byte data section/],
    [
      'overlapping tensors',
      rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, data8),
      /overlaps/,
    ],
    ['trailing bytes not covered by any tensor', rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, data8), /cover 4 bytes of a 8-byte/],
  ];
  for (const [what, bytes, msg] of cases) {
    it(`rejects ${what}`, async () => {
      const err = await readHeader(bytesSource(bytes, 'bad.safetensors')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toMatch(/^bad\.safetensors: malformed safetensors: /);
      expect((err as Error).message).toMatch(msg);
    });
  }

  it('refuses to read a non-float tensor as f32, naming the dtype', async () => {
    const src = bytesSource(rawFile({ ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, data8), 'ids.safetensors');
    await expect(readTensorF32(src, await readHeader(src), 'ids')).rejects.toThrow(/dtype I64; expected one of F32, F16, BF16/);
  });

  it('writes atomically: a failed write leaves the existing file untouched and no temporary behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'st-'));
    const path = join(dir, 'lora.safetensors');
    await writeSafetensors(path, { w: { dtype: 'F32', shape: [2], data: [1, 2] } });
    const before = readFileSync(path);
    await expect(writeSafetensors(path, { w: { dtype: 'F32', shape: [3], data: [1, 2] } })).rejects.toThrow(/holds 3 elements, data has 2/);
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(readdirSync(dir)).toEqual(['lora.safetensors']);
    // And the file reads back through the streaming file source.
    const src = await fileSource(path);
    const hdr = await readHeader(src);
    expect(Array.from(await readTensorF32(src, hdr, 'w'))).toEqual([1, 2]);
    await src.close();
  });

  it('the file source reports a truncated file by byte position', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'st-'));
    const path = join(dir, 'cut.safetensors');
    const full = encodeSafetensors({ w: { dtype: 'F32', shape: [4], data: [1, 2, 3, 4] } });
    writeFileSync(path, full.subarray(0, full.length - 4));
    const src = await fileSource(path);
    await expect(readHeader(src)).rejects.toThrow(/past the 12-byte data section \(file truncated\?\)/);
    await src.close();
    expect(existsSync(path)).toBe(true);
  });
});
