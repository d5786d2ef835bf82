// Training objectives of the emoji teacher, on the tape:
//   VAE:        L = mean((D(z) − x)²) + klWeight · mean(½(μ² + σ² − 1 − log σ²)),  z = μ + σ·ε  (μ, log σ² = the
//               encoder's moments after quant_conv, split by channel halves as diffusers' DiagonalGaussian does)
//   diffusion:  L = mean((ε_θ(x_t, t, text) − ε)²),  x_t = √ᾱ_t · z₀ + √(1 − ᾱ_t) · ε  (ε-prediction, DDPM)
// with classifier-free-guidance dropout: a dropped caption's text embeddings are zeroed, which is what the pipelines
// feed as the negative at sampling time (force_zeros_for_empty_prompt).
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { conv2d } from '../autograd/nn_ops.js';
import { add, mul, scale, sub, sumAllOp, unaryOp } from '../autograd/ops.js';
import { Var } from '../autograd/tape.js';
import { Tensor, shapeStr } from '../tensor.js';
import type { TrainableClipTextModel } from '../text/clip_text_train.js';
import { sdxlTextConditioning } from '../text/clip_text_train.js';
import type { UNet2DConditionModel } from '../unet/unet.js';
import type { AutoencoderKL } from '../vae/autoencoder_kl.js';

const constant = (gpu: Gpu, data: ArrayLike<number>, shape: number[], label: string) => new Var(Tensor.fromArray(gpu, data, shape, { label }));

/** mean((y − target)²) as a [1] Var. */
export function mseLoss(y: Var, target: Var): Var {
  if (y.value.size !== target.value.size) throw new ShapeError(`mseLoss: prediction ${shapeStr(y.shape)} vs target ${shapeStr(target.shape)}`);
  const d = sub(y, target);
  return scale(sumAllOp(mul(d, d)), 1 / y.value.size);
}

/** A frozen 1×1 conv weight [L, 2L, 1, 1] that picks channels offset … offset + L − 1. */
function channelSelect(gpu: Gpu, L: number, offset: number, label: string): Var {
  const w = new Float32Array(L * 2 * L);
  for (let c = 0; c < L; c++) w[c * 2 * L + offset + c] = 1;
  return constant(gpu, w, [L, 2 * L, 1, 1], label);
}

export interface VaeLossParts {
  loss: Var;
  /** mean((x̂ − x)²). */
  reconstruction: Var;
  /** mean(½(μ² + σ² − log σ²)) (the KL term without its constant −½). */
  klWithoutConstant: Var;
  reconstructionImage: Var;
}

/**
 * images [B, 3, H, W] in [-1, 1]; noise [B, L, H/f, W/f] standard normal (the reparameterisation's ε; pass zeros for
 * the posterior mean). Run under a Tape and tidy().
 */
export function vaeLoss(vae: AutoencoderKL, images: Var, noise: Var, klWeight: number): VaeLossParts {
  const gpu = vae.gpu;
  const L = vae.config.latentChannels;
  const moments = vae.encodeForward(images);
  if (noise.shape.join() !== [moments.shape[0], L, moments.shape[2], moments.shape[3]].join())
    throw new ShapeError(`vaeLoss: noise ${shapeStr(noise.shape)} must have the latent shape [${moments.shape[0]}, ${L}, ${moments.shape[2]}, ${moments.shape[3]}]`);
  const mean = conv2d(moments, channelSelect(gpu, L, 0, 'select_mean'));
  const logvar = conv2d(moments, channelSelect(gpu, L, L, 'select_logvar'));
  const variance = unaryOp('exp', logvar);
  const std = unaryOp('exp', scale(logvar, 0.5));
  const z = add(mean, mul(std, noise));
  const recon = vae.decodeForward(z);
  const reconstruction = mseLoss(recon, images);
  const klSum = sub(add(sumAllOp(mul(mean, mean)), sumAllOp(variance)), sumAllOp(logvar));
  const klWithoutConstant = scale(klSum, 0.5 / mean.value.size);
  const loss = add(reconstruction, scale(klWithoutConstant, klWeight));
  return { loss, reconstruction, klWithoutConstant, reconstructionImage: recon };
}

