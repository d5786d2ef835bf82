// Linear (PyTorch layout: weight [out, in], y = x·Wᵀ + b) with an optional LoRA adapter.
import { type LoraWeights, loraLinear } from '../autograd/lora_ops.js';
import { linear, unaryOp } from '../autograd/ops.js';
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

  /** x [..., in] → [..., out], with an activation fused into the GEMM epilogue where no adapter is attached. */
  forward(x: Var, activation: Activation = 'none'): Var {
    if (this.lora) {
      const y = loraLinear(x, this.weight.v, this.bias?.v, this.lora, this.name);
      return activation === 'none' ? y : unaryOp(activation, y);
    }
    return linear(x, this.weight.v, this.bias?.v, activation);
  }
}
