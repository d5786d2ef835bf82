// The VAE's blocks (diffusers unet_2d_blocks.py): DownEncoderBlock2D, UpDecoderBlock2D, UNetMidBlock2D with its
// single-head self-attention, and the encoder's Downsample2D with asymmetric padding (0, 1, 0, 1).
//
// Inference runs without a tape, so every stage frees its input as soon as the next activation exists (tidy alone
// would keep a whole block's activations until the block ends: gigabytes at 1024²).
import { attention as attentionOp, concat, conv2d, transpose } from '../autograd/nn_ops.js';
import { add, reshape } from '../autograd/ops.js';
import { Var, tidy } from '../autograd/tape.js';
import { chooseAttentionTile } from '../kernels/attention.js';
import { matmul } from '../kernels/matmul.js';
import { concat as concatKernel, split } from '../kernels/resample.js';
import { softmax } from '../kernels/softmax.js';
import { Conv2d } from '../nn/conv2d.js';
import { Linear } from '../nn/linear.js';
import { type ModelContext, Module } from '../nn/module.js';
import { GroupNorm } from '../nn/norm.js';
import { ResnetBlock2D } from '../nn/resnet.js';
import { Upsample2D } from '../nn/sampling.js';
import { Tensor } from '../tensor.js';

/** Runs `f(h)` and frees `h` unless it is `keep` (the caller's input). */
export function stage(h: Var, keep: Var, f: (h: Var) => Var): Var {
  const y = f(h);
  if (h !== keep && y !== h) h.dispose();
  return y;
}

/**
 * How the mid-block attention (one head, headDim = C = 512 for SDXL) is computed:
 *   'flash'  the fused attention kernel (no score matrix; its tiles shrink to 4×4 at headDim 512 on 32–48 KiB of
 *            workgroup memory, which is slow);
 *   'matmul' scores = Q·Kᵀ·scale in row chunks of at most `chunkBytes`, softmax, ·V (tuned GEMMs; inference only);
 *   'auto'   flash when its forward tile at this headDim has at least 16 query rows, else matmul.
 */
export type VaeAttentionImpl = 'auto' | 'flash' | 'matmul';

export interface VaeAttentionOptions {
  impl: VaeAttentionImpl;
  /** Largest score chunk of the matmul path, in bytes (also capped by maxStorageBufferBindingSize). */
  chunkBytes: number;
}

/**
 * diffusers Attention(C, heads 1, dim_head C, norm_num_groups, residual_connection, bias) on a feature map:
 * GN over channels → tokens [B, HW, C] → to_q / to_k / to_v (Linear with bias) → softmax(q·kᵀ/√C)·v → to_out.0
 * → back to [B, C, H, W] → + x.
 */
export class VaeAttention extends Module {
  readonly groupNorm: GroupNorm;
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;

  constructor(
    ctx: ModelContext,
    name: string,
    readonly channels: number,
    groups: number,
    eps: number,
    readonly opts: VaeAttentionOptions,
  ) {
    super(ctx, name);
    this.groupNorm = new GroupNorm(ctx, this.path('group_norm'), groups, channels, eps);
    this.toQ = new Linear(ctx, this.path('to_q'), channels, channels);
    this.toK = new Linear(ctx, this.path('to_k'), channels, channels);
    this.toV = new Linear(ctx, this.path('to_v'), channels, channels);
    this.toOut = new Linear(ctx, this.path('to_out.0'), channels, channels);
  }

  forward(x: Var): Var {
    const y = tidy(() => {
      const [B, C, H, W] = x.shape;
      const n = this.groupNorm.forward(x);
      const tokens = transpose(reshape(n, [B, C, H * W]));
      n.dispose();
      const q = this.toQ.forward(tokens);
      const k = this.toK.forward(tokens);
      const v = this.toV.forward(tokens);
      tokens.dispose();
      const o = this.attend(q, k, v);
      for (const t of [q, k, v]) t.dispose();
      const p = this.toOut.forward(o);
      o.dispose();
      return add(reshape(transpose(p), [B, C, H, W]), x);
    });
    this.ctx.emit(this.name, y);
    return y;
  }

