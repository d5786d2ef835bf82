// Downsample2D (3×3 conv, stride 2, padding 1: output ceil(H/2)) and Upsample2D (nearest ×2 or to an exact size,
// then a 3×3 conv), both with use_conv=True as in the SDXL UNet. The conv is `<name>.conv` in the state dict.
import { upsampleNearest } from '../autograd/nn_ops.js';
import type { Var } from '../autograd/tape.js';
import { Conv2d } from './conv2d.js';
import { type ModelContext, Module } from './module.js';

export class Downsample2D extends Module {
  readonly conv: Conv2d;

  constructor(ctx: ModelContext, name: string, channels: number, padding = 1) {
    super(ctx, name);
    this.conv = new Conv2d(ctx, this.path('conv'), channels, channels, { kernel: 3, stride: 2, padding });
  }

  forward(x: Var): Var {
    return this.conv.forward(x);
  }
}

export class Upsample2D extends Module {
  readonly conv: Conv2d;

  constructor(ctx: ModelContext, name: string, channels: number) {
    super(ctx, name);
    this.conv = new Conv2d(ctx, this.path('conv'), channels, channels, { kernel: 3, padding: 1 });
  }

  /** size: the exact output [H, W] (diffusers' upsample_size, for latents not divisible by 2^upsamplers). */
  forward(x: Var, size?: readonly [number, number]): Var {
    return this.conv.forward(upsampleNearest(x, size));
  }
}
