// Learning-rate schedules with diffusers' get_scheduler semantics (LambdaLR): the optimizer update number s
// (0-based) uses lr · factor(s). "constant" has no warm-up (as in diffusers); the others ramp up linearly over
// warmupSteps, starting at 0 for update 0, exactly as diffusers' schedules do.
export const LR_SCHEDULES = ['constant', 'constant_with_warmup', 'linear', 'cosine'] as const;
export type LrScheduleName = (typeof LR_SCHEDULES)[number];

export interface LrScheduleOptions {
  name: LrScheduleName;
  lr: number;
  warmupSteps?: number;
  /** Total optimizer updates (linear / cosine decay to 0 at this step). */
  totalSteps?: number;
}

export function isLrSchedule(s: string): s is LrScheduleName {
  return (LR_SCHEDULES as readonly string[]).includes(s);
}

/** The learning rate of optimizer update s (0-based). */
export function learningRate(opts: LrScheduleOptions, s: number): number {
  const W = opts.warmupSteps ?? 0;
  const T = opts.totalSteps ?? 0;
  if (!(opts.lr >= 0)) throw new RangeError(`learning rate must be ≥ 0, got ${opts.lr}`);
  if (!Number.isInteger(W) || W < 0) throw new RangeError(`warmupSteps must be an integer ≥ 0, got ${W}`);
  let f: number;
  switch (opts.name) {
    case 'constant':
      f = 1;
      break;
    case 'constant_with_warmup':
      f = s < W ? s / Math.max(1, W) : 1;
      break;
    case 'linear':
      if (!(T > 0)) throw new RangeError(`the linear schedule needs totalSteps > 0, got ${T}`);
      f = s < W ? s / Math.max(1, W) : Math.max(0, (T - s) / Math.max(1, T - W));
      break;
    case 'cosine': {
      if (!(T > 0)) throw new RangeError(`the cosine schedule needs totalSteps > 0, got ${T}`);
      if (s < W) f = s / Math.max(1, W);
      else {
        const progress = (s - W) / Math.max(1, T - W);
        f = Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progress)));
      }
      break;
    }
    default:
      throw new RangeError(`unknown lr schedule '${opts.name as string}'; expected one of ${LR_SCHEDULES.join(', ')}`);
  }
  return opts.lr * f;
}
