// A diffusers scheduler_config.json (snake_case) as this library's config fields, so that
// `new TCDScheduler(fromDiffusersConfig(json))` is diffusers' `TCDScheduler.from_config(json)`. Keys other schedulers
// use are carried along and ignored, as diffusers does; features that are not implemented are rejected by name.
import { SchedulerError } from './errors.js';

const KEYS: Record<string, string> = {
  num_train_timesteps: 'numTrainTimesteps',
  beta_start: 'betaStart',
  beta_end: 'betaEnd',
  beta_schedule: 'betaSchedule',
  trained_betas: 'trainedBetas',
  prediction_type: 'predictionType',
  timestep_spacing: 'timestepSpacing',
  steps_offset: 'stepsOffset',
  set_alpha_to_one: 'setAlphaToOne',
  use_karras_sigmas: 'useKarrasSigmas',
  final_sigmas_type: 'finalSigmasType',
  original_inference_steps: 'originalInferenceSteps',
  timestep_scaling: 'timestepScaling',
  solver_order: 'solverOrder',
  algorithm_type: 'algorithmType',
  solver_type: 'solverType',
  lower_order_final: 'lowerOrderFinal',
};

/** Settings that change the math and are not implemented: rejected when on. */
const UNSUPPORTED_WHEN_TRUE = [
  'clip_sample',
  'thresholding',
  'rescale_betas_zero_snr',
  'use_exponential_sigmas',
  'use_beta_sigmas',
  'use_flow_sigmas',
  'use_dynamic_shifting',
];

/** The known keys of a diffusers config, renamed; null values are dropped (diffusers' "use the default"). */
export function fromDiffusersConfig(json: Record<string, unknown>): Record<string, unknown> {
  for (const k of UNSUPPORTED_WHEN_TRUE)
    if (json[k] === true) throw new SchedulerError(`diffusers config: '${k}: true' is not supported`);
  if (json.interpolation_type !== undefined && json.interpolation_type !== 'linear')
    throw new SchedulerError(`diffusers config: interpolation_type '${String(json.interpolation_type)}' is not supported; only 'linear'`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) if (KEYS[k] && v !== null && v !== undefined) out[KEYS[k]] = v;
  return out;
}

/** SDXL base 1.0 scheduler/scheduler_config.json (sdxl.md §8.1). */
export const SDXL_SCHEDULER_CONFIG = {
  _class_name: 'EulerDiscreteScheduler',
  _diffusers_version: '0.19.0.dev0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
  trained_betas: null,
  use_karras_sigmas: false,
};
