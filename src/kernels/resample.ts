// Nearest ×2 upsampling (and to an exact size), concatenation along an axis and its inverse split, with backward
// (kernels/resample.wgsl). Layout NCHW.
//
// Copies: the UNet's up path computes cat([h, skip], dim=1) before each up-block resnet. `concat` does it in one
// dispatch that reads each input once and writes the output once (the minimum for a materialised concat); `split`
// (its backward) likewise reads dy once and writes both gradients. Removing the copy altogether means the producer
// writes straight into a channel range of the concatenated buffer: for B = 1 that range is one contiguous span at
// element offset Ca·H·W (a binding offset, which must be a multiple of minStorageBufferOffsetAlignment — 256 bytes,
// true whenever Ca·H·W is a multiple of 64); for B > 1 it is B spans with a batch stride of (Ca + Cb)·H·W, so the
// producer kernel needs a batch-stride parameter. Tensor has no offset views yet; when it gets them, conv/add
// epilogues can target such views and `concat` stays as the fallback.
import { ShapeError } from '../../runtime/errors.js';
import { type Shape, Tensor, numel, shapeStr } from '../tensor.js';
import type { DType } from '../dtype.js';
import { commonDType, requireSameGpu } from './checks.js';
import { grid1d } from './grid.js';
import { Kernel } from './kernel.js';

export const resampleKernel = new Kernel<{ dtype: DType }>({
  name: 'resample',
  entryPoints: ['upsample_nearest', 'upsample_nearest_grad', 'concat', 'split'],
  dtypes: ['f32', 'f16'],
  bindings: [
    { name: 'params', kind: 'uniform' },
    { name: 'a', kind: 'read' },
    { name: 'b', kind: 'read' },
    { name: 'y', kind: 'read_write' },
    { name: 'y2', kind: 'read_write' },
  ],
  uniforms: [
    ['n', 'u32'],
    ['O', 'u32'],
    ['Ca', 'u32'],
    ['Cb', 'u32'],
    ['I', 'u32'],
    ['H', 'u32'],
    ['W', 'u32'],
    ['Ho', 'u32'],
    ['Wo', 'u32'],
    ['scaleH', 'f32'],
    ['scaleW', 'f32'],
  ],
});

const NO_RESAMPLE = { H: 0, W: 0, Ho: 0, Wo: 0, scaleH: 0, scaleW: 0 };
const NO_CONCAT = { O: 0, Ca: 0, Cb: 0, I: 0 };

function requireNCHW(op: string, t: Tensor, what: string): void {
  if (t.rank !== 4) throw new ShapeError(`${op}: ${what} '${t.label}' has shape ${shapeStr(t.shape)}, expected rank 4 [B, C, H, W]`);
}

export interface UpsampleOptions {
  /** Output [Ho, Wo] (diffusers' upsample_size); default [2·H, 2·W]. */
  size?: readonly [number, number];
}

function outSize(op: string, inShape: Shape, opts: UpsampleOptions): [number, number] {
  const [, , H, W] = inShape;
  const size = opts.size ?? [2 * H, 2 * W];
  if (size.length !== 2 || !size.every((d) => Number.isInteger(d) && d >= 1))
    throw new ShapeError(`${op}: size must be two positive integers [Ho, Wo], got [${size.join(', ')}]`);
  return [size[0], size[1]];
}

function resampleParams(n: number, [, , H, W]: Shape, [Ho, Wo]: [number, number]) {
  // PyTorch: float scale = (float)in / out, used only when out is neither in nor 2·in.
  return { n, ...NO_CONCAT, H, W, Ho, Wo, scaleH: Math.fround(H / Ho), scaleW: Math.fround(W / Wo) };
}

/** Nearest-neighbour upsampling of x [B, C, H, W] to [B, C, 2H, 2W] (or opts.size), as F.interpolate(mode='nearest'). */
export function upsampleNearest(x: Tensor, opts: UpsampleOptions = {}): Tensor {
  const dtype = commonDType('upsampleNearest', x);
  requireNCHW('upsampleNearest', x, 'input');
  const [Ho, Wo] = outSize('upsampleNearest', x.shape, opts);
  const [B, C, H, W] = x.shape;
  const y = Tensor.empty(x.gpu, [B, C, Ho, Wo], dtype, `upsample(${x.label})`);
  if (H === 0 || W === 0) {
    if (y.size) throw new ShapeError(`upsampleNearest: cannot upsample the empty spatial extent ${shapeStr(x.shape)}`);
    return y;
  }
  resampleKernel.run(x.gpu, {
    entry: 'upsample_nearest',
    variant: { dtype },
    params: resampleParams(y.size, x.shape, [Ho, Wo]),
    buffers: { a: x, y },
    workgroups: grid1d(x.gpu, y.size),
  });
  return y;
}

