// diffusers Decoder (autoencoders/vae.py): conv_in → UNetMidBlock2D → UpDecoderBlock2D × levels (layers_per_block + 1
// resnets each, all but the last upsample ×2) → conv_norm_out → SiLU → conv_out.
import type { Var } from '../autograd/tape.js';
import { Conv2d } from '../nn/conv2d.js';
import { type ModelContext, Module } from '../nn/module.js';
import { GroupNorm } from '../nn/norm.js';
import { UpDecoderBlock2D, type VaeAttentionOptions, VaeMidBlock2D, stage } from './blocks.js';
import type { ResolvedVaeConfig } from './config.js';

export class VaeDecoder extends Module {
  readonly convIn: Conv2d;
  readonly midBlock: VaeMidBlock2D;
  readonly upBlocks: UpDecoderBlock2D[];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(ctx: ModelContext, name: string, cfg: ResolvedVaeConfig, attn: VaeAttentionOptions) {
    super(ctx, name);
    const rev = [...cfg.blockOutChannels].reverse();
    this.convIn = new Conv2d(ctx, this.path('conv_in'), cfg.latentChannels, rev[0], { kernel: 3, padding: 1 });
    this.midBlock = new VaeMidBlock2D(ctx, this.path('mid_block'), rev[0], cfg.midBlockAddAttention, cfg.groups, cfg.eps, attn);
    this.upBlocks = rev.map(
      (out, i) =>
        new UpDecoderBlock2D(ctx, this.path(`up_blocks.${i}`), i === 0 ? rev[0] : rev[i - 1], out, cfg.layersPerBlock + 1, i < rev.length - 1, cfg.groups, cfg.eps),
    );
    const first = cfg.blockOutChannels[0];
    this.convNormOut = new GroupNorm(ctx, this.path('conv_norm_out'), cfg.groups, first, cfg.eps);
    this.convOut = new Conv2d(ctx, this.path('conv_out'), first, cfg.outChannels, { kernel: 3, padding: 1 });
  }

  /** z [B, latent, h, w] (after post_quant_conv) → image [B, out_channels, h·2^(levels−1), …] in about [-1, 1]. */
  forward(z: Var): Var {
    let h = this.convIn.forward(z);
    this.ctx.emit(this.convIn.name, h);
    h = stage(h, z, (v) => this.midBlock.forward(v));
    for (const block of this.upBlocks) h = stage(h, z, (v) => block.forward(v));
    h = stage(h, z, (v) => this.convNormOut.forward(v, true));
    h = stage(h, z, (v) => this.convOut.forward(v));
    this.ctx.emit(this.convOut.name, h);
    return h;
  }
}
