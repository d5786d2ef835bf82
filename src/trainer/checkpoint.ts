// Training checkpoints (Node): one folder per saved step, `<output>/checkpoint-<step>/`, holding
//   pytorch_lora_weights.safetensors   the LoRA in diffusers / peft naming (loadable by `tcd sample --lora` and by
//                                      diffusers' load_lora_weights), float32
//   optimizer.safetensors              AdamW moments `m.<param>` / `v.<param>` (float32) and the update count
//   ema_lora.safetensors               the EMA target's LoRA, when the run keeps one
//   training_state.json                step, seed, data position, the run's configuration
// A checkpoint is written into a temporary folder that is renamed into place once every file is on disk, so a
// killed run leaves either the whole checkpoint or none (a stale temporary folder is removed by the next save).
// Randomness is counter-based (every draw is keyed by the seed and the sample's position in the data stream), so
// the step and the seed are the whole RNG state: resuming from a checkpoint repeats the uninterrupted run exactly.
import { encodeLoraTensors, type LoraToSave } from '../io/lora_format.js';
import { encodeSafetensors, readHeader, readTensorF32 } from '../io/safetensors.js';
import { fileSource } from '../io/byte_source.js';
import type { OptimizerState } from './lora_optimizer.js';

export const LORA_FILE = 'pytorch_lora_weights.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const EMA_FILE = 'ema_lora.safetensors';
export const STATE_FILE = 'training_state.json';
const PREFIX = 'checkpoint-';

export class TrainingCheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainingCheckpointError';
  }
}

export interface TrainingState {
  /** Completed optimizer updates. */
  step: number;
  seed: number;
  /** Samples drawn from the data stream so far (its position: epoch = floor(samples / dataset size)). */
  samplesSeen: number;
  datasetSize: number;
  /** Anything the run wants to check on resume (LoRA rank, batch size, …): compared key by key. */
  config: Record<string, unknown>;
  /** The base UNet's storage type when not f32. */
  dtype?: 'f16';
  /**
   * Loss scaling of an f16 run (LossScaler's scale, its growth tracker and the updates skipped for overflow, which
   * did not advance AdamW: the optimizer's update count is step − skipped).
   */
  lossScaler?: { scale: number; goodSteps: number; skipped: number };
}

export interface CheckpointContents {
  state: TrainingState;
  lora: readonly LoraToSave[];
  optimizer: OptimizerState;
  ema?: readonly LoraToSave[];
  /** LoRA metadata (e.g. the training command). */
  metadata?: Record<string, string>;
}

export function checkpointName(step: number): string {
  return `${PREFIX}${step}`;
}

export function encodeOptimizer(opt: OptimizerState): Uint8Array {
  const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const [name, m] of [...opt.m].sort(([a], [b]) => (a < b ? -1 : 1))) {
    tensors[`m.${name}`] = { dtype: 'F32', shape: [m.length], data: m };
    const v = opt.v.get(name);
    if (!v) throw new TrainingCheckpointError(`optimizer state: no v for ${name}`);
    tensors[`v.${name}`] = { dtype: 'F32', shape: [v.length], data: v };
  }
  return encodeSafetensors(tensors, { format: 'pt', step: String(opt.step), optimizer: 'AdamW' });
}

/**
 * How checkpoint files reach the disk. The one seam for fault injection: tests replace `writeFile` (e.g. with one
 * failing ENOSPC) and restore it; nothing else reads it.
 */
export const checkpointIo = {
  writeFile: async (path: string, data: Uint8Array | string): Promise<void> => {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path, data);
  },
};

/**
 * Checks up front that `outputDir` is (or can be made) a folder this process can create files in, so an unwritable
 * output fails before any model loading or training.
 */
export async function assertWritableFolder(outputDir: string, what = 'output folder'): Promise<void> {
  const { mkdir, rm } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const probe = join(outputDir, `.tcd-write-probe-${process.pid}`);
  try {
    await mkdir(outputDir, { recursive: true });
    await checkpointIo.writeFile(probe, '');
    await rm(probe, { force: true });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new TrainingCheckpointError(
      `${what} ${outputDir} is not writable: expected a folder this run can create files in, got ${err.code ?? 'an error'} (${err.message})`,
    );
  }
}

