// Writes a tiny SDXL-shaped diffusers folder (spec sdxl.md §8.1) for trying the sampler and for tests:
//   model_index.json, scheduler/scheduler_config.json (SDXL base's Euler config), tokenizer/ + tokenizer_2/ (the CLIP
//   BPE cut to 1000 tokens, as test/clip.test.ts does; tokenizer_2 pads with '!'), text_encoder/ +
//   text_encoder_2/ (seeded CLIP encoders, hidden 16 each, so the concatenated penultimate states are the UNet's
//   cross_attention_dim 32; text_encoder_2's projection 32 + 6 × 8 time ids = the UNet's 80 added-embedding inputs),
//   unet/ (the golden tiny UNet of test/fixtures/tiny_unet: its LoRA there fits it) and vae/ (a seeded 4-level VAE:
//   8 pixels per latent, as SDXL's).
// Seeded weights follow src/nn/init.ts (N(0, 1/fan_in), norms 1, biases 0) from the counter-based generator, on the
// host, so the same seed always gives the same files.
//
//   npx tsx scripts/make_tiny_sdxl.ts <out-dir> [--seed N] [--fp16]
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Gpu } from '../runtime/device.js';
import { fileSource } from '../src/io/byte_source.js';
import { type TensorToWrite, readHeader, readTensorF32, writeSafetensors } from '../src/io/safetensors.js';
import { randomKey } from '../src/kernels/random.js';
import { SDXL_MODEL_INDEX } from '../src/pipeline/model_folder.js';
import { SDXL_SCHEDULER_CONFIG } from '../src/schedulers/diffusers_config.js';
import { initRule, nameStream } from '../src/nn/init.js';
import { normalRef } from '../src/reference/random.js';
import { ClipTextModel } from '../src/text/clip_text_model.js';
import type { ClipTextConfigJson } from '../src/text/clip_config.js';
import { AutoencoderKL } from '../src/vae/autoencoder_kl.js';
import type { VaeConfigJson } from '../src/vae/config.js';

const FIXTURES = fileURLToPath(new URL('../test/fixtures/', import.meta.url));

export interface TinySdxlOptions {
  /** Seed of the text encoders' and VAE's weights (default 0). */
  seed?: number;
  /** Write every weight file as the fp16 variant (`*.fp16.safetensors`, F16) instead of F32. */
  fp16?: boolean;
}

/** model_index.json of an SDXL pipeline folder (diffusers' StableDiffusionXLPipeline). */
export const TINY_MODEL_INDEX = SDXL_MODEL_INDEX;

/** SDXL base 1.0 scheduler/scheduler_config.json (sdxl.md §8.1); it lives with the schedulers. */
export { SDXL_SCHEDULER_CONFIG };

const TEXT_COMMON = {
  attention_dropout: 0.0,
  bos_token_id: 998,
  eos_token_id: 999,
  hidden_size: 16,
  intermediate_size: 64,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 77,
  model_type: 'clip_text_model',
  num_attention_heads: 2,
  num_hidden_layers: 2,
  projection_dim: 32,
  vocab_size: 1000,
};

export const TINY_TEXT_CONFIGS: Record<'text_encoder' | 'text_encoder_2', ClipTextConfigJson> = {
  text_encoder: { architectures: ['CLIPTextModel'], ...TEXT_COMMON, hidden_act: 'quick_gelu', pad_token_id: 1 } as ClipTextConfigJson,
  text_encoder_2: { architectures: ['CLIPTextModelWithProjection'], ...TEXT_COMMON, hidden_act: 'gelu', pad_token_id: 1 } as ClipTextConfigJson,
};

export const TINY_VAE_CONFIG: VaeConfigJson = {
  _class_name: 'AutoencoderKL',
  act_fn: 'silu',
  block_out_channels: [8, 8, 16, 16],
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  force_upcast: true,
  in_channels: 3,
  out_channels: 3,
  latent_channels: 4,
  layers_per_block: 1,
  mid_block_add_attention: true,
  norm_num_groups: 4,
  sample_size: 64,
  scaling_factor: 0.13025,
  use_quant_conv: true,
  use_post_quant_conv: true,
};

/** The model classes only register parameter names and shapes in their constructors: no device is touched. */
const NO_GPU = undefined as unknown as Gpu;

/** Seeded weights for every parameter of `shapes`. */
function seededWeights(shapes: Iterable<[string, readonly number[]]>, seed: number, dtype: TensorToWrite['dtype']): Record<string, TensorToWrite> {
  const out: Record<string, TensorToWrite> = {};
  for (const [name, shape] of shapes) {
    const n = shape.reduce((p, d) => p * d, 1);
    const rule = initRule(name, shape);
    const data = rule.kind === 'constant' ? new Float32Array(n).fill(rule.value) : Float32Array.from(normalRef(n, randomKey({ seed, stream: nameStream(name) }), 0, rule.std));
    out[name] = { dtype, shape: [...shape], data };
  }
  return out;
}

