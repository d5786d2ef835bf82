// LoRA adapters on a model's Linear / Conv2d layers, peft naming:
//   <module>.lora_A.weight  [r, in] (Linear) or [r, in, kH, kW] (Conv2d, same kernel / stride / padding as the base)
//   <module>.lora_B.weight  [out, r] (Linear) or [out, r, 1, 1] (Conv2d)
// y = base(x) + scale · B(A(x)), scale = lora_alpha / r (× an adapter weight). The adapters are trainable Vars; the
// base weights stay frozen. An optional 'unet.' prefix (diffusers' combined pipeline files) is accepted.
import { Var } from '../autograd/tape.js';
import type { ByteSource } from '../io/byte_source.js';
import type { LoraAdapter, LoraSet } from '../io/lora_format.js';
import type { LoraTarget, ModelContext } from '../nn/module.js';
import { Tensor, numel, shapeStr } from '../tensor.js';
import { type StateDict, indexSource, sameShape } from './weights.js';

export interface LoadLoraOptions {
  /** Multiplier of B·A: lora_alpha / r × adapter weight (peft: scaling = alpha / r). */
  scale: number;
  /** Whether A / B require gradients (default true: the adapter is what gets trained). */
  trainable?: boolean;
}

export interface AttachLoraOptions {
  /** Multiplies every adapter's own alpha / rank scale (default 1). */
  weight?: number;
  /** Whether A / B require gradients (default true). */
  trainable?: boolean;
}

export interface InitLoraOptions {
  rank: number;
  /** lora_alpha (default rank, i.e. scale 1). */
  alpha?: number;
  /** peft target_modules: a layer is adapted when its path equals an entry or ends with '.' + entry. */
  targetModules: readonly string[];
  /** Seed of A's uniform init (default 0). */
  seed?: number;
}

export interface LoraParameter {
  /** peft name, e.g. 'down_blocks.1.attentions.0.proj_in.lora_A.weight'. */
  name: string;
  var: Var;
}

export class LoraError extends Error {
  constructor(source: string, problems: string[]) {
    super(`${source}: LoRA does not fit the model (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  ${problems.join('\n  ')}`);
    this.name = 'LoraError';
  }
}

/** Adapter shapes for a target with weight [out, in(, kH, kW)] and rank r. */
function adapterShapes(t: LoraTarget, r: number): { a: number[]; b: number[] } {
  const [out, inF, ...k] = t.weight.shape;
  return k.length ? { a: [r, inF, ...k], b: [out, r, 1, 1] } : { a: [r, inF], b: [out, r] };
}

const KEY = /^(?:unet\.)?(.+)\.lora_([AB])\.weight$/;

export async function loadLora(ctx: ModelContext, source: ByteSource | StateDict, opts: LoadLoraOptions): Promise<string[]> {
  const index = await indexSource(source);
  const problems: string[] = [];
  const pairs = new Map<string, { a?: string; b?: string }>();
  for (const key of index.shapes.keys()) {
    const m = KEY.exec(key);
    if (!m) {
      problems.push(`unexpected key ${key} (expected '<module>.lora_A.weight' / '<module>.lora_B.weight')`);
      continue;
    }
    const p = pairs.get(m[1]) ?? {};
    p[m[2] === 'A' ? 'a' : 'b'] = key;
    pairs.set(m[1], p);
  }
  for (const [module, { a, b }] of pairs) {
    const target = ctx.loraTargets.get(module);
    if (!target) {
      problems.push(`unknown module ${module} (no Linear / Conv2d with that name)`);
      continue;
    }
    if (!a || !b) {
      problems.push(`${module}: lora_${a ? 'B' : 'A'}.weight is missing`);
      continue;
    }
    const r = index.shapes.get(a)!.shape[0];
    const want = adapterShapes(target, r);
    const gotA = index.shapes.get(a)!.shape;
    const gotB = index.shapes.get(b)!.shape;
    if (!sameShape(gotA, want.a)) problems.push(`${a}: shape ${shapeStr(gotA)}, expected ${shapeStr(want.a)}`);
    if (!sameShape(gotB, want.b)) problems.push(`${b}: shape ${shapeStr(gotB)}, expected ${shapeStr(want.b)}`);
  }
  if (problems.length) throw new LoraError(index.name, problems);
  const trainable = opts.trainable ?? true;
  const adapted: string[] = [];
  for (const [module, { a, b }] of pairs) {
    const target = ctx.loraTargets.get(module)!;
    const upload = async (key: string) => {
      const { shape } = index.shapes.get(key)!;
      // Frozen adapters of an f16 model are stored in f16 (no cast per forward); trainable ones stay f32 masters.
      const dtype = trainable ? 'f32' : ctx.dtype;
      return new Var(Tensor.fromArray(ctx.gpu, await index.read(key), shape, { label: key, dtype }), trainable, key.replace(/^unet\./, ''));
    };
    const va = await upload(a!);
    const vb = await upload(b!);
    detach(target);
    target.lora = { a: va, b: vb, scale: opts.scale };
    adapted.push(module);
  }
  return adapted.sort();
}