export interface TextIds {
  /** Token ids for text_encoder (tokenizer), one row of 77 per sample. */
  ids1: number[][];
  /** Token ids for text_encoder_2 (tokenizer_2). */
  ids2: number[][];
}

export interface DiffusionBatch extends TextIds {
  /** Clean latents z₀ (already × scaling_factor) [B, C, h, w] on the host. */
  latents: Float32Array;
  latentShape: [number, number, number, number];
  /** Integer timesteps in [0, T). */
  timesteps: number[];
  /** ε [B, C, h, w]. */
  noise: Float32Array;
  /** Per sample: replace its text conditioning by zeros (CFG dropout). */
  dropText: boolean[];
  /** SDXL's 6 time ids per sample (the same for every emoji). */
  timeIds: readonly number[];
}

export interface DiffusionModels {
  unet: UNet2DConditionModel;
  textEncoder: TrainableClipTextModel;
  textEncoder2: TrainableClipTextModel;
}

/** x_t = √ᾱ_t · z₀ + √(1 − ᾱ_t) · ε per sample (host, float64 coefficients rounded once to f32). */
export function addNoise(latents: Float32Array, noise: Float32Array, timesteps: readonly number[], alphasCumprod: ArrayLike<number>): Float32Array {
  const B = timesteps.length;
  if (latents.length !== noise.length || latents.length % B) throw new ShapeError(`addNoise: ${latents.length} latents, ${noise.length} noise values, ${B} timesteps`);
  const n = latents.length / B;
  const out = new Float32Array(latents.length);
  timesteps.forEach((t, b) => {
    if (!(Number.isInteger(t) && t >= 0 && t < alphasCumprod.length)) throw new ShapeError(`addNoise: timestep ${t} outside [0, ${alphasCumprod.length})`);
    const a = Math.sqrt(alphasCumprod[t]);
    const s = Math.sqrt(1 - alphasCumprod[t]);
    for (let i = b * n; i < (b + 1) * n; i++) out[i] = a * latents[i] + s * noise[i];
  });
  return out;
}

/** The SDXL conditioning of a caption batch from the two trainable encoders, with dropped rows zeroed. */
export function textConditioning(m: DiffusionModels, text: TextIds, dropText?: readonly boolean[]): { context: Var; pooled: Var } {
  const c = sdxlTextConditioning(m.textEncoder.forward(text.ids1), m.textEncoder2.forward(text.ids2));
  if (!dropText?.some(Boolean)) return c;
  const B = text.ids1.length;
  const keep = dropText.map((d) => (d ? 0 : 1));
  const gpu = m.unet.gpu;
  return { context: mul(c.context, constant(gpu, keep, [B, 1, 1], 'cfg_keep')), pooled: mul(c.pooled, constant(gpu, keep, [B, 1], 'cfg_keep')) };
}

/** The ε-prediction loss of one batch (run under a Tape and tidy()). */
export function diffusionLoss(m: DiffusionModels, batch: DiffusionBatch, alphasCumprod: ArrayLike<number>): Var {
  const gpu = m.unet.gpu;
  const B = batch.timesteps.length;
  for (const [k, n] of [['ids1', batch.ids1.length], ['ids2', batch.ids2.length], ['dropText', batch.dropText.length]] as const)
    if (n !== B) throw new ShapeError(`diffusionLoss: ${k} has ${n} rows for ${B} timesteps`);
  const noisy = addNoise(batch.latents, batch.noise, batch.timesteps, alphasCumprod);
  const xt = constant(gpu, noisy, [...batch.latentShape], 'x_t');
  const eps = constant(gpu, batch.noise, [...batch.latentShape], 'epsilon');
  const { context, pooled } = textConditioning(m, batch, batch.dropText);
  const timeIds = constant(gpu, Array.from({ length: B }, () => batch.timeIds).flat(), [B, batch.timeIds.length], 'time_ids');
  const pred = m.unet.forward({ sample: xt, timestep: batch.timesteps, encoderHiddenStates: context, textEmbeds: pooled, timeIds });
  return mseLoss(pred, eps);
}