/** A CLIP tokenizer folder with the 1000-token vocabulary of the tiny encoders (bos 998, eos 999). */
async function writeTokenizer(dir: string, padToken: string): Promise<void> {
  const src = join(FIXTURES, 'clip_tokenizer');
  const full = JSON.parse(await readFile(join(src, 'vocab.json'), 'utf8')) as Record<string, number>;
  const vocab: Record<string, number> = Object.fromEntries(Object.entries(full).filter(([, id]) => id < 998));
  vocab['<|startoftext|>'] = 998;
  vocab['<|endoftext|>'] = 999;
  // The 512 byte tokens plus the first 486 merges fill ids 0..997.
  const merges = (await readFile(join(src, 'merges.txt'), 'utf8')).split('\n').slice(0, 1 + 486).join('\n') + '\n';
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
  await writeFile(join(dir, 'merges.txt'), merges);
  const special = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: padToken };
  await writeFile(join(dir, 'special_tokens_map.json'), JSON.stringify(special, null, 2));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...special, model_max_length: 77, do_lower_case: true, tokenizer_class: 'CLIPTokenizer' }, null, 2));
}

const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';

/** Writes the folder; returns the files written (relative to dir). */
export async function makeTinySdxl(dir: string, opts: TinySdxlOptions = {}): Promise<string[]> {
  const seed = opts.seed ?? 0;
  const dtype = opts.fp16 ? 'F16' : 'F32';
  const weightName = (base: string) => (opts.fp16 ? `${base}.fp16.safetensors` : `${base}.safetensors`);
  const written: string[] = [];
  const put = async (rel: string, text: string) => {
    await mkdir(join(dir, rel, '..'), { recursive: true });
    await writeFile(join(dir, rel), text);
    written.push(rel);
  };
  await put('model_index.json', json(TINY_MODEL_INDEX));
  await put('scheduler/scheduler_config.json', json(SDXL_SCHEDULER_CONFIG));
  await writeTokenizer(join(dir, 'tokenizer'), '<|endoftext|>');
  await writeTokenizer(join(dir, 'tokenizer_2'), '!');
  written.push('tokenizer/', 'tokenizer_2/');

  for (const [i, c] of (['text_encoder', 'text_encoder_2'] as const).entries()) {
    const cfg = TINY_TEXT_CONFIGS[c];
    await put(`${c}/config.json`, json(cfg));
    const model = new ClipTextModel(NO_GPU, cfg, { withProjection: c === 'text_encoder_2' });
    const rel = `${c}/${weightName('model')}`;
    await writeSafetensors(join(dir, rel), seededWeights(model.paramShapes, seed + 10 * (i + 1), dtype), { format: 'pt' });
    written.push(rel);
  }

  await put('vae/config.json', json(TINY_VAE_CONFIG));
  const vae = new AutoencoderKL(NO_GPU, TINY_VAE_CONFIG);
  const vaeShapes = [...vae.parameters].map(([name, p]) => [name, p.shape] as [string, readonly number[]]);
  const vaeRel = `vae/${weightName('diffusion_pytorch_model')}`;
  await writeSafetensors(join(dir, vaeRel), seededWeights(vaeShapes, seed + 30, dtype));
  written.push(vaeRel);

  await put('unet/config.json', await readFile(join(FIXTURES, 'tiny_unet', 'config.json'), 'utf8'));
  const unetRel = `unet/${weightName('diffusion_pytorch_model')}`;
  if (!opts.fp16) await copyFile(join(FIXTURES, 'tiny_unet', 'weights.safetensors'), join(dir, unetRel));
  else await writeSafetensors(join(dir, unetRel), await convert(join(FIXTURES, 'tiny_unet', 'weights.safetensors'), 'F16'));
  written.push(unetRel);
  return written;
}

async function convert(path: string, dtype: TensorToWrite['dtype']): Promise<Record<string, TensorToWrite>> {
  const src = await fileSource(path);
  try {
    const header = await readHeader(src);
    const out: Record<string, TensorToWrite> = {};
    for (const [name, e] of header.tensors) out[name] = { dtype, shape: e.shape, data: await readTensorF32(src, header, name) };
    return out;
  } finally {
    await src.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const { parseArgs } = await import('node:util');
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { seed: { type: 'string' }, fp16: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length !== 1) {
    console.log('usage: npx tsx scripts/make_tiny_sdxl.ts <out-dir> [--seed N] [--fp16]\n\nWrites a tiny SDXL-shaped diffusers folder (seeded weights), e.g. for:\n  npx tsx src/cli/main.ts sample --model <out-dir> --prompt "a cat" --width 64 --height 64 --out cat.png');
    process.exitCode = values.help ? 0 : 2;
    return;
  }
  const seed = values.seed === undefined ? 0 : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${values.seed}`);
  const files = await makeTinySdxl(positionals[0], { seed, fp16: values.fp16 });
  console.log(`wrote ${positionals[0]}: ${files.join(', ')}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).catch((e: Error) => {
    console.error(`make_tiny_sdxl: ${e.message}`);
    process.exitCode = 1;
  });
}
