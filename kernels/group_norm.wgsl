// Group normalization over NCHW (PyTorch semantics) with an optional fused SiLU, and its backward.
// x is [B, C, HW] (HW = H·W, or any trailing spatial size); G groups of Cg = C/G contiguous channels, so group
// grp = b·G + g is the contiguous range [grp·N, grp·N + N) with N = Cg·HW.
//   y = act((x − μ_grp)·rstd_grp·γ_c + β_c),  rstd = 1/sqrt(var + eps), var biased;  act = SiLU or identity.
//
// The op is memory bound and B·G is small (32 in SDXL), so each group is split into `chunks` workgroups:
//   stats:      per (group, chunk): count/mean/M2 of the chunk (per-thread Welford, Chan merge across threads)
//               → partial[2·(grp·chunks + chunk) + {0, 1}] = (mean, M2). As stable as a two-pass method (no
//               E[x²] − E[x]² cancellation): a group with mean 1000 and std 1 keeps f32 accuracy.
//   apply:      per (group, chunk): merges the group's partials (Chan), writes mean/rstd (chunk 0), then y.
// Backward (dz = dy·act'(z), x̂ = (x − μ)·rstd; sums over the group / channel):
//   dβ_c = Σ_{b,hw} dz,  dγ_c = Σ_{b,hw} dz·x̂,
//   dx = rstd·(γ_c·dz − (S0 + x̂·S1)/N)  with  S0 = Σ_group γ_c·dz,  S1 = Σ_group γ_c·dz·x̂.
//   bwd_reduce: per ((b, c) row of HW, row chunk): (Σ dz, Σ dz·x̂) → partial[2·(row·rowChunks + rc) + {0, 1}].
//   bwd_params: per channel c: dβ_c, dγ_c summed over b and row chunks.
//   bwd_apply:  per (group, chunk): S0, S1 from the channel partials, then dx.
// If SiLU was fused, the pre-activation z is recomputed from the saved mean/rstd.
// Workgroups are addressed on a 2-D grid (flat = wid.y·nwg.x + wid.x) so more than 65535 fit one dispatch.

override WG: u32 = 256u;   // workgroup size, power of two
override SILU: u32 = 0u;   // 1: fused SiLU epilogue

