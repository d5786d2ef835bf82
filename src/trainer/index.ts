// The TCD distillation trainer (issue 12): TcdDistiller and its parts, for engine authors. Node only, as
// `import { TcdDistiller } from 'tcd-webgpu/trainer'` (package.json exports): checkpoints, logs and image folders use
// the file system, and the image decoders reach pngjs, so it stays out of the browser bundle.
export { DdimSolver, DdimSolverError, guide } from './ddim_solver.js';
export {
  DEFAULT_TEACHER_BATCHING,
  TEACHER_BATCHINGS,
  tcdDistillStep,
  teacherEps,
  withAdapters,
  type LossType,
  type TeacherBatching,
  type TcdBatch,
  type TcdStepOptions,
  type TcdStepResult,
  type TcdStepTensors,
} from './tcd_distill_step.js';
export { LoraAdamW, type LoraAdamWOptions, type OptimizerState, type OptimizerStepReport } from './lora_optimizer.js';
export { LR_SCHEDULES, isLrSchedule, learningRate, type LrScheduleName, type LrScheduleOptions } from './lr_schedule.js';
export {
  EMA_FILE,
  LORA_FILE,
  OPTIMIZER_FILE,
  STATE_FILE,
  TrainingCheckpointError,
  assertWritableFolder,
  checkpointName,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
  type CheckpointContents,
  type LoadedCheckpoint,
  type TrainingState,
} from './checkpoint.js';
export { ArraySource, EncodingSource, normalArray, type EncodingSourceOptions, type ExampleSource, type TrainingExample } from './examples.js';
export {
  DistillError,
  SDXL_LORA_TARGET_MODULES,
  TcdDistiller,
  hconcat,
  loadDistillModels,
  noiseScheduleOf,
  type DistillModels,
  type LoadDistillModelsOptions,
  type StepReport,
  type TcdDistillerOptions,
  type TrainOptions,
} from './distiller.js';
export * as data from './data/index.js';
