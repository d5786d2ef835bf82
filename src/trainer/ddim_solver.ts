// The distillation grid and the per-element math of one TCD training step (tcd.md §5.1-5.2, §11), on the host in
// float32 as torch computes it (each operation rounded once with Math.fround) except where diffusers computes in
// float64 (the DDIM step: its ᾱ_prev table is a float64 array, so x_prev is float64 rounded once to float32).
//
// These are elementwise operations on latents (SDXL: 4·128·128 values per sample), cheap next to a UNet forward;
// on the host they reproduce diffusers' rounding exactly and keep the training step's scalars out of the GPU.
export class DdimSolverError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DdimSolverError';
  }
}

const fr = Math.fround;

/**
 * diffusers' DDIMSolver of train_lcm_distill_lora_sdxl.py plus the float32 α / σ schedules:
 *   k = T // N;  timesteps[i] = (i + 1)·k − 1;  acPrev[i] = ᾱ[timesteps[i − 1]] (acPrev[0] = ᾱ[0]).
 */
export class DdimSolver {
  /** T (training timesteps). */
  readonly numTrainTimesteps: number;
  /** N (grid size; 50 in the recipe). */
  readonly numDdimTimesteps: number;
  /** The skipping interval k = T // N. */
  readonly k: number;
  /** ddim_timesteps [N]: (i + 1)·k − 1. */
  readonly timesteps: Int32Array;
  /** ᾱ at the grid timesteps (float32 values). */
  readonly alphaCumprods: Float64Array;
  /** ddim_alpha_cumprods_prev (a float64 array in diffusers). */
  readonly alphaCumprodsPrev: Float64Array;
  /** sqrt(ᾱ) and sqrt(1 − ᾱ) in float32, indexed by timestep. */
  readonly alphaSchedule: Float32Array;
  readonly sigmaSchedule: Float32Array;

  /** alphasCumprod: ᾱ[t] for t = 0..T−1 as float32 values (src/schedulers/noise_schedule.ts, 'float32'). */
  constructor(
    readonly alphasCumprod: ArrayLike<number>,
    numDdimTimesteps = 50,
  ) {
    const T = alphasCumprod.length;
    if (!Number.isInteger(numDdimTimesteps) || numDdimTimesteps < 1 || numDdimTimesteps > T)
      throw new DdimSolverError(`numDdimTimesteps must be an integer in [1, ${T}] (the schedule's timesteps), got ${numDdimTimesteps}`);
    this.numTrainTimesteps = T;
    this.numDdimTimesteps = numDdimTimesteps;
    this.k = Math.floor(T / numDdimTimesteps);
    const ac = Float64Array.from(alphasCumprod, fr);
    this.timesteps = Int32Array.from({ length: numDdimTimesteps }, (_, i) => (i + 1) * this.k - 1);
    this.alphaCumprods = Float64Array.from(this.timesteps, (t) => ac[t]);
    this.alphaCumprodsPrev = Float64Array.from(this.timesteps, (_, i) => (i === 0 ? ac[0] : ac[this.timesteps[i - 1]]));
    this.alphaSchedule = Float32Array.from(ac, (a) => Math.sqrt(a));
    this.sigmaSchedule = Float32Array.from(ac, (a) => Math.sqrt(fr(1 - a)));
  }

