// Fréchet distance between two feature sets modelled as Gaussians (the FID formula), in float64 on the host:
//   d² = ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁ Σ₂)^{1/2}
// The last trace is taken in symmetric form, Tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2} (the same eigenvalues as Σ₁Σ₂), so only
// symmetric positive semi-definite matrices are decomposed: cyclic Jacobi rotations, which converge for any symmetric
// matrix and keep the eigenvectors orthonormal; eigenvalues that rounding made slightly negative count as 0.
// Covariances are the unbiased ones (n − 1), as numpy.cov and pytorch-fid use.

export interface Gaussian {
  dim: number;
  mean: Float64Array;
  /** Row-major dim × dim. */
  cov: Float64Array;
}

/** Mean and unbiased covariance of n rows of `dim` features (row-major). */
export function gaussianOf(features: ArrayLike<number>, dim: number): Gaussian {
  if (!Number.isInteger(dim) || dim < 1) throw new Error(`gaussianOf: dim must be a positive integer, got ${dim}`);
  if (features.length % dim) throw new Error(`gaussianOf: ${features.length} values are not rows of ${dim}`);
  const n = features.length / dim;
  if (n < 2) throw new Error(`gaussianOf: need at least 2 feature rows for a covariance, got ${n}`);
  const mean = new Float64Array(dim);
  for (let r = 0; r < n; r++) for (let i = 0; i < dim; i++) mean[i] += features[r * dim + i];
  for (let i = 0; i < dim; i++) mean[i] /= n;
  const cov = new Float64Array(dim * dim);
  const row = new Float64Array(dim);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < dim; i++) row[i] = features[r * dim + i] - mean[i];
    for (let i = 0; i < dim; i++) {
      const a = row[i];
      if (a === 0) continue;
      for (let j = i; j < dim; j++) cov[i * dim + j] += a * row[j];
    }
  }
  for (let i = 0; i < dim; i++)
    for (let j = i; j < dim; j++) {
      const v = cov[i * dim + j] / (n - 1);
      cov[i * dim + j] = v;
      cov[j * dim + i] = v;
    }
  return { dim, mean, cov };
}

/**
 * Eigen-decomposition of a symmetric matrix (row-major d × d): A = V · diag(values) · Vᵀ, the columns of V (row-major,
 * V[i·d + k] = component i of eigenvector k) orthonormal. Cyclic Jacobi until the off-diagonal mass is below
 * 1e-30 of the total (or 100 sweeps).
 */
export function symmetricEigen(A: ArrayLike<number>, d: number): { values: Float64Array; vectors: Float64Array } {
  if (A.length !== d * d) throw new Error(`symmetricEigen: ${A.length} values for a ${d}×${d} matrix`);
  const a = Float64Array.from(A);
  for (let i = 0; i < d; i++)
    for (let j = i + 1; j < d; j++) {
      const x = a[i * d + j];
      const y = a[j * d + i];
      if (Math.abs(x - y) > 1e-9 * (Math.abs(x) + Math.abs(y)) + 1e-300) throw new Error(`symmetricEigen: matrix is not symmetric at (${i}, ${j}): ${x} vs ${y}`);
      a[i * d + j] = a[j * d + i] = (x + y) / 2;
    }
  const v = new Float64Array(d * d);
  for (let i = 0; i < d; i++) v[i * d + i] = 1;
  let total = 0;
  for (const x of a) total += x * x;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let i = 0; i < d; i++) for (let j = i + 1; j < d; j++) off += 2 * a[i * d + j] ** 2;
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < d; p++)
      for (let q = p + 1; q < d; q++) {
        const apq = a[p * d + q];
        if (apq === 0) continue;
        const app = a[p * d + p];
        const aqq = a[q * d + q];
        // Rotation angle that zeroes a[p][q] (Numerical Recipes' stable form).
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < d; k++) {
          const akp = a[k * d + p];
          const akq = a[k * d + q];
          a[k * d + p] = c * akp - s * akq;
          a[k * d + q] = s * akp + c * akq;
        }
        for (let k = 0; k < d; k++) {
          const apk = a[p * d + k];
          const aqk = a[q * d + k];
          a[p * d + k] = c * apk - s * aqk;
          a[q * d + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < d; k++) {
          const vkp = v[k * d + p];
          const vkq = v[k * d + q];
          v[k * d + p] = c * vkp - s * vkq;
          v[k * d + q] = s * vkp + c * vkq;
        }
      }
  }
  const values = new Float64Array(d);
  for (let i = 0; i < d; i++) values[i] = a[i * d + i];
  return { values, vectors: v };
}

/** The PSD square root V · diag(√max(λ, 0)) · Vᵀ of a symmetric matrix. */
export function sqrtmPsd(A: ArrayLike<number>, d: number): Float64Array {
  const { values, vectors: V } = symmetricEigen(A, d);
  const out = new Float64Array(d * d);
  for (let k = 0; k < d; k++) {
    const r = Math.sqrt(Math.max(0, values[k]));
    if (r === 0) continue;
    for (let i = 0; i < d; i++) {
      const vi = V[i * d + k] * r;
      if (vi === 0) continue;
      for (let j = 0; j < d; j++) out[i * d + j] += vi * V[j * d + k];
    }
  }
  return out;
}

function matmul(A: Float64Array, B: Float64Array, d: number): Float64Array {
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let k = 0; k < d; k++) {
      const a = A[i * d + k];
      if (a === 0) continue;
      for (let j = 0; j < d; j++) out[i * d + j] += a * B[k * d + j];
    }
  return out;
}

/** Fréchet distance d² between two Gaussians (header formula). */
export function frechetDistance(g1: Gaussian, g2: Gaussian): number {
  const d = g1.dim;
  if (g2.dim !== d) throw new Error(`frechetDistance: feature dims ${d} and ${g2.dim} differ`);
  let meanTerm = 0;
  for (let i = 0; i < d; i++) meanTerm += (g1.mean[i] - g2.mean[i]) ** 2;
  let tr = 0;
  for (let i = 0; i < d; i++) tr += g1.cov[i * d + i] + g2.cov[i * d + i];
  const s1 = sqrtmPsd(g1.cov, d);
  const m = matmul(matmul(s1, g2.cov, d), s1, d);
  // Symmetrise against rounding before the decomposition.
  for (let i = 0; i < d; i++)
    for (let j = i + 1; j < d; j++) m[i * d + j] = m[j * d + i] = (m[i * d + j] + m[j * d + i]) / 2;
  const { values } = symmetricEigen(m, d);
  let trSqrt = 0;
  for (const l of values) trSqrt += Math.sqrt(Math.max(0, l));
  return meanTerm + tr - 2 * trSqrt;
}

/** Fréchet distance of two feature sets (rows of `dim`). */
export function frechetDistanceOf(a: ArrayLike<number>, b: ArrayLike<number>, dim: number): number {
  return frechetDistance(gaussianOf(a, dim), gaussianOf(b, dim));
}
