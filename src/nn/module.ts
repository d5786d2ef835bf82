// Module plumbing shared by the nn layers: named parameters (filled by a weight loader), LoRA targets, activation
// probes and the checkpointing switches, all reached through one ModelContext per model.
//
// Parameter names are the diffusers state-dict names (`down_blocks.1.attentions.0.proj_in.weight`): every module
// knows its dotted path, and a parameter is registered under `<path>.<local name>` with the shape the config
// implies. Loading fills Param.var; a forward with a parameter still missing fails naming it.
import { Var } from '../autograd/tape.js';
import type { LoraWeights } from '../autograd/lora_ops.js';
import type { Gpu } from '../../runtime/device.js';
import type { DType } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import type { KvSlice } from './attention.js';

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

/**
 * Copies of frozen weights re-laid out for speed (built on first use, rebuilt when a weight is replaced, freed by
 * clearDerived). Each costs GPU memory; SDXL f32 sizes in parentheses (base weights: 10.3 GB).
 */
export interface WeightCacheOptions {
  /**
   * Self-attention to_q / to_k / to_v as one GEMM on a stacked [3C, C] weight. Default true. No extra memory where the
   * weights were loaded packed (frozen: ModelContext.weightPacks); a copy (+1.2 GB) otherwise.
   */
  fuseQkv: boolean;
  /**
   * Every cross-attention's to_k / to_v as one GEMM over the text context per forward (stacked weight: a view of the
   * packed weights, or a copy of +1.3 GB where they were loaded apart), whose K / V are kept for the next forward
   * with the same unchanged context tensor (sampler steps; +51 MB). Default true.
   */
  batchCrossKv: boolean;
  /**
   * Conv weights packed once for the forward kernel instead of per call (+ the conv weights' size: +1.33 GB f32 for
   * SDXL). Default false: one copy of every weight; per call, packing moves the weight twice (~2.7 GB per SDXL
   * forward, ~1 ms of HBM bandwidth) and adds one dispatch per conv (51 per forward).
   */
  packConvForward: boolean;
  /** Also keep the input-gradient packing (training backward; + the conv weights' size again). Default false. */
  packConvInputGrad: boolean;
}

export const DEFAULT_WEIGHT_CACHES: WeightCacheOptions = { fuseQkv: true, batchCrossKv: true, packConvForward: false, packConvInputGrad: false };

/**
 * A tensor derived from frozen parameters, valid while those parameters hold the same Vars (loading weights
 * replaces every Var, so a reload invalidates it).
 */
export class DerivedWeight<T extends { release(): void }> {
  private from: readonly Var[] = [];
  private value?: T;

  constructor(ctx: ModelContext) {
    ctx.derived.add(this);
  }

  /** The cached value for these source Vars, built (and the old one freed) when they changed. */
  get(sources: readonly Var[], build: () => T): T {
    if (!this.value || sources.length !== this.from.length || sources.some((v, i) => v !== this.from[i] || v.value.isReleased)) {
      this.release();
      this.value = build();
      this.from = [...sources];
    }
    return this.value;
  }

  release(): void {
    this.value?.release();
    this.value = undefined;
    this.from = [];
  }
}

export class ModelContext {
  readonly params = new Map<string, Param>();
  readonly loraTargets = new Map<string, LoraTarget>();
  probe?: ActivationProbe;
  checkpointing: CheckpointOptions = {};
  /** Which derived weight copies to keep (see WeightCacheOptions). */
  weightCaches: WeightCacheOptions = { ...DEFAULT_WEIGHT_CACHES };
  readonly derived = new Set<DerivedWeight<{ release(): void }>>();
  /**
   * Storage type of the weights and activations ('f16': weights loaded as f16, activations f16, every kernel's math
   * and accumulation f32). LoRA adapters stay f32 (master weights, f32 gradients) and are cast per forward.
   */
  dtype: DType = 'f32';
  /**
   * Names of frozen [rows, K] weights (same K) that fused GEMMs read as one stacked matrix (self-attention to_q /
   * to_k / to_v; the cross-attention to_k / to_v of many blocks): loaders store each group back to back in one
   * buffer (allocatePackedWeights in src/nn/fused.ts), so the stacked matrix is a view and not a second copy.
   */
  readonly weightPacks: string[][] = [];
  /** During a forward: cross-attention K / V computed for many blocks at once, by attention module name. */
  crossKv?: ReadonlyMap<string, KvSlice>;

  constructor(readonly gpu: Gpu) {}

  /** Frees every derived weight copy (they are rebuilt on the next forward that uses them). */
  clearDerived(): void {
    for (const d of this.derived) d.release();
  }

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
