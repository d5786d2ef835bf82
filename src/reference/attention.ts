// Plain-loop CPU references (float64) for multi-head attention; written from the math with the full score matrix
// materialised, independent of the tiled WGSL.
// Layout as the kernels: Q [B, N, heads·headDim], K, V [B, M, heads·headDim], LSE [B, heads, N]; causal = query n
// sees keys m ≤ n (top-left aligned).

type Arr = ArrayLike<number>;

export interface AttentionRefDims {
  B: number;
  N: number;
  M: number;
  heads: number;
  headDim: number;
  scale?: number;
  causal?: boolean;
}

export interface AttentionRefResult {
  o: Float64Array;
  lse: Float64Array;
  /** Softmax probabilities [B, heads, N, M] (0 where masked). */
  p: Float64Array;
}

const scaleOf = (d: AttentionRefDims) => d.scale ?? 1 / Math.sqrt(d.headDim);

export function attentionRef(q: Arr, k: Arr, v: Arr, d: AttentionRefDims): AttentionRefResult {
  const { B, N, M, heads, headDim: D } = d;
  const C = heads * D;
  const scale = scaleOf(d);
  const o = new Float64Array(B * N * C);
  const lse = new Float64Array(B * heads * N);
  const p = new Float64Array(B * heads * N * M);
  const s = new Float64Array(M);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < heads; h++)
      for (let n = 0; n < N; n++) {
        let mx = -Infinity;
        for (let m = 0; m < M; m++) {
          if (d.causal && m > n) {
            s[m] = -Infinity;
            continue;
          }
          let acc = 0;
          for (let c = 0; c < D; c++) acc += q[(b * N + n) * C + h * D + c] * k[(b * M + m) * C + h * D + c];
          s[m] = acc * scale;
          mx = Math.max(mx, s[m]);
        }
        let sum = 0;
        for (let m = 0; m < M; m++) sum += s[m] === -Infinity ? 0 : Math.exp(s[m] - mx);
        const row = ((b * heads + h) * N + n) * M;
        for (let m = 0; m < M; m++) p[row + m] = s[m] === -Infinity ? 0 : Math.exp(s[m] - mx) / sum;
        lse[(b * heads + h) * N + n] = mx + Math.log(sum);
        for (let c = 0; c < D; c++) {
          let acc = 0;
          for (let m = 0; m < M; m++) acc += p[row + m] * v[(b * M + m) * C + h * D + c];
          o[(b * N + n) * C + h * D + c] = acc;
        }
      }
  return { o, lse, p };
}

export interface AttentionGradsRef {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}

/**
 * Gradients of O = softmax(scale·Q·Kᵀ)·V given dO, by the chain rule on the materialised P:
 *   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dQ = scale·dS·K,  dK = scale·dSᵀ·Q.
 */
export function attentionBackwardRef(q: Arr, k: Arr, v: Arr, dO: Arr, d: AttentionRefDims): AttentionGradsRef {
  const { B, N, M, heads, headDim: D } = d;
  const C = heads * D;
  const scale = scaleOf(d);
  const { p } = attentionRef(q, k, v, d);
  const dq = new Float64Array(B * N * C);
  const dk = new Float64Array(B * M * C);
  const dv = new Float64Array(B * M * C);
  const dP = new Float64Array(M);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < heads; h++)
      for (let n = 0; n < N; n++) {
        const row = ((b * heads + h) * N + n) * M;
        const qo = (b * N + n) * C + h * D;
        let dot = 0;
        for (let m = 0; m < M; m++) {
          let acc = 0;
          for (let c = 0; c < D; c++) acc += dO[qo + c] * v[(b * M + m) * C + h * D + c];
          dP[m] = acc;
          dot += acc * p[row + m];
        }
        for (let m = 0; m < M; m++) {
          const pm = p[row + m];
          const ds = pm * (dP[m] - dot);
          const ko = (b * M + m) * C + h * D;
          for (let c = 0; c < D; c++) {
            dv[ko + c] += pm * dO[qo + c];
            dq[qo + c] += scale * ds * k[ko + c];
            dk[ko + c] += scale * ds * q[qo + c];
          }
        }
      }
  return { dq, dk, dv };
}
