// The UNet's down, mid and up blocks (diffusers unet_2d_blocks.py): CrossAttnDownBlock2D / DownBlock2D,
// UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D / UpBlock2D. The CrossAttn variants put a Transformer2DModel after
// every resnet; the plain variants have none.
import { concat } from '../autograd/nn_ops.js';
import { type Var, tidy } from '../autograd/tape.js';
import { type ModelContext, Module } from '../nn/module.js';
import { ResnetBlock2D } from '../nn/resnet.js';
import { Downsample2D, Upsample2D } from '../nn/sampling.js';
import { Transformer2DModel } from '../nn/transformer.js';
import type { DownBlockSpec, MidBlockSpec, TransformerLevel, UpBlockSpec } from './config.js';

/** What every block shares: time-embedding width, norm groups / eps, projection kind. */
export interface BlockCommon {
  tembChannels: number;
  groups: number;
  eps: number;
  useLinearProjection: boolean;
  downsamplePadding: number;
}

function transformer(ctx: ModelContext, name: string, C: number, level: TransformerLevel, layers: number, common: BlockCommon) {
  return new Transformer2DModel(ctx, name, {
    heads: level.heads,
    headDim: level.headDim,
    inChannels: C,
    layers,
    crossAttentionDim: level.crossAttentionDim,
    groups: common.groups,
    useLinearProjection: common.useLinearProjection,
  });
}

export class DownBlock extends Module {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Transformer2DModel[] = [];
  readonly downsampler?: Downsample2D;

  constructor(ctx: ModelContext, name: string, spec: DownBlockSpec, common: BlockCommon) {
    super(ctx, name);
    for (let j = 0; j < spec.numLayers; j++) {
      const inC = j === 0 ? spec.inChannels : spec.outChannels;
      this.resnets.push(new ResnetBlock2D(ctx, this.path(`resnets.${j}`), inC, spec.outChannels, common.tembChannels, common.groups, common.eps));
      if (spec.attention)
        this.attentions.push(transformer(ctx, this.path(`attentions.${j}`), spec.outChannels, spec.attention, spec.attention.layers[j], common));
    }
    if (spec.addDownsample) this.downsampler = new Downsample2D(ctx, this.path('downsamplers.0'), spec.outChannels, common.downsamplePadding);
  }

  /** Returns the block output and the skip connections it produced (one per resnet, one after the downsampler). */
  forward(x: Var, embAct: Var, context: Var): { x: Var; skips: Var[] } {
    const r = tidy(() => {
      const skips: Var[] = [];
      let h = x;
      this.resnets.forEach((resnet, j) => {
        h = resnet.forward(h, embAct);
        if (this.attentions[j]) h = this.attentions[j].forward(h, context);
        skips.push(h);
      });
      if (this.downsampler) {
        h = this.downsampler.forward(h);
        skips.push(h);
      }
      return { x: h, skips };
    });
    this.ctx.emit(this.name, r.x);
    return r;
  }
}

export class MidBlock extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attention: Transformer2DModel;

  constructor(ctx: ModelContext, name: string, spec: MidBlockSpec, common: BlockCommon) {
    super(ctx, name);
    const C = spec.channels;
    const resnet = (j: number) => new ResnetBlock2D(ctx, this.path(`resnets.${j}`), C, C, common.tembChannels, common.groups, common.eps);
    this.resnets = [resnet(0)];
    this.attention = transformer(ctx, this.path('attentions.0'), C, spec.attention, spec.attention.layers[0], common);
    this.resnets.push(resnet(1));
  }

  forward(x: Var, embAct: Var, context: Var): Var {
    const y = tidy(() => this.resnets[1].forward(this.attention.forward(this.resnets[0].forward(x, embAct), context), embAct));
    this.ctx.emit(this.name, y);
    return y;
  }
}

export class UpBlock extends Module {
  readonly resnets: ResnetBlock2D[] = [];
  readonly attentions: Transformer2DModel[] = [];
  readonly upsampler?: Upsample2D;

  constructor(
    ctx: ModelContext,
    name: string,
    readonly spec: UpBlockSpec,
    common: BlockCommon,
  ) {
    super(ctx, name);
    for (let j = 0; j < spec.numLayers; j++) {
      // Channels: the running hidden state (prev block's output first, then this block's) + the skip it consumes.
      const skipC = j === spec.numLayers - 1 ? spec.inChannels : spec.outChannels;
      const hiddenC = j === 0 ? spec.prevOutputChannels : spec.outChannels;
      this.resnets.push(new ResnetBlock2D(ctx, this.path(`resnets.${j}`), hiddenC + skipC, spec.outChannels, common.tembChannels, common.groups, common.eps));
      if (spec.attention)
        this.attentions.push(transformer(ctx, this.path(`attentions.${j}`), spec.outChannels, spec.attention, spec.attention.layers[j], common));
    }
    if (spec.addUpsample) this.upsampler = new Upsample2D(ctx, this.path('upsamplers.0'), spec.outChannels);
  }

  /**
   * Consumes this block's skips (the last `resnets.length` of the list, last first: cat([h, skip], channels)).
   * upsampleSize: the spatial size of the next skip, so odd latent sizes round-trip (diffusers' upsample_size).
   */
  forward(x: Var, skips: Var[], embAct: Var, context: Var, upsampleSize?: readonly [number, number]): Var {
    const y = tidy(() => {
      let h = x;
      this.resnets.forEach((resnet, j) => {
        const skip = skips.pop();
        if (!skip) throw new Error(`${this.name}: ran out of skip connections`);
        h = resnet.forward(concat(h, skip, 1), embAct);
        if (this.attentions[j]) h = this.attentions[j].forward(h, context);
      });
      return this.upsampler ? this.upsampler.forward(h, upsampleSize) : h;
    });
    this.ctx.emit(this.name, y);
    return y;
  }
}