  /** The implementation 'auto' resolves to on this device. */
  resolvedImpl(): 'flash' | 'matmul' {
    if (this.opts.impl !== 'auto') return this.opts.impl;
    try {
      return chooseAttentionTile(this.ctx.gpu, 'forward', this.channels).br >= 16 ? 'flash' : 'matmul';
    } catch {
      return 'matmul'; // no flash tile fits this headDim here
    }
  }

  private attend(q: Var, k: Var, v: Var): Var {
    const tracked = q.needsGrad || k.needsGrad || v.needsGrad;
    if (tracked || this.resolvedImpl() === 'flash') return attentionOp(q, k, v, { heads: 1, label: this.name });
    const gpu = this.ctx.gpu;
    const limit = Math.min(this.opts.chunkBytes, gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
    return new Var(matmulAttention(q.value, k.value, v.value, limit, this.name));
  }
}

/**
 * softmax(q·kᵀ/√C)·v for q, k, v [B, N, C] (one head) with the score matrix computed for at most `maxScoreBytes`
 * worth of query rows at a time (the rows are split off q and the outputs concatenated back).
 */
export function matmulAttention(q: Tensor, k: Tensor, v: Tensor, maxScoreBytes: number, label = 'attention'): Tensor {
  const [B, N, C] = q.shape;
  const M = k.shape[1];
  const scale = 1 / Math.sqrt(C);
  const rows = Math.max(1, Math.floor(maxScoreBytes / (B * M * 4)));
  const chunk = (qc: Tensor) => {
    const s = matmul(qc, k, { transB: true, alpha: scale, label: `${label}.scores` });
    const p = softmax(s);
    s.release();
    const o = matmul(p, v, { label: `${label}.pv` });
    p.release();
    return o;
  };
  if (rows >= N) return chunk(q);
  let rest = q.reshape(q.shape);
  let out: Tensor | undefined;
  for (let r0 = 0; r0 < N; r0 += rows) {
    const take = Math.min(rows, N - r0);
    let qc = rest;
    if (take < rest.shape[1]) {
      const [a, b] = split(rest, take, 1);
      rest.release();
      qc = a;
      rest = b;
    }
    const oc = chunk(qc);
    qc.release();
    if (out) {
      const joined = concatKernel(out, oc, 1);
      out.release();
      oc.release();
      out = joined;
    } else out = oc;
  }
  return out!;
}

/**
 * Downsample2D(use_conv, padding 0) of the encoder: F.pad(x, (0, 1, 0, 1)) then a 3×3 stride-2 conv. Run as a 4×4
 * stride-2 conv with symmetric padding 1 whose first tap row and column are zero: output (y, x) then reads rows
 * 2y..2y+2 and columns 2x..2x+2 of x, zero beyond the bottom / right edge, and has the same ⌊(H − 2)/2⌋ + 1 rows, so
 * no padded copy of the activation is made (the conv does 16/9 of the multiply-adds instead). The 4×4 weight is
 * built on the GPU from the loaded 3×3 one and cached until that changes.
 */
export class AsymmetricDownsample2D extends Module {
  readonly conv: Conv2d;
  private padded?: { from: Var; w: Tensor };

  constructor(ctx: ModelContext, name: string, channels: number) {
    super(ctx, name);
    this.conv = new Conv2d(ctx, this.path('conv'), channels, channels, { kernel: 3, stride: 2, padding: 0 });
  }

  forward(x: Var): Var {
    const src = this.conv.weight.v;
    if (src.needsGrad) {
      // Trained weight: pad on the tape each call, so the 3×3 weight gets the gradient of its 9 taps.
      const [Co, Ci] = src.shape;
      const zeros = (shape: number[]) => new Var(Tensor.zeros(this.ctx.gpu, shape, 'f32', `${this.conv.name}.pad`));
      const w4 = concat(zeros([Co, Ci, 4, 1]), concat(zeros([Co, Ci, 1, 3]), src, 2), 3);
      return conv2d(x, w4, { stride: 2, padding: 1, bias: this.conv.bias?.v, label: this.conv.name });
    }
    const w = this.paddedWeight();
    // A fresh view per call: the forward's tidy scope frees the view, the cached weight stays.
    const wv = new Var(w.reshape(w.shape), false, w.label);
    return conv2d(x, wv, { stride: 2, padding: 1, bias: this.conv.bias?.v, label: this.conv.name });
  }

