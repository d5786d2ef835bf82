// UNet2DConditionModel (diffusers semantics) built from a config.json: forward, activation probes, gradient
// checkpointing, weight and LoRA loading.
//
//   const unet = new UNet2DConditionModel(gpu, JSON.parse(configJson));
//   await unet.loadWeights(await fileSource('unet/diffusion_pytorch_model.safetensors'));
//   const eps = unet.forward({ sample, timestep: 999, encoderHiddenStates, textEmbeds, timeIds });   // Vars
//
// Training a LoRA: loadLora / initLora attach trainable A / B to the targeted Linear / Conv2d layers; run the
// forward under a Tape (src/autograd/tape.ts) and back-propagate; the frozen base weights never get gradients.
import type { Gpu } from '../../runtime/device.js';
import { DTypeError } from '../../runtime/errors.js';
import type { DType } from '../dtype.js';
import { concat } from '../autograd/nn_ops.js';
import { add, castOp, reshape, silu } from '../autograd/ops.js';
import { Var, tidy } from '../autograd/tape.js';
import type { ByteSource } from '../io/byte_source.js';
import type { LoraAdapter, LoraSet } from '../io/lora_format.js';
import { Conv2d } from '../nn/conv2d.js';
import { TimestepEmbedding, Timesteps } from '../nn/embeddings.js';
import { CrossKvBatch } from '../nn/cross_kv.js';
import { allocatePackedWeights } from '../nn/fused.js';
import { type ActivationProbe, type CheckpointOptions, ModelContext, Module, type Param, type WeightCacheOptions } from '../nn/module.js';
import { GroupNorm } from '../nn/norm.js';
import { Tensor } from '../tensor.js';
import { type BlockCommon, DownBlock, MidBlock, UpBlock } from './blocks.js';
import { type ResolvedUNetConfig, type UNetConfigJson, resolveUNetConfig } from './config.js';
import {
  type AttachLoraOptions,
  type InitLoraOptions,
  type LoadLoraOptions,
  type LoraParameter,
  attachLora,
  clearLora,
  initLora,
  loadLora,
  loraModules,
  loraParameters,
} from './lora.js';
import { type LoadWeightsOptions, type StateDict, type WeightSource, loadStateDict } from './weights.js';
import { type RandomInitOptions, type RandomInitSummary, initRandomParameters } from '../nn/init.js';

export interface UNetModelOptions {
  /**
   * Storage type of weights and activations (default 'f32'). 'f16': weights are loaded as f16 (F16 safetensors bytes
   * straight to the GPU), activations are f16, every kernel computes and accumulates in f32; LoRA adapters stay f32
   * master weights (f32 gradients, cast per forward). Inputs and output stay f32 (cast at the model's boundary).
   * Choose it with resolveDType (src/kernels/f16_support.ts), which checks the device first.
   */
  dtype?: DType;
}

export interface UNetInputs {
  /** Noisy latents [B, in_channels, h, w] (h, w need not be equal or divisible by 2^levels). */
  sample: Var;
  /** One timestep for the whole batch, or one per sample (fractional allowed), or an f32 tensor [B]. */
  timestep: number | readonly number[] | Float32Array | Tensor;
  /** [B, tokens, cross_attention_dim]. */
  encoderHiddenStates: Var;
  /** text_time only: pooled text embeddings [B, text dim] and time ids [B, n_ids] (SDXL: 6). */
  textEmbeds?: Var;
  timeIds?: Var;
}

export interface ForwardOptions {
  /** Receives module outputs (names are state-dict module paths, e.g. 'down_blocks.1.attentions.0.proj_in'). */
  probe?: ActivationProbe;
}

export class UNet2DConditionModel extends Module {
  readonly config: ResolvedUNetConfig;
  readonly timeProj: Timesteps;
  readonly timeEmbedding: TimestepEmbedding;
  readonly addTimeProj?: Timesteps;
  readonly addEmbedding?: TimestepEmbedding;
  readonly convIn: Conv2d;
  readonly downBlocks: DownBlock[];
  readonly midBlock?: MidBlock;
  readonly upBlocks: UpBlock[];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;
  private readonly crossKv: CrossKvBatch;

