// diffusers EulerDiscreteScheduler (tcd.md §4.3), a teacher baseline in k-diffusion's σ space
// (σ = sqrt((1 − ᾱ)/ᾱ)): model input x / sqrt(σ² + 1), x̂0 = x − σ·ε̂, d = (x − x̂0)/σ,
// x_next = x + d·(σ_next − σ).
// Sigmas are σ at the spaced timesteps (SDXL: leading, offset 1), optionally remapped to Karras et al.'s ρ = 7
// schedule between the first and last of them, with a final 0. s_churn = 0 (no noise is drawn).
import type { ElementOps } from './element_ops.js';
import { SchedulerError } from './errors.js';
import { npInterp, npLinspace } from './numeric.js';
import {
  BASE_DEFAULTS,
  BaseScheduler,
  type BaseSchedulerConfig,
  type EtaStepOptions,
  type NoiseDraw,
  type StepResult,
  checkStepCount,
  checkTrainSteps,
} from './scheduler.js';
import { type TimestepSpacing, spacedTimesteps } from './timestep_spacing.js';

export interface EulerSchedulerConfig extends BaseSchedulerConfig {
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
  useKarrasSigmas: boolean;
  /** The last sigma: 0 ('zero', the default) or σ at t = 0 ('sigma_min'). */
  finalSigmasType: 'zero' | 'sigma_min';
}

/** SDXL base scheduler config (EulerDiscreteScheduler, use_karras_sigmas false). */
export const EULER_DEFAULTS: EulerSchedulerConfig = {
  ...BASE_DEFAULTS,
  timestepSpacing: 'leading',
  stepsOffset: 1,
  useKarrasSigmas: false,
  finalSigmasType: 'zero',
};

export class EulerDiscreteScheduler extends BaseScheduler<EulerSchedulerConfig> {
  readonly order = 1;
  /** σ(t) for t = 0..T−1 (float32 values in 'float32' precision: torch's ((1 − ᾱ)/ᾱ)^0.5). */
  readonly trainSigmas: Float64Array;
  private _sigmas: Float64Array;

  constructor(config: Partial<EulerSchedulerConfig> = {}) {
    super('EulerDiscreteScheduler', { ...EULER_DEFAULTS, ...config });
    const r = this.r;
    this.trainSigmas = this.alphasCumprod.map((a) => r(Math.sqrt(r(r(1 - a) / a))));
    // Before setTimesteps: every training sigma, noisiest first, then 0.
    this._sigmas = Float64Array.from([...Array.from(this.trainSigmas).reverse(), 0]);
    if (this.config.finalSigmasType !== 'zero' && this.config.finalSigmasType !== 'sigma_min')
      throw new SchedulerError(
        `${this.name}: finalSigmasType must be 'zero' or 'sigma_min', got '${this.config.finalSigmasType as string}'`,
      );
  }

  /** The step sigmas, one per timestep plus the final one. */
  get sigmas(): readonly number[] {
    return Array.from(this._sigmas);
  }

  /** max σ for 'linspace'/'trailing', sqrt(max σ² + 1) for 'leading' (diffusers). */
  get initNoiseSigma(): number {
    const r = this.r;
    const max = this._sigmas.reduce((a, b) => Math.max(a, b), 0);
    return this.config.timestepSpacing === 'leading' ? r(Math.sqrt(r(r(max * max) + 1))) : max;
  }

  setTimesteps(numInferenceSteps: number): void {
    checkStepCount(this.name, numInferenceSteps);
    const r = this.r;
    const T = this.config.numTrainTimesteps;
    checkTrainSteps(this.name, numInferenceSteps, T);
    let ts = spacedTimesteps(this.name, this.config.timestepSpacing, T, numInferenceSteps, this.config.stepsOffset, false).map(Math.fround);
    const grid = Array.from({ length: T }, (_, i) => i);
    // np.interp over the float32 sigmas, in float64.
    let sig = ts.map((t) => npInterp(t, grid, this.trainSigmas));
    if (this.config.useKarrasSigmas) {
      sig = karrasSigmas(sig[sig.length - 1], sig[0], numInferenceSteps);
      // np.log of the float32 sigma array stays float32.
      const logSigmas = Array.from(this.trainSigmas, (s) => r(Math.log(s)));
      ts = sig.map((s) => sigmaToT(s, logSigmas));
    }
    const last = this.config.finalSigmasType === 'zero' ? 0 : this.trainSigmas[0];
    this._sigmas = Float64Array.from([...sig.map(r), last]);
    this.resetRun(ts.map(r), numInferenceSteps);
  }

  private sigmaIndex(timestep: number): number {
    return this.currentIndex(timestep);
  }

  protected override inputScale(timestep: number): number {
    const r = this.r;
    const sigma = this._sigmas[this.sigmaIndex(timestep)];
    return r(Math.sqrt(r(r(sigma * sigma) + 1)));
  }

  protected run<T>(ops: ElementOps<T>, m: T, timestep: number, x: T, _noise: NoiseDraw<T>, _opts: EtaStepOptions<T>): StepResult<T> {
    const r = this.r;
    const index = this.sigmaIndex(timestep);
    const sigma = this._sigmas[index];
    const dt = r(this._sigmas[index + 1] - sigma);
    // x̂0 = x − σ·ε̂, d = (x − x̂0)/σ, x + d·dt.
    const sm = ops.scale(m, sigma);
    const x0 = ops.sub(x, sm);
    ops.release(sm);
    const diff = ops.sub(x, x0);
    const d = ops.divScalar(diff, sigma);
    ops.release(diff);
    const dd = ops.scale(d, dt);
    ops.release(d);
    const prev = ops.add(x, dd);
    ops.release(dd);
    this._stepIndex = index + 1;
    return { prevSample: prev, denoised: x0 };
  }
}

/** Karras et al. (2022) ρ = 7 sigmas from σmax to σmin (float64, as diffusers' _convert_to_karras). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7;
  const ramp = npLinspace(0, 1, n);
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return Array.from(ramp, (x) => (maxInv + x * (minInv - maxInv)) ** rho);
}

/** diffusers _sigma_to_t: the (fractional) timestep of σ by linear interpolation in log σ. */
export function sigmaToT(sigma: number, logSigmas: readonly number[]): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // low = the last index with logSigma ≥ log σ_i (clipped to leave a high neighbour).
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i] >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low];
  const hi = logSigmas[low + 1];
  const w = Math.min(Math.max((lo - logSigma) / (lo - hi), 0), 1);
  return (1 - w) * low + w * (low + 1);
}
