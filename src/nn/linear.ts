// Linear (PyTorch layout: weight [out, in], y = x·Wᵀ + b) with an optional LoRA adapter.
import { type LoraWeights, loraLinear } from '../autograd/lora_ops.js';
import { add, linear, unaryOp } from '../autograd/ops.js';
import type { Var } from '../autograd/tape.js';
import type { Activation } from '../kernels/matmul.js';
import { type LoraTarget, type ModelContext, Module, type Param } from './module.js';

export class Linear extends Module implements LoraTarget {
  readonly weight: Param;
  readonly bias?: Param;
  lora?: LoraWeights;

  constructor(
    ctx: ModelContext,
    name: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
    hasBias = true,
  ) {
    super(ctx, name);
    this.weight = this.param('weight', [outFeatures, inFeatures]);
    if (hasBias) this.bias = this.param('bias', [outFeatures]);
    ctx.loraTargets.set(name, this);
  }

  /**
   * x [..., in] → [..., out] (+ residual, shaped like the output: a skip connection added in the GEMM's epilogue),
   * with an activation fused into the epilogue where no adapter is attached.
   */
  forward(x: Var, activation: Activation = 'none', residual?: Var): Var {
    if (this.lora) {
      if (activation === 'none') return loraLinear(x, this.weight.v, this.bias?.v, this.lora, this.name, residual);
      const y = unaryOp(activation, loraLinear(x, this.weight.v, this.bias?.v, this.lora, this.name));
      return residual ? add(y, residual) : y;
    }
    return linear(x, this.weight.v, this.bias?.v, activation, residual);
  }
}