  private checkIndex(i: number, what: string): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.numDdimTimesteps)
      throw new DdimSolverError(`${what} must be an integer in [0, ${this.numDdimTimesteps - 1}], got ${i}`);
  }

  /** t_{n+k} = timesteps[index]: where the student starts. */
  startTimestep(index: number): number {
    this.checkIndex(index, 'index');
    return this.timesteps[index];
  }

  /** t_n = max(timesteps[index] − k, 0): where the teacher's DDIM step lands. */
  teacherTimestep(index: number): number {
    return Math.max(this.startTimestep(index) - this.k, 0);
  }

  /** [TCD] t_m = max(timesteps[endIndex] − k, 0), endIndex ≤ index: where both TCF(1) jumps end. */
  endTimestep(endIndex: number, index: number): number {
    this.checkIndex(endIndex, 'endIndex');
    if (endIndex > index) throw new DdimSolverError(`endIndex ${endIndex} must not exceed index ${index}`);
    return Math.max(this.timesteps[endIndex] - this.k, 0);
  }

  private checkTimestep(t: number): void {
    if (!Number.isInteger(t) || t < 0 || t >= this.numTrainTimesteps)
      throw new DdimSolverError(`timestep must be an integer in [0, ${this.numTrainTimesteps - 1}], got ${t}`);
  }

  /** DDPMScheduler.add_noise: sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·noise, float32 (into out at offset). */
  addNoise(latents: ArrayLike<number>, noise: ArrayLike<number>, t: number, out: Float32Array, offset = 0, n = latents.length): void {
    this.checkTimestep(t);
    const a = this.alphaSchedule[t];
    const s = this.sigmaSchedule[t];
    for (let i = 0; i < n; i++) out[offset + i] = fr(a * latents[offset + i]) + fr(s * noise[offset + i]);
  }

  /** x0 = (x − σ_t·eps) / α_t, float32. */
  predictX0(x: ArrayLike<number>, eps: ArrayLike<number>, t: number, out: Float32Array, offset = 0, n = x.length): void {
    this.checkTimestep(t);
    const a = this.alphaSchedule[t];
    const s = this.sigmaSchedule[t];
    for (let i = offset; i < offset + n; i++) out[i] = fr(x[i] - fr(s * eps[i])) / a;
  }

  /**
   * The TCF(1) coefficients from t to s (C-TCD get_predicted_original_sample_tcd, epsilon prediction):
   * x_s = (σ_s·x)/σ_t − c·x0 with c = α_s·(exp(−h) − 1), h = λ_s − λ_t, λ = log α − log σ (float32 scalars).
   */
  tcf1Coefficients(t: number, s: number): { sigmaS: number; sigmaT: number; alphaT: number; c: number } {
    this.checkTimestep(t);
    this.checkTimestep(s);
    const aT = this.alphaSchedule[t];
    const sT = this.sigmaSchedule[t];
    const aS = this.alphaSchedule[s];
    const sS = this.sigmaSchedule[s];
    const lamT = fr(fr(Math.log(aT)) - fr(Math.log(sT)));
    const lamS = fr(fr(Math.log(aS)) - fr(Math.log(sS)));
    const h = fr(lamS - lamT);
    const c = fr(aS * fr(fr(Math.exp(-h)) - 1));
    return { sigmaS: sS, sigmaT: sT, alphaT: aT, c };
  }

  /** TCF(1): the consistency jump of sample x with ε-prediction eps from t to s ≤ t, float32. */
  tcf1(x: ArrayLike<number>, eps: ArrayLike<number>, t: number, s: number, out: Float32Array, offset = 0, n = x.length): void {
    const { sigmaS, sigmaT, alphaT, c } = this.tcf1Coefficients(t, s);
    for (let i = offset; i < offset + n; i++) {
      const x0 = fr(fr(x[i] - fr(sigmaT * eps[i])) / alphaT);
      out[i] = fr(fr(fr(sigmaS * x[i]) / sigmaT) - fr(c * x0));
    }
  }

  /**
   * The gradient of a loss w.r.t. eps given its gradient g w.r.t. tcf1's output (x has no gradient), in torch's
   * backward order: dx0 = −g·c; d(num) = dx0 / α_t; deps = −d(num)·σ_t.
   */
  tcf1EpsGrad(g: ArrayLike<number>, t: number, s: number, out: Float32Array, offset = 0, n = g.length): void {
    const { sigmaT, alphaT, c } = this.tcf1Coefficients(t, s);
    for (let i = offset; i < offset + n; i++) {
      const dx0 = fr(-g[i] * c);
      const dnum = fr(dx0 / alphaT);
      out[i] = fr(-dnum * sigmaT);
    }
  }

  /** DDIMSolver.ddim_step (η = 0, one grid step down from index): float64 arithmetic, one rounding to float32. */
  ddimStep(predX0: ArrayLike<number>, predNoise: ArrayLike<number>, index: number, out: Float32Array, offset = 0, n = predX0.length): Float64Array {
    this.checkIndex(index, 'index');
    const acp = this.alphaCumprodsPrev[index];
    const a = Math.sqrt(acp);
    const s = Math.sqrt(1 - acp);
    const wide = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const dir = s * predNoise[offset + i];
      wide[i] = a * predX0[offset + i] + dir;
      out[offset + i] = wide[i];
    }
    return wide;
  }
}

/**
 * Teacher classifier-free guidance in LCM's formulation on ε and on x0 (float32):
 * pred_x0 = x0_c + w·(x0_c − x0_u), pred_noise = eps_c + w·(eps_c − eps_u).
 */
export function guide(cond: ArrayLike<number>, uncond: ArrayLike<number>, w: number, out: Float32Array, offset = 0, n = cond.length): void {
  const wf = fr(w);
  for (let i = offset; i < offset + n; i++) out[i] = fr(cond[i] + fr(wf * fr(cond[i] - uncond[i])));
}
