// Samplers with diffusers semantics: TCD (the distilled student's), and the LCM / DDIM / Euler / DPM-Solver++(2S)
// baselines, over GPU tensors and host arrays.
export { SchedulerError } from './errors.js';
export { type Precision, fmaF32, npInterp, npLinspace, roundHalfEven, torchLinspaceF32 } from './numeric.js';
export { type BetaSchedule, type NoiseScheduleConfig, SDXL_NOISE_SCHEDULE, alphasCumprod, betas } from './noise_schedule.js';
export { type ElementOps, type HostArray, HostOps, axpby, gpuOps } from './element_ops.js';
export {
  BASE_DEFAULTS,
  type BaseSchedulerConfig,
  type EtaStepOptions,
  type NoiseInput,
  type PredictionType,
  type Scheduler,
  type StepOptions,
  type StepResult,
} from './scheduler.js';
export { type ConsistencyTimestepOptions, consistencyTimesteps } from './consistency_timesteps.js';
export { TCDScheduler, TCD_DEFAULTS, type TcdSchedulerConfig, type TcdTimestepOptions, tcdIntermediateTimestep } from './tcd.js';
export { LCMScheduler, LCM_DEFAULTS, type LcmSchedulerConfig } from './lcm.js';
export { DDIMScheduler, DDIM_DEFAULTS, type DdimSchedulerConfig } from './ddim.js';
export { EulerDiscreteScheduler, EULER_DEFAULTS, type EulerSchedulerConfig, karrasSigmas, sigmaToT } from './euler.js';
export {
  DPMSolverSinglestepScheduler,
  DPM_SOLVER_SINGLESTEP_DEFAULTS,
  type DpmSolverSinglestepConfig,
  orderList,
} from './dpm_solver_singlestep.js';
export { type TimestepSpacing, spacedTimesteps } from './timestep_spacing.js';
export { fromDiffusersConfig } from './diffusers_config.js';
