// Differentiable ops for the UNet's kernel families (conv, norms, attention, GEGLU, resampling, concat, transpose).
// Each runs its forward kernel and registers the backward of the same family via track(); frozen inputs (weights
// that do not require grad) get no gradient, and their backward work is skipped where the kernel allows it.
// Tensors a node saves that are not views of an input (norm statistics, the attention LSE) are handed to the node,
// or released at once when nothing was recorded.
import { ShapeError } from '../../runtime/errors.js';
import { type AttentionSlices, attentionBackward, attentionWithLse } from '../kernels/attention.js';
import { type PackedConv2dWeight, type Pair, conv2dBackward, conv2d as conv2dKernel } from '../kernels/conv2d.js';
import { gegluBackward, geglu as gegluKernel } from '../kernels/geglu.js';
import { groupNormBackward, groupNorm as groupNormKernel } from '../kernels/group_norm.js';
import { layerNormBackward, layerNorm as layerNormKernel } from '../kernels/layer_norm.js';
import { concatBackward, concat as concatKernel, upsampleNearestBackward, upsampleNearest as upsampleKernel } from '../kernels/resample.js';
import { timestepEmbedding as timestepEmbeddingKernel, type TimestepEmbeddingOptions } from '../kernels/timestep_embedding.js';
import { transpose as transposeKernel } from '../kernels/transpose.js';
import { type Tensor, shapeStr } from '../tensor.js';
import { Var, keep, track } from './tape.js';

/** A gradient that is dy itself (a residual added in an epilogue): a new view, since the tape releases dy. */
const passThrough = (dy: Tensor) => dy.reshape(dy.shape);

/** Frees tensors made for a node that was not recorded (no input needed a gradient). */
function releaseIfUntracked(v: Var, ...ts: Tensor[]): Var {
  if (!v.node) for (const t of ts) t.release();
  return v;
}

export interface Conv2dOpOptions {
  stride?: Pair;
  padding?: Pair;
  bias?: Var;
  /** Added to the output in the conv's epilogue (the resnet shortcut); its gradient is dy. */
  residual?: Var;
  /** w packed for the forward kernel (a frozen weight's cached packing; packed per call when absent). */
  packed?: PackedConv2dWeight;
  /** w packed for the input gradient, fetched only when the backward needs dx (packed per call when absent). */
  packedInputGrad?: () => PackedConv2dWeight;
  label?: string;
}

/** y = conv(x, w) + bias + residual (NCHW). dw / dbias only when those need a gradient (frozen convs pay nothing). */
export function conv2d(x: Var, w: Var, opts: Conv2dOpOptions = {}): Var {
  const { stride = 1, padding = 0, bias, residual, label } = opts;
  const y = conv2dKernel(x.value, w.value, { stride, padding, bias: bias?.value, residual: residual?.value, packed: opts.packed, label });
  const inputs = [x, w, ...(bias ? [bias] : []), ...(residual ? [residual] : [])];
  const iRes = residual ? inputs.length - 1 : -1;
  return track(y, {
    op: 'conv2d',
    inputs,
    save: () => [keep(x), keep(w)],
    backward: (dy, [sx, sw], need) => {
      const g = conv2dBackward(sx, sw, dy, {
        stride,
        padding,
        label,
        needInput: need[0],
        needWeight: need[1],
        needBias: !!bias && need[2],
        packedInputGrad: need[0] ? opts.packedInputGrad?.() : undefined,
      });
      const grads: (Tensor | undefined)[] = [g.dx, g.dw];
      if (bias) grads.push(g.dbias);
      if (residual) grads[iRes] = need[iRes] ? passThrough(dy) : undefined;
      return grads;
    },
  });
}

export interface GroupNormOpOptions {
  groups: number;
  eps?: number;
  /** Fused SiLU after the affine (ResnetBlock2D's norm → act, conv_norm_out → conv_act). */
  silu?: boolean;
}