/** dx [B, C, H, W] of y = upsampleNearest(x, opts) from dy: each input pixel sums the outputs it was copied to. */
export function upsampleNearestBackward(dy: Tensor, xShape: Shape, opts: UpsampleOptions = {}): Tensor {
  const dtype = commonDType('upsampleNearest backward', dy);
  if (xShape.length !== 4) throw new ShapeError(`upsampleNearest backward: input shape ${shapeStr(xShape)} must be [B, C, H, W]`);
  const [Ho, Wo] = outSize('upsampleNearest backward', xShape, opts);
  const [B, C] = xShape;
  const want = [B, C, Ho, Wo];
  if (dy.rank !== 4 || dy.shape.some((d, i) => d !== want[i]))
    throw new ShapeError(`upsampleNearest backward: dy has shape ${shapeStr(dy.shape)}, expected ${shapeStr(want)}`);
  const dx = Tensor.empty(dy.gpu, xShape, dtype, `dupsample(${dy.label})`);
  resampleKernel.run(dy.gpu, {
    entry: 'upsample_nearest_grad',
    variant: { dtype },
    params: resampleParams(dx.size, xShape, [Ho, Wo]),
    buffers: { a: dy, y: dx },
    workgroups: grid1d(dy.gpu, dx.size),
  });
  return dx;
}

function normAxis(op: string, rank: number, axis: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank)
    throw new ShapeError(`${op}: axis ${axis} is out of range for rank ${rank} (expected an integer in [${-rank}, ${rank - 1}])`);
  return axis < 0 ? axis + rank : axis;
}

/** cat([a, b], axis) (default 1: channels of NCHW, current first and skip second as in diffusers' up blocks). */
export function concat(a: Tensor, b: Tensor, axis = 1): Tensor {
  const dtype = commonDType('concat', a, b);
  requireSameGpu('concat', a, b);
  if (a.rank !== b.rank) throw new ShapeError(`concat: ranks differ, ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
  const ax = normAxis('concat', a.rank, axis);
  a.shape.forEach((d, i) => {
    if (i !== ax && d !== b.shape[i])
      throw new ShapeError(`concat along axis ${ax}: shapes ${shapeStr(a.shape)} and ${shapeStr(b.shape)} differ in dim ${i} (${d} vs ${b.shape[i]})`);
  });
  const shape = a.shape.map((d, i) => (i === ax ? d + b.shape[ax] : d));
  const y = Tensor.empty(a.gpu, shape, dtype, `concat(${a.label}, ${b.label})`);
  resampleKernel.run(a.gpu, {
    entry: 'concat',
    variant: { dtype },
    params: { n: y.size, O: numel(a.shape.slice(0, ax)), Ca: a.shape[ax], Cb: b.shape[ax], I: numel(a.shape.slice(ax + 1)), ...NO_RESAMPLE },
    buffers: { a, b, y },
    workgroups: grid1d(a.gpu, y.size),
  });
  return y;
}

/** [x[..., :sizeA, ...], x[..., sizeA:, ...]] along `axis` (default 1); also the backward of concat. */
export function split(x: Tensor, sizeA: number, axis = 1): [Tensor, Tensor] {
  const dtype = commonDType('split', x);
  const ax = normAxis('split', x.rank, axis);
  const C = x.shape[ax];
  if (!Number.isInteger(sizeA) || sizeA < 0 || sizeA > C)
    throw new ShapeError(`split: first part of ${sizeA} along axis ${ax} does not fit ${shapeStr(x.shape)} (expected 0..${C})`);
  const partA = Tensor.empty(x.gpu, x.shape.map((d, i) => (i === ax ? sizeA : d)), dtype, `split0(${x.label})`);
  const partB = Tensor.empty(x.gpu, x.shape.map((d, i) => (i === ax ? C - sizeA : d)), dtype, `split1(${x.label})`);
  resampleKernel.run(x.gpu, {
    entry: 'split',
    variant: { dtype },
    params: { n: x.size, O: numel(x.shape.slice(0, ax)), Ca: sizeA, Cb: C - sizeA, I: numel(x.shape.slice(ax + 1)), ...NO_RESAMPLE },
    buffers: { a: x, y: partA, y2: partB },
    workgroups: grid1d(x.gpu, x.size),
  });
  return [partA, partB];
}

/** Gradients of y = concat(a, b, axis) from dy: [da, db] with the shapes of a and b. */
export function concatBackward(dy: Tensor, aShape: Shape, bShape: Shape, axis = 1): [Tensor, Tensor] {
  const ax = normAxis('concat backward', aShape.length, axis);
  const want = aShape.map((d, i) => (i === ax ? d + bShape[ax] : d));
  if (dy.rank !== want.length || dy.shape.some((d, i) => d !== want[i]))
    throw new ShapeError(`concat backward: dy has shape ${shapeStr(dy.shape)}, expected ${shapeStr(want)}`);
  return split(dy, aShape[ax], ax);
}
