// The DDPM noise schedule shared by the schedulers: betas, alphas = 1 − betas, ᾱ = cumprod(alphas).
// precision 'float32' reproduces diffusers' torch float32 tensors bit for bit (float32 linspace as ATen computes it,
// float32 squares and differences, a cumprod that accumulates in double and rounds each output, tcd.md §1.3);
// 'float64' is the same math in float64 (numpy's linspace).
import { SchedulerError } from './errors.js';
import { type Precision, npLinspace, torchLinspaceF32 } from './numeric.js';

export type BetaSchedule = 'scaled_linear' | 'linear' | 'squaredcos_cap_v2';

export interface NoiseScheduleConfig {
  /** T, the number of training timesteps (1000). */
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  /** Explicit betas (overrides the schedule), as diffusers' trained_betas. */
  trainedBetas?: readonly number[];
}

/** SDXL base (scheduler_config.json): scaled_linear from 0.00085 to 0.012 over 1000 steps. */
export const SDXL_NOISE_SCHEDULE: NoiseScheduleConfig = {
  numTrainTimesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
  betaSchedule: 'scaled_linear',
};

/** diffusers betas_for_alpha_bar (cosine), max_beta 0.999: computed in float64 by diffusers too. */
function cosineBetas(T: number): Float64Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const out = new Float64Array(T);
  for (let i = 0; i < T; i++) out[i] = Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), 0.999);
  return out;
}

/** betas[t], t = 0..T−1 (float32 values in 'float32' precision). */
export function betas(config: NoiseScheduleConfig, precision: Precision): Float64Array {
  const T = config.numTrainTimesteps;
  if (!Number.isInteger(T) || T < 2) throw new SchedulerError(`numTrainTimesteps must be an integer ≥ 2, got ${T}`);
  const f32 = precision === 'float32';
  const round = f32 ? Math.fround : (x: number) => x;
  if (config.trainedBetas) {
    if (config.trainedBetas.length !== T)
      throw new SchedulerError(`trainedBetas has ${config.trainedBetas.length} values, expected numTrainTimesteps = ${T}`);
    return Float64Array.from(config.trainedBetas, round);
  }
  switch (config.betaSchedule) {
    case 'linear':
      return f32 ? torchLinspaceF32(config.betaStart, config.betaEnd, T) : npLinspace(config.betaStart, config.betaEnd, T);
    case 'scaled_linear': {
      const [a, b] = [Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd)];
      const lin = f32 ? torchLinspaceF32(a, b, T) : npLinspace(a, b, T);
      return lin.map((x) => round(x * x));
    }
    case 'squaredcos_cap_v2':
      return cosineBetas(T).map(round);
    default:
      throw new SchedulerError(
        `unknown betaSchedule '${config.betaSchedule as string}'; expected 'scaled_linear', 'linear' or 'squaredcos_cap_v2'`,
      );
  }
}

/** ᾱ[t] = Π_{i ≤ t} (1 − betas[i]), indexed by integer timestep. */
export function alphasCumprod(config: NoiseScheduleConfig, precision: Precision): Float64Array {
  const round = precision === 'float32' ? Math.fround : (x: number) => x;
  const b = betas(config, precision);
  const out = new Float64Array(b.length);
  // torch's CPU cumprod accumulates float32 inputs in double and rounds each output.
  let acc = 1;
  for (let i = 0; i < b.length; i++) {
    acc *= round(1 - b[i]);
    out[i] = round(acc);
  }
  return out;
}
