// Dynamic loss scaling for f16 backward passes (as torch.cuda.amp.GradScaler): the backward is seeded with `scale`
// instead of 1, so gradients that would underflow f16 (below 2^-24) stay representable; before the optimizer step
// the gradients are checked (a non-finite global L2 norm means some f16 gradient overflowed) and divided by the
// scale. An overflowing step is skipped and the scale halves; after `growthInterval` finite steps in a row it
// doubles. Trainer-agnostic: it sees the loss seed and the gradient tensors only.
import type { Gpu } from '../../runtime/device.js';
import { cast } from '../kernels/cast.js';
import { unary } from '../kernels/elementwise.js';
import { globalL2Norm } from '../kernels/reduce.js';
import { Tensor } from '../tensor.js';

export interface LossScalerOptions {
  /** Initial scale (default 2^16, as PyTorch). */
  initScale?: number;
  /** Factor after growthInterval finite steps (default 2). */
  growthFactor?: number;
  /** Factor after an overflow (default 0.5). */
  backoffFactor?: number;
  /** Finite steps in a row before the scale grows (default 2000). */
  growthInterval?: number;
  /** The scale never drops below this (default 1). */
  minScale?: number;
}

export interface UnscaleResult {
  /** False: some gradient is Infinity / NaN; skip this optimizer step (the scale has already backed off). */
  finite: boolean;
  /** grad / scale as f32 tensors (the caller releases them); absent when not finite. */
  grads?: Tensor[];
  /** ‖grads‖₂ after unscaling (NaN / Infinity when not finite). */
  norm: number;
}

export class LossScaler {
  scale: number;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  readonly minScale: number;
  /** Finite steps since the last change of scale. */
  goodSteps = 0;
  /** Steps skipped for overflow so far. */
  skipped = 0;

  constructor(opts: LossScalerOptions = {}) {
    this.scale = opts.initScale ?? 2 ** 16;
    this.growthFactor = opts.growthFactor ?? 2;
    this.backoffFactor = opts.backoffFactor ?? 0.5;
    this.growthInterval = opts.growthInterval ?? 2000;
    this.minScale = opts.minScale ?? 1;
    for (const [k, v] of Object.entries({ initScale: this.scale, growthFactor: this.growthFactor, growthInterval: this.growthInterval, minScale: this.minScale }))
      if (!(Number.isFinite(v) && v > 0)) throw new Error(`LossScaler: ${k} must be a positive finite number, got ${v}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw new Error(`LossScaler: backoffFactor must be in (0, 1), got ${this.backoffFactor}`);
  }

  /** The backward seed d(loss)/d(loss) = scale, shaped like the loss ([1] or []); pass it to Tape.backward. */
  seed(gpu: Gpu, shape: readonly number[] = [1]): Tensor {
    return Tensor.fromArray(gpu, [this.scale], shape, { label: 'loss_scale' });
  }

  /**
   * Checks the scaled gradients (any dtype) and, when finite, returns them unscaled in f32; updates the scale either
   * way. One readback (the global norm).
   */
  async unscale(grads: readonly Tensor[]): Promise<UnscaleResult> {
    if (!grads.length) throw new Error('LossScaler.unscale: no gradients given');
    const f32 = grads.map((g) => cast(g, 'f32'));
    const n = globalL2Norm(f32);
    const norm = (await n.toArray())[0] / this.scale;
    n.release();
    const finite = Number.isFinite(norm);
    let out: Tensor[] | undefined;
    if (finite) out = f32.map((g) => unary('scale', g, { alpha: 1 / this.scale }));
    f32.forEach((g) => g.release());
    this.update(finite);
    return { finite, grads: out, norm };
  }

  /** Scale bookkeeping after a step: back off on overflow, grow after growthInterval finite steps. */
  update(finite: boolean): void {
    if (!finite) {
      this.scale = Math.max(this.minScale, this.scale * this.backoffFactor);
      this.goodSteps = 0;
      this.skipped++;
      return;
    }
    if (++this.goodSteps >= this.growthInterval) {
      this.scale *= this.growthFactor;
      this.goodSteps = 0;
    }
  }
}
