// The interface every sampler implements, and the base class holding the noise schedule, the timesteps and the step
// index (diffusers semantics: the index starts at set_begin_index() or at the position of the first timestep passed
// to step(), then advances by one per step).
import { ShapeError } from '../../runtime/errors.js';
import { type Tensor, shapeStr } from '../tensor.js';
import { type ElementOps, type HostArray, HostOps, gpuOps } from './element_ops.js';
import { SchedulerError } from './errors.js';
import { type NoiseScheduleConfig, SDXL_NOISE_SCHEDULE, alphasCumprod } from './noise_schedule.js';
import { type Precision, type Round, roundFor } from './numeric.js';

/** A noise tensor, or a source called only when the step draws noise (as often as diffusers calls randn). */
export type NoiseInput<T> = T | (() => T);

export interface StepOptions<T> {
  /**
   * Noise for the steps that re-noise. A tensor passed directly stays the caller's; one returned by a source function
   * is released by the step after use.
   */
  noise?: NoiseInput<T>;
}

/** TCD's gamma and DDIM's eta (other schedulers ignore it). */
export interface EtaStepOptions<T> extends StepOptions<T> {
  eta?: number;
}

export interface StepResult<T> {
  /** The next sample (diffusers prev_sample). */
  prevSample: T;
  /**
   * The step's clean or partially clean estimate, as diffusers names it per scheduler: TCD pred_noised_sample, LCM
   * denoised, DDIM and Euler pred_original_sample; absent for DPM-Solver (its output has none).
   */
  denoised?: T;
}

/** The sampler interface (GPU tensors, and host arrays for tests and CPU references). */
export interface Scheduler {
  readonly timesteps: readonly number[];
  readonly numInferenceSteps: number | undefined;
  /** Scale of the initial noise: latents = randn · initNoiseSigma. */
  readonly initNoiseSigma: number;
  readonly stepIndex: number | undefined;
  /** The standard schedule for numInferenceSteps steps. */
  setTimesteps(numInferenceSteps: number): void;
  /** Start at index i of the timesteps (img2img), instead of looking the first timestep up. */
  setBeginIndex(i: number): void;
  /** The model input for timestep t (a new handle the caller releases, a view of sample when the scale is 1). */
  scaleModelInput(sample: Tensor, timestep: number): Tensor;
  scaleModelInputHost(sample: ArrayLike<number>, timestep: number): HostArray;
  /** One step from sample at `timestep` with the model's output; the returned tensors are the caller's. */
  step(modelOutput: Tensor, timestep: number, sample: Tensor, opts?: EtaStepOptions<Tensor>): StepResult<Tensor>;
  stepHost(
    modelOutput: ArrayLike<number>,
    timestep: number,
    sample: ArrayLike<number>,
    opts?: EtaStepOptions<HostArray>,
  ): StepResult<HostArray>;
}

export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

export interface BaseSchedulerConfig extends NoiseScheduleConfig {
  /** Only 'epsilon' (SDXL's) is implemented. */
  predictionType: PredictionType;
  /** 'float32': diffusers' torch float32 numbers bit for bit (host path); 'float64': the same math in float64. */
  precision: Precision;
  /** Where diffusers' logger warnings go (default console.warn). */
  onWarning?: (message: string) => void;
}

export const BASE_DEFAULTS: BaseSchedulerConfig = { ...SDXL_NOISE_SCHEDULE, predictionType: 'epsilon', precision: 'float32' };

export function checkPredictionType(name: string, p: string): void {
  if (p === 'epsilon') return;
  if (p === 'v_prediction' || p === 'sample')
    throw new SchedulerError(`${name}: predictionType '${p}' is not supported; only 'epsilon' (SDXL) is implemented`);
  throw new SchedulerError(`${name}: unknown predictionType '${p}'; expected 'epsilon', 'v_prediction' or 'sample'`);
}

export function checkStepCount(name: string, n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new SchedulerError(`${name}: numInferenceSteps must be a positive integer, got ${n}`);
}

export function checkTrainSteps(name: string, n: number, T: number): void {
  if (n > T) throw new SchedulerError(`${name}: numInferenceSteps (${n}) must be ≤ numTrainTimesteps (${T})`);
}

export function sameShape(op: string, what: string, t: Tensor, like: Tensor): void {
  if (t.rank !== like.rank || t.shape.some((d, i) => d !== like.shape[i]))
    throw new ShapeError(`${op}: ${what} has shape ${shapeStr(t.shape)}, expected the sample's ${shapeStr(like.shape)}`);
}

/** A step's noise: resolved only when the step draws it (see StepOptions.noise). */
export class NoiseDraw<T> {
  private owned: T | undefined;
  constructor(
    private readonly ops: ElementOps<T>,
    private readonly input: NoiseInput<T> | undefined,
    private readonly what: string,
    /** Checks the noise's size and returns it in the step's representation. */
    private readonly prepare: (noise: T) => T,
  ) {}
  get(): T {
    const input = this.input;
    if (input === undefined) throw new SchedulerError(`${this.what} re-noises and needs opts.noise (a tensor or a source)`);
    if (typeof input !== 'function') return this.prepare(input);
    const z = (input as () => T)();
    this.owned = z;
    return this.prepare(z);
  }
  /** Releases noise that came from a source. */
  done(): void {
    if (this.owned !== undefined) this.ops.release(this.owned);
    this.owned = undefined;
  }
}

