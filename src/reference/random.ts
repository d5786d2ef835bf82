// CPU reference of the counter-based fills (kernels/random.wgsl): the same 32-bit hash bit for bit (Math.imul wraps
// like WGSL u32 arithmetic), then the uniform / Box–Muller transforms in float64.

/** PCG-RXS-M-XS output permutation of a 32-bit word. */
export function pcgRef(v: number): number {
  const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/** The kernel's bits for counter c under key words (k0, k1). */
export function bitsRef(c: number, key: readonly [number, number]): number {
  return pcgRef((pcgRef((c + key[0]) >>> 0) ^ key[1]) >>> 0);
}

const INV_2_24 = 2 ** -24;

/** low + (high − low)·u for n elements, u = top 24 bits of bits(i) / 2^24. */
export function uniformRef(n: number, key: readonly [number, number], low = 0, high = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = low + (high - low) * (bitsRef(i, key) >>> 8) * INV_2_24;
  return out;
}

/** mean + std·√(−2 ln u1)·cos(2π u2), u1 = ((bits(2i) >> 8) + 1) / 2^24, u2 = (bits(2i+1) >> 8) / 2^24. */
export function normalRef(n: number, key: readonly [number, number], mean = 0, std = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u1 = ((bitsRef(2 * i, key) >>> 8) + 1) * INV_2_24;
    const u2 = (bitsRef(2 * i + 1, key) >>> 8) * INV_2_24;
    out[i] = mean + std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  return out;
}
