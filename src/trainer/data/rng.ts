// Seeded host-side randomness for data augmentation. Everything random in src/trainer/data draws from an injected Rng,
// so a run is reproducible and its state can be saved with a checkpoint (SeededRng.state is one u32).

export interface Rng {
  /** A uniformly distributed 32-bit unsigned integer. */
  nextU32(): number;
}

/** mulberry32: small, fast, deterministic across platforms; its whole state is one u32. */
export class SeededRng implements Rng {
  private s: number;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`SeededRng: seed must be an integer in [0, 2^32), got ${seed}`);
    this.s = seed >>> 0;
  }

  /** Restores a generator saved with `.state`. */
  static fromState(state: number): SeededRng {
    return new SeededRng(state);
  }

  /** The serializable state: new SeededRng(state) continues the same sequence. */
  get state(): number {
    return this.s;
  }

  nextU32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
}

/** Uniform in [0, 1) with 32 bits of resolution (like Python's random.random() < p comparisons need). */
export function nextFloat(rng: Rng): number {
  return rng.nextU32() / 4294967296;
}

/** Uniform integer in [lo, hi] inclusive, unbiased (rejection sampling). */
export function nextInt(rng: Rng, lo: number, hi: number): number {
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo || hi - lo > 0xffffffff)
    throw new RangeError(`nextInt: need integers lo <= hi within 2^32 of each other, got [${lo}, ${hi}]`);
  const span = hi - lo + 1;
  if (span === 4294967296) return lo + rng.nextU32();
  const limit = 4294967296 - (4294967296 % span); // largest multiple of span not above 2^32
  for (;;) {
    const u = rng.nextU32();
    if (u < limit) return lo + (u % span);
  }
}

/** A well-mixed u32 from a seed and an index (per-example generators independent of processing order). */
export function deriveSeed(seed: number, index: number): number {
  let x = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul((index >>> 0) + 0x7f4a7c15, 0x85ebca6b) ^ Math.floor(index / 4294967296)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** 0..n−1 in a random order (Fisher–Yates, each position drawn with nextInt). */
export function shuffledIndices(n: number, rng: Rng): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = nextInt(rng, 0, i);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
