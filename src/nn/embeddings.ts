// Timestep embeddings: the sinusoidal Timesteps projection (no parameters) and the TimestepEmbedding MLP
// (linear_1 → SiLU → linear_2), used for the time embedding and SDXL's text_time add embedding.
import { timestepEmbedding } from '../autograd/nn_ops.js';
import { castOp } from '../autograd/ops.js';
import type { Var } from '../autograd/tape.js';
import type { Tensor } from '../tensor.js';
import { Linear } from './linear.js';
import { type ModelContext, Module } from './module.js';

export class Timesteps extends Module {
  constructor(
    ctx: ModelContext,
    name: string,
    readonly dim: number,
    readonly flipSinToCos: boolean,
    readonly downscaleFreqShift: number,
  ) {
    super(ctx, name);
  }

  /** t [N] (f32, fractional allowed) → [N, dim]. */
  forward(t: Tensor): Var {
    const y = timestepEmbedding(t, this.dim, { flipSinToCos: this.flipSinToCos, downscaleFreqShift: this.downscaleFreqShift });
    this.ctx.emit(this.name, y);
    // The sinusoids are computed in f32; an f16 model takes them rounded once.
    return castOp(y, this.ctx.dtype);
  }
}

export class TimestepEmbedding extends Module {
  readonly linear1: Linear;
  readonly linear2: Linear;

  constructor(ctx: ModelContext, name: string, inChannels: number, timeEmbedDim: number) {
    super(ctx, name);
    this.linear1 = new Linear(ctx, this.path('linear_1'), inChannels, timeEmbedDim);
    this.linear2 = new Linear(ctx, this.path('linear_2'), timeEmbedDim, timeEmbedDim);
  }

  forward(x: Var): Var {
    // SiLU is fused into linear_1's epilogue.
    const y = this.linear2.forward(this.linear1.forward(x, 'silu'));
    this.ctx.emit(this.name, y);
    return y;
  }
}
