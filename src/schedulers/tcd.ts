// diffusers TCDScheduler (Trajectory Consistency Distillation; tcd.md §2). Each step goes from t to the intermediate
// s = floor((1 − γ)·prev_t) along the TCF(1) / DDIM form, x_s = sqrt(ᾱ_s)·x̂0 + sqrt(1 − ᾱ_s)·ε̂, then re-noises to
// prev_t with fresh noise when γ > 0 (Strategic Stochastic Sampling). prev_t = 0 on the last step, where no noise is
// drawn. On the GPU a step is one dispatch of the fused kernel (src/kernels/tcd_step.ts) with host scalars.
import { type TcdStepScalars, tcdStep, tcdStepScalars } from '../kernels/tcd_step.js';
import type { Tensor } from '../tensor.js';
import { type ConsistencyTimestepOptions, consistencyTimesteps } from './consistency_timesteps.js';
import { type ElementOps, type HostArray, axpby, gpuOps, subScaledDiv } from './element_ops.js';
import { SchedulerError } from './errors.js';
import {
  BASE_DEFAULTS,
  BaseScheduler,
  type BaseSchedulerConfig,
  type EtaStepOptions,
  NoiseDraw,
  type StepResult,
  sameShape,
} from './scheduler.js';

export interface TcdSchedulerConfig extends BaseSchedulerConfig {
  /** The distillation grid size N (k = T / N = 20 for 50). */
  originalInferenceSteps: number;
  /**
   * How an explicitly passed originalInferenceSteps acts: 'diffusers' switches to the dense grid 0..T−1 (diffusers'
   * code, the default), 'official' keeps the k-grid with that N (jabir-zheng/TCD). tcd.md §2.1.
   */
  explicitOriginalSteps: 'diffusers' | 'official';
  /** Gamma when step() is not given eta (diffusers' step default 0.3; the SDXL pipeline passes its own eta = 0). */
  defaultEta: number;
}

export const TCD_DEFAULTS: TcdSchedulerConfig = {
  ...BASE_DEFAULTS,
  originalInferenceSteps: 50,
  explicitOriginalSteps: 'diffusers',
  defaultEta: 0.3,
};

export type TcdTimestepOptions = Omit<ConsistencyTimestepOptions, 'numInferenceSteps'>;

/** s = floor(f32(f32(1 − γ)·prev)): torch multiplies the 0-dim int64 prev by the python float in float32. */
export function tcdIntermediateTimestep(eta: number, prevT: number): number {
  return Math.floor(Math.fround(Math.fround(1 - eta) * prevT));
}

export class TCDScheduler extends BaseScheduler<TcdSchedulerConfig> {
  readonly order = 1;

  constructor(config: Partial<TcdSchedulerConfig> = {}) {
    super('TCDScheduler', { ...TCD_DEFAULTS, ...config });
    const c = this.config;
    if (c.explicitOriginalSteps !== 'diffusers' && c.explicitOriginalSteps !== 'official')
      throw new SchedulerError(
        `TCDScheduler: explicitOriginalSteps must be 'diffusers' or 'official', got '${c.explicitOriginalSteps as string}'`,
      );
    checkEta(c.defaultEta);
  }

  get initNoiseSigma(): number {
    return 1;
  }

  /**
   * setTimesteps(n, opts) for the standard schedule, or setTimesteps({ timesteps }) for a custom list; strength and
   * originalInferenceSteps as in diffusers (tcd.md §2.1–2.2).
   */
  setTimesteps(numInferenceSteps: number, opts?: TcdTimestepOptions): void;
  setTimesteps(opts: ConsistencyTimestepOptions): void;
  setTimesteps(a: number | ConsistencyTimestepOptions, b: TcdTimestepOptions = {}): void {
    const opts = typeof a === 'number' ? { ...b, numInferenceSteps: a } : a;
    const T = this.config.numTrainTimesteps;
    const dense = this.config.explicitOriginalSteps === 'diffusers';
    const out = consistencyTimesteps(this.name, T, this.config.originalInferenceSteps, opts, dense);
    this.warnings = [];
    out.warnings.forEach((w) => this.warn(w));
    this.resetRun(out.timesteps, out.numInferenceSteps);
  }

  /** The (prev_t, noise) rule of step i: prev_t from the list (0 past its end); noise when γ > 0 and i ≠ n − 1. */
  stepPlan(index: number, eta: number): { prevArg: number | undefined; drawsNoise: boolean } {
    const drawsNoise = eta > 0 && index !== this._numInferenceSteps! - 1;
    // tcdStepScalars: undefined = diffusers' final step (prev 0, no noise). A custom list cut by strength is shorter
    // than numInferenceSteps: past its end diffusers still draws noise, with coefficient sqrt(1 − ᾱ0/ᾱ0) = 0.
    const prevArg = index + 1 < this._timesteps.length ? this._timesteps[index + 1] : drawsNoise ? 0 : undefined;
    return { prevArg, drawsNoise };
  }

