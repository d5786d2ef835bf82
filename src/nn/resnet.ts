// ResnetBlock2D (resnet_time_scale_shift "default", output_scale_factor 1).
import { add, reshape } from '../autograd/ops.js';
import { type Var, checkpoint, tidy } from '../autograd/tape.js';
import { Conv2d } from './conv2d.js';
import { Linear } from './linear.js';
import { type ModelContext, Module } from './module.js';
import { GroupNorm } from './norm.js';

/**
 *   h = conv1(SiLU(GN1(x))) + time_emb_proj(SiLU(emb))[:, :, None, None]
 *   out = conv2(SiLU(GN2(h))) + shortcut(x)        shortcut = conv_shortcut (1×1) when Cin ≠ Cout, else x
 * The shortcut is added in conv2's epilogue. SiLU(emb) is the same for every resnet, so the UNet computes it once
 * and passes it in (diffusers recomputes it per block).
 */
export class ResnetBlock2D extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly timeEmbProj?: Linear;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly convShortcut?: Conv2d;

  constructor(
    ctx: ModelContext,
    name: string,
    readonly inChannels: number,
    readonly outChannels: number,
    tembChannels: number | undefined,
    groups: number,
    eps: number,
  ) {
    super(ctx, name);
    this.norm1 = new GroupNorm(ctx, this.path('norm1'), groups, inChannels, eps);
    this.conv1 = new Conv2d(ctx, this.path('conv1'), inChannels, outChannels, { kernel: 3, padding: 1 });
    if (tembChannels !== undefined) this.timeEmbProj = new Linear(ctx, this.path('time_emb_proj'), tembChannels, outChannels);
    this.norm2 = new GroupNorm(ctx, this.path('norm2'), groups, outChannels, eps);
    this.conv2 = new Conv2d(ctx, this.path('conv2'), outChannels, outChannels, { kernel: 3, padding: 1 });
    if (inChannels !== outChannels) this.convShortcut = new Conv2d(ctx, this.path('conv_shortcut'), inChannels, outChannels, { kernel: 1 });
  }

  /** x [B, Cin, H, W], embAct = SiLU(emb) [B, temb] → [B, Cout, H, W]. */
  forward(x: Var, embAct?: Var): Var {
    const inputs = embAct ? [x, embAct] : [x];
    const y = this.ctx.checkpointing.resnets ? checkpoint(this.name, (ins) => this.run(ins[0], ins[1]), inputs) : this.run(x, embAct);
    this.ctx.emit(this.name, y);
    return y;
  }

  private run(x: Var, embAct?: Var): Var {
    return tidy(() => {
      let h = this.conv1.forward(this.norm1.forward(x, true));
      if (this.timeEmbProj) {
        if (!embAct) throw new Error(`${this.name}: needs the time embedding`);
        const t = this.timeEmbProj.forward(embAct);
        h = add(h, reshape(t, [t.shape[0], this.outChannels, 1, 1]));
      }
      h = this.norm2.forward(h, true);
      const shortcut = this.convShortcut ? this.convShortcut.forward(x) : x;
      return this.conv2.forward(h, shortcut);
    });
  }
}
