// Public API of the SDXL UNet: model, config resolution, weight / LoRA loading errors.
export { UNet2DConditionModel, type UNetInputs, type ForwardOptions } from './unet.js';
export { resolveUNetConfig, type UNetConfigJson, type ResolvedUNetConfig } from './config.js';
export { StateDictError, type WeightSource, type StateDict, type StateDictEntry, type LoadWeightsOptions } from './weights.js';
export { LoraError, type AttachLoraOptions, type LoadLoraOptions, type InitLoraOptions, type LoraParameter } from './lora.js';
export type { ActivationProbe, CheckpointOptions } from '../nn/module.js';
