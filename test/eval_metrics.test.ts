// Evaluation metrics (src/eval/): the float64 eigen-decomposition and matrix square root, the Fréchet distance
// against closed forms, and edge density on images whose edges are counted by hand.
import { describe, expect, it } from 'vitest';
import { edgeDensity, sobelMagnitude, luminance } from '../src/eval/complexity.js';
import { frechetDistance, frechetDistanceOf, gaussianOf, sqrtmPsd, symmetricEigen } from '../src/eval/frechet.js';
import { seeded, seededNormal } from './helpers.js';

/** A random symmetric PSD matrix B·Bᵀ (+ ridge). */
function randomSpd(d: number, seed: number, ridge = 0): Float64Array {
  const b = seeded(d * d, seed);
  const a = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) a[i * d + j] += b[i * d + k] * b[j * d + k];
  for (let i = 0; i < d; i++) a[i * d + i] += ridge;
  return a;
}
const mm = (A: ArrayLike<number>, B: ArrayLike<number>, d: number) => {
  const o = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) o[i * d + j] += A[i * d + k] * B[k * d + j];
  return o;
};
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));

describe('symmetric eigen-decomposition and square root (float64)', () => {
  it('A = V Λ Vᵀ with orthonormal V; sqrtm(A)² = A; trace and determinant preserved', () => {
    for (const d of [1, 2, 7, 40]) {
      const A = randomSpd(d, d + 3);
      const { values, vectors: V } = symmetricEigen(A, d);
      const L = new Float64Array(d * d);
      for (let i = 0; i < d; i++) L[i * d + i] = values[i];
      const Vt = new Float64Array(d * d);
      for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) Vt[i * d + j] = V[j * d + i];
      const scale = Math.max(...A.map(Math.abs));
      expect(maxAbsDiff(mm(mm(V, L, d), Vt, d), A) / scale, `reconstruction d=${d}`).toBeLessThan(1e-12);
      const I = new Float64Array(d * d);
      for (let i = 0; i < d; i++) I[i * d + i] = 1;
      expect(maxAbsDiff(mm(Vt, V, d), I), `orthonormal d=${d}`).toBeLessThan(1e-12);
      let tr = 0;
      for (let i = 0; i < d; i++) tr += A[i * d + i];
      expect(Math.abs(values.reduce((s, v) => s + v, 0) - tr) / tr).toBeLessThan(1e-12);
      const S = sqrtmPsd(A, d);
      expect(maxAbsDiff(mm(S, S, d), A) / scale, `sqrtm² d=${d}`).toBeLessThan(1e-11);
    }
  });

  it('known eigenvalues: [[2, 1], [1, 2]] → 1, 3; a rank-deficient PSD matrix keeps its zero eigenvalue', () => {
    const { values } = symmetricEigen([2, 1, 1, 2], 2);
    expect(Array.from(values).sort()).toEqual([expect.closeTo(1, 14), expect.closeTo(3, 14)]);
    // u uᵀ with u = (1, 2, 2): eigenvalues 9, 0, 0; its square root is u uᵀ / 3.
    const u = [1, 2, 2];
    const R = u.flatMap((a) => u.map((b) => a * b));
    const S = sqrtmPsd(R, 3);
    expect(maxAbsDiff(S, R.map((x) => x / 3))).toBeLessThan(1e-12);
    expect(() => symmetricEigen([1, 2, 3, 4], 2)).toThrow(/not symmetric/);
  });
});

