// diffusers Encoder (autoencoders/vae.py): conv_in → DownEncoderBlock2D × levels (all but the last downsample) →
// UNetMidBlock2D → conv_norm_out → SiLU → conv_out (2·latent channels: mean and logvar, double_z).
import type { Var } from '../autograd/tape.js';
import { Conv2d } from '../nn/conv2d.js';
import { type ModelContext, Module } from '../nn/module.js';
import { GroupNorm } from '../nn/norm.js';
import { DownEncoderBlock2D, type VaeAttentionOptions, VaeMidBlock2D, stage } from './blocks.js';
import type { ResolvedVaeConfig } from './config.js';

export class VaeEncoder extends Module {
  readonly convIn: Conv2d;
  readonly downBlocks: DownEncoderBlock2D[];
  readonly midBlock: VaeMidBlock2D;
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(ctx: ModelContext, name: string, cfg: ResolvedVaeConfig, attn: VaeAttentionOptions) {
    super(ctx, name);
    const C = cfg.blockOutChannels;
    const last = C[C.length - 1];
    this.convIn = new Conv2d(ctx, this.path('conv_in'), cfg.inChannels, C[0], { kernel: 3, padding: 1 });
    this.downBlocks = C.map(
      (out, i) =>
        new DownEncoderBlock2D(ctx, this.path(`down_blocks.${i}`), i === 0 ? C[0] : C[i - 1], out, cfg.layersPerBlock, i < C.length - 1, cfg.groups, cfg.eps),
    );
    this.midBlock = new VaeMidBlock2D(ctx, this.path('mid_block'), last, cfg.midBlockAddAttention, cfg.groups, cfg.eps, attn);
    this.convNormOut = new GroupNorm(ctx, this.path('conv_norm_out'), cfg.groups, last, cfg.eps);
    this.convOut = new Conv2d(ctx, this.path('conv_out'), last, 2 * cfg.latentChannels, { kernel: 3, padding: 1 });
  }

  /** image [B, in_channels, H, W] in [-1, 1] → moments before quant_conv [B, 2·latent, H/2^(levels−1), …]. */
  forward(x: Var): Var {
    let h = this.convIn.forward(x);
    this.ctx.emit(this.convIn.name, h);
    for (const block of this.downBlocks) h = stage(h, x, (v) => block.forward(v));
    h = stage(h, x, (v) => this.midBlock.forward(v));
    h = stage(h, x, (v) => this.convNormOut.forward(v, true));
    h = stage(h, x, (v) => this.convOut.forward(v));
    this.ctx.emit(this.convOut.name, h);
    return h;
  }

  /** Frees derived weights (the downsamplers' padded kernels). */
  release(): void {
    for (const b of this.downBlocks) b.downsampler?.release();
  }
}