export abstract class BaseScheduler<C extends BaseSchedulerConfig> implements Scheduler {
  readonly config: Readonly<C>;
  /** ᾱ[t] (float32 values in 'float32' precision). */
  readonly alphasCumprod: Float64Array;
  /** Rounding of host scalar arithmetic: Math.fround in 'float32' precision. */
  protected readonly r: Round;
  protected readonly host: HostOps;
  protected _timesteps: number[] = [];
  protected _numInferenceSteps: number | undefined;
  protected _stepIndex: number | undefined;
  protected _beginIndex: number | undefined;
  /** diffusers' warnings from the last setTimesteps (also sent to config.onWarning). */
  warnings: string[] = [];

  constructor(
    readonly name: string,
    config: C,
  ) {
    this.config = Object.freeze({ ...config });
    checkPredictionType(name, config.predictionType);
    if (config.precision !== 'float32' && config.precision !== 'float64')
      throw new SchedulerError(`${name}: precision must be 'float32' or 'float64', got '${config.precision as string}'`);
    this.r = roundFor(config.precision);
    this.host = new HostOps(config.precision);
    this.alphasCumprod = alphasCumprod(config, config.precision);
  }

  get timesteps(): readonly number[] {
    return this._timesteps;
  }
  get numInferenceSteps(): number | undefined {
    return this._numInferenceSteps;
  }
  get stepIndex(): number | undefined {
    return this._stepIndex;
  }
  get beginIndex(): number | undefined {
    return this._beginIndex;
  }
  abstract get initNoiseSigma(): number;
  abstract setTimesteps(numInferenceSteps: number): void;

  setBeginIndex(i: number): void {
    if (!Number.isInteger(i) || i < 0) throw new SchedulerError(`${this.name}: begin index must be a non-negative integer, got ${i}`);
    this._beginIndex = i;
  }

  protected warn(message: string): void {
    this.warnings.push(message);
    (this.config.onWarning ?? console.warn)(`${this.name}: ${message}`);
  }

  /** Clears the per-run state when new timesteps are set. */
  protected resetRun(timesteps: number[], numInferenceSteps: number): void {
    this._timesteps = timesteps;
    this._numInferenceSteps = numInferenceSteps;
    this._stepIndex = undefined;
    this._beginIndex = undefined;
  }

  /** diffusers index_for_timestep: the first match, or the second when the timestep occurs more than once. */
  indexForTimestep(timestep: number): number {
    const hits: number[] = [];
    this._timesteps.forEach((t, i) => t === timestep && hits.push(i));
    if (hits.length === 0)
      throw new SchedulerError(`${this.name}: timestep ${timestep} is not in the schedule [${this._timesteps.join(', ')}]`);
    return hits.length > 1 ? hits[1] : hits[0];
  }

  /** The step index for this call (initialised on the first step as diffusers does); errors before setTimesteps. */
  protected currentIndex(timestep: number): number {
    if (this._numInferenceSteps === undefined)
      throw new SchedulerError(`${this.name}: call setTimesteps() before step() (numInferenceSteps is not set)`);
    if (this._stepIndex === undefined) this._stepIndex = this._beginIndex ?? this.indexForTimestep(timestep);
    if (this._stepIndex >= this._timesteps.length)
      throw new SchedulerError(`${this.name}: all ${this._timesteps.length} steps are done; call setTimesteps() to start again`);
    return this._stepIndex;
  }

  /** Table lookup of ᾱ at an integer timestep. */
  protected alphaAt(t: number): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length)
      throw new SchedulerError(`${this.name}: timestep ${t} is not an integer in [0, ${this.alphasCumprod.length - 1}]`);
    return this.alphasCumprod[t];
  }

  /** The step written once over element ops; advance the index afterwards (subclasses). */
  protected abstract run<T>(
    ops: ElementOps<T>,
    modelOutput: T,
    timestep: number,
    sample: T,
    noise: NoiseDraw<T>,
    opts: EtaStepOptions<T>,
  ): StepResult<T>;

  /** The model-input scale 1/sqrt(σ² + 1) (1 for the ᾱ-space schedulers). */
  protected inputScale(_timestep: number): number {
    return 1;
  }

  scaleModelInput(sample: Tensor, timestep: number): Tensor {
    const c = this.inputScale(timestep);
    return c === 1 ? sample.reshape(sample.shape) : gpuOps.divScalar(sample, c);
  }

  scaleModelInputHost(sample: ArrayLike<number>, timestep: number): HostArray {
    const x = this.host.from(sample);
    const c = this.inputScale(timestep);
    return c === 1 ? x : this.host.divScalar(x, c);
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor, opts: EtaStepOptions<Tensor> = {}): StepResult<Tensor> {
    const op = `${this.name}.step`;
    sameShape(op, 'model_output', modelOutput, sample);
    const noise = new NoiseDraw(gpuOps, opts.noise, `${op} at timestep ${timestep}`, (z) => {
      sameShape(op, 'noise', z, sample);
      return z;
    });
    try {
      return this.run(gpuOps, modelOutput, timestep, sample, noise, opts);
    } finally {
      noise.done();
    }
  }

  stepHost(
    modelOutput: ArrayLike<number>,
    timestep: number,
    sample: ArrayLike<number>,
    opts: EtaStepOptions<HostArray> = {},
  ): StepResult<HostArray> {
    const op = `${this.name}.stepHost`;
    if (modelOutput.length !== sample.length)
      throw new ShapeError(`${op}: model_output has ${modelOutput.length} elements, the sample ${sample.length}`);
    const noise = new NoiseDraw(this.host, opts.noise, `${op} at timestep ${timestep}`, (z) => {
      if (z.length !== sample.length) throw new ShapeError(`${op}: noise has ${z.length} elements, the sample ${sample.length}`);
      return this.host.from(z);
    });
    return this.run(this.host, this.host.from(modelOutput), timestep, this.host.from(sample), noise, opts);
  }
}
