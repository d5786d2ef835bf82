// Plain-loop CPU reference for diffusers get_timestep_embedding, written from the Python:
//   exponent = -ln(max_period) · arange(half) / (half − shift);  emb = t[:, None] · exp(exponent)[None]; emb *= scale
//   emb = cat(sin(emb), cos(emb)); flip → cat(cos, sin); odd dim → zero pad.
// `torchF32` rounds exponent, frequency and argument to float32 at the same steps torch does (its tensors are
// float32), then takes sin/cos in float64: the float64 answer to torch's float32 arguments. Without it everything is
// float64 (the exact math), which differs from any float32 implementation by about |arg|·2^-24 at large arguments.
export interface TimestepEmbeddingRefOptions {
  flipSinToCos?: boolean;
  downscaleFreqShift?: number;
  scale?: number;
  maxPeriod?: number;
  torchF32?: boolean;
}

export function timestepEmbeddingRef(t: ArrayLike<number>, dim: number, opts: TimestepEmbeddingRefOptions = {}): Float64Array {
  const r = opts.torchF32 ? Math.fround : (v: number) => v;
  const shift = opts.downscaleFreqShift ?? 1;
  const scale = opts.scale ?? 1;
  const half = Math.floor(dim / 2);
  const freq: number[] = [];
  for (let i = 0; i < half; i++) {
    const exponent = r(r(r(-Math.log(opts.maxPeriod ?? 10000)) * i) / r(half - shift));
    freq.push(r(Math.exp(exponent)));
  }
  const y = new Float64Array(t.length * dim);
  for (let n = 0; n < t.length; n++)
    for (let i = 0; i < half; i++) {
      const arg = r(r(scale) * r(r(t[n]) * freq[i]));
      const [first, second] = opts.flipSinToCos ? [Math.cos(arg), Math.sin(arg)] : [Math.sin(arg), Math.cos(arg)];
      y[n * dim + i] = first;
      y[n * dim + half + i] = second;
    }
  return y;
}
