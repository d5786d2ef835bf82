// Unfused LoRA layers: y = base(x) + scale · B(A(x)) with the base weight W (and its bias) frozen and the adapter
// A (down, r rows) / B (up, r columns) trainable. W never gets a gradient.
//
// Linear: src/kernels/lora_matmul.ts (the matmul kernel's second operand pair, so y is written once; h = scale·x·Aᵀ
// is kept for dB). Conv: src/kernels/conv2d.ts loraConv2d (an r-channel conv, then W's K loop continues over B).
import { ShapeError } from '../../runtime/errors.js';
import { type PackedConv2dWeight, type Pair, loraConv2dBackward, loraConv2d as loraConv2dKernel } from '../kernels/conv2d.js';
import { loraLinearBackward, loraLinearWithH } from '../kernels/lora_matmul.js';
import { type Tensor, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';
import { castOp } from './ops.js';
import { Var, keep, track } from './tape.js';

/** The adapter cast to the layer's dtype (f32 masters → f16 for an f16 model; differentiable, so the masters get f32 gradients). */
function asDType(l: LoraWeights, dtype: DType): LoraWeights {
  if (l.a.value.dtype === dtype && l.b.value.dtype === dtype) return l;
  return { a: castOp(l.a, dtype), b: castOp(l.b, dtype), scale: l.scale };
}

/** A LoRA adapter on one layer: trainable A (down) and B (up), and the factor alpha / r (× the adapter weight). */
export interface LoraWeights {
  a: Var;
  b: Var;
  scale: number;
}

/** y = x·Wᵀ + bias + scale · (x·Aᵀ)·Bᵀ [+ residual] for x [..., K], W [N, K], A [r, K], B [N, r]. */
export function loraLinear(x: Var, weight: Var, bias: Var | undefined, lora0: LoraWeights, label = 'lora_linear', residual?: Var): Var {
  const lora = asDType(lora0, x.value.dtype);
  const [N, K] = weight.shape;
  const r = lora.a.shape[0];
  const { scale } = lora;
  // Shapes are checked here too, so errors name the model's parameters rather than kernel operands.
  if (weight.needsGrad) throw new ShapeError(`${label}: the base weight '${weight.name}' is frozen under LoRA; it must not require grad`);
  if (x.shape.at(-1) !== K) throw new ShapeError(`${label}: x ${shapeStr(x.shape)} last dim must equal weight ${shapeStr(weight.shape)} in-features`);
  if (lora.a.shape.length !== 2 || lora.a.shape[1] !== K)
    throw new ShapeError(`${label}: lora A '${lora.a.name}' ${shapeStr(lora.a.shape)} must be [r, ${K}]`);
  if (lora.b.shape.length !== 2 || lora.b.shape[0] !== N || lora.b.shape[1] !== r)
    throw new ShapeError(`${label}: lora B '${lora.b.name}' ${shapeStr(lora.b.shape)} must be [${N}, ${r}]`);
  const { y, h } = loraLinearWithH(x.value, weight.value, bias?.value, lora.a.value, lora.b.value, scale, { label, residual: residual?.value });
  const inputs = [x, lora.a, lora.b, ...(bias ? [bias] : []), ...(residual ? [residual] : [])];
  const iRes = residual ? inputs.length - 1 : -1;
  const v = track(y, {
    op: 'lora_linear',
    inputs,
    save: () => [keep(x), keep(weight), keep(lora.a), keep(lora.b), h],
    backward: (dy, [sx, sw, sa, sb, sh], need) => {
      // dx, dA and dB come together (track() releases the ones no input needs).
      const g = loraLinearBackward(sx, sw, sa, sb, scale, dy, { h: sh, bias: !!bias && need[3], label });
      const grads: (Tensor | undefined)[] = [g.dx, g.dA, g.dB];
      if (bias) grads[3] = g.db;
      if (iRes >= 0) grads[iRes] = need[iRes] ? dy.reshape(dy.shape) : undefined;
      return grads;
    },
  });
  if (!v.node) h.release();
  return v;
}

export interface LoraConv2dOpOptions {
  stride?: Pair;
  padding?: Pair;
  residual?: Var;
  /** W packed for the forward / input-gradient kernels (cached by a frozen layer; packed per call when absent). */
  packed?: PackedConv2dWeight;
  packedInputGrad?: () => PackedConv2dWeight;
  label?: string;
}

/** y = conv(x, W) + bias + scale · conv1x1(conv(x, A), B) (+ residual); W [Cout, Cin, kH, kW] frozen. */
export function loraConv2d(x: Var, weight: Var, bias: Var | undefined, lora0: LoraWeights, opts: LoraConv2dOpOptions = {}): Var {
  const lora = asDType(lora0, x.value.dtype);
  const { stride = 1, padding = 0, residual, label } = opts;
  if (weight.needsGrad) throw new ShapeError(`${label ?? 'lora_conv2d'}: the base weight '${weight.name}' is frozen under LoRA; it must not require grad`);
  const params = { w: weight.value, bias: bias?.value, a: lora.a.value, b: lora.b.value, scale: lora.scale, packedW: opts.packed };
  const { y, h } = loraConv2dKernel(x.value, params, { stride, padding, residual: residual?.value, label });
  const inputs = [x, lora.a, lora.b, ...(bias ? [bias] : []), ...(residual ? [residual] : [])];
  const iBias = bias ? 3 : -1;
  const iRes = residual ? inputs.length - 1 : -1;
  const v = track(y, {
    op: 'lora_conv2d',
    inputs,
    save: () => [keep(x), keep(weight), keep(lora.a), keep(lora.b), h],
    backward: (dy, [sx, sw, sa, sb, sh], need) => {
      const packedWInputGrad = need[0] ? opts.packedInputGrad?.() : undefined;
      const g = loraConv2dBackward(sx, { w: sw, a: sa, b: sb, scale: lora.scale, packedWInputGrad }, dy, {
        stride,
        padding,
        label,
        h: sh,
        needInput: need[0],
        needA: need[1],
        needB: need[2],
        needBias: iBias >= 0 && need[iBias],
      });
      const grads: (Tensor | undefined)[] = [g.dx, g.da, g.db];
      if (iBias >= 0) grads[iBias] = g.dbias;
      if (iRes >= 0) grads[iRes] = need[iRes] ? dy.reshape(dy.shape) : undefined;
      return grads;
    },
  });
  if (!v.node) h.release();
  return v;
}
