// diffusers LCMScheduler (multistep consistency sampling, tcd.md §3): denoised = c_out·x̂0 + c_skip·x_t with the
// boundary-condition scalings at t·timestep_scaling, then re-noising to the next timestep with fresh noise (none on
// the last step, whose "next" timestep is t itself).
import { type ConsistencyTimestepOptions, consistencyTimesteps } from './consistency_timesteps.js';
import { type ElementOps, axpby, subScaledDiv } from './element_ops.js';
import {
  BASE_DEFAULTS,
  BaseScheduler,
  type BaseSchedulerConfig,
  type EtaStepOptions,
  type NoiseDraw,
  type StepResult,
} from './scheduler.js';

export interface LcmSchedulerConfig extends BaseSchedulerConfig {
  originalInferenceSteps: number;
  /** t is multiplied by this in c_skip/c_out (10). */
  timestepScaling: number;
  /** ᾱ past the end of the table: 1, or ᾱ[0] (SDXL's config: false). */
  setAlphaToOne: boolean;
}

export const LCM_DEFAULTS: LcmSchedulerConfig = {
  ...BASE_DEFAULTS,
  originalInferenceSteps: 50,
  timestepScaling: 10,
  setAlphaToOne: false,
};

export type LcmTimestepOptions = Omit<ConsistencyTimestepOptions, 'numInferenceSteps'>;

export class LCMScheduler extends BaseScheduler<LcmSchedulerConfig> {
  readonly order = 1;
  readonly finalAlphaCumprod: number;

  constructor(config: Partial<LcmSchedulerConfig> = {}) {
    super('LCMScheduler', { ...LCM_DEFAULTS, ...config });
    this.finalAlphaCumprod = this.config.setAlphaToOne ? 1 : this.alphasCumprod[0];
  }

  get initNoiseSigma(): number {
    return 1;
  }

  setTimesteps(numInferenceSteps: number, opts?: LcmTimestepOptions): void;
  setTimesteps(opts: ConsistencyTimestepOptions): void;
  setTimesteps(a: number | ConsistencyTimestepOptions, b: LcmTimestepOptions = {}): void {
    const opts = typeof a === 'number' ? { ...b, numInferenceSteps: a } : a;
    // LCM always uses the k-grid, whether or not originalInferenceSteps is passed.
    const out = consistencyTimesteps(this.name, this.config.numTrainTimesteps, this.config.originalInferenceSteps, opts, false);
    this.warnings = [];
    out.warnings.forEach((w) => this.warn(w));
    this.resetRun(out.timesteps, out.numInferenceSteps);
  }

  /** get_scalings_for_boundary_condition_discrete (σ_data = 0.5), in float32 as torch computes it. */
  boundaryScalings(timestep: number): { cSkip: number; cOut: number } {
    const r = this.r;
    const st = r(timestep * this.config.timestepScaling);
    const den = r(r(st * st) + 0.25);
    // 0.25 / tensor is reciprocal(tensor)·0.25 in torch.
    return { cSkip: r(r(1 / den) * 0.25), cOut: r(st / r(Math.sqrt(den))) };
  }

  protected run<T>(ops: ElementOps<T>, m: T, timestep: number, x: T, noise: NoiseDraw<T>, _opts: EtaStepOptions<T>): StepResult<T> {
    const r = this.r;
    const index = this.currentIndex(timestep);
    const prevT = index + 1 < this._timesteps.length ? this._timesteps[index + 1] : timestep;
    const aT = this.alphaAt(timestep);
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    const { cSkip, cOut } = this.boundaryScalings(timestep);
    const last = index === this._numInferenceSteps! - 1;
    const z = last ? undefined : noise.get();
    const x0 = subScaledDiv(ops, x, r(Math.sqrt(r(1 - aT))), m, r(Math.sqrt(aT)));
    const denoised = axpby(ops, cOut, x0, cSkip, x);
    ops.release(x0);
    const prev = z === undefined ? ops.retain(denoised) : axpby(ops, r(Math.sqrt(aPrev)), denoised, r(Math.sqrt(r(1 - aPrev))), z);
    this._stepIndex = index + 1;
    return { prevSample: prev, denoised };
  }
}
