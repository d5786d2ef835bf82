// Where the parts of an SDXL pipeline come from (spec sdxl.md §8.1): a diffusers folder
//   model_index.json, scheduler/scheduler_config.json, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/,
//   unet/, vae/   (each model folder: config.json + weights, plain / .fp16 / sharded)
// or a single checkpoint file (SGM `sd_xl_base_1.0.safetensors`) whose weights replace the folder's: the folder (or
// `configFolder`) then only has to supply the configs and tokenizers. Everything is checked up front, and every
// missing part is named in one error, before any weights are read. Node only (reads the file system).

export class PipelineLayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PipelineLayoutError';
  }
}

export const MODEL_COMPONENTS = ['unet', 'vae', 'text_encoder', 'text_encoder_2'] as const;
export type ModelComponent = (typeof MODEL_COMPONENTS)[number];

export interface PipelineLayout {
  /** Folder holding the configs and tokenizers. */
  configRoot: string;
  /** Where each model's weights are opened from (openCheckpoint): the component folder or the single file. */
  weights: Record<ModelComponent, string>;
  /** The single checkpoint file, when weights come from one. */
  singleFile?: string;
  /** config.json of each model (parsed). */
  configs: Record<ModelComponent, Record<string, unknown>>;
  schedulerConfig: Record<string, unknown>;
  tokenizerDirs: [string, string];
  /** model_index.json (parsed; {} when the folder has none). */
  modelIndex: Record<string, unknown>;
}

/** What a folder must hold, for the error message. */
export const EXPECTED_LAYOUT =
  'scheduler/scheduler_config.json, tokenizer/{vocab.json,merges.txt}, tokenizer_2/{vocab.json,merges.txt}, ' +
  'text_encoder/config.json, text_encoder_2/config.json, unet/config.json, vae/config.json, each model folder\'s weights ' +
  '(*.safetensors, *.fp16.safetensors or a sharded index), and optionally model_index.json';

const WEIGHT_FILE = /\.safetensors(\.index(\.fp16)?\.json)?$/;

/**
 * Resolves and checks the layout. `path`: a diffusers folder, or a .safetensors file with `configFolder` (a diffusers
 * folder whose weights, if any, are not used).
 */
export async function resolveLayout(path: string, opts: { configFolder?: string } = {}): Promise<PipelineLayout> {
  const { stat, readFile, readdir } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const st = await stat(path).catch(() => null);
  if (!st) throw new PipelineLayoutError(`model ${path}: no such file or folder`);
  let singleFile: string | undefined;
  let root = path;
  if (st.isFile()) {
    if (!path.endsWith('.safetensors'))
      throw new PipelineLayoutError(`model ${path}: a single-file checkpoint must be a .safetensors file (or pass a diffusers folder)`);
    if (!opts.configFolder)
      throw new PipelineLayoutError(
        `model ${path} is a single checkpoint file: also pass a diffusers SDXL folder for the configs and tokenizers ` +
          `(configFolder / --config; its weights are not needed)`,
      );
    singleFile = path;
    root = opts.configFolder;
  } else if (opts.configFolder) {
    throw new PipelineLayoutError(`model ${path} is a folder: a config folder applies to a single-file checkpoint only`);
  }
  const rootSt = await stat(root).catch(() => null);
  if (!rootSt?.isDirectory()) throw new PipelineLayoutError(`config folder ${root}: no such folder`);

  const isFile = async (p: string) => (await stat(p).catch(() => null))?.isFile() ?? false;
  const missing: string[] = [];
  const readJson = async (rel: string): Promise<Record<string, unknown> | undefined> => {
    const p = join(root, rel);
    if (!(await isFile(p))) {
      missing.push(rel);
      return undefined;
    }
    try {
      const v = JSON.parse(await readFile(p, 'utf8')) as unknown;
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
      return v as Record<string, unknown>;
    } catch (e) {
      throw new PipelineLayoutError(`${p}: ${(e as Error).message}`);
    }
  };

  const modelIndex = (await isFile(join(root, 'model_index.json'))) ? await readJson('model_index.json') : {};
  const schedulerConfig = await readJson('scheduler/scheduler_config.json');
  const configs = {} as Record<ModelComponent, Record<string, unknown>>;
  for (const c of MODEL_COMPONENTS) {
    const cfg = await readJson(`${c}/config.json`);
    if (cfg) configs[c] = cfg;
  }
  const tokenizerDirs: [string, string] = [join(root, 'tokenizer'), join(root, 'tokenizer_2')];
  for (const [i, dir] of tokenizerDirs.entries())
    for (const f of ['vocab.json', 'merges.txt'])
      if (!(await isFile(join(dir, f)))) missing.push(`${i === 0 ? 'tokenizer' : 'tokenizer_2'}/${f}`);
  // Weights: with a single file they come from it; otherwise each model folder must hold some.
  if (!singleFile)
    for (const c of MODEL_COMPONENTS) {
      const entries = await readdir(join(root, c)).catch(() => [] as string[]);
      if (!entries.some((f) => WEIGHT_FILE.test(f))) missing.push(`${c}/ weights (*.safetensors)`);
    }
  if (missing.length)
    throw new PipelineLayoutError(
      `${root} is not a complete SDXL diffusers folder: missing ${missing.join(', ')}.\nExpected: ${EXPECTED_LAYOUT}`,
    );
  const weights = Object.fromEntries(MODEL_COMPONENTS.map((c) => [c, singleFile ?? join(root, c)])) as Record<ModelComponent, string>;
  return { configRoot: root, weights, singleFile, configs, schedulerConfig: schedulerConfig!, tokenizerDirs, modelIndex: modelIndex ?? {} };
}
