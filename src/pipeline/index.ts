// Prompt → image: the SDXL TCD pipeline, its denoising loop and the sampler choice. (PNG files: ./png.js, Node only.)
export {
  TcdSdxlPipeline,
  addTimeIds,
  perImageNormal,
  type GenerateOptions,
  type GenerateResult,
  type GeneratedImage,
  type InjectedNoise,
  type LoraSpec,
  type PipelineParts,
  type PretrainedOptions,
  type SourceLoraSpec,
  type SourceOptions,
  type ProgressEvent,
  type ProgressFn,
  type Stage,
  type Timings,
} from './tcd_sdxl_pipeline.js';
export { denoise, usesGuidance, type Conditioning, type DenoiseOptions, type StepView } from './denoise.js';
export { SCHEDULER_NAMES, type SchedulerName, type TimestepOptions, defaultEta, isSchedulerName, makeScheduler, setSchedule } from './scheduler_choice.js';
export {
  EXPECTED_LAYOUT,
  MODEL_COMPONENTS,
  PipelineLayoutError,
  TOKENIZER_DIRS,
  type CheckedLayout,
  type ModelComponent,
  type PipelineLayout,
  type TokenizerFiles,
  checkLayout,
  readTokenizerFiles,
  resolveLayout,
} from './model_folder.js';
export { PipelineError } from './errors.js';
export { stackLoras, type WeightedLora } from './lora_stack.js';