/** Writes a checkpoint folder atomically (temporary folder + rename); returns its path. */
export async function saveCheckpoint(outputDir: string, c: CheckpointContents): Promise<string> {
  const { mkdir, rename, rm } = await import('node:fs/promises');
  const { join } = await import('node:path');
  await mkdir(outputDir, { recursive: true });
  const final = join(outputDir, checkpointName(c.state.step));
  const tmp = `${final}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp);
  // Each file names itself in a failure (e.g. ENOSPC on a full disk), with the size it was writing.
  const write = async (name: string, data: Uint8Array | string) => {
    const path = join(tmp, name);
    try {
      await checkpointIo.writeFile(path, data);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
      throw new TrainingCheckpointError(
        `checkpoint ${final}: writing ${path} (${bytes} bytes) failed: ${err.code && !err.message.includes(err.code) ? `${err.code}: ` : ''}${err.message}; ` +
          `the checkpoint was not saved (its temporary folder is removed) and earlier checkpoints are untouched`,
      );
    }
  };
  try {
    const lora = encodeLoraTensors(c.lora, { metadata: c.metadata });
    await write(LORA_FILE, encodeSafetensors(lora.tensors, lora.metadata));
    await write(OPTIMIZER_FILE, encodeOptimizer(c.optimizer));
    if (c.ema) {
      const ema = encodeLoraTensors(c.ema);
      await write(EMA_FILE, encodeSafetensors(ema.tensors, ema.metadata));
    }
    await write(STATE_FILE, `${JSON.stringify(c.state, null, 2)}\n`);
    // Replacing an existing checkpoint of the same step: the old one goes only once the new one is complete.
    await rm(final, { recursive: true, force: true });
    await rename(tmp, final);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw e;
  }
  return final;
}

/** Complete checkpoints in outputDir, oldest first (folders named checkpoint-<step> holding training_state.json). */
export async function listCheckpoints(outputDir: string): Promise<{ step: number; path: string }[]> {
  const { readdir, stat } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const names = await readdir(outputDir).catch(() => [] as string[]);
  const out: { step: number; path: string }[] = [];
  for (const n of names) {
    const m = /^checkpoint-(\d+)$/.exec(n);
    if (!m) continue;
    const path = join(outputDir, n);
    if (await stat(join(path, STATE_FILE)).catch(() => null)) out.push({ step: Number(m[1]), path });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** Deletes all but the newest `keep` checkpoints (and stale temporary folders); returns what was removed. */
export async function pruneCheckpoints(outputDir: string, keep: number): Promise<string[]> {
  const { readdir, rm } = await import('node:fs/promises');
  const { join } = await import('node:path');
  if (!Number.isInteger(keep) || keep < 1) throw new TrainingCheckpointError(`max checkpoints must be an integer ≥ 1, got ${keep}`);
  const removed: string[] = [];
  const all = await listCheckpoints(outputDir);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) {
    await rm(c.path, { recursive: true, force: true });
    removed.push(c.path);
  }
  for (const n of await readdir(outputDir).catch(() => [] as string[]))
    if (/^checkpoint-\d+\.tmp-\d+$/.test(n)) {
      await rm(join(outputDir, n), { recursive: true, force: true });
      removed.push(join(outputDir, n));
    }
  return removed;
}

async function readTensors(path: string, strip = ''): Promise<{ tensors: Map<string, { shape: number[]; data: Float32Array }>; metadata: Record<string, string> }> {
  const src = await fileSource(path).catch((e: NodeJS.ErrnoException) => {
    throw new TrainingCheckpointError(e.code === 'ENOENT' ? `${path}: no such file (an incomplete checkpoint?)` : `${path}: ${e.message}`);
  });
  try {
    const header = await readHeader(src);
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, e] of header.tensors) tensors.set(name.startsWith(strip) ? name.slice(strip.length) : name, { shape: [...e.shape], data: await readTensorF32(src, header, name) });
    return { tensors, metadata: header.metadata ?? {} };
  } finally {
    await src.close();
  }
}

export interface LoadedCheckpoint {
  path: string;
  state: TrainingState;
  /** peft names without the 'unet.' prefix → tensor. */
  lora: Map<string, { shape: number[]; data: Float32Array }>;
  ema?: Map<string, { shape: number[]; data: Float32Array }>;
  optimizer: OptimizerState;
}

/** Reads a checkpoint folder; `path` may also be an output folder (its newest checkpoint is taken). */
export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  const { readFile, stat } = await import('node:fs/promises');
  const { join } = await import('node:path');
  let dir = path;
  if (!(await stat(join(dir, STATE_FILE)).catch(() => null))) {
    const all = await listCheckpoints(path);
    if (!all.length) throw new TrainingCheckpointError(`resume ${path}: neither a checkpoint folder (with ${STATE_FILE}) nor an output folder holding checkpoint-<step>/ folders`);
    dir = all[all.length - 1].path;
  }
  const state = JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as TrainingState;
  for (const k of ['step', 'seed', 'samplesSeen', 'datasetSize'] as const)
    if (!Number.isInteger(state[k])) throw new TrainingCheckpointError(`${join(dir, STATE_FILE)}: '${k}' must be an integer, got ${JSON.stringify(state[k])}`);
  const lora = (await readTensors(join(dir, LORA_FILE), 'unet.')).tensors;
  const opt = await readTensors(join(dir, OPTIMIZER_FILE));
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  for (const [name, t] of opt.tensors) {
    if (name.startsWith('m.')) m.set(name.slice(2), t.data);
    else if (name.startsWith('v.')) v.set(name.slice(2), t.data);
    else throw new TrainingCheckpointError(`${join(dir, OPTIMIZER_FILE)}: unexpected tensor '${name}' (expected m.<param> / v.<param>)`);
  }
  const step = Number(opt.metadata.step);
  const skipped = state.lossScaler?.skipped ?? 0;
  if (step !== state.step - skipped)
    throw new TrainingCheckpointError(
      `${dir}: optimizer step ${opt.metadata.step} disagrees with training_state.json: expected step ${state.step} − ${skipped} updates skipped for overflow = ${state.step - skipped}`,
    );
  const ema = (await stat(join(dir, EMA_FILE)).catch(() => null)) ? (await readTensors(join(dir, EMA_FILE), 'unet.')).tensors : undefined;
  return { path: dir, state, lora, ema, optimizer: { step, m, v } };
}
