// Module plumbing shared by the nn layers: named parameters (filled by a weight loader), LoRA targets, activation
// probes and the checkpointing switches, all reached through one ModelContext per model.
//
// Parameter names are the diffusers state-dict names (`down_blocks.1.attentions.0.proj_in.weight`): every module
// knows its dotted path, and a parameter is registered under `<path>.<local name>` with the shape the config
// implies. Loading fills Param.var; a forward with a parameter still missing fails naming it.
import { Var } from '../autograd/tape.js';
import type { LoraWeights } from '../autograd/lora_ops.js';
import type { Gpu } from '../../runtime/device.js';
import type { Tensor } from '../tensor.js';

export class Param {
  var?: Var;
  constructor(
    readonly name: string,
    readonly shape: readonly number[],
  ) {}

  /** The loaded value; throws naming the parameter when nothing was loaded. */
  get v(): Var {
    if (!this.var) throw new Error(`parameter '${this.name}' ${JSON.stringify(this.shape)} is not loaded`);
    return this.var;
  }
}

/** A layer LoRA can adapt (Linear, Conv2d): its weight shape tells the adapter shapes. */
export interface LoraTarget {
  readonly name: string;
  readonly weight: Param;
  lora?: LoraWeights;
}

/** Receives module outputs during a forward (the goldens' `act.<module path>` probes). */
export interface ActivationProbe {
  /** Which module paths to capture (default: all). Fused kernels are split where a probed value would be lost. */
  wants?(name: string): boolean;
  /** A new view of the output of module `name`; the receiver owns it and must release it. */
  capture(name: string, t: Tensor): void;
}

export interface CheckpointOptions {
  /** Recompute each ResnetBlock2D in the backward instead of keeping its activations. */
  resnets?: boolean;
  /** Recompute each BasicTransformerBlock in the backward. */
  transformerBlocks?: boolean;
}

export class ModelContext {
  readonly params = new Map<string, Param>();
  readonly loraTargets = new Map<string, LoraTarget>();
  probe?: ActivationProbe;
  checkpointing: CheckpointOptions = {};

  constructor(readonly gpu: Gpu) {}

  addParam(name: string, shape: readonly number[]): Param {
    if (this.params.has(name)) throw new Error(`parameter '${name}' registered twice`);
    const p = new Param(name, shape);
    this.params.set(name, p);
    return p;
  }

  wants(name: string): boolean {
    return !!this.probe && (this.probe.wants?.(name) ?? true);
  }

  /** Hands a view of v to the probe when it wants `name`. */
  emit(name: string, v: Var): void {
    if (this.probe && this.wants(name)) this.probe.capture(name, v.value.reshape(v.shape));
  }
}

export abstract class Module {
  constructor(
    readonly ctx: ModelContext,
    /** Dotted path in the state dict ('' for the root). */
    readonly name: string,
  ) {}

  /** Path of a child module or parameter. */
  path(local: string): string {
    return this.name ? `${this.name}.${local}` : local;
  }

  protected param(local: string, shape: readonly number[]): Param {
    return this.ctx.addParam(this.path(local), shape);
  }
}
