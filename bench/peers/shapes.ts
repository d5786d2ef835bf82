// The matmul shapes the peers run: those of the selected 'matmul' bench cases (shape 'MxKxN', ×, x or X between the
// numbers), or, where there are none, a default list.
import type { BenchCase } from '../case.js';

export interface MatmulShape {
  m: number;
  k: number;
  n: number;
  /** As the matmul case writes it (or 'MxKxN' for the defaults). */
  label: string;
}

export const DEFAULT_QUICK: ReadonlyArray<readonly [number, number, number]> = [
  [256, 256, 256],
  [512, 512, 512],
  [1024, 1024, 1024],
];
export const DEFAULT_FULL: ReadonlyArray<readonly [number, number, number]> = [
  [4096, 4096, 4096],
  [4096, 640, 640],
  [4096, 1280, 5120],
  [1024, 1280, 10240],
  [77, 2048, 1280],
];

/** 'MxKxN…' → {m, k, n} (text after the third number is allowed: '4096x4096x4096 f16'); undefined for anything
 * else (batched 4-number shapes are not peer shapes). */
export function parseMatmulShape(shape: string): MatmulShape | undefined {
  const m = /^\s*(\d+)\s*[x×X*]\s*(\d+)\s*[x×X*]\s*(\d+)(?!\d|\s*[x×X*]\s*\d)/.exec(shape);
  if (!m) return undefined;
  return { m: Number(m[1]), k: Number(m[2]), n: Number(m[3]), label: shape };
}

export function peerShapes(matmulCases: BenchCase[], quick: boolean): { shapes: MatmulShape[]; from: string } {
  const seen = new Set<string>();
  const shapes: MatmulShape[] = [];
  for (const c of matmulCases) {
    if (c.kernel !== 'matmul' || (quick && !c.quick)) continue;
    const s = parseMatmulShape(c.shape);
    if (!s) continue;
    const key = `${s.m}x${s.k}x${s.n}`;
    if (seen.has(key)) continue;
    seen.add(key);
    shapes.push(s);
  }
  if (shapes.length) return { shapes, from: 'bench/matmul.bench.ts cases' };
  const defaults = quick ? DEFAULT_QUICK : DEFAULT_FULL;
  return { shapes: defaults.map(([m, k, n]) => ({ m, k, n, label: `${m}x${k}x${n}` })), from: 'default peer shapes (no matmul bench cases)' };
}