struct Params {
  B: u32,
  C: u32,
  HW: u32,
  G: u32,
  Cg: u32,           // channels per group (C / G)
  N: u32,            // elements per group (Cg·HW)
  chunks: u32,       // workgroups per group (stats, apply, bwd_apply)
  chunkLen: u32,     // elements of a group per chunk
  rowChunks: u32,    // workgroups per (b, c) row (bwd_reduce)
  rowChunkLen: u32,  // elements of a row per row chunk
  stepC: u32,        // WG / HW: channel advance when an element index advances by WG
  stepR: u32,        // WG % HW: the matching advance within the channel
  eps: f32,
  treeTop: u32,      // WG / 2: first stride of the full workgroup trees (see reduceMoments)
  mergeTop: u32,     // first stride of the tree merging a group's `chunks` partials (pow2ceil(min(chunks, WG)) / 2)
  sumTop: u32,       // same for bwd_apply's Cg·rowChunks channel partials
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read> dy: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<T>;
@group(0) @binding(6) var<storage, read_write> partial: array<f32>;
@group(0) @binding(7) var<storage, read_write> mean: array<f32>;
@group(0) @binding(8) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(9) var<storage, read_write> dx: array<T>;
@group(0) @binding(10) var<storage, read_write> dgamma: array<T>;
@group(0) @binding(11) var<storage, read_write> dbeta: array<T>;

var<workgroup> sn: array<f32, WG>;
var<workgroup> sm: array<f32, WG>;
var<workgroup> sq: array<f32, WG>;

// Count, mean and sum of squared deviations of a set of values.
struct Moments {
  n: f32,
  m: f32,
  q: f32,
};

// Welford step: adds one value.
fn push(a: Moments, v: f32) -> Moments {
  let n = a.n + 1.0;
  let d = v - a.m;
  let m = a.m + d / n;
  return Moments(n, m, a.q + d * (v - m));
}

// Chan et al. merge of two sets.
fn merge(a: Moments, b: Moments) -> Moments {
  let n = a.n + b.n;
  if (n == 0.0) { return a; }
  let d = b.m - a.m;
  let w = b.n / n;
  return Moments(n, a.m + d * w, a.q + b.q + d * d * a.n * w);
}

// Merges the moments of threads [0, 2·top) (the others must hold none); all threads get the result. Call from
// uniform control flow with a uniform `top`. The trip count comes from a uniform rather than the WG override: a
// constant count gets the loop unrolled, and lavapipe's compile time grows steeply with unrolled barriers (seconds
// per entry point). A top below WG / 2 shortens the tree when only a few threads hold partials.
fn reduceMoments(lid: u32, top: u32, mo: Moments) -> Moments {
  sn[lid] = mo.n;
  sm[lid] = mo.m;
  sq[lid] = mo.q;
  workgroupBarrier();
  for (var s = top; s > 0u; s >>= 1u) {
    if (lid < s) {
      let r = merge(Moments(sn[lid], sm[lid], sq[lid]), Moments(sn[lid + s], sm[lid + s], sq[lid + s]));
      sn[lid] = r.n;
      sm[lid] = r.m;
      sq[lid] = r.q;
    }
    workgroupBarrier();
  }
  let out = Moments(sn[0], sm[0], sq[0]);
  workgroupBarrier();  // the arrays are reused by the caller's next reduction
  return out;
}

// Sums two values over threads [0, 2·top) (the others must hold 0); all threads get the result. As reduceMoments.
fn reduceSum2(lid: u32, top: u32, a: f32, b: f32) -> vec2f {
  sm[lid] = a;
  sq[lid] = b;
  workgroupBarrier();
  for (var s = top; s > 0u; s >>= 1u) {
    if (lid < s) {
      sm[lid] += sm[lid + s];
      sq[lid] += sq[lid + s];
    }
    workgroupBarrier();
  }
  let out = vec2f(sm[0], sq[0]);
  workgroupBarrier();
  return out;
}

fn sigmoid(z: f32) -> f32 { return 1.0 / (1.0 + exp(-z)); }

fn act(z: f32) -> f32 {
  if (SILU == 1u) { return z * sigmoid(z); }
  return z;
}

// d act / dz
fn actGrad(z: f32) -> f32 {
  if (SILU == 1u) {
    let s = sigmoid(z);
    return s * (1.0 + z * (1.0 - s));
  }
  return 1.0;
}

fn flatId(wid: vec3u, nwg: vec3u) -> u32 { return wid.y * nwg.x + wid.x; }

// Each thread walks elements j0 + lid + k·WG of its chunk, four loads in flight per step (memory-level
// parallelism for the latency-bound loads), with bounds checks at the chunk's end.

@compute @workgroup_size(WG)
fn stats(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
         @builtin(local_invocation_index) lid: u32) {
  let flat = flatId(wid, nwg);
  let grp = flat / params.chunks;
  // Whole workgroups past the grid leave together, so the barriers below stay in uniform control flow.
  if (grp >= params.B * params.G) { return; }
  let chunk = flat % params.chunks;
  let base = grp * params.N;
  let j0 = chunk * params.chunkLen;
  let j1 = min(params.N, j0 + params.chunkLen);
  var mo = Moments(0.0, 0.0, 0.0);
  for (var j = j0 + lid; j < j1; j += 4u * WG) {
    var v: array<f32, 4>;
    for (var u = 0u; u < 4u; u++) {
      let k = j + u * WG;
      if (k < j1) { v[u] = f32(x[base + k]); }
    }
    for (var u = 0u; u < 4u; u++) {
      if (j + u * WG < j1) { mo = push(mo, v[u]); }
    }
  }
  let r = reduceMoments(lid, params.treeTop, mo);
  if (lid == 0u) {
    partial[2u * flat] = r.m;
    partial[2u * flat + 1u] = r.q;
  }
}

// Moments of group grp from its chunk partials (chunk i holds min(chunkLen, N − i·chunkLen) elements).
fn groupMoments(lid: u32, grp: u32) -> Moments {
  var mo = Moments(0.0, 0.0, 0.0);
  for (var i = lid; i < params.chunks; i += WG) {
    let n = f32(min(params.chunkLen, params.N - i * params.chunkLen));
    let p = 2u * (grp * params.chunks + i);
    mo = merge(mo, Moments(n, partial[p], partial[p + 1u]));
  }
  return reduceMoments(lid, params.mergeTop, mo);
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
         @builtin(local_invocation_index) lid: u32) {
  let flat = flatId(wid, nwg);
  let grp = flat / params.chunks;
  if (grp >= params.B * params.G) { return; }
  let chunk = flat % params.chunks;
  let mo = groupMoments(lid, grp);
  let mu = mo.m;
  let rs = inverseSqrt(mo.q / f32(params.N) + params.eps);
  if (chunk == 0u && lid == 0u) {
    mean[grp] = mu;
    rstd[grp] = rs;
  }
  let base = grp * params.N;
  let j0 = chunk * params.chunkLen;
  let j1 = min(params.N, j0 + params.chunkLen);
  // Channel c and offset r within it of element j, advanced incrementally (no division per element).
  let jt = j0 + lid;
  var c = (grp % params.G) * params.Cg + jt / params.HW;
  var r = jt % params.HW;
  for (var j = jt; j < j1; j += 4u * WG) {
    var v: array<f32, 4>;
    var ga: array<f32, 4>;
    var be: array<f32, 4>;
    for (var u = 0u; u < 4u; u++) {
      let k = j + u * WG;
      if (k < j1) {
        v[u] = f32(x[base + k]);
        ga[u] = f32(gamma[c]);
        be[u] = f32(beta[c]);
      }
      r += params.stepR;
      c += params.stepC;
      if (r >= params.HW) { r -= params.HW; c += 1u; }
    }
    for (var u = 0u; u < 4u; u++) {
      let k = j + u * WG;
      // (x − μ) first: folding μ into the shift (x·a + (β − μ·a)) would cancel when |μ| ≫ std.
      if (k < j1) { y[base + k] = toT(act((v[u] - mu) * (rs * ga[u]) + be[u])); }
    }
  }
}

@compute @workgroup_size(WG)
fn bwd_reduce(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let flat = flatId(wid, nwg);
  let row = flat / params.rowChunks;  // row = b·C + c
  if (row >= params.B * params.C) { return; }
  let rc = flat % params.rowChunks;
  let c = row % params.C;
  let grp = (row / params.C) * params.G + c / params.Cg;
  let mu = mean[grp];
  let rs = rstd[grp];
  let ga = f32(gamma[c]);
  let be = f32(beta[c]);
  let base = row * params.HW;
  let j0 = rc * params.rowChunkLen;
  let j1 = min(params.HW, j0 + params.rowChunkLen);
  var s0 = 0.0;
  var s1 = 0.0;
  for (var j = j0 + lid; j < j1; j += 4u * WG) {
    var v: array<f32, 4>;
    var g: array<f32, 4>;
    for (var u = 0u; u < 4u; u++) {
      let k = j + u * WG;
      if (k < j1) {
        v[u] = f32(x[base + k]);
        g[u] = f32(dy[base + k]);
      }
    }
    for (var u = 0u; u < 4u; u++) {
      if (j + u * WG < j1) {
        let xh = (v[u] - mu) * rs;
        let dz = g[u] * actGrad(xh * ga + be);
        s0 += dz;
        s1 += dz * xh;
      }
    }
  }
  let s = reduceSum2(lid, params.treeTop, s0, s1);
  if (lid == 0u) {
    partial[2u * flat] = s.x;
    partial[2u * flat + 1u] = s.y;
  }
}

@compute @workgroup_size(WG)
fn bwd_params(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let c = flatId(wid, nwg) * WG + lid;
  if (c >= params.C) { return; }
  var s0 = 0.0;
  var s1 = 0.0;
  for (var b = 0u; b < params.B; b++) {
    let p0 = (b * params.C + c) * params.rowChunks;
    for (var i = 0u; i < params.rowChunks; i++) {
      s0 += partial[2u * (p0 + i)];
      s1 += partial[2u * (p0 + i) + 1u];
    }
  }
  dbeta[c] = toT(s0);
  dgamma[c] = toT(s1);
}

@compute @workgroup_size(WG)
fn bwd_apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
             @builtin(local_invocation_index) lid: u32) {
  let flat = flatId(wid, nwg);
  let grp = flat / params.chunks;
  if (grp >= params.B * params.G) { return; }
  let chunk = flat % params.chunks;
  let c0 = (grp % params.G) * params.Cg;
  // The group's channels are rows b·C + c0 .. + Cg, so their partials are one contiguous run.
  let p0 = ((grp / params.G) * params.C + c0) * params.rowChunks;
  var t0 = 0.0;
  var t1 = 0.0;
  for (var k = lid; k < params.Cg * params.rowChunks; k += WG) {
    let ga = f32(gamma[c0 + k / params.rowChunks]);
    t0 += ga * partial[2u * (p0 + k)];
    t1 += ga * partial[2u * (p0 + k) + 1u];
  }
  let S = reduceSum2(lid, params.sumTop, t0, t1) / f32(params.N);
  let mu = mean[grp];
  let rs = rstd[grp];
  let base = grp * params.N;
  let j0 = chunk * params.chunkLen;
  let j1 = min(params.N, j0 + params.chunkLen);
  let jt = j0 + lid;
  var c = c0 + jt / params.HW;
  var r = jt % params.HW;
  for (var j = jt; j < j1; j += 4u * WG) {
    var v: array<f32, 4>;
    var g: array<f32, 4>;
    var ga: array<f32, 4>;
    var be: array<f32, 4>;
    for (var u = 0u; u < 4u; u++) {
      let k = j + u * WG;
      if (k < j1) {
        v[u] = f32(x[base + k]);
        g[u] = f32(dy[base + k]);
        ga[u] = f32(gamma[c]);
        be[u] = f32(beta[c]);
      }
      r += params.stepR;
      c += params.stepC;
      if (r >= params.HW) { r -= params.HW; c += 1u; }
    }
    for (var u = 0u; u < 4u; u++) {
      let k = j + u * WG;
      if (k < j1) {
        let xh = (v[u] - mu) * rs;
        let dz = g[u] * actGrad(xh * ga[u] + be[u]);
        dx[base + k] = toT(rs * (ga[u] * dz - S.x - xh * S.y));
      }
    }
  }
}
