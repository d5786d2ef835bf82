// Plain-loop CPU references for nearest upsampling (torch F.interpolate mode='nearest'), its backward, and concat /
// split along an axis. Written from PyTorch's definition (src = floor(dst · in/out) in float32, clamped), not from
// the WGSL.

/** PyTorch's nearest source index: identity and ×2 are exact; otherwise floor(f32(d) · f32(in / out)), clamped. */
export function nearestSrc(d: number, inSize: number, outSize: number): number {
  if (outSize === inSize) return d;
  if (outSize === 2 * inSize) return d >> 1;
  const scale = Math.fround(inSize / outSize);
  return Math.min(Math.floor(Math.fround(d * scale)), inSize - 1);
}

export function upsampleNearestRef(x: ArrayLike<number>, [B, C, H, W]: readonly number[], Ho: number, Wo: number): Float64Array {
  const y = new Float64Array(B * C * Ho * Wo);
  for (let p = 0; p < B * C; p++)
    for (let ho = 0; ho < Ho; ho++)
      for (let wo = 0; wo < Wo; wo++)
        y[(p * Ho + ho) * Wo + wo] = x[(p * H + nearestSrc(ho, H, Ho)) * W + nearestSrc(wo, W, Wo)];
  return y;
}

/** Scatter-add of dy into the source pixels (PyTorch's backward). */
export function upsampleNearestBackwardRef(dy: ArrayLike<number>, [B, C, H, W]: readonly number[], Ho: number, Wo: number): Float64Array {
  const dx = new Float64Array(B * C * H * W);
  for (let p = 0; p < B * C; p++)
    for (let ho = 0; ho < Ho; ho++)
      for (let wo = 0; wo < Wo; wo++) dx[(p * H + nearestSrc(ho, H, Ho)) * W + nearestSrc(wo, W, Wo)] += dy[(p * Ho + ho) * Wo + wo];
  return dx;
}

const prod = (v: readonly number[]) => v.reduce((p, d) => p * d, 1);

/** cat([a, b], axis) by index arithmetic over the output. */
export function concatRef(a: ArrayLike<number>, aShape: readonly number[], b: ArrayLike<number>, bShape: readonly number[], axis: number): Float64Array {
  const O = prod(aShape.slice(0, axis));
  const I = prod(aShape.slice(axis + 1));
  const [Ca, Cb] = [aShape[axis], bShape[axis]];
  const y = new Float64Array(O * (Ca + Cb) * I);
  for (let o = 0; o < O; o++)
    for (let c = 0; c < Ca + Cb; c++)
      for (let i = 0; i < I; i++)
        y[(o * (Ca + Cb) + c) * I + i] = c < Ca ? a[(o * Ca + c) * I + i] : b[(o * Cb + c - Ca) * I + i];
  return y;
}
