// The teacher on disk (Node only). A training checkpoint is a complete diffusers SDXL folder (what the pipelines and
// diffusers load) plus train/ (optimizer moments, state.json):
//   <run>/checkpoint/model_index.json, scheduler/, tokenizer/, tokenizer_2/, text_encoder/model.safetensors,
//     text_encoder_2/model.safetensors, unet/diffusion_pytorch_model.safetensors, vae/diffusion_pytorch_model.safetensors
//     (each with its config.json), train/optimizer.safetensors, train/state.json
// A new checkpoint is written whole into checkpoint.tmp/, then swapped in by renames (checkpoint → checkpoint.old,
// checkpoint.tmp → checkpoint, old removed); a run killed between the renames finds checkpoint.old, so at most the
// steps since the last checkpoint are lost.
import { dirname } from 'node:path';
import { type TensorToWrite, encodeSafetensors, writeFileAtomic } from '../io/safetensors.js';
import type { Param } from '../nn/module.js';
import type { StateDictEntry } from '../unet/weights.js';

export interface TeacherState {
  /** 'vae' and 'diffusion' are in progress at `step`; 'done' when both finished. */
  stage: 'vae' | 'diffusion' | 'done';
  /** Optimizer steps done in the current stage. */
  step: number;
  /** Steps of the finished VAE stage (0 before). */
  vaeSteps: number;
  seed: number;
  /** Seconds of training so far, all runs together. */
  seconds: number;
  /** Options the run was started with (for the record; the command line of a resumed run wins). */
  options?: unknown;
}

export interface FolderPart {
  /** Folder name in the diffusers layout ('unet', 'vae', 'text_encoder', 'text_encoder_2'). */
  folder: string;
  config: object;
  /** Parameters to save (skipped when any is not loaded yet, e.g. the UNet during the VAE stage). */
  params: ReadonlyMap<string, Param>;
}

const WEIGHT_FILE: Record<string, string> = {
  unet: 'diffusion_pytorch_model.safetensors',
  vae: 'diffusion_pytorch_model.safetensors',
  text_encoder: 'model.safetensors',
  text_encoder_2: 'model.safetensors',
};

export function weightFile(folder: string): string {
  const f = WEIGHT_FILE[folder];
  if (!f) throw new Error(`teacher folder: unknown component '${folder}'`);
  return `${folder}/${f}`;
}

export interface StaticFiles {
  /** Relative path → contents (model_index.json, scheduler config, tokenizer files). */
  [path: string]: string;
}

const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
const enc = new TextEncoder();

async function paramsToWrite(params: ReadonlyMap<string, Param>): Promise<Record<string, TensorToWrite> | undefined> {
  const out: Record<string, TensorToWrite> = {};
  for (const [name, p] of params) {
    if (!p.var) return undefined;
    out[name] = { dtype: 'F32', shape: [...p.shape], data: await p.var.value.toArray() };
  }
  return out;
}

/** Writes a whole checkpoint (layout in the header) and swaps it in. */
export async function writeCheckpoint(
  runDir: string,
  files: StaticFiles,
  parts: readonly FolderPart[],
  optimizer: Record<string, TensorToWrite> | undefined,
  state: TeacherState,
): Promise<string> {
  const { mkdir, rm, rename, stat } = await import('node:fs/promises');
  const final = `${runDir}/checkpoint`;
  const tmp = `${runDir}/checkpoint.tmp`;
  const old = `${runDir}/checkpoint.old`;
  await rm(tmp, { recursive: true, force: true });
  const put = async (rel: string, bytes: Uint8Array) => {
    await mkdir(dirname(`${tmp}/${rel}`), { recursive: true });
    await writeFileAtomic(`${tmp}/${rel}`, bytes);
  };
  for (const [rel, text] of Object.entries(files)) await put(rel, enc.encode(text));
  for (const part of parts) {
    await put(`${part.folder}/config.json`, enc.encode(json(part.config)));
    const tensors = await paramsToWrite(part.params);
    if (tensors) await put(weightFile(part.folder), encodeSafetensors(tensors, { format: 'pt' }));
  }
  if (optimizer) await put('train/optimizer.safetensors', encodeSafetensors(optimizer, { format: 'pt' }));
  await put('train/state.json', enc.encode(json(state)));
  const exists = async (p: string) => stat(p).then(() => true, () => false);
  if (await exists(final)) {
    await rm(old, { recursive: true, force: true });
    await rename(final, old);
  }
  await rename(tmp, final);
  await rm(old, { recursive: true, force: true });
  return final;
}

/** The checkpoint folder to resume from (checkpoint/, else checkpoint.old/ left by a run killed mid-swap), or undefined. */
export async function findCheckpoint(runDir: string): Promise<string | undefined> {
  const { stat } = await import('node:fs/promises');
  for (const dir of [`${runDir}/checkpoint`, `${runDir}/checkpoint.old`]) {
    if (await stat(`${dir}/train/state.json`).then(() => true, () => false)) return dir;
  }
  return undefined;
}

export async function readState(dir: string): Promise<TeacherState> {
  const { readFile } = await import('node:fs/promises');
  const s = JSON.parse(await readFile(`${dir}/train/state.json`, 'utf8')) as TeacherState;
  if (!['vae', 'diffusion', 'done'].includes(s.stage) || !Number.isInteger(s.step))
    throw new Error(`${dir}/train/state.json: expected {stage: 'vae' | 'diffusion' | 'done', step: integer, …}, got ${JSON.stringify(s).slice(0, 200)}`);
  return s;
}

/** A safetensors file of the checkpoint as a name → {data, shape} map, or undefined when it is absent. */
export async function readTensors(path: string): Promise<Map<string, StateDictEntry> | undefined> {
  const { stat } = await import('node:fs/promises');
  if (!(await stat(path).then(() => true, () => false))) return undefined;
  const { fileSource } = await import('../io/byte_source.js');
  const { readHeader, readTensorF32 } = await import('../io/safetensors.js');
  const src = await fileSource(path);
  const header = await readHeader(src);
  const out = new Map<string, StateDictEntry>();
  try {
    for (const [name, e] of header.tensors) out.set(name, { data: await readTensorF32(src, header, name), shape: e.shape });
  } finally {
    await src.close();
  }
  return out;
}