describe('Fréchet distance', () => {
  it('1-D: (μ₁ − μ₂)² + (σ₁ − σ₂)²; diagonal: Σ (√a − √b)² + ‖Δμ‖²', () => {
    const g = (m: number[], c: number[]) => ({ dim: m.length, mean: Float64Array.from(m), cov: Float64Array.from(c) });
    expect(frechetDistance(g([1], [4]), g([3], [9]))).toBeCloseTo(4 + 1, 12);
    const a = [1, 4, 0.25];
    const b = [9, 1, 0.25];
    const diag = (v: number[]) => v.flatMap((x, i) => v.map((_, j) => (i === j ? x : 0)));
    const want = (0 - 1) ** 2 + (2 - 0) ** 2 + a.reduce((s, x, i) => s + (Math.sqrt(x) - Math.sqrt(b[i])) ** 2, 0);
    expect(frechetDistance(g([0, 2, 5], diag(a)), g([1, 0, 5], diag(b)))).toBeCloseTo(want, 12);
  });

  it('non-commuting 2×2 covariances: Tr √(Σ₁Σ₂) = √(tr Σ₁Σ₂ + 2 √det Σ₁Σ₂)', () => {
    const s1 = [2, 0.7, 0.7, 1];
    const s2 = [1, -0.4, -0.4, 3];
    const p = mm(s1, s2, 2);
    const trSqrt = Math.sqrt(p[0] + p[3] + 2 * Math.sqrt(p[0] * p[3] - p[1] * p[2]));
    const want = 3 + 4 - 2 * trSqrt; // Tr Σ₁ + Tr Σ₂ − 2 Tr √(Σ₁Σ₂); means equal
    const g = (c: number[]) => ({ dim: 2, mean: new Float64Array(2), cov: Float64Array.from(c) });
    expect(frechetDistance(g(s1), g(s2))).toBeCloseTo(want, 12);
    expect(frechetDistance(g(s1), g(s1))).toBeCloseTo(0, 12);
  });

  it('from samples: unbiased covariance; same set → 0; a shifted set → the shift²; symmetric in its arguments', () => {
    const d = 16;
    const n = 300;
    const x = seededNormal(n * d, 7);
    const gx = gaussianOf(x, d);
    // unbiased covariance of column 0 and 1 by hand
    let m0 = 0, m1 = 0;
    for (let r = 0; r < n; r++) (m0 += x[r * d]), (m1 += x[r * d + 1]);
    m0 /= n;
    m1 /= n;
    let c01 = 0;
    for (let r = 0; r < n; r++) c01 += (x[r * d] - m0) * (x[r * d + 1] - m1);
    expect(gx.cov[1]).toBeCloseTo(c01 / (n - 1), 12);
    expect(Math.abs(frechetDistanceOf(x, x, d))).toBeLessThan(1e-9);
    const shifted = x.map((v, i) => v + (i % d === 3 ? 0.5 : 0));
    expect(frechetDistanceOf(x, shifted, d)).toBeCloseTo(0.25, 7); // the shift is added in f32
    const y = seededNormal(n * d, 8, 0.2, 1.5);
    const dxy = frechetDistanceOf(x, y, d);
    expect(dxy).toBeGreaterThan(1);
    expect(frechetDistanceOf(y, x, d)).toBeCloseTo(dxy, 8);
    expect(() => gaussianOf([1, 2, 3], 2)).toThrow(/rows of 2/);
  });
});

describe('edge density', () => {
  const img = (W: number, H: number, f: (x: number, y: number) => number) => {
    const data = new Uint8Array(W * H * 3);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data.fill(f(x, y), 3 * (y * W + x), 3 * (y * W + x) + 3);
    return { width: W, height: H, channels: 3, data };
  };
  it('flat → 0; a vertical black/white step → the two columns beside it; 2-row stripes → all rows but the outer two', () => {
    expect(edgeDensity(img(16, 16, () => 128))).toBe(0);
    // Step between columns 7 and 8: Sobel sees it at columns 7 and 8 only (|G| = 1 · 1 there, 0 elsewhere).
    const step = img(16, 16, (x) => (x < 8 ? 0 : 255));
    const m = sobelMagnitude(luminance(step), 16, 16);
    // Column 7: right neighbours 1, left 0 → Gx = (1 + 2 + 1) / 4 = 1, the step height; the same at column 8.
    expect(m[3 * 16 + 7]).toBeCloseTo(1, 12);
    expect(m[3 * 16 + 8]).toBeCloseTo(1, 12);
    expect(m[3 * 16 + 6]).toBe(0);
    expect(edgeDensity(step)).toBeCloseTo(2 / 16, 12);
    // A faint step (luminance 0.05) is below the 0.1 threshold.
    expect(edgeDensity(img(16, 16, (x) => (x < 8 ? 100 : 113)))).toBe(0);
    // Stripes two rows high (rows 0–1 black, 2–3 white, …): every row touches a boundary except the first and last,
    // whose outer neighbour is their replicated self. (A 1-pixel checkerboard would score 0: Sobel cancels on it.)
    expect(edgeDensity(img(8, 8, (_x, y) => (y % 4 < 2 ? 0 : 255)))).toBe(6 / 8);
  });
});

