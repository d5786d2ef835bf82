// diffusers DDIMScheduler (tcd.md §4.1), a teacher baseline: x_prev = sqrt(ᾱ_prev)·x̂0 + sqrt(1 − ᾱ_prev − σ²)·ε̂
// (+ σ·z when eta > 0), σ = eta·sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev)). prev = t − T // n; below 0 it uses
// final_alpha_cumprod (ᾱ[0] with SDXL's set_alpha_to_one = false).
import { type ElementOps, axpby, subScaledDiv } from './element_ops.js';
import { SchedulerError } from './errors.js';
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

export interface DdimSchedulerConfig extends BaseSchedulerConfig {
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
  setAlphaToOne: boolean;
}

/** SDXL base scheduler config: leading spacing, offset 1, set_alpha_to_one false. */
export const DDIM_DEFAULTS: DdimSchedulerConfig = {
  ...BASE_DEFAULTS,
  timestepSpacing: 'leading',
  stepsOffset: 1,
  setAlphaToOne: false,
};

export class DDIMScheduler extends BaseScheduler<DdimSchedulerConfig> {
  readonly order = 1;
  readonly finalAlphaCumprod: number;

  constructor(config: Partial<DdimSchedulerConfig> = {}) {
    super('DDIMScheduler', { ...DDIM_DEFAULTS, ...config });
    this.finalAlphaCumprod = this.config.setAlphaToOne ? 1 : this.alphasCumprod[0];
  }

  get initNoiseSigma(): number {
    return 1;
  }

  setTimesteps(numInferenceSteps: number): void {
    checkStepCount(this.name, numInferenceSteps);
    const T = this.config.numTrainTimesteps;
    checkTrainSteps(this.name, numInferenceSteps, T);
    const ts = spacedTimesteps(this.name, this.config.timestepSpacing, T, numInferenceSteps, this.config.stepsOffset, true);
    this.resetRun(ts, numInferenceSteps);
  }

  protected run<T>(ops: ElementOps<T>, m: T, timestep: number, x: T, noise: NoiseDraw<T>, opts: EtaStepOptions<T>): StepResult<T> {
    const r = this.r;
    const eta = opts.eta ?? 0;
    if (!(eta >= 0)) throw new SchedulerError(`${this.name}: eta must be ≥ 0, got ${eta}`);
    const index = this.currentIndex(timestep);
    const prevT = timestep - Math.floor(this.config.numTrainTimesteps / this._numInferenceSteps!);
    const aT = this.alphaAt(timestep);
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    const bT = r(1 - aT);
    const bPrev = r(1 - aPrev);
    const variance = r(r(bPrev / bT) * r(1 - r(aT / aPrev)));
    const std = r(eta * r(Math.sqrt(variance)));
    const z = eta > 0 ? noise.get() : undefined;
    const x0 = subScaledDiv(ops, x, r(Math.sqrt(bT)), m, r(Math.sqrt(aT)));
    const dir = r(Math.sqrt(r(r(1 - aPrev) - r(std * std))));
    let prev = axpby(ops, r(Math.sqrt(aPrev)), x0, dir, m);
    if (z !== undefined) {
      const zs = ops.scale(z, std);
      const noisy = ops.add(prev, zs);
      ops.release(zs);
      ops.release(prev);
      prev = noisy;
    }
    this._stepIndex = index + 1;
    return { prevSample: prev, denoised: x0 };
  }
}