  /** The step's scalars, as tcdStepScalars computes them in float32 (host-side arithmetic per this precision). */
  scalars(timestep: number, prevArg: number | undefined, eta: number): TcdStepScalars {
    checkEta(eta);
    if (this.config.precision === 'float32') return tcdStepScalars(this.alphasCumprod, timestep, prevArg, eta);
    const r = this.r;
    const prev = prevArg ?? 0;
    const s = tcdIntermediateTimestep(eta, prev);
    const [alphaT, alphaPrev, alphaS] = [this.alphaAt(timestep), this.alphaAt(prev), this.alphaAt(s)];
    const ratio = r(alphaPrev / alphaS);
    return {
      timestep,
      prevTimestep: prev,
      s,
      addNoise: eta > 0 && prevArg !== undefined,
      alphaT,
      alphaPrev,
      alphaS,
      sqrtAlphaT: r(Math.sqrt(alphaT)),
      sqrtBetaT: r(Math.sqrt(r(1 - alphaT))),
      sqrtAlphaS: r(Math.sqrt(alphaS)),
      sqrtBetaS: r(Math.sqrt(r(1 - alphaS))),
      cPrev: r(Math.sqrt(ratio)),
      cNoise: r(Math.sqrt(r(1 - ratio))),
    };
  }

  protected run<T>(ops: ElementOps<T>, m: T, timestep: number, x: T, noise: NoiseDraw<T>, opts: EtaStepOptions<T>): StepResult<T> {
    const eta = opts.eta ?? this.config.defaultEta;
    checkEta(eta);
    const index = this.currentIndex(timestep);
    const { prevArg } = this.stepPlan(index, eta);
    const sc = this.scalars(timestep, prevArg, eta);
    const z = sc.addNoise ? noise.get() : undefined;
    const x0 = subScaledDiv(ops, x, sc.sqrtBetaT, m, sc.sqrtAlphaT);
    const xs = axpby(ops, sc.sqrtAlphaS, x0, sc.sqrtBetaS, m);
    ops.release(x0);
    const prev = z !== undefined ? axpby(ops, sc.cPrev, xs, sc.cNoise, z) : ops.retain(xs);
    this._stepIndex = index + 1;
    return { prevSample: prev, denoised: xs };
  }

  /** The GPU step: one dispatch of the fused TCD kernel. */
  override step(modelOutput: Tensor, timestep: number, sample: Tensor, opts: EtaStepOptions<Tensor> = {}): StepResult<Tensor> {
    const op = `${this.name}.step`;
    const eta = opts.eta ?? this.config.defaultEta;
    checkEta(eta);
    sameShape(op, 'model_output', modelOutput, sample);
    const index = this.currentIndex(timestep);
    const { prevArg } = this.stepPlan(index, eta);
    // float32: tcdStepScalars itself; float64: the same scalars in float64, rounded once into the kernel's uniforms.
    const sc = this.scalars(timestep, prevArg, eta);
    const noise = new NoiseDraw(gpuOps, opts.noise, `${op} at timestep ${timestep}`, (z) => {
      sameShape(op, 'noise', z, sample);
      return z;
    });
    try {
      const out = tcdStep(sample, modelOutput, sc, sc.addNoise ? noise.get() : undefined);
      out.predOriginalSample.release();
      this._stepIndex = index + 1;
      return { prevSample: out.prevSample, denoised: out.predNoisedSample };
    } finally {
      noise.done();
    }
  }

  /** add_noise: sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·noise (img2img's initial latents). */
  addNoise(original: Tensor, noise: Tensor, timestep: number): Tensor {
    sameShape(`${this.name}.addNoise`, 'noise', noise, original);
    return this.addNoiseWith(gpuOps, original, noise, timestep);
  }

  addNoiseHost(original: ArrayLike<number>, noise: ArrayLike<number>, timestep: number): HostArray {
    return this.addNoiseWith(this.host, this.host.from(original), this.host.from(noise), timestep);
  }

  private addNoiseWith<T>(ops: ElementOps<T>, x0: T, z: T, timestep: number): T {
    const a = this.alphaAt(timestep);
    return axpby(ops, this.r(Math.sqrt(a)), x0, this.r(Math.sqrt(this.r(1 - a))), z);
  }
}

function checkEta(eta: number): void {
  if (!(eta >= 0 && eta <= 1)) throw new SchedulerError(`TCDScheduler: eta (gamma) must be in [0, 1], got ${eta}`);
}