/** Adapters already parsed (src/io/lora_format.ts): shapes checked against the model, all problems listed at once. */
export function attachLora(ctx: ModelContext, set: LoraSet | readonly LoraAdapter[], opts: AttachLoraOptions = {}): string[] {
  const adapters = 'adapters' in set ? set.adapters : set;
  const source = 'adapters' in set ? set.source : 'LoRA adapters';
  const problems: string[] = [];
  for (const ad of adapters) {
    const target = ctx.loraTargets.get(ad.module);
    if (!target) {
      problems.push(`unknown module ${ad.module} (no Linear / Conv2d with that name)`);
      continue;
    }
    const want = adapterShapes(target, ad.A.shape[0]);
    if (!sameShape(ad.A.shape, want.a)) problems.push(`${ad.module}: A shape ${shapeStr(ad.A.shape)}, expected ${shapeStr(want.a)}`);
    if (!sameShape(ad.B.shape, want.b)) problems.push(`${ad.module}: B shape ${shapeStr(ad.B.shape)}, expected ${shapeStr(want.b)}`);
  }
  if (problems.length) throw new LoraError(source, problems);
  const trainable = opts.trainable ?? true;
  for (const ad of adapters) {
    const target = ctx.loraTargets.get(ad.module)!;
    const up = (m: { data: Float32Array; shape: number[] }, which: 'A' | 'B') => {
      const name = `${ad.module}.lora_${which}.weight`;
      // Frozen adapters of an f16 model are stored in f16 (no cast per forward); trainable ones stay f32 masters.
      return new Var(Tensor.fromArray(ctx.gpu, m.data, m.shape, { label: name, dtype: trainable ? 'f32' : ctx.dtype }), trainable, name);
    };
    const a = up(ad.A, 'A');
    const b = up(ad.B, 'B');
    detach(target);
    target.lora = { a, b, scale: ad.scale * (opts.weight ?? 1) };
  }
  return adapters.map((a) => a.module).sort();
}

export function loraModules(ctx: ModelContext): Map<string, number[]> {
  return new Map([...ctx.loraTargets].map(([k, t]) => [k, [...t.weight.shape]]));
}

function detach(t: LoraTarget): void {
  if (!t.lora) return;
  t.lora.a.dispose();
  t.lora.b.dispose();
  t.lora = undefined;
}

/** mulberry32: deterministic across runs and platforms. */
function uniform(n: number, seed: number, bound: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 * bound - bound;
  }
  return out;
}

export function initLora(ctx: ModelContext, opts: InitLoraOptions): string[] {
  const { rank } = opts;
  const scale = (opts.alpha ?? rank) / rank;
  const matches = (name: string) => opts.targetModules.some((t) => name === t || name.endsWith(`.${t}`));
  const adapted: string[] = [];
  let seed = opts.seed ?? 0;
  for (const [name, target] of [...ctx.loraTargets].sort(([x], [y]) => (x < y ? -1 : 1))) {
    if (!matches(name)) continue;
    const shapes = adapterShapes(target, rank);
    // peft: kaiming_uniform_(a=√5) on A, i.e. U(−1/√fan_in, 1/√fan_in); B = 0 so training starts at the base model.
    const fanIn = numel(shapes.a.slice(1));
    const a = Tensor.fromArray(ctx.gpu, uniform(numel(shapes.a), seed++, 1 / Math.sqrt(fanIn)), shapes.a, { label: `${name}.lora_A.weight` });
    const b = Tensor.zeros(ctx.gpu, shapes.b, 'f32', `${name}.lora_B.weight`);
    detach(target);
    target.lora = { a: new Var(a, true, `${name}.lora_A.weight`), b: new Var(b, true, `${name}.lora_B.weight`), scale };
    adapted.push(name);
  }
  return adapted;
}

export function loraParameters(ctx: ModelContext): LoraParameter[] {
  const out: LoraParameter[] = [];
  for (const [name, t] of ctx.loraTargets) {
    if (!t.lora) continue;
    out.push({ name: `${name}.lora_A.weight`, var: t.lora.a }, { name: `${name}.lora_B.weight`, var: t.lora.b });
  }
  return out.sort((x, y) => (x.name < y.name ? -1 : 1));
}

export function clearLora(ctx: ModelContext): void {
  for (const t of ctx.loraTargets.values()) detach(t);
}