  constructor(
    readonly gpu: Gpu,
    config: UNetConfigJson,
    opts: UNetModelOptions = {},
  ) {
    super(new ModelContext(gpu), '');
    const cfg = (this.config = resolveUNetConfig(config));
    const ctx = this.ctx;
    const dtype = opts.dtype ?? 'f32';
    if (dtype === 'f16' && !gpu.hasF16) throw new DTypeError(`unet: dtype f16 needs the 'shader-f16' feature, which this device does not offer (${gpu.describe()})`);
    ctx.dtype = dtype;
    const C0 = cfg.blockOutChannels[0];
    this.timeProj = new Timesteps(ctx, 'time_proj', C0, cfg.flipSinToCos, cfg.freqShift);
    this.timeEmbedding = new TimestepEmbedding(ctx, 'time_embedding', C0, cfg.timeEmbedDim);
    if (cfg.textTime) {
      this.addTimeProj = new Timesteps(ctx, 'add_time_proj', cfg.textTime.addTimeDim, cfg.flipSinToCos, cfg.freqShift);
      this.addEmbedding = new TimestepEmbedding(ctx, 'add_embedding', cfg.textTime.projectionInputDim, cfg.timeEmbedDim);
    }
    this.convIn = new Conv2d(ctx, 'conv_in', cfg.inChannels, C0, { kernel: cfg.convInKernel, padding: (cfg.convInKernel - 1) / 2 });
    const common: BlockCommon = {
      tembChannels: cfg.timeEmbedDim,
      groups: cfg.groups,
      eps: cfg.eps,
      useLinearProjection: cfg.useLinearProjection,
      downsamplePadding: cfg.downsamplePadding,
    };
    this.downBlocks = cfg.down.map((spec, i) => new DownBlock(ctx, `down_blocks.${i}`, spec, common));
    if (cfg.mid) this.midBlock = new MidBlock(ctx, 'mid_block', cfg.mid, common);
    this.upBlocks = cfg.up.map((spec, i) => new UpBlock(ctx, `up_blocks.${i}`, spec, common));
    this.convNormOut = new GroupNorm(ctx, 'conv_norm_out', cfg.groups, C0, cfg.eps);
    this.convOut = new Conv2d(ctx, 'conv_out', C0, cfg.outChannels, { kernel: cfg.convOutKernel, padding: (cfg.convOutKernel - 1) / 2 });
    const transformers = [...this.downBlocks.flatMap((b) => b.attentions), ...(this.midBlock ? [this.midBlock.attention] : []), ...this.upBlocks.flatMap((b) => b.attentions)];
    this.crossKv = new CrossKvBatch(ctx, transformers.flatMap((t) => t.blocks.map((b) => b.attn2)));
  }

  /**
   * Derived weight copies kept for speed (fused self-attention QKV, cross-attention K/V batched over blocks, packed
   * conv weights); see WeightCacheOptions for what each costs. Changing them frees the current copies.
   */
  set weightCaches(opts: Partial<WeightCacheOptions>) {
    this.ctx.weightCaches = { ...this.ctx.weightCaches, ...opts };
    this.ctx.clearDerived();
  }
  get weightCaches(): WeightCacheOptions {
    return this.ctx.weightCaches;
  }

  /** Every parameter by state-dict name, with the shape the config implies. */
  get parameters(): ReadonlyMap<string, Param> {
    return this.ctx.params;
  }

  /** Random weights on the GPU (N(0, 1/fan_in), norms 1, biases 0), for benchmarks and tests without a checkpoint. */
  initRandom(opts: RandomInitOptions = {}): RandomInitSummary {
    this.ctx.clearDerived();
    // Packed weights are allocated after the old ones are gone (clearDerived above; disposed in the loop).
    for (const p of this.ctx.params.values()) {
      p.var?.dispose();
      p.var = undefined;
    }
    const packed = allocatePackedWeights(this.ctx, opts.trainable);
    return initRandomParameters(this.gpu, this.parameters, { dtype: this.ctx.dtype, packed, ...opts });
  }

  /** Recompute resnets and/or transformer blocks in the backward (checkpoint() from the tape). */
  set gradientCheckpointing(opts: CheckpointOptions) {
    this.ctx.checkpointing = { ...opts };
  }
  get gradientCheckpointing(): CheckpointOptions {
    return this.ctx.checkpointing;
  }

  /**
   * Loads every parameter (tensor by tensor) from a safetensors source, a Checkpoint (src/io/checkpoint.ts: diffusers
   * folder, sharded, SGM single file) or a name → {data, shape} map. Missing / unexpected / mis-shaped keys: one
   * StateDictError listing them all.
   */
  loadWeights(source: WeightSource, opts: LoadWeightsOptions = {}): Promise<void> {
    this.ctx.clearDerived();
    return loadStateDict(this.ctx, source, opts);
  }

  /** Attaches LoRA adapters from a peft-named state dict (`<module>.lora_A.weight` / `.lora_B.weight`). */
  loadLora(source: ByteSource | StateDict, opts: LoadLoraOptions): Promise<string[]> {
    return loadLora(this.ctx, source, opts);
  }

  /**
   * Attaches adapters parsed by src/io/lora_format.ts parseLora (peft, old diffusers, kohya), each with its own
   * alpha / rank scale × opts.weight. Pass loraModules() as parseLora's `modules` to resolve kohya names.
   */
  attachLora(adapters: LoraSet | readonly LoraAdapter[], opts: AttachLoraOptions = {}): string[] {
    return attachLora(this.ctx, adapters, opts);
  }

  /** Module path → weight shape of every layer LoRA can adapt. */
  loraModules(): Map<string, number[]> {
    return loraModules(this.ctx);
  }

  /** New trainable adapters (A uniform ±1/sqrt(fan_in) as peft's kaiming init, B = 0) on the targeted layers. */
  initLora(opts: InitLoraOptions): string[] {
    return initLora(this.ctx, opts);
  }

