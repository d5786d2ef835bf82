// The SDXL denoising loop (diffusers StableDiffusionXLPipeline.__call__, tcd.md §6):
//   for each t:  x_in = scale_model_input(cfg ? [x; x] : x, t)
//                ε̂ = unet(x_in, t, prompt_embeds, {text_embeds, time_ids})
//                cfg: ε̂ = ε̂_uncond + g·(ε̂_cond − ε̂_uncond)
//                x = scheduler.step(ε̂, t, x, eta, noise)
// The scheduler has its timesteps set; its stochastic steps draw noise from `noise(i)` only when they re-noise.
import { Var } from '../autograd/tape.js';
import { add, scale, sub } from '../kernels/elementwise.js';
import { concat, split } from '../kernels/resample.js';
import type { Scheduler } from '../schedulers/index.js';
import { type Tensor, shapeStr } from '../tensor.js';
import type { UNet2DConditionModel } from '../unet/unet.js';
import { ShapeError } from '../../runtime/errors.js';

/** UNet conditioning. With CFG every tensor holds 2B rows: the negative (unconditional) batch first. */
export interface Conditioning {
  /** encoder_hidden_states [B, tokens, cross_attention_dim]. */
  promptEmbeds: Tensor;
  /** text_embeds [B, pooled dim]. */
  textEmbeds: Tensor;
  /** time_ids [B, 6]. */
  timeIds: Tensor;
}

export interface StepView {
  index: number;
  timestep: number;
  /** The sample the step started from. */
  sample: Tensor;
  /** The (guided) noise prediction the scheduler used. */
  modelOutput: Tensor;
  /** The step's clean estimate where the scheduler has one (TCD: pred_noised_sample). */
  denoised?: Tensor;
  prevSample: Tensor;
}

export interface DenoiseOptions {
  unet: UNet2DConditionModel;
  scheduler: Scheduler;
  /** Initial latents [B, C, h, w], already scaled by initNoiseSigma; stays the caller's. */
  latents: Tensor;
  cond: Conditioning;
  /** Classifier-free guidance when > 1 (diffusers: guidance_scale > 1 and no time_cond_proj_dim). */
  guidanceScale?: number;
  /** TCD gamma / DDIM eta (passed to every step, as diffusers' prepare_extra_step_kwargs does). */
  eta?: number;
  /** Noise for the step with this index, shaped like the latents; released after use. */
  noise: (index: number) => Tensor;
  /** After the UNet evaluation (and guidance) of each step, before the scheduler step (e.g. to time the two apart). */
  afterModel?: (index: number) => void | Promise<void>;
  /**
   * After each step, with views valid only during the call (awaited: read them back or sync here). Returning false
   * stops the loop early.
   */
  onStep?: (view: StepView) => void | boolean | Promise<void | boolean>;
}

export function usesGuidance(guidanceScale: number | undefined): boolean {
  return guidanceScale !== undefined && guidanceScale > 1;
}

/** Runs every timestep of the scheduler; returns the final latents (a new tensor). */
export async function denoise(opts: DenoiseOptions): Promise<Tensor> {
  const { unet, scheduler, cond } = opts;
  const cfg = usesGuidance(opts.guidanceScale);
  const B = opts.latents.shape[0];
  const rows = cfg ? 2 * B : B;
  for (const [name, t] of Object.entries(cond) as [string, Tensor][])
    if (t.shape[0] !== rows)
      throw new ShapeError(`denoise: ${name} ${shapeStr(t.shape)} has ${t.shape[0]} rows; expected ${rows} (batch ${B}${cfg ? ' × 2 for guidance' : ''})`);
  // Non-owning wrappers: the conditioning stays the caller's.
  const encoderHiddenStates = new Var(cond.promptEmbeds);
  const textEmbeds = new Var(cond.textEmbeds);
  const timeIds = new Var(cond.timeIds);
  let x = opts.latents.reshape(opts.latents.shape);
  try {
    for (const [index, t] of scheduler.timesteps.entries()) {
      const doubled = cfg ? concat(x, x, 0) : x.reshape(x.shape);
      const input = scheduler.scaleModelInput(doubled, t);
      doubled.release();
      const sample = new Var(input);
      let eps: Tensor;
      try {
        eps = unet.forward({ sample, timestep: t, encoderHiddenStates, textEmbeds, timeIds }).value;
      } finally {
        sample.dispose();
      }
      if (cfg) eps = guide(eps, B, opts.guidanceScale!);
      let stop = false;
      try {
        await opts.afterModel?.(index);
        const out = scheduler.step(eps, t, x, { eta: opts.eta, noise: () => opts.noise(index) });
        try {
          if (opts.onStep)
            stop = (await opts.onStep({ index, timestep: t, sample: x, modelOutput: eps, denoised: out.denoised, prevSample: out.prevSample })) === false;
        } finally {
          out.denoised?.release();
        }
        x.release();
        x = out.prevSample;
      } finally {
        eps.release();
      }
      if (stop) break;
    }
    return x;
  } catch (e) {
    x.release();
    throw e;
  }
}

/** ε̂_uncond + g·(ε̂_cond − ε̂_uncond) from the [uncond; cond] batch (consumes eps). */
function guide(eps: Tensor, B: number, g: number): Tensor {
  const [uncond, condOut] = split(eps, B, 0);
  eps.release();
  const diff = sub(condOut, uncond);
  const scaled = scale(diff, g);
  const out = add(uncond, scaled);
  for (const t of [uncond, condOut, diff, scaled]) t.release();
  return out;
}