  private paddedWeight(): Tensor {
    const src = this.conv.weight.v;
    if (this.padded?.from === src) return this.padded.w;
    this.release();
    const [Co, Ci] = src.shape;
    const gpu = this.ctx.gpu;
    const top = Tensor.zeros(gpu, [Co, Ci, 1, 3]);
    const rows = concatKernel(top, src.value, 2);
    const left = Tensor.zeros(gpu, [Co, Ci, 4, 1]);
    const w = concatKernel(left, rows, 3);
    for (const t of [top, rows, left]) t.release();
    this.padded = { from: src, w };
    return w;
  }

  /** Frees the derived 4×4 weight. */
  release(): void {
    this.padded?.w.release();
    this.padded = undefined;
  }
}

export class DownEncoderBlock2D extends Module {
  readonly resnets: ResnetBlock2D[] = [];
  readonly downsampler?: AsymmetricDownsample2D;

  constructor(ctx: ModelContext, name: string, inChannels: number, outChannels: number, layers: number, addDownsample: boolean, groups: number, eps: number) {
    super(ctx, name);
    for (let j = 0; j < layers; j++)
      this.resnets.push(new ResnetBlock2D(ctx, this.path(`resnets.${j}`), j === 0 ? inChannels : outChannels, outChannels, undefined, groups, eps));
    if (addDownsample) this.downsampler = new AsymmetricDownsample2D(ctx, this.path('downsamplers.0'), outChannels);
  }

  forward(x: Var): Var {
    let h = x;
    for (const r of this.resnets) h = stage(h, x, (v) => r.forward(v));
    if (this.downsampler) h = stage(h, x, (v) => this.downsampler!.forward(v));
    this.ctx.emit(this.name, h);
    return h;
  }
}

export class UpDecoderBlock2D extends Module {
  readonly resnets: ResnetBlock2D[] = [];
  readonly upsampler?: Upsample2D;

  constructor(ctx: ModelContext, name: string, inChannels: number, outChannels: number, layers: number, addUpsample: boolean, groups: number, eps: number) {
    super(ctx, name);
    for (let j = 0; j < layers; j++)
      this.resnets.push(new ResnetBlock2D(ctx, this.path(`resnets.${j}`), j === 0 ? inChannels : outChannels, outChannels, undefined, groups, eps));
    if (addUpsample) this.upsampler = new Upsample2D(ctx, this.path('upsamplers.0'), outChannels);
  }

  forward(x: Var): Var {
    let h = x;
    for (const r of this.resnets) h = stage(h, x, (v) => r.forward(v));
    if (this.upsampler) h = stage(h, x, (v) => this.upsampler!.forward(v));
    this.ctx.emit(this.name, h);
    return h;
  }
}

/** UNetMidBlock2D: resnet, (attention, resnet); no time embedding. */
export class VaeMidBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attention?: VaeAttention;

  constructor(ctx: ModelContext, name: string, channels: number, addAttention: boolean, groups: number, eps: number, attn: VaeAttentionOptions) {
    super(ctx, name);
    const resnet = (j: number) => new ResnetBlock2D(ctx, this.path(`resnets.${j}`), channels, channels, undefined, groups, eps);
    this.resnets = [resnet(0), resnet(1)];
    if (addAttention) this.attention = new VaeAttention(ctx, this.path('attentions.0'), channels, groups, eps, attn);
  }

  forward(x: Var): Var {
    let h = stage(x, x, (v) => this.resnets[0].forward(v));
    if (this.attention) h = stage(h, x, (v) => this.attention!.forward(v));
    h = stage(h, x, (v) => this.resnets[1].forward(v));
    this.ctx.emit(this.name, h);
    return h;
  }
}