/** GroupNorm over x [B, C, *spatial] (+ SiLU); saves mean / rstd for the backward. */
export function groupNorm(x: Var, gamma: Var, beta: Var, opts: GroupNormOpOptions): Var {
  const r = groupNormKernel(x.value, gamma.value, beta.value, opts);
  const v = track(r.y, {
    op: opts.silu ? 'group_norm+silu' : 'group_norm',
    inputs: [x, gamma, beta],
    save: () => [keep(x), keep(gamma), keep(beta), r.mean, r.rstd],
    backward: (dy, [sx, sg, sb, mean, rstd]) => {
      const g = groupNormBackward(dy, sx, sg, sb, { mean, rstd }, { groups: opts.groups, silu: opts.silu });
      return [g.dx, g.dgamma, g.dbeta];
    },
  });
  return releaseIfUntracked(v, r.mean, r.rstd);
}

/** LayerNorm over the last dim with optional affine weight / bias. */
export function layerNorm(x: Var, weight: Var | undefined, bias: Var | undefined, eps = 1e-5): Var {
  const r = layerNormKernel(x.value, { weight: weight?.value, bias: bias?.value, eps });
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  const v = track(r.y, {
    op: 'layer_norm',
    inputs,
    save: () => [keep(x), ...(weight ? [keep(weight)] : []), r.mean, r.rstd],
    backward: (dy, saved, need) => {
      const [sx, sw] = saved;
      const [mean, rstd] = saved.slice(-2);
      // dweight / dbias only when a param needs one (frozen affine params, as under LoRA, cost nothing).
      const needParams = need.slice(1).some(Boolean);
      const g = layerNormBackward(dy, sx, { mean, rstd }, { weight: weight ? sw : undefined, bias: bias?.value, needParams });
      return [g.dx, ...(weight ? [g.dweight] : []), ...(bias ? [g.dbias] : [])];
    },
  });
  return releaseIfUntracked(v, r.mean, r.rstd);
}

export interface AttentionOpOptions {
  heads: number;
  /** Default 1/sqrt(headDim). */
  scale?: number;
  causal?: boolean;
  /**
   * Q, K, V as column ranges of wider rows (fused projections; see src/kernels/attention.ts). q, k, v may then be the
   * same Var: the gradient of a Var that needs one is the operands' gradients concatenated in column order, so its
   * slices must tile its rows exactly (a [B, N, 3C] QKV output); partial slices are allowed for Vars without gradient.
   */
  slices?: AttentionSlices;
  label?: string;
}

/**
 * O = softmax(Q·Kᵀ·scale)·V per head; q [B, N, heads·headDim], k / v [B, M, heads·headDim] (self-attention: M = N;
 * cross-attention: M = context tokens). Saves q, k, v, O and the per-row LSE so the backward recomputes the
 * probabilities tile by tile instead of storing them.
 */
export function attention(q: Var, k: Var, v: Var, opts: AttentionOpOptions): Var {
  if (!opts.slices) {
    const { o, lse } = attentionWithLse(q.value, k.value, v.value, opts);
    const out = track(o, {
      op: 'attention',
      inputs: [q, k, v],
      save: () => [keep(q), keep(k), keep(v), keep(o), lse],
      backward: (dy, [sq, sk, sv, so, sl]) => {
        const g = attentionBackward(sq, sk, sv, so, sl, dy, opts);
        return [g.dq, g.dk, g.dv];
      },
    });
    return releaseIfUntracked(out, lse);
  }
  return slicedAttention(q, k, v, opts, opts.slices);
}