describe('evaluation classifier (GPU)', () => {
  it('cross-entropy gradient seed matches finite differences; training separates real emoji categories', async () => {
    const { testGpu } = await import('./helpers.js');
    const { ImageClassifier, trainClassifier, argmaxRows } = await import('../src/eval/classifier.js');
    const { Tape, Var, tidy } = await import('../src/autograd/tape.js');
    const { Tensor } = await import('../src/tensor.js');
    const { softmax } = await import('../src/kernels/softmax.js');
    const { readEmojiCatalog, loadEmojiImage } = await import('../src/datasets/emoji/files.js');
    const gpu = await testGpu();
    try {
      const model = new ImageClassifier(gpu, { channels: [8, 16], classes: 3, groups: 4 });
      model.initRandom({ seed: 4 });
      // 16×16 versions of three fixture emoji of different categories, labels 0, 1, 2.
      const items = (await readEmojiCatalog('test/fixtures/emoji')).filter((i) => ['1F600', '1F34E', '1F1EF-1F1F5'].includes(i.id));
      const images = new Float32Array(3 * 768);
      for (const [n, it] of items.entries()) {
        const img = await loadEmojiImage('test/fixtures/emoji', it);
        for (let c = 0; c < 3; c++) for (let p = 0; p < 256; p++) images[n * 768 + c * 256 + p] = (2 * img.data[3 * ((4 * (p >> 4)) * 64 + 4 * (p & 15)) + c]) / 255 - 1;
      }
      const labels = [0, 1, 2];
      // CE(head.bias) on the host from GPU probabilities vs the seeded backward.
      const ce = async (bias: Float32Array) => {
        const p = model.head.bias!;
        const old = p.var!;
        p.var = new Var(Tensor.fromArray(gpu, bias, [3]), true, 'head.bias');
        try {
          const z = tidy(() => model.logits(new Var(Tensor.fromArray(gpu, images, [3, 3, 16, 16]))));
          const pr = await softmax(z.value).toArray();
          return -labels.reduce((s, l, b) => s + Math.log(pr[b * 3 + l]), 0) / 3;
        } finally {
          p.var.dispose();
          p.var = old;
        }
      };
      const tape = new Tape();
      const z = tape.record(() => tidy(() => model.logits(new Var(Tensor.fromArray(gpu, images, [3, 3, 16, 16])))));
      const pr = await softmax(z.value).toArray();
      const seed = Float32Array.from(pr, (v, i) => (v - (labels[Math.floor(i / 3)] === i % 3 ? 1 : 0)) / 3);
      tape.backward(z, Tensor.fromArray(gpu, seed, [3, 3]));
      const g = await model.head.bias!.v.grad!.toArray();
      const b0 = await model.head.bias!.v.value.toArray();
      for (let k = 0; k < 3; k++) {
        const plus = b0.slice();
        const minus = b0.slice();
        plus[k] += 1e-2;
        minus[k] -= 1e-2;
        const fd = ((await ce(plus)) - (await ce(minus))) / (plus[k] - minus[k]);
        expect(Math.abs(g[k] - fd), `dCE/dbias[${k}]: ${g[k]} vs ${fd}`).toBeLessThan(2e-3);
      }
      model.head.bias!.v.zeroGrad();
      for (const p of model.parameters.values()) p.v.zeroGrad();
      const losses = await trainClassifier(model, images, [3, 3, 16, 16], labels, { steps: 40, batch: 3, lr: 5e-3, logEvery: 10 });
      console.log(`  classifier CE ${losses.map((l) => l.toFixed(3)).join(' → ')}`);
      expect(losses.at(-1)!).toBeLessThan(losses[0]);
      const { features, probabilities } = await model.evaluate(images, [3, 3, 16, 16], 2);
      expect(features.length).toBe(3 * 16);
      expect(argmaxRows(probabilities, 3)).toEqual(labels);
      model.dispose();
    } finally {
      await gpu.destroy();
    }
  });
});
