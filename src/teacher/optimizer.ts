// AdamW over named full-model parameters (every weight a trainable Var), on the fused kernel of
// src/kernels/adamw.ts with global-norm clipping fused into the update. Moments live on the GPU next to the weights;
// state() / loadState() move them to and from a safetensors dict so training resumes exactly.
import type { Gpu } from '../../runtime/device.js';
import type { Var } from '../autograd/tape.js';
import { type AdamWOptions, type AdamWSlot, adamwStep } from '../kernels/adamw.js';
import { globalL2Norm } from '../kernels/reduce.js';
import type { TensorToWrite } from '../io/safetensors.js';
import { Tensor, shapeStr } from '../tensor.js';
import type { StateDictEntry } from '../unet/weights.js';

export interface NamedParam {
  name: string;
  var: Var;
}

export interface TeacherAdamWOptions extends Omit<AdamWOptions, 'lr'> {
  /** torch.nn.utils.clip_grad_norm_ max norm (default 1; 0 turns clipping off). */
  maxGradNorm?: number;
}

export class FullAdamW {
  /** Updates done (AdamW's t of the last update). */
  step = 0;
  private readonly moments = new Map<string, { m: Tensor; v: Tensor }>();

  constructor(
    readonly gpu: Gpu,
    readonly params: readonly NamedParam[],
    readonly opts: TeacherAdamWOptions = {},
  ) {
    const seen = new Set<string>();
    for (const p of params) {
      if (seen.has(p.name)) throw new Error(`FullAdamW: parameter '${p.name}' listed twice`);
      seen.add(p.name);
      if (!p.var.requiresGrad) throw new Error(`FullAdamW: parameter '${p.name}' does not require a gradient (load or init it trainable)`);
    }
  }

  private slot(p: NamedParam): { m: Tensor; v: Tensor } {
    let s = this.moments.get(p.name);
    if (!s) {
      s = { m: Tensor.zeros(this.gpu, p.var.shape, 'f32', `${p.name}.adam_m`), v: Tensor.zeros(this.gpu, p.var.shape, 'f32', `${p.name}.adam_v`) };
      this.moments.set(p.name, s);
    }
    return s;
  }

  /**
   * One update of every parameter that has a gradient (clipped by the global norm of all of them), then frees the
   * gradients. A parameter without a gradient this step (e.g. a token absent from the batch gets an explicit zero,
   * but an unused module gets none) keeps its value and moments, as torch skips params whose .grad is None.
   */
  update(lr: number): void {
    const withGrad = this.params.filter((p) => p.var.grad);
    if (!withGrad.length) throw new Error('FullAdamW.update: no parameter has a gradient (did the backward run?)');
    this.step++;
    const slots: AdamWSlot[] = withGrad.map((p) => ({ param: p.var.value, grad: p.var.grad!, ...this.slot(p) }));
    const maxNorm = this.opts.maxGradNorm ?? 1;
    const norm = maxNorm > 0 ? globalL2Norm(slots.map((s) => s.grad), this.gpu) : undefined;
    adamwStep(slots, this.step, { ...this.opts, lr }, norm && { norm, maxNorm });
    norm?.release();
    for (const p of withGrad) p.var.zeroGrad();
  }

  /** Moments as `<param>.adam_m` / `.adam_v` F32 tensors (read back from the GPU). */
  async state(): Promise<Record<string, TensorToWrite>> {
    const out: Record<string, TensorToWrite> = {};
    for (const [name, { m, v }] of this.moments) {
      out[`${name}.adam_m`] = { dtype: 'F32', shape: [...m.shape], data: await m.toArray() };
      out[`${name}.adam_v`] = { dtype: 'F32', shape: [...v.shape], data: await v.toArray() };
    }
    return out;
  }

  /** Restores moments saved by state() (shapes checked against the parameters) and the step count. */
  loadState(dict: ReadonlyMap<string, StateDictEntry>, step: number): void {
    this.release();
    const byName = new Map(this.params.map((p) => [p.name, p]));
    for (const [key, e] of dict) {
      const m = /^(.*)\.adam_([mv])$/.exec(key);
      const p = m && byName.get(m[1]);
      if (!p) throw new Error(`FullAdamW.loadState: '${key}' does not belong to any parameter being trained`);
      if (e.data.length !== p.var.value.size) throw new Error(`FullAdamW.loadState: '${key}' ${shapeStr(e.shape)} does not fit '${p.name}' ${shapeStr(p.var.shape)}`);
    }
    for (const [key, e] of dict) {
      const [, name, which] = /^(.*)\.adam_([mv])$/.exec(key)!;
      const s = this.slot(byName.get(name)!);
      const t = Tensor.fromArray(this.gpu, e.data, byName.get(name)!.var.shape, { label: key });
      s[which as 'm' | 'v'].release();
      s[which as 'm' | 'v'] = t;
    }
    this.step = step;
  }

  release(): void {
    for (const { m, v } of this.moments.values()) {
      m.release();
      v.release();
    }
    this.moments.clear();
  }
}
