// The sampler of a pipeline run, built from the folder's scheduler_config.json as diffusers'
// `XScheduler.from_config(pipe.scheduler.config)` does (the SDXL folder ships an Euler config; its noise schedule and
// spacing carry over to whichever sampler is chosen).
import {
  DDIMScheduler,
  DPMSolverSinglestepScheduler,
  EulerDiscreteScheduler,
  LCMScheduler,
  type Scheduler,
  SchedulerError,
  TCDScheduler,
  fromDiffusersConfig,
} from '../schedulers/index.js';

export const SCHEDULER_NAMES = ['tcd', 'lcm', 'ddim', 'euler', 'dpmpp2s'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

export function isSchedulerName(s: string): s is SchedulerName {
  return (SCHEDULER_NAMES as readonly string[]).includes(s);
}

export interface TimestepOptions {
  /** TCD / LCM: the distillation grid size (tcd.md §2.1: an explicit value switches TCD to the dense grid). */
  originalInferenceSteps?: number;
  /** TCD / LCM: keep the first strength·T of the noise range (tcd.md §2.1). */
  strength?: number;
}

/** A fresh scheduler of `name` over the diffusers config. */
export function makeScheduler(name: SchedulerName, diffusersConfig: Record<string, unknown>): Scheduler {
  const cfg = fromDiffusersConfig(diffusersConfig);
  switch (name) {
    case 'tcd':
      return new TCDScheduler(cfg);
    case 'lcm':
      return new LCMScheduler(cfg);
    case 'ddim':
      return new DDIMScheduler(cfg);
    case 'euler':
      return new EulerDiscreteScheduler(cfg);
    case 'dpmpp2s':
      // DPM-Solver++(2S): solver_order 2, dpmsolver++, midpoint (tcd.md §4.2), whatever the folder's class was.
      return new DPMSolverSinglestepScheduler({ ...cfg, solverOrder: 2, algorithmType: 'dpmsolver++', solverType: 'midpoint' });
    default:
      throw new SchedulerError(`unknown scheduler '${name as string}'; expected one of ${SCHEDULER_NAMES.join(', ')}`);
  }
}

/** setTimesteps with the consistency-only options rejected for the samplers that have none. */
export function setSchedule(s: Scheduler, steps: number, opts: TimestepOptions = {}): void {
  if (s instanceof TCDScheduler || s instanceof LCMScheduler) {
    s.setTimesteps(steps, { originalInferenceSteps: opts.originalInferenceSteps, strength: opts.strength });
    return;
  }
  const extra = (['originalInferenceSteps', 'strength'] as const).filter((k) => opts[k] !== undefined);
  if (extra.length) throw new SchedulerError(`${extra.join(' and ')} apply to the tcd and lcm schedulers only`);
  s.setTimesteps(steps);
}

/** The eta (TCD gamma) a run uses when none is given: TCD's recommended 0.3 (tcd.md §6); 0 (deterministic) otherwise. */
export function defaultEta(name: SchedulerName): number {
  return name === 'tcd' ? 0.3 : 0;
}