  /** The trainable adapter tensors, peft-named. */
  loraParameters(): LoraParameter[] {
    return loraParameters(this.ctx);
  }

  clearLora(): void {
    clearLora(this.ctx);
  }

  /** Frees every parameter and adapter. */
  dispose(): void {
    this.crossKv.forget();
    clearLora(this.ctx);
    this.ctx.clearDerived();
    for (const p of this.ctx.params.values()) {
      p.var?.dispose();
      p.var = undefined;
    }
  }

  /** Storage type of weights and activations (f32 math inside every kernel either way). */
  get dtype(): DType {
    return this.ctx.dtype;
  }

  /**
   * ε-prediction [B, out_channels, h, w]. Records on the active tape where an input or adapter needs a gradient.
   * Inputs and output are f32 whatever the model's dtype: an f16 model casts them at its boundary (differentiably).
   */
  forward(inputs: UNetInputs, opts: ForwardOptions = {}): Var {
    const ctx = this.ctx;
    ctx.probe = opts.probe;
    try {
      return tidy(() => {
        const dt = ctx.dtype;
        const inp: UNetInputs =
          dt === 'f32'
            ? inputs
            : {
                ...inputs,
                sample: castOp(inputs.sample, dt),
                encoderHiddenStates: castOp(inputs.encoderHiddenStates, dt),
                textEmbeds: inputs.textEmbeds && castOp(inputs.textEmbeds, dt),
              };
        ctx.crossKv = this.crossKv.run(inp.encoderHiddenStates);
        return castOp(this.run(inp), 'f32');
      });
    } finally {
      // Checkpointed blocks replay during the backward; they must not probe again (and get their K / V as inputs).
      ctx.probe = undefined;
      ctx.crossKv = undefined;
    }
  }

  private run(inputs: UNetInputs): Var {
    const { sample, encoderHiddenStates: context } = inputs;
    const [B, , h, w] = sample.shape;
    const t = this.timestepTensor(inputs.timestep, B);
    let emb: Var;
    try {
      emb = this.timeEmbedding.forward(this.timeProj.forward(t));
    } finally {
      t.release();
    }
    if (this.addTimeProj && this.addEmbedding) emb = add(emb, this.addEmbedding.forward(this.textTimeInput(inputs, B)));
    // Every resnet applies SiLU to the embedding before its time_emb_proj: once here for all of them.
    const embAct = silu(emb);

    let x = this.convIn.forward(sample);
    this.ctx.emit('conv_in', x);
    const skips: Var[] = [x];
    for (const block of this.downBlocks) {
      const r = block.forward(x, embAct, context);
      x = r.x;
      skips.push(...r.skips);
    }
    if (this.midBlock) x = this.midBlock.forward(x, embAct, context);
    for (const block of this.upBlocks) {
      const consumed = skips.splice(skips.length - block.resnets.length);
      const next = skips.at(-1);
      x = block.forward(x, consumed, embAct, context, next ? [next.shape[2], next.shape[3]] : undefined);
    }
    if (skips.length) throw new Error(`unet: ${skips.length} skip connections left over (config mismatch)`);
    const y = this.convOut.forward(this.convNormOut.forward(x, true));
    this.ctx.emit('conv_out', y);
    if (y.shape[2] !== h || y.shape[3] !== w) throw new Error(`unet: output ${y.shape} does not match the sample's spatial size ${h}×${w}`);
    return y;
  }

  /** [text_embeds | Timesteps(time_ids).flatten per sample] → [B, projection_class_embeddings_input_dim]. */
  private textTimeInput(inputs: UNetInputs, B: number): Var {
    const { textEmbeds, timeIds } = inputs;
    if (!textEmbeds || !timeIds) throw new Error('unet: addition_embed_type "text_time" needs textEmbeds and timeIds');
    if (timeIds.needsGrad) throw new Error('unet: timeIds are conditioning data and cannot require a gradient');
    const flat = timeIds.value.reshape([timeIds.value.size]);
    let te: Var;
    try {
      te = this.addTimeProj!.forward(flat);
    } finally {
      flat.release();
    }
    return concat(textEmbeds, reshape(castOp(te, this.ctx.dtype), [B, te.value.size / B]), 1);
  }

  private timestepTensor(ts: UNetInputs['timestep'], B: number): Tensor {
    if (ts instanceof Tensor) {
      if (ts.size === B) return ts.reshape([B]);
      if (ts.size === 1) {
        throw new Error('unet: pass a single timestep as a number (a [1] tensor is not broadcast)');
      }
      throw new Error(`unet: timestep tensor has ${ts.size} values for a batch of ${B}`);
    }
    const values = typeof ts === 'number' ? new Array<number>(B).fill(ts) : Array.from(ts);
    if (values.length !== B) throw new Error(`unet: ${values.length} timesteps for a batch of ${B}`);
    return Tensor.fromArray(this.gpu, values, [B], { label: 'timesteps' });
  }
}
