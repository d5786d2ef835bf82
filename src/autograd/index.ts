// Autograd: the tape and the differentiable ops.
export * from './tape.js';
export * from './ops.js';
export * from './nn_ops.js';
export * from './lora_ops.js';
export * from './loss_scaler.js';
