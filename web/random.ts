// Seeded numbers for the demo (mulberry32, as test/helpers.ts's seeded()): the same inputs on every run.

export function seededUniform(n: number, seed = 1, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/** Standard normal draws (Box–Muller on seeded uniforms). */
export function seededNormal(n: number, seed = 1): Float32Array {
  const u = seededUniform(2 * Math.ceil(n / 2), seed, 0, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(Math.max(u[i], 1e-12)));
    const a = 2 * Math.PI * u[i + 1];
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}
