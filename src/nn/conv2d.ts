// Conv2d (NCHW, weight [out, in, kH, kW], zero padding, groups 1) with an optional LoRA adapter.
import { type LoraWeights, loraConv2d } from '../autograd/lora_ops.js';
import { conv2d } from '../autograd/nn_ops.js';
import type { Var } from '../autograd/tape.js';
import { type PackedConv2dWeight, packConv2dWeight } from '../kernels/conv2d.js';
import { DerivedWeight, type LoraTarget, type ModelContext, Module, type Param } from './module.js';

export interface Conv2dConfig {
  kernel: number;
  stride?: number;
  padding?: number;
  bias?: boolean;
}

export class Conv2d extends Module implements LoraTarget {
  readonly weight: Param;
  readonly bias?: Param;
  readonly stride: number;
  readonly padding: number;
  lora?: LoraWeights;
  /** The frozen weight packed for the conv kernels (WeightCacheOptions.packConvForward / packConvInputGrad). */
  private readonly packedForward: DerivedWeight<PackedConv2dWeight>;
  private readonly packedInputGrad: DerivedWeight<PackedConv2dWeight>;

  constructor(
    ctx: ModelContext,
    name: string,
    readonly inChannels: number,
    readonly outChannels: number,
    cfg: Conv2dConfig,
  ) {
    super(ctx, name);
    this.stride = cfg.stride ?? 1;
    this.padding = cfg.padding ?? 0;
    this.weight = this.param('weight', [outChannels, inChannels, cfg.kernel, cfg.kernel]);
    if (cfg.bias ?? true) this.bias = this.param('bias', [outChannels]);
    ctx.loraTargets.set(name, this);
    this.packedForward = new DerivedWeight(ctx);
    this.packedInputGrad = new DerivedWeight(ctx);
  }

  /** y = conv(x) + bias (+ residual, added in the kernel's epilogue). */
  forward(x: Var, residual?: Var): Var {
    const w = this.weight.v;
    const caches = this.ctx.weightCaches;
    // A trained weight changes every step: packing it once would be wrong, so only frozen weights are cached.
    const frozen = !w.needsGrad;
    const packed = frozen && caches.packConvForward ? this.packedForward.get([w], () => packConv2dWeight(w.value, 'forward')) : undefined;
    const packedInputGrad =
      frozen && caches.packConvInputGrad ? () => this.packedInputGrad.get([w], () => packConv2dWeight(w.value, 'inputGrad')) : undefined;
    // Copies that are no longer wanted (weight now trained, cache turned off) are freed at once.
    if (!packed) this.packedForward.release();
    if (!packedInputGrad) this.packedInputGrad.release();
    const opts = { stride: this.stride, padding: this.padding, residual, packed, packedInputGrad, label: this.name };
    if (this.lora) return loraConv2d(x, this.weight.v, this.bias?.v, this.lora, opts);
    return conv2d(x, this.weight.v, { ...opts, bias: this.bias?.v });
  }
}
