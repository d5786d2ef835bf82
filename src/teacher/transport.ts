// Moving a teacher checkpoint between GPU sessions (Node only). A device run may carry at most 64 MiB (working
// tree included) and bring back at most 8 files of ≤ 16 MiB; a full checkpoint (f32 weights + AdamW moments) is
// several times that. The packed form keeps the weights as F16 in shards of ≤ 15 MiB and the training state, and
// drops the moments: a run resumed from it starts AdamW afresh and warms the learning rate up again
// (trainTeacher does that when a checkpoint has no optimizer file). Configs and tokenizers are not packed: the
// training script writes them from src/datasets/emoji/configs.ts (the VAE's measured scaling_factor is kept in
// state.json).
//   <packed>/weights-0.safetensors … (keys '<component>/<parameter>'), <packed>/state.json
import { type TensorToWrite, encodeSafetensors, writeFileAtomic } from '../io/safetensors.js';
import { type TeacherState, readState, readTensors, weightFile } from './folder.js';

const COMPONENTS = ['vae', 'unet', 'text_encoder', 'text_encoder_2'] as const;
const SHARD_BYTES = 15 * 2 ** 20;

export interface PackedState extends TeacherState {
  /** The VAE config's scaling_factor at packing time. */
  vaeScalingFactor?: number;
  shards: string[];
}

/** Packs `<checkpoint>` into `<out>` (created); returns the files written. */
export async function packCheckpoint(checkpoint: string, out: string): Promise<string[]> {
  const { mkdir, readFile } = await import('node:fs/promises');
  await mkdir(out, { recursive: true });
  const state = await readState(checkpoint);
  const shards: Record<string, TensorToWrite>[] = [{}];
  let bytes = 0;
  for (const c of COMPONENTS) {
    const dict = await readTensors(`${checkpoint}/${weightFile(c)}`);
    if (!dict) continue;
    for (const [name, e] of dict) {
      const size = 2 * e.data.length;
      if (bytes + size > SHARD_BYTES && bytes > 0) {
        shards.push({});
        bytes = 0;
      }
      shards.at(-1)![`${c}/${name}`] = { dtype: 'F16', shape: [...e.shape], data: e.data };
      bytes += size;
    }
  }
  const vaeConfig = JSON.parse(await readFile(`${checkpoint}/vae/config.json`, 'utf8')) as { scaling_factor?: number };
  const names = shards.map((_, i) => `weights-${i}.safetensors`);
  if (names.length + 1 > 8) throw new Error(`packCheckpoint: ${names.length} shards of 15 MiB plus state.json exceed the 8 files a device run brings back`);
  for (const [i, s] of shards.entries()) await writeFileAtomic(`${out}/${names[i]}`, encodeSafetensors(s, { format: 'pt' }));
  const packed: PackedState = { ...state, vaeScalingFactor: vaeConfig.scaling_factor, shards: names };
  await writeFileAtomic(`${out}/state.json`, new TextEncoder().encode(JSON.stringify(packed, null, 2) + '\n'));
  return [...names, 'state.json'];
}

/**
 * Unpacks into `<runDir>/checkpoint/` (weights as F16 component files, no optimizer), with `configs` (folder →
 * config object) written beside them and the packed scaling_factor restored into the VAE config.
 */
export async function unpackCheckpoint(packed: string, runDir: string, configs: Record<(typeof COMPONENTS)[number], object>): Promise<TeacherState> {
  const { mkdir, readFile, rm, rename } = await import('node:fs/promises');
  const state = JSON.parse(await readFile(`${packed}/state.json`, 'utf8')) as PackedState;
  if (!Array.isArray(state.shards)) throw new Error(`${packed}/state.json: no 'shards' list (not made by packCheckpoint)`);
  const parts: Record<string, Record<string, TensorToWrite>> = {};
  for (const shard of state.shards) {
    const dict = await readTensors(`${packed}/${shard}`);
    if (!dict) throw new Error(`${packed}/${shard}: missing`);
    for (const [key, e] of dict) {
      const [c, ...rest] = key.split('/');
      if (!(COMPONENTS as readonly string[]).includes(c)) throw new Error(`${packed}/${shard}: key '${key}' has no component prefix`);
      (parts[c] ??= {})[rest.join('/')] = { dtype: 'F16', shape: [...e.shape], data: e.data };
    }
  }
  const tmp = `${runDir}/checkpoint.tmp`;
  await rm(tmp, { recursive: true, force: true });
  const enc = new TextEncoder();
  for (const c of COMPONENTS) {
    await mkdir(`${tmp}/${c}`, { recursive: true });
    const config = c === 'vae' && state.vaeScalingFactor !== undefined ? { ...configs[c], scaling_factor: state.vaeScalingFactor } : configs[c];
    await writeFileAtomic(`${tmp}/${c}/config.json`, enc.encode(JSON.stringify(config, null, 2) + '\n'));
    if (parts[c]) await writeFileAtomic(`${tmp}/${weightFile(c)}`, encodeSafetensors(parts[c], { format: 'pt' }));
  }
  const { shards: _s, vaeScalingFactor: _v, ...plain } = state;
  await mkdir(`${tmp}/train`, { recursive: true });
  await writeFileAtomic(`${tmp}/train/state.json`, enc.encode(JSON.stringify(plain, null, 2) + '\n'));
  await rm(`${runDir}/checkpoint`, { recursive: true, force: true });
  await rename(tmp, `${runDir}/checkpoint`);
  return plain;
}
