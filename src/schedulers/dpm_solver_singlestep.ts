// diffusers DPMSolverSinglestepScheduler with solver_order 2, algorithm_type 'dpmsolver++' — DPM-Solver++(2S)
// (tcd.md §4.2), a teacher baseline. Each step converts ε̂ to x̂0 at its sigma; order-1 steps move from σ_s to σ_t by
// the exponential integrator x_t = (σ_t/σ_s)·x − α_t(e^{−h} − 1)·x̂0 and remember their input; the following order-2
// step goes from that remembered sample over both sigmas with D0 = x̂0(s1), D1 = (x̂0(s0) − x̂0(s1))/r0 and the
// midpoint rule x_t = (σ_t/σ_s1)·x_s1 − α_t(e^{−h} − 1)·D0 − ½·α_t(e^{−h} − 1)·D1. One model evaluation per timestep.
import { type ElementOps, subScaledDiv } from './element_ops.js';
import { SchedulerError } from './errors.js';
import { npInterp, npLinspace, roundHalfEven } from './numeric.js';
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

export interface DpmSolverSinglestepConfig extends BaseSchedulerConfig {
  /** 1 or 2 (3 is not implemented). */
  solverOrder: 1 | 2;
  /** Only 'midpoint' is implemented. */
  solverType: 'midpoint';
  /** Only 'dpmsolver++' is implemented. */
  algorithmType: 'dpmsolver++';
  lowerOrderFinal: boolean;
  finalSigmasType: 'zero' | 'sigma_min';
}

/** from_config(SDXL, solver_order=2, algorithm_type='dpmsolver++'): the class defaults apart from the schedule. */
export const DPM_SOLVER_SINGLESTEP_DEFAULTS: DpmSolverSinglestepConfig = {
  ...BASE_DEFAULTS,
  solverOrder: 2,
  solverType: 'midpoint',
  algorithmType: 'dpmsolver++',
  lowerOrderFinal: false,
  finalSigmasType: 'zero',
};

type State<T> = { outputs: (T | undefined)[]; sample: T | undefined; ops: ElementOps<T> };

export class DPMSolverSinglestepScheduler extends BaseScheduler<DpmSolverSinglestepConfig> {
  readonly order = 1;
  private _sigmas: Float64Array = new Float64Array(0);
  private _orderList: number[] = [];
  private lowerOrderFinal: boolean;
  // x̂0 of the last `solverOrder` steps and the sample an order-1 step started from (host arrays or GPU tensors).
  private state: State<unknown> | undefined;

  constructor(config: Partial<DpmSolverSinglestepConfig> = {}) {
    super('DPMSolverSinglestepScheduler', { ...DPM_SOLVER_SINGLESTEP_DEFAULTS, ...config });
    const c = this.config;
    if (c.solverOrder !== 1 && c.solverOrder !== 2)
      throw new SchedulerError(`${this.name}: solverOrder ${c.solverOrder as number} is not supported; expected 1 or 2`);
    if (c.algorithmType !== 'dpmsolver++')
      throw new SchedulerError(`${this.name}: algorithmType '${c.algorithmType as string}' is not supported; only 'dpmsolver++'`);
    if (c.solverType !== 'midpoint')
      throw new SchedulerError(`${this.name}: solverType '${c.solverType as string}' is not supported; only 'midpoint'`);
    if (c.finalSigmasType !== 'zero' && c.finalSigmasType !== 'sigma_min')
      throw new SchedulerError(`${this.name}: finalSigmasType must be 'zero' or 'sigma_min', got '${c.finalSigmasType as string}'`);
    this.lowerOrderFinal = c.lowerOrderFinal;
  }

  get initNoiseSigma(): number {
    return 1;
  }
  get sigmas(): readonly number[] {
    return Array.from(this._sigmas);
  }
  /** The solver order of each step. */
  get orderList(): readonly number[] {
    return this._orderList;
  }

  /** σ(t) = sqrt((1 − ᾱ_t)/ᾱ_t) as torch computes it in float32. */
  private sigmaOf(t: number): number {
    const r = this.r;
    const a = this.alphaAt(t);
    return r(Math.sqrt(r(r(1 - a) / a)));
  }

  setTimesteps(numInferenceSteps: number): void {
    checkStepCount(this.name, numInferenceSteps);
    const T = this.config.numTrainTimesteps;
    checkTrainSteps(this.name, numInferenceSteps, T);
    // linspace(0, T − 1, n + 1).round()[::-1][:-1] (timestep_spacing is ignored; lambda_min_clipped = −inf).
    const ts = Array.from(npLinspace(0, T - 1, numInferenceSteps + 1), roundHalfEven).reverse().slice(0, numInferenceSteps);
    const grid = Array.from({ length: T }, (_, i) => i);
    const table = grid.map((t) => this.sigmaOf(t));
    const last = this.config.finalSigmasType === 'zero' ? 0 : this.sigmaOf(0);
    this._sigmas = Float64Array.from([...ts.map((t) => this.r(npInterp(t, grid, table))), last]);
    // diffusers switches lower_order_final on for step counts not divisible by the order and for zero final sigmas.
    const order = this.config.solverOrder;
    if (!this.lowerOrderFinal && (numInferenceSteps % order !== 0 || this.config.finalSigmasType === 'zero')) this.lowerOrderFinal = true;
    this._orderList = orderList(numInferenceSteps, order, this.lowerOrderFinal, this.config.finalSigmasType === 'zero');
    this.clearState();
    this.resetRun(ts, numInferenceSteps);
  }

