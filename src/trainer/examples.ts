// Where the distiller's training examples come from: an encoded example is the VAE latents (× scaling factor), the
// prompt embeddings of both text encoders, the pooled embedding and SDXL's six time ids. Sources:
//   EncodingSource — a captioned image folder (src/trainer/data), decoded, resized, cropped / flipped and encoded
//                    on the fly with the model's VAE and text encoders;
//   ArraySource    — examples already in memory (a precomputed cache, tests, engines with their own data path).
// Every random draw of an example comes from the Rng it is handed, so the distiller decides the randomness.
import type { Gpu } from '../../runtime/device.js';
import type { ClipTextModel } from '../text/clip_text_model.js';
import type { ClipTokenizer } from '../text/clip_tokenizer.js';
import { encodePrompt } from '../text/encode_prompt.js';
import { Tensor } from '../tensor.js';
import type { AutoencoderKL } from '../vae/autoencoder_kl.js';
import { type CaptionedImage, type Rng, nextFloat, prepareImage, readImageFile } from './data/index.js';

export interface TrainingExample {
  /** Latents × the VAE scaling factor, of shape latentShape [C, h, w]. */
  latents: Float32Array;
  latentShape: readonly [number, number, number];
  /** Concatenated penultimate hidden states of both text encoders, [tokens, dim] = promptShape. */
  promptEmbeds: Float32Array;
  promptShape: readonly [number, number];
  /** [pooledDim] text_encoder_2's projected pooled output. */
  pooled: Float32Array;
  /** original size (h, w), crop top-left (top, left), target size (h, w). */
  timeIds: readonly number[];
}

export interface ExampleSource {
  /** Number of distinct examples (an epoch). */
  readonly length: number;
  /** Example i of the dataset (0 ≤ i < length), drawing its augmentation randomness from rng. */
  get(i: number, rng: Rng): Promise<TrainingExample>;
  /** Frees what the source holds (not the models it was given). */
  dispose?(): void;
}

/** Standard normal values (Box–Muller on the Rng's uniforms), float32. */
export function normalArray(rng: Rng, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = 1 - nextFloat(rng); // (0, 1]
    const u2 = nextFloat(rng);
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

export class ArraySource implements ExampleSource {
  constructor(private readonly examples: readonly TrainingExample[]) {
    if (!examples.length) throw new Error('ArraySource: no examples');
  }
  get length(): number {
    return this.examples.length;
  }
  async get(i: number): Promise<TrainingExample> {
    const e = this.examples[i];
    if (!e) throw new RangeError(`ArraySource: example ${i} of ${this.examples.length}`);
    return e;
  }
}

export interface EncodingSourceOptions {
  resolution: number;
  centerCrop?: boolean;
  randomFlip?: boolean;
}

/** A captioned image folder encoded on the fly (latent_dist.sample() with noise from the example's Rng). */
export class EncodingSource implements ExampleSource {
  constructor(
    private readonly gpu: Gpu,
    readonly items: readonly CaptionedImage[],
    private readonly models: { vae: AutoencoderKL; textEncoders: [ClipTextModel, ClipTextModel]; tokenizers: [ClipTokenizer, ClipTokenizer] },
    readonly opts: EncodingSourceOptions,
  ) {
    if (!items.length) throw new Error('EncodingSource: the dataset is empty');
    if (!models.vae.encoder) throw new Error('EncodingSource: the VAE was built without its encoder (parts: "both" or "encoder")');
  }

  get length(): number {
    return this.items.length;
  }

  async get(i: number, rng: Rng): Promise<TrainingExample> {
    const item = this.items[i];
    if (!item) throw new RangeError(`EncodingSource: example ${i} of ${this.items.length}`);
    const img = await readImageFile(item.imagePath);
    const prep = prepareImage(img, { resolution: this.opts.resolution, centerCrop: this.opts.centerCrop, randomFlip: this.opts.randomFlip }, rng);
    const { vae } = this.models;
    const pixels = Tensor.fromArray(this.gpu, prep.pixels, [1, ...prep.shape], { label: `pixels ${item.id}` });
    let latents: Float32Array;
    let latentShape: [number, number, number];
    try {
      const dist = await vae.encode(pixels);
      const z = dist.sample(normalArray(rng, dist.mean.size));
      dist.dispose();
      const [, C, h, w] = dist.mean.shape;
      latentShape = [C, h, w];
      const scaled = vae.scaleLatents(z);
      z.release();
      latents = await scaled.toArray();
      scaled.release();
    } finally {
      pixels.release();
    }
    return { latents, latentShape, ...(await this.encodeCaption(item.caption)), timeIds: prep.timeIds };
  }

  private async encodeCaption(caption: string): Promise<{ promptEmbeds: Float32Array; promptShape: [number, number]; pooled: Float32Array }> {
    const enc = encodePrompt(this.models.tokenizers, this.models.textEncoders, caption);
    try {
      const [, T, D] = enc.promptEmbeds.shape;
      return { promptEmbeds: await enc.promptEmbeds.toArray(), promptShape: [T, D], pooled: await enc.pooledPromptEmbeds.toArray() };
    } finally {
      enc.release();
    }
  }
}
