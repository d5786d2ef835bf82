// VAE weight sources: a safetensors ByteSource goes through openSafetensorsCheckpoint({component: 'vae'}) (diffusers
// names; legacy query/key/value/proj_attn renamed; 1×1-conv attention weights squeezed; bare or prefixed SGM VAE
// files mapped), a Checkpoint is taken as mapped, and an in-memory state dict gets the same renames and squeezes.
// Keys of a part the model was built without (encoder or decoder) are dropped before the strict key check.
import type { ByteSource } from '../io/byte_source.js';
import { type Checkpoint, openSafetensorsCheckpoint } from '../io/checkpoint.js';
import { renameLegacyVaeAttention } from '../io/sgm_keys.js';
import type { StateDict, StateDictEntry, WeightSource } from '../unet/weights.js';

/** Which halves of the autoencoder a model holds. */
export type VaeParts = 'both' | 'decoder' | 'encoder';

/** Whether a diffusers VAE key belongs to a part the model holds. */
export function keyInParts(name: string, parts: VaeParts): boolean {
  const enc = name.startsWith('encoder.') || name.startsWith('quant_conv.');
  const dec = name.startsWith('decoder.') || name.startsWith('post_quant_conv.');
  if (parts === 'decoder') return !enc;
  if (parts === 'encoder') return !dec;
  return true;
}

const ATTN_WEIGHT = /\.attentions\.\d+\.(to_q|to_k|to_v|to_out\.0)\.weight$/;

function isCheckpoint(s: unknown): s is Checkpoint {
  const c = s as Checkpoint;
  return typeof c.read === 'function' && c.tensors instanceof Map && typeof c.format === 'string';
}

function isByteSource(s: unknown): s is ByteSource {
  return typeof (s as ByteSource).read === 'function' && typeof (s as ByteSource).size === 'number';
}

/** The source in diffusers AutoencoderKL naming, restricted to `parts`. */
export async function vaeWeightSource(source: WeightSource, parts: VaeParts): Promise<WeightSource> {
  if (isCheckpoint(source) || isByteSource(source)) {
    const cp = isCheckpoint(source) ? source : await openSafetensorsCheckpoint(source, { component: 'vae' });
    if (parts === 'both') return cp;
    const tensors = new Map([...cp.tensors].filter(([k]) => keyInParts(k, parts)));
    // The same checkpoint with fewer tensors.
    const view: Checkpoint = {
      path: cp.path,
      format: cp.format,
      component: cp.component,
      files: cp.files,
      names: [...tensors.keys()],
      tensors,
      ignored: [...cp.ignored, ...[...cp.tensors.keys()].filter((k) => !tensors.has(k))],
      metadata: cp.metadata,
      has: (n) => tensors.has(n),
      info: (n) => {
        const t = tensors.get(n);
        if (!t) throw new Error(`${cp.path}: no tensor '${n}' in the ${parts} part`);
        return t;
      },
      read: (n) => cp.read(n),
      readF16: (n) => cp.readF16(n),
      close: () => cp.close(),
    };
    return view;
  }
  const entries = source instanceof Map ? [...source.entries()] : Object.entries(source as Record<string, StateDictEntry>);
  const out = new Map<string, StateDictEntry>();
  for (const [k, e] of entries) {
    const name = renameLegacyVaeAttention(k);
    if (!keyInParts(name, parts)) continue;
    if (out.has(name)) throw new Error(`vae state dict: two tensors map to '${name}' (legacy and current attention names)`);
    const s = e.shape;
    const squeeze = ATTN_WEIGHT.test(name) && s.length === 4 && s[2] === 1 && s[3] === 1;
    out.set(name, squeeze ? { data: e.data, shape: [s[0], s[1]] } : e);
  }
  return out as StateDict;
}