  /** Releases the remembered x̂0 and sample (GPU tensors); setTimesteps does this too. */
  clearState(): void {
    const st = this.state;
    if (st) {
      st.outputs.forEach((o) => o !== undefined && st.ops.release(o));
      if (st.sample !== undefined) st.ops.release(st.sample);
    }
    this.state = undefined;
  }

  /** α_t = 1/sqrt(σ² + 1), σ_t = σ·α_t, λ = log α_t − log σ_t. */
  private alphaSigma(sigma: number): { alpha: number; sigmaT: number; lambda: number } {
    const r = this.r;
    const alpha = r(1 / r(Math.sqrt(r(r(sigma * sigma) + 1))));
    const sigmaT = r(sigma * alpha);
    return { alpha, sigmaT, lambda: r(r(Math.log(alpha)) - r(Math.log(sigmaT))) };
  }

  private stateFor<T>(ops: ElementOps<T>): State<T> {
    if (this.state && this.state.ops !== (ops as ElementOps<unknown>))
      throw new SchedulerError(`${this.name}: host and GPU steps cannot be mixed within one run; call setTimesteps() first`);
    this.state ??= { outputs: new Array(this.config.solverOrder).fill(undefined), sample: undefined, ops: ops as ElementOps<unknown> };
    return this.state as State<T>;
  }

  protected run<T>(ops: ElementOps<T>, m: T, timestep: number, x: T, _noise: NoiseDraw<T>, _opts: EtaStepOptions<T>): StepResult<T> {
    const r = this.r;
    const index = this.currentIndex(timestep);
    const st = this.stateFor(ops);
    const s0 = this.alphaSigma(this._sigmas[index]);
    // convert_model_output: x̂0 = (x − σ_t·ε̂)/α_t at the current sigma.
    const x0 = subScaledDiv(ops, x, s0.sigmaT, m, s0.alpha);
    const dropped = st.outputs.shift();
    if (dropped !== undefined) ops.release(dropped);
    st.outputs.push(x0);
    let order = this._orderList[index];
    // img2img may start on an order-2 step: lower the order until the needed outputs exist.
    while (st.outputs[st.outputs.length - order] === undefined) order -= 1;
    if (order === 1) {
      if (st.sample !== undefined) ops.release(st.sample);
      st.sample = ops.retain(x);
    }
    const t = this.alphaSigma(this._sigmas[index + 1]);
    const sample = st.sample!;
    let prev: T;
    if (order === 1) {
      const h = r(t.lambda - s0.lambda);
      prev = this.combine(ops, r(t.sigmaT / s0.sigmaT), sample, r(t.alpha * r(r(Math.exp(-h)) - 1)), x0, 0, undefined);
    } else {
      const s1 = this.alphaSigma(this._sigmas[index - 1]);
      const m0 = x0;
      const m1 = st.outputs[st.outputs.length - 2]!;
      const h = r(t.lambda - s1.lambda);
      const h0 = r(s0.lambda - s1.lambda);
      const r0 = r(h0 / h);
      const diff = ops.sub(m0, m1);
      const D1 = ops.scale(diff, r(1 / r0));
      ops.release(diff);
      const em1 = r(r(Math.exp(-h)) - 1);
      const c0 = r(t.alpha * em1);
      prev = this.combine(ops, r(t.sigmaT / s1.sigmaT), sample, c0, m1, r(0.5 * c0), D1);
      ops.release(D1);
    }
    this._stepIndex = index + 1;
    return { prevSample: prev };
  }

  /** a·x − b·D0 − c·D1 in diffusers' order. */
  private combine<T>(ops: ElementOps<T>, a: number, x: T, b: number, D0: T, c: number, D1: T | undefined): T {
    const ax = ops.scale(x, a);
    const bd = ops.scale(D0, b);
    let out = ops.sub(ax, bd);
    ops.release(ax);
    ops.release(bd);
    if (D1 !== undefined) {
      const cd = ops.scale(D1, c);
      const o2 = ops.sub(out, cd);
      ops.release(cd);
      ops.release(out);
      out = o2;
    }
    return out;
  }
}

/** get_order_list: the solver order per step (order 2: [1, 2, 1, 2, …], the last forced to 1 for zero final sigmas). */
export function orderList(steps: number, order: number, lowerOrderFinal: boolean, zeroFinal: boolean): number[] {
  let orders: number[];
  if (order === 1) orders = new Array(steps).fill(1);
  else if (lowerOrderFinal)
    orders = steps % 2 === 0 ? [...repeat([1, 2], steps / 2 - 1), 1, 1] : [...repeat([1, 2], Math.floor(steps / 2)), 1];
  else orders = repeat([1, 2], Math.floor(steps / 2));
  if (zeroFinal) orders[orders.length - 1] = 1;
  return orders;
}

function repeat(xs: number[], n: number): number[] {
  return Array.from({ length: Math.max(n, 0) }, () => xs).flat();
}
