// Plain-loop float64 CPU reference for GEGLU (diffusers activations.GEGLU): hidden, gate = p.chunk(2, -1) (first half
// is the value, second half the gate); y = hidden · GELU_erf(gate). Written from the math, not from the WGSL.
import { unaryGradRef, unaryRef } from './elementwise.js';

/** y [R, F] from p [R, 2F] (row-major). */
export function gegluRef(p: ArrayLike<number>, R: number, F: number): Float64Array {
  const y = new Float64Array(R * F);
  for (let r = 0; r < R; r++)
    for (let j = 0; j < F; j++) y[r * F + j] = p[r * 2 * F + j] * unaryRef('gelu_erf', p[r * 2 * F + F + j]);
  return y;
}

/** dp [R, 2F] from p [R, 2F] and dy [R, F]. */
export function gegluBackwardRef(p: ArrayLike<number>, dy: ArrayLike<number>, R: number, F: number): Float64Array {
  const dp = new Float64Array(R * 2 * F);
  for (let r = 0; r < R; r++)
    for (let j = 0; j < F; j++) {
      const a = p[r * 2 * F + j];
      const g = p[r * 2 * F + F + j];
      const d = dy[r * F + j];
      dp[r * 2 * F + j] = d * unaryRef('gelu_erf', g);
      dp[r * 2 * F + F + j] = d * a * unaryGradRef('gelu_erf', g);
    }
  return dp;
}
