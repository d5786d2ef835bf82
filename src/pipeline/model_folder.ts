// Where the parts of an SDXL pipeline come from (spec sdxl.md §8.1): a diffusers folder
//   model_index.json, scheduler/scheduler_config.json, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/,
//   unet/, vae/   (each model folder: config.json + weights, plain / .fp16 / sharded)
// or a single checkpoint file (SGM `sd_xl_base_1.0.safetensors`) whose weights replace the folder's: the folder (or
// `configFolder`) then only has to supply the configs and tokenizers. Everything is checked up front, and every
// missing part is named in one error, before any weights are read. checkLayout works on any ModelSource (a Node folder,
// a web server, files picked in a browser); resolveLayout adds the Node paths (single file, config folder).
import { weightFileCandidates } from '../io/checkpoint.js';
import { type ModelSource, dirSource, findWeightFile, sourcePath } from '../io/model_source.js';

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

/** What every SDXL folder source provides, checked: parsed configs and, unless not asked for, each model's weight file. */
export interface CheckedLayout {
  configs: Record<ModelComponent, Record<string, unknown>>;
  schedulerConfig: Record<string, unknown>;
  /** model_index.json (parsed; {} when the folder has none). */
  modelIndex: Record<string, unknown>;
  /** Weight file (or sharded index) of each model folder, relative to the source root; empty with weights: false. */
  weightFiles: Partial<Record<ModelComponent, string>>;
}

/** A tokenizer folder's files, as ClipTokenizer's constructor takes them. */
export interface TokenizerFiles {
  vocab: string;
  merges: string;
  specialTokensMap?: string;
  tokenizerConfig?: string;
}

export const TOKENIZER_DIRS = ['tokenizer', 'tokenizer_2'] as const;

/**
 * Checks a diffusers SDXL folder given as a source: configs parse, tokenizer files and (with `weights`, the default)
 * each model's weights exist for `variant`. Every missing part is named in one PipelineLayoutError.
 */
export async function checkLayout(source: ModelSource, opts: { weights?: boolean; variant?: 'fp16' | 'default' } = {}): Promise<CheckedLayout> {
  const missing: string[] = [];
  const readJson = async (rel: string): Promise<Record<string, unknown> | undefined> => {
    if (!(await source.exists(rel))) {
      missing.push(rel);
      return undefined;
    }
    try {
      const v = JSON.parse(await source.readText(rel)) as unknown;
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
      return v as Record<string, unknown>;
    } catch (e) {
      throw new PipelineLayoutError(`${sourcePath(source, rel)}: ${(e as Error).message}`);
    }
  };

  const modelIndex = (await source.exists('model_index.json')) ? await readJson('model_index.json') : {};
  const schedulerConfig = await readJson('scheduler/scheduler_config.json');
  const configs = {} as Record<ModelComponent, Record<string, unknown>>;
  for (const c of MODEL_COMPONENTS) {
    const cfg = await readJson(`${c}/config.json`);
    if (cfg) configs[c] = cfg;
  }
  for (const dir of TOKENIZER_DIRS) for (const f of ['vocab.json', 'merges.txt']) if (!(await source.exists(`${dir}/${f}`))) missing.push(`${dir}/${f}`);
  const weightFiles: Partial<Record<ModelComponent, string>> = {};
  if (opts.weights !== false)
    for (const c of MODEL_COMPONENTS) {
      const w = await findWeightFile(source, c, opts.variant);
      if (w) weightFiles[c] = `${c}/${w.file}`;
      else missing.push(`${c}/ weights (${opts.variant ? weightFileCandidates(opts.variant).map((x) => x.file).join(' / ') : '*.safetensors'})`);
    }
  if (missing.length)
    throw new PipelineLayoutError(`${source.name} is not a complete SDXL diffusers folder: missing ${missing.join(', ')}.\nExpected: ${EXPECTED_LAYOUT}`);
  return { configs, schedulerConfig: schedulerConfig!, modelIndex: modelIndex ?? {}, weightFiles };
}

/** vocab.json, merges.txt and (when present) special_tokens_map.json / tokenizer_config.json of `dir`. */
export async function readTokenizerFiles(source: ModelSource, dir: string): Promise<TokenizerFiles> {
  const optional = async (f: string) => ((await source.exists(`${dir}/${f}`)) ? source.readText(`${dir}/${f}`) : undefined);
  const [vocab, merges, specialTokensMap, tokenizerConfig] = await Promise.all([
    source.readText(`${dir}/vocab.json`),
    source.readText(`${dir}/merges.txt`),
    optional('special_tokens_map.json'),
    optional('tokenizer_config.json'),
  ]);
  return { vocab, merges, specialTokensMap, tokenizerConfig };
}

/**
 * Node: resolves and checks the layout. `path`: a diffusers folder, or a .safetensors file with `configFolder` (a
 * diffusers folder whose weights, if any, are not used).
 */
export async function resolveLayout(path: string, opts: { configFolder?: string } = {}): Promise<PipelineLayout> {
  const { stat } = await import('node:fs/promises');
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
  // With a single file the weights come from it; otherwise each model folder must hold some.
  const checked = await checkLayout(dirSource(root), { weights: !singleFile });
  const weights = Object.fromEntries(MODEL_COMPONENTS.map((c) => [c, singleFile ?? join(root, c)])) as Record<ModelComponent, string>;
  const tokenizerDirs = TOKENIZER_DIRS.map((d) => join(root, d)) as [string, string];
  return { configRoot: root, weights, singleFile, configs: checked.configs, schedulerConfig: checked.schedulerConfig, tokenizerDirs, modelIndex: checked.modelIndex };
}

/** model_index.json of an SDXL pipeline folder (diffusers' StableDiffusionXLPipeline), as folders this project writes carry it. */
export const SDXL_MODEL_INDEX = {
  _class_name: 'StableDiffusionXLPipeline',
  _diffusers_version: '0.40.0.dev0',
  force_zeros_for_empty_prompt: true,
  scheduler: ['diffusers', 'EulerDiscreteScheduler'],
  text_encoder: ['transformers', 'CLIPTextModel'],
  text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  tokenizer_2: ['transformers', 'CLIPTokenizer'],
  unet: ['diffusers', 'UNet2DConditionModel'],
  vae: ['diffusers', 'AutoencoderKL'],
};
