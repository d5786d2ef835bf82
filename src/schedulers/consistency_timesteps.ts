// set_timesteps of diffusers' TCDScheduler and LCMScheduler (tcd.md §2.1, §3): the distillation grid
// k·i − 1 (k = T / original_inference_steps), evenly subsampled, or a custom descending list; strength keeps the
// low-noise part (img2img).
import { SchedulerError } from './errors.js';
import { checkStepCount } from './scheduler.js';

export interface ConsistencyTimestepOptions {
  /** Exactly one of numInferenceSteps and timesteps. */
  numInferenceSteps?: number;
  /** A custom descending list of integer timesteps. */
  timesteps?: readonly number[];
  /** The distillation grid size (default: the config's, 50). */
  originalInferenceSteps?: number;
  /** In (0, 1]: keep the first strength·T of the noise range (img2img). */
  strength?: number;
}

export interface ConsistencyTimesteps {
  timesteps: number[];
  /** Stays the full count for a custom list cut by strength (diffusers does not reduce it). */
  numInferenceSteps: number;
  warnings: string[];
}

/**
 * @param denseWhenExplicit diffusers TCD: an explicitly passed originalInferenceSteps switches the grid to 0..T·strength−1
 *   (and ignores its value, tcd.md §2.1); false for LCM and for the official TCD code, which always use the k-grid.
 */
export function consistencyTimesteps(
  name: string,
  T: number,
  configOriginalSteps: number,
  opts: ConsistencyTimestepOptions,
  denseWhenExplicit: boolean,
): ConsistencyTimesteps {
  const { numInferenceSteps: n, timesteps: custom, originalInferenceSteps: explicit } = opts;
  const strength = opts.strength ?? 1;
  const warnings: string[] = [];
  if ((n === undefined) === (custom === undefined)) {
    const got = n === undefined ? 'neither' : 'both';
    throw new SchedulerError(`${name}: pass exactly one of numInferenceSteps and timesteps (custom), got ${got}`);
  }
  if (!(strength > 0 && strength <= 1)) throw new SchedulerError(`${name}: strength must be in (0, 1], got ${strength}`);
  const originalSteps = explicit ?? configOriginalSteps;
  if (!Number.isInteger(originalSteps) || originalSteps < 1)
    throw new SchedulerError(`${name}: originalInferenceSteps must be a positive integer, got ${originalSteps}`);

  // 1. The training/distillation grid.
  let origin: number[];
  if (explicit === undefined || !denseWhenExplicit) {
    if (originalSteps > T)
      throw new SchedulerError(`${name}: originalInferenceSteps (${originalSteps}) must be ≤ numTrainTimesteps (${T})`);
    const k = Math.floor(T / originalSteps);
    origin = Array.from({ length: Math.trunc(originalSteps * strength) }, (_, i) => (i + 1) * k - 1);
  } else {
    origin = Array.from({ length: Math.trunc(T * strength) }, (_, i) => i);
  }

  // 2a. A custom list.
  if (custom !== undefined) {
    if (custom.length === 0) throw new SchedulerError(`${name}: custom timesteps must not be empty`);
    for (const t of custom)
      if (!Number.isInteger(t) || t < 0) throw new SchedulerError(`${name}: custom timesteps must be non-negative integers, got ${t}`);
    const grid = new Set(origin);
    const offGrid: number[] = [];
    for (let i = 1; i < custom.length; i++) {
      if (custom[i] >= custom[i - 1])
        throw new SchedulerError(`${name}: custom timesteps must be in descending order, got ${custom[i - 1]} then ${custom[i]}`);
      if (!grid.has(custom[i])) offGrid.push(custom[i]);
    }
    if (custom[0] >= T) throw new SchedulerError(`${name}: custom timesteps must start below numTrainTimesteps (${T}), got ${custom[0]}`);
    if (strength === 1 && custom[0] !== T - 1)
      warnings.push(`the first custom timestep is ${custom[0]}, not ${T - 1}: sampling may not start from pure noise`);
    if (offGrid.length) warnings.push(`custom timesteps [${offGrid.join(', ')}] are not on the distillation grid`);
    if (custom.length > originalSteps)
      warnings.push(`${custom.length} custom timesteps exceed originalInferenceSteps (${originalSteps})`);
    const count = custom.length;
    const init = Math.min(Math.trunc(count * strength), count);
    const start = Math.max(count - init, 0);
    return { timesteps: custom.slice(start), numInferenceSteps: count, warnings };
  }

  // 2b. The standard schedule: evenly spaced positions in the reversed grid.
  checkStepCount(name, n!);
  const steps = n!;
  if (steps > T) throw new SchedulerError(`${name}: numInferenceSteps (${steps}) must be ≤ numTrainTimesteps (${T})`);
  if (Math.floor(origin.length / steps) < 1)
    throw new SchedulerError(
      `${name}: originalInferenceSteps × strength (${originalSteps} × ${strength}: ${origin.length} grid timesteps) is ` +
        `smaller than numInferenceSteps (${steps}); use fewer steps or a higher strength`,
    );
  if (steps > originalSteps)
    throw new SchedulerError(`${name}: numInferenceSteps (${steps}) must be ≤ originalInferenceSteps (${originalSteps})`);
  const rev = origin.reverse();
  // np.floor(np.linspace(0, len, steps, endpoint=False)): floor(i · (len / steps)) in float64.
  const stride = rev.length / steps;
  const timesteps = Array.from({ length: steps }, (_, i) => rev[Math.floor(i * stride)]);
  return { timesteps, numInferenceSteps: steps, warnings };
}
