// Embedding lookup / row gather vs the float64 reference: token + position rows (CLIP's embeddings), plain gathers,
// sizes that leave partial workgroups, clamping of bad ids, shape errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { checkIds, embedding, gatherRows } from '../src/kernels/embedding.js';
import { embeddingRef } from '../src/reference/embedding.js';
import { Tensor } from '../src/tensor.js';
import { expectClose, seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

// One f32 addition (token + position) rounded once: half an ulp of values below 2.
const ONE_ADD = { atol: 1e-7, rtol: 1.2e-7 };

function randomIds(n: number, V: number, seed: number): number[] {
  return Array.from(seeded(n, seed, 0, V), (v) => Math.min(V - 1, Math.floor(v)));
}

describe('embedding', () => {
  const cases: [string, number, number, number[], boolean][] = [
    ['CLIP-shaped: B 2, T 77, vocab 1000, D 32, + positions', 1000, 32, [2, 77], true],
    ['odd D 5, T 3, + positions (partial workgroup)', 17, 5, [4, 3], true],
    ['plain gather, ids [7], D 1', 9, 1, [7], false],
    ['plain gather, ids [3, 2, 5], D 12', 40, 12, [3, 2, 5], false],
  ];
  for (const [name, V, D, idShape, withPos] of cases) {
    it(`${name}: matches the float64 reference`, async () => {
      const T = idShape[idShape.length - 1];
      const n = idShape.reduce((a, b) => a * b, 1);
      const tableData = seeded(V * D, V + D, -2, 2);
      const posData = seeded((T + 2) * D, 7, -1, 1);
      const ids = randomIds(n, V, n);
      ids[0] = 0;
      ids[n - 1] = V - 1;
      const table = Tensor.fromArray(gpu, tableData, [V, D], { label: 'table' });
      const pos = Tensor.fromArray(gpu, posData, [T + 2, D], { label: 'pos' });
      const idT = Tensor.fromArray(gpu, ids, idShape, { label: 'ids' });
      const y = embedding(table, idT, withPos ? { position: pos } : {});
      expect(y.shape).toEqual([...idShape, D]);
      const want = embeddingRef(tableData, D, ids, withPos ? posData : null, T);
      expectClose(await y.toArray(), want, withPos ? ONE_ADD : { atol: 0, rtol: 0 }, name);
      [table, pos, idT, y].forEach((t) => t.release());
    });
  }

  it('gatherRows picks rows by host index (repeats allowed) and checks them', async () => {
    const data = seeded(6 * 4, 3);
    const x = Tensor.fromArray(gpu, data, [6, 4], { label: 'x' });
    const y = gatherRows(x, [5, 0, 5, 2]);
    expect(y.shape).toEqual([4, 4]);
    expectClose(await y.toArray(), embeddingRef(data, 4, [5, 0, 5, 2], null, 1), { atol: 0, rtol: 0 }, 'rows');
    expect(() => gatherRows(x, [6])).toThrow(/id 6 at index 0 is not an integer in 0\.\.5/);
    expect(() => gatherRows(x, [1, 0.5])).toThrow(ShapeError);
    [x, y].forEach((t) => t.release());
  });

  it('clamps out-of-range ids in the kernel (no out-of-bounds read)', async () => {
    const data = seeded(3 * 4, 11);
    const table = Tensor.fromArray(gpu, data, [3, 4], { label: 'table' });
    const ids = Tensor.fromArray(gpu, [-4, 99], [2], { label: 'ids' });
    const y = embedding(table, ids);
    expectClose(await y.toArray(), embeddingRef(data, 4, [0, 2], null, 1), { atol: 0, rtol: 0 }, 'clamped');
    [table, ids, y].forEach((t) => t.release());
    expect(() => checkIds('ids', [0, 3], 3)).toThrow(/id 3 at index 1/);
  });

  it('rejects a table that is not [V, D], a position table of another width or too few positions', () => {
    const table = Tensor.zeros(gpu, [4, 8]);
    const ids = Tensor.zeros(gpu, [2, 5]);
    const flat = Tensor.zeros(gpu, [32]);
    const narrow = Tensor.zeros(gpu, [5, 4]);
    const short = Tensor.zeros(gpu, [4, 8]);
    expect(() => embedding(flat, ids)).toThrow(/shape \[32\], expected \[V, D\]/);
    expect(() => embedding(table, ids, { position: narrow })).toThrow(/shape \[5, 4\], expected \[P, 8\]/);
    expect(() => embedding(table, ids, { position: short })).toThrow(/5 positions, position table only 4/);
    [table, ids, flat, narrow, short].forEach((t) => t.release());
  });
});