/** attention() on column slices: each distinct input Var is one tape input; its gradient joins its operands' ones. */
function slicedAttention(q: Var, k: Var, v: Var, opts: AttentionOpOptions, slices: AttentionSlices): Var {
  const operands = [q, k, v];
  const offsets = [slices.q ?? 0, slices.k ?? 0, slices.v ?? 0];
  const inputs = [...new Set(operands)];
  // Per input: the operand indices it feeds, in column order.
  const parts = inputs.map((x) => [0, 1, 2].filter((i) => operands[i] === x).sort((i, j) => offsets[i] - offsets[j]));
  inputs.forEach((x, n) => {
    if (!x.needsGrad) return;
    const tiles = parts[n].every((i, j) => offsets[i] === j * slices.channels) && parts[n].length * slices.channels === x.shape.at(-1);
    if (!tiles)
      throw new ShapeError(
        `${opts.label ?? 'attention'}: '${x.name}' ${shapeStr(x.shape)} needs a gradient, so its q / k / v slices must tile its rows exactly`,
      );
  });
  const { o, lse } = attentionWithLse(q.value, k.value, v.value, opts);
  const out = track(o, {
    op: 'attention',
    inputs,
    save: () => [...inputs.map((x) => keep(x)), keep(o), lse],
    backward: (dy, saved, need) => {
      const [so, sl] = saved.slice(-2);
      const at = (x: Var) => saved[inputs.indexOf(x)];
      const g = attentionBackward(at(q), at(k), at(v), so, sl, dy, opts);
      const d = [g.dq, g.dk, g.dv];
      const grads = inputs.map((_, n) => {
        if (!need[n]) return undefined;
        let acc = d[parts[n][0]];
        for (const i of parts[n].slice(1)) {
          const joined = concatKernel(acc, d[i], -1);
          if (acc !== d[parts[n][0]]) acc.release();
          acc = joined;
        }
        return acc;
      });
      // Gradients not handed back (not needed, or joined into a concatenation) are freed here.
      for (const t of d) if (!grads.includes(t)) t.release();
      return grads;
    },
  });
  return releaseIfUntracked(out, lse);
}

/** y = hidden · GELU_erf(gate) with [hidden | gate] = p.chunk(2, -1) (diffusers GEGLU after ff.net.0.proj). */
export function geglu(p: Var): Var {
  return track(gegluKernel(p.value), {
    op: 'geglu',
    inputs: [p],
    save: () => [keep(p)],
    backward: (dy, [sp]) => [gegluBackward(sp, dy)],
  });
}

/** Nearest-neighbour upsampling of x [B, C, H, W] to 2H × 2W or to `size` (diffusers' upsample_size). */
export function upsampleNearest(x: Var, size?: readonly [number, number]): Var {
  const xShape = x.shape;
  return track(upsampleKernel(x.value, { size }), {
    op: 'upsample_nearest',
    inputs: [x],
    backward: (dy) => [upsampleNearestBackward(dy, xShape, { size })],
  });
}

/** cat([a, b], axis) (default the channel axis of NCHW: current first, skip second as in the up blocks). */
export function concat(a: Var, b: Var, axis = 1): Var {
  const aShape = a.shape;
  const bShape = b.shape;
  return track(concatKernel(a.value, b.value, axis), {
    op: 'concat',
    inputs: [a, b],
    backward: (dy) => concatBackward(dy, aShape, bShape, axis),
  });
}

/** Swaps the last two dims: x [..., R, C] → [..., C, R] (NCHW feature maps ↔ token rows). */
export function transpose(x: Var): Var {
  return track(transposeKernel(x.value), {
    op: 'transpose',
    inputs: [x],
    backward: (dy) => [transposeKernel(dy)],
  });
}

/** Sinusoidal embedding of timesteps t [N] → [N, dim]. Not differentiable (timesteps are data, never trained). */
export function timestepEmbedding(t: Tensor, dim: number, opts: TimestepEmbeddingOptions = {}): Var {
  if (t.rank !== 1) throw new ShapeError(`timestepEmbedding: timesteps ${shapeStr(t.shape)} must be [N]`);
  return new Var(timestepEmbeddingKernel(t, dim, opts));
}
