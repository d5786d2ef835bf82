// A TcdSdxlPipeline with random weights made on the GPU (src/nn/init.ts rules) from the four model configs: the real
// architecture, no weight files. For benchmarks (bench/sdxl_pipeline.ts) and smoke tests; the images are noise.
import { type DTypeChoice, resolveDType } from '../kernels/f16_support.js';
import type { Gpu } from '../../runtime/device.js';
import type { RandomInitSummary } from '../nn/init.js';
import { ClipTextModel } from '../text/clip_text_model.js';
import type { ClipTextConfigJson } from '../text/clip_config.js';
import type { ClipTokenizer } from '../text/clip_tokenizer.js';
import type { UNetConfigJson } from '../unet/config.js';
import { UNet2DConditionModel } from '../unet/unet.js';
import { AutoencoderKL } from '../vae/autoencoder_kl.js';
import type { VaeConfigJson } from '../vae/config.js';
import type { SchedulerName } from './scheduler_choice.js';
import { TcdSdxlPipeline } from './tcd_sdxl_pipeline.js';

export interface SdxlConfigs {
  unet: UNetConfigJson;
  vae: VaeConfigJson;
  textEncoder: ClipTextConfigJson;
  textEncoder2: ClipTextConfigJson;
  /** scheduler/scheduler_config.json. */
  schedulerConfig: Record<string, unknown>;
}

export type RandomPart = 'text_encoder' | 'text_encoder_2' | 'unet' | 'vae';

export interface RandomPipelineOptions {
  /** Weight seed (default 0); each part adds its own offset. */
  seed?: number;
  scheduler?: SchedulerName;
  /**
   * The UNet's storage type (the text encoders and the VAE stay f32). Default 'auto': f16 where the device has
   * shader-f16 and passes the f16 probe, else f32 with the reason logged (resolveDType).
   */
  dtype?: DTypeChoice;
  /** After each parameter tensor of each part. */
  onProgress?: (part: RandomPart, done: number, total: number) => void;
}

export interface RandomPipeline {
  pipe: TcdSdxlPipeline;
  /** Tensors, parameters and bytes initialised, per part (the VAE: decoder + post_quant_conv only). */
  parts: Record<RandomPart, RandomInitSummary>;
}

/** Builds the four models from their configs, fills them with random weights on the GPU, and wraps them. */
export async function randomSdxlPipeline(gpu: Gpu, configs: SdxlConfigs, tokenizers: [ClipTokenizer, ClipTokenizer], opts: RandomPipelineOptions = {}): Promise<RandomPipeline> {
  const seed = opts.seed ?? 0;
  const dtype = await resolveDType(gpu, opts.dtype ?? 'auto');
  const report = (part: RandomPart) => (done: number, total: number) => opts.onProgress?.(part, done, total);
  const owned: { dispose(): void }[] = [];
  try {
    const te1 = new ClipTextModel(gpu, configs.textEncoder, { withProjection: false });
    owned.push(te1);
    const te2 = new ClipTextModel(gpu, configs.textEncoder2, { withProjection: true });
    owned.push(te2);
    const unet = new UNet2DConditionModel(gpu, configs.unet, { dtype });
    owned.push(unet);
    // The pipeline only decodes, as fromPretrained builds it.
    const vae = new AutoencoderKL(gpu, configs.vae, { parts: 'decoder' });
    owned.push(vae);
    const parts: Record<RandomPart, RandomInitSummary> = {
      text_encoder: te1.initRandom({ seed: seed + 1, onProgress: report('text_encoder') }),
      text_encoder_2: te2.initRandom({ seed: seed + 2, onProgress: report('text_encoder_2') }),
      unet: unet.initRandom({ seed, onProgress: report('unet') }),
      vae: vae.initRandom({ seed: seed + 3, onProgress: report('vae') }),
    };
    const pipe = new TcdSdxlPipeline(gpu, {
      unet,
      vae,
      textEncoders: [te1, te2],
      tokenizers,
      schedulerConfig: configs.schedulerConfig,
      scheduler: opts.scheduler ?? 'tcd',
    });
    return { pipe, parts };
  } catch (e) {
    owned.forEach((m) => m.dispose());
    throw e;
  }
}
