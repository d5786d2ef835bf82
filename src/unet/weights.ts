// Loading a model's parameters from a state dict: a safetensors ByteSource or a Checkpoint (src/io/checkpoint.ts:
// diffusers folders, fp16 variants, sharded indexes, SGM single files mapped to diffusers names), both read tensor
// by tensor so a checkpoint never sits in host memory whole or twice, or an in-memory map name → {data, shape}.
// The key set and every shape are checked before anything is uploaded; all problems are reported together, by name.
import { Var } from '../autograd/tape.js';
import type { ByteSource } from '../io/byte_source.js';
import type { Checkpoint } from '../io/checkpoint.js';
import { FLOAT_DTYPES, readHeader, readTensorF16Bits, readTensorF32 } from '../io/safetensors.js';
import { allocatePackedWeights } from '../nn/fused.js';
import type { ModelContext } from '../nn/module.js';
import { Tensor, shapeStr } from '../tensor.js';
import { toF16Bits } from '../dtype.js';

export interface StateDictEntry {
  data: Float32Array;
  shape: readonly number[];
}
export type StateDict = ReadonlyMap<string, StateDictEntry> | Readonly<Record<string, StateDictEntry>>;

export interface LoadWeightsOptions {
  /** Parameters to make trainable (requiresGrad); default none (frozen base model). */
  trainable?: (name: string) => boolean;
  /** Ignore checkpoint keys the model does not have (default false: they are an error). */
  allowUnexpected?: boolean;
}

export class StateDictError extends Error {
  constructor(
    readonly source: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly mismatched: { name: string; expected: readonly number[]; got: readonly number[] }[],
    readonly unsupported: { name: string; dtype: string }[] = [],
  ) {
    const parts: string[] = [];
    const list = (title: string, items: string[]) => {
      if (!items.length) return;
      const shown = items.slice(0, 200);
      parts.push(`${title} (${items.length}):\n    ${shown.join('\n    ')}${items.length > shown.length ? `\n    … ${items.length - shown.length} more` : ''}`);
    };
    list('missing', missing);
    list('unexpected', unexpected);
    list(
      'wrong shape',
      mismatched.map((m) => `${m.name}: model ${shapeStr(m.expected)}, checkpoint ${shapeStr(m.got)}`),
    );
    list(
      'unsupported dtype',
      unsupported.map((u) => `${u.name}: ${u.dtype} (expected one of ${FLOAT_DTYPES.join(', ')})`),
    );
    super(`${source}: checkpoint does not match the model:\n  ${parts.join('\n  ')}`);
    this.name = 'StateDictError';
  }
}

/** name → shape / dtype of every tensor in the source, and a reader for one tensor. */
export interface TensorIndex {
  name: string;
  shapes: Map<string, { shape: readonly number[]; dtype: string }>;
  read(name: string): Promise<Float32Array>;
  /** One tensor as f16 bits (F16 stored bytes unchanged; others rounded to nearest even). */
  readF16(name: string): Promise<Uint16Array>;
}

export type WeightSource = ByteSource | Checkpoint | StateDict;

export async function indexSource(source: WeightSource): Promise<TensorIndex> {
  if (isCheckpoint(source)) {
    const shapes = new Map([...source.tensors].map(([k, e]) => [k, { shape: e.shape, dtype: e.dtype }]));
    return { name: source.path, shapes, read: (n) => source.read(n), readF16: (n) => source.readF16(n) };
  }
  if (isByteSource(source)) {
    const header = await readHeader(source);
    const shapes = new Map([...header.tensors].map(([k, e]) => [k, { shape: e.shape, dtype: e.dtype }]));
    return { name: source.name, shapes, read: (n) => readTensorF32(source, header, n), readF16: (n) => readTensorF16Bits(source, header, n) };
  }
  const entries = source instanceof Map ? [...source.entries()] : Object.entries(source as Record<string, StateDictEntry>);
  const map = new Map(entries);
  const shapes = new Map(entries.map(([k, e]) => [k, { shape: e.shape, dtype: 'F32' }]));
  return { name: 'state dict', shapes, read: async (n) => map.get(n)!.data, readF16: async (n) => toF16Bits(map.get(n)!.data) };
}

function isCheckpoint(s: unknown): s is Checkpoint {
  const c = s as Checkpoint;
  return typeof c.read === 'function' && c.tensors instanceof Map && typeof c.format === 'string';
}

function isByteSource(s: unknown): s is ByteSource {
  return typeof (s as ByteSource).read === 'function' && typeof (s as ByteSource).size === 'number';
}

export const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Checks the key set and shapes, then uploads one tensor at a time into the context's parameters. */
export async function loadStateDict(ctx: ModelContext, source: WeightSource, opts: LoadWeightsOptions = {}): Promise<void> {
  const index = await indexSource(source);
  const missing: string[] = [];
  const mismatched: StateDictError['mismatched'] = [];
  const unsupported: StateDictError['unsupported'] = [];
  for (const [name, p] of ctx.params) {
    const e = index.shapes.get(name);
    if (!e) missing.push(`${name} ${shapeStr(p.shape)}`);
    else if (!(FLOAT_DTYPES as readonly string[]).includes(e.dtype)) unsupported.push({ name, dtype: e.dtype });
    else if (!sameShape(e.shape, p.shape)) mismatched.push({ name, expected: p.shape, got: e.shape });
  }
  const unexpected = opts.allowUnexpected ? [] : [...index.shapes].filter(([k]) => !ctx.params.has(k)).map(([k, e]) => `${k} ${shapeStr(e.shape)}`);
  if (missing.length || unexpected.length || mismatched.length || unsupported.length)
    throw new StateDictError(index.name, missing, unexpected, mismatched, unsupported);
  // Weights fused GEMMs read stacked go back to back into shared buffers (one copy of each weight).
  ctx.clearDerived();
  for (const p of ctx.params.values()) {
    p.var?.dispose();
    p.var = undefined;
  }
  const packed = allocatePackedWeights(ctx, opts.trainable);
  for (const [name, p] of ctx.params) {
    const into = packed.get(name);
    if (into) {
      if (ctx.dtype === 'f16') into.writeF16Bits(await index.readF16(name));
      else into.write(await index.read(name));
      p.var = new Var(into, false, name);
      continue;
    }
    // An f16 model takes f16 bits (F16 files: their bytes as they are, no f32 copy on the host or the GPU).
    const t =
      ctx.dtype === 'f16'
        ? Tensor.fromF16Bits(ctx.gpu, await index.readF16(name), p.shape, { label: name })
        : Tensor.fromArray(ctx.gpu, await index.read(name), p.shape, { label: name });
    p.var?.dispose();
    p.var = new Var(t, opts.trainable?.(name) ?? false, name);
  }
}
