// GroupNorm and LayerNorm with PyTorch semantics (biased variance, affine per channel / feature).
import { groupNorm, layerNorm } from '../autograd/nn_ops.js';
import { silu } from '../autograd/ops.js';
import type { Var } from '../autograd/tape.js';
import { type ModelContext, Module, type Param } from './module.js';

export class GroupNorm extends Module {
  readonly weight: Param;
  readonly bias: Param;

  constructor(
    ctx: ModelContext,
    name: string,
    readonly groups: number,
    readonly channels: number,
    readonly eps: number,
  ) {
    super(ctx, name);
    if (channels % groups) throw new Error(`${name}: ${channels} channels do not split into ${groups} groups`);
    this.weight = this.param('weight', [channels]);
    this.bias = this.param('bias', [channels]);
  }

  /**
   * x [B, C, *spatial]; with silu the activation that follows in diffusers is fused into the kernel, unless a probe
   * wants this module's own (pre-activation) output.
   */
  forward(x: Var, fuseSilu = false): Var {
    const opts = { groups: this.groups, eps: this.eps };
    if (fuseSilu && !this.ctx.wants(this.name)) return groupNorm(x, this.weight.v, this.bias.v, { ...opts, silu: true });
    const y = groupNorm(x, this.weight.v, this.bias.v, opts);
    this.ctx.emit(this.name, y);
    return fuseSilu ? silu(y) : y;
  }
}

export class LayerNorm extends Module {
  readonly weight: Param;
  readonly bias: Param;

  constructor(
    ctx: ModelContext,
    name: string,
    readonly features: number,
    readonly eps = 1e-5,
  ) {
    super(ctx, name);
    this.weight = this.param('weight', [features]);
    this.bias = this.param('bias', [features]);
  }

  forward(x: Var): Var {
    return layerNorm(x, this.weight.v, this.bias.v, this.eps);
  }
}
