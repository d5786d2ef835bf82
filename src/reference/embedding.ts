// Plain-loop float64 CPU reference for the embedding lookup: y[r, c] = table[ids[r], c] (+ pos[r mod T, c]).

/** table [V, D] row-major; ids [rows]; pos [P, D] or null; T = positions per sequence (the ids' last dim). */
export function embeddingRef(
  table: ArrayLike<number>,
  D: number,
  ids: ArrayLike<number>,
  pos: ArrayLike<number> | null,
  T: number,
): Float64Array {
  const y = new Float64Array(ids.length * D);
  for (let r = 0; r < ids.length; r++)
    for (let c = 0; c < D; c++) y[r * D + c] = table[ids[r] * D + c] + (pos ? pos[(r % T) * D + c] : 0);
  return y;
}
