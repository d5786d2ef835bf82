// AdamW over the LoRA tensors with global gradient-norm clipping (torch.nn.utils.clip_grad_norm_ then
// torch.optim.AdamW), on the GPU: the fused kernels of src/kernels/adamw.ts. Moments live next to the parameters;
// state() / loadState() move them (and the update count) in and out for checkpoints.
import { type AdamWSlot, adamwStep, clipCoefficient } from '../kernels/adamw.js';
import { globalL2Norm } from '../kernels/reduce.js';
import { Tensor, shapeStr } from '../tensor.js';
import type { LoraParameter } from '../unet/lora.js';

export interface LoraAdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient L2 norm to this (default 1.0); Infinity or 0 turns clipping off. */
  maxGradNorm?: number;
}

export interface OptimizerStepReport {
  /** Global L2 norm of the gradients before clipping. */
  gradNorm: number;
  /** min(1, maxNorm / (norm + 1e-6)) as torch rounds it (1 without clipping). */
  clipCoef: number;
  lr: number;
}

/** Moments and update count by parameter name (checkpoint contents). */
export interface OptimizerState {
  step: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

interface Slot {
  p: LoraParameter;
  m: Tensor;
  v: Tensor;
}

export class LoraAdamW {
  private readonly slots: Slot[];
  /** Completed updates (AdamW's t before the next update is step + 1). */
  step = 0;

  constructor(
    params: readonly LoraParameter[],
    readonly opts: LoraAdamWOptions = {},
  ) {
    if (!params.length) throw new Error('LoraAdamW: no LoRA parameters to optimise (attach adapters first)');
    this.slots = params.map((p) => ({
      p,
      m: Tensor.zeros(p.var.value.gpu, p.var.shape, 'f32', `${p.name}.adam_m`),
      v: Tensor.zeros(p.var.value.gpu, p.var.shape, 'f32', `${p.name}.adam_v`),
    }));
  }

  get parameters(): readonly LoraParameter[] {
    return this.slots.map((s) => s.p);
  }

  private get clipping(): number | undefined {
    const c = this.opts.maxGradNorm ?? 1;
    return c > 0 && Number.isFinite(c) ? c : undefined;
  }

  /**
   * Clips and applies one AdamW update with learning rate lr to every parameter that has a gradient, then clears
   * the gradients. Reads back the norm and the clip coefficient (two scalars) for the report.
   */
  async update(lr: number): Promise<OptimizerStepReport> {
    const gpu = this.slots[0].p.var.value.gpu;
    // torch skips parameters without a gradient (the loss did not reach them): no decay, no moment update.
    const slots: AdamWSlot[] = this.slots.filter((s) => s.p.var.grad).map((s) => ({ param: s.p.var.value, grad: s.p.var.grad!, m: s.m, v: s.v }));
    if (!slots.length) throw new Error('LoraAdamW.update: no LoRA parameter has a gradient (run a backward first)');
    const norm = globalL2Norm(slots.map((s) => s.grad), gpu);
    const maxNorm = this.clipping;
    const coefT = maxNorm !== undefined ? clipCoefficient(norm, maxNorm) : undefined;
    adamwStep(
      slots,
      this.step + 1,
      { lr, beta1: this.opts.beta1, beta2: this.opts.beta2, eps: this.opts.eps, weightDecay: this.opts.weightDecay },
      maxNorm !== undefined ? { norm, maxNorm } : undefined,
    );
    this.step++;
    const gradNorm = (await norm.toArray())[0];
    const clipCoef = coefT ? (await coefT.toArray())[0] : 1;
    norm.release();
    coefT?.release();
    for (const s of this.slots) s.p.var.zeroGrad();
    return { gradNorm, clipCoef, lr };
  }

  /** Drops accumulated gradients without updating. */
  zeroGrad(): void {
    for (const s of this.slots) s.p.var.zeroGrad();
  }

  async state(): Promise<OptimizerState> {
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    for (const s of this.slots) {
      m.set(s.p.name, await s.m.toArray());
      v.set(s.p.name, await s.v.toArray());
    }
    return { step: this.step, m, v };
  }

  loadState(state: OptimizerState): void {
    const problems: string[] = [];
    for (const s of this.slots) {
      for (const [what, map] of [['m', state.m], ['v', state.v]] as const) {
        const data = map.get(s.p.name);
        if (!data) problems.push(`${s.p.name}: no ${what}`);
        else if (data.length !== s.m.size) problems.push(`${s.p.name}: ${what} has ${data.length} values, expected ${s.m.size} (${shapeStr(s.m.shape)})`);
      }
    }
    if (problems.length) throw new Error(`optimizer state does not fit the LoRA (${problems.length} problems):\n  ${problems.slice(0, 10).join('\n  ')}`);
    for (const s of this.slots) {
      s.m.write(state.m.get(s.p.name)!);
      s.v.write(state.v.get(s.p.name)!);
    }
    this.step = state.step;
  }

  dispose(): void {
    for (const s of this.slots) {
      s.m.release();
      s.v.release();
    }
  }
}
