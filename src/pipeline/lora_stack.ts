// Several LoRAs on one UNet, unfused. The UNet holds one adapter per layer, so adapters of different files on the
// same layer are stacked into one of the summed rank, which is exact:
//   Σ_i s_i·B_i·A_i = [B_1 … B_n] · [s_1·A_1; …; s_n·A_n]     (scale 1)
// A single adapter on a layer keeps its own A, B and scale.
import type { LoraAdapter, LoraSet } from '../io/lora_format.js';

export interface WeightedLora {
  set: LoraSet;
  /** The user's multiplier of the file's own alpha / rank scale. */
  weight: number;
}

export function stackLoras(loras: readonly WeightedLora[]): LoraAdapter[] {
  const byModule = new Map<string, { ad: LoraAdapter; weight: number }[]>();
  for (const { set, weight } of loras)
    for (const ad of set.adapters) {
      const list = byModule.get(ad.module) ?? [];
      list.push({ ad, weight });
      byModule.set(ad.module, list);
    }
  const out: LoraAdapter[] = [];
  for (const [module, list] of byModule) {
    if (list.length === 1) {
      const { ad, weight } = list[0];
      out.push({ ...ad, scale: ad.scale * weight });
      continue;
    }
    out.push(stack(module, list));
  }
  return out.sort((a, b) => (a.module < b.module ? -1 : 1));
}

function stack(module: string, list: { ad: LoraAdapter; weight: number }[]): LoraAdapter {
  const rank = list.reduce((r, { ad }) => r + ad.rank, 0);
  const aTail = list[0].ad.A.shape.slice(1);
  const bOut = list[0].ad.B.shape[0];
  const bTail = list[0].ad.B.shape.slice(2);
  for (const { ad } of list)
    if (ad.A.shape.slice(1).join() !== aTail.join() || ad.B.shape[0] !== bOut)
      throw new Error(`LoRA stack on ${module}: adapters disagree on the layer's shape (${list.map(({ ad }) => `A [${ad.A.shape}] B [${ad.B.shape}]`).join(' vs ')})`);
  // A: rows of every adapter, each scaled by its s_i · weight.
  const rowLen = aTail.reduce((p, d) => p * d, 1);
  const A = new Float32Array(rank * rowLen);
  let row = 0;
  for (const { ad, weight } of list) {
    const s = ad.scale * weight;
    for (let i = 0; i < ad.A.data.length; i++) A[row * rowLen + i] = ad.A.data[i] * s;
    row += ad.rank;
  }
  // B [out, r(, 1, 1)]: columns of every adapter side by side.
  const B = new Float32Array(bOut * rank);
  for (let o = 0; o < bOut; o++) {
    let col = 0;
    for (const { ad } of list) {
      for (let k = 0; k < ad.rank; k++) B[o * rank + col + k] = ad.B.data[o * ad.rank + k];
      col += ad.rank;
    }
  }
  return {
    module,
    A: { shape: [rank, ...aTail], data: A },
    B: { shape: [bOut, rank, ...bTail], data: B },
    rank,
    alpha: rank,
    scale: 1,
    format: list[0].ad.format,
    keys: { A: list.map(({ ad }) => ad.keys.A).join(' + '), B: list.map(({ ad }) => ad.keys.B).join(' + ') },
  };
}
