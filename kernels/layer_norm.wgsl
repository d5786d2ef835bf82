// Layer normalization over the last dim, with optional affine weight / bias, and its backward.
// x is [M, D] (M rows = the product of the leading dims):
//   y = (x − μ_m)·rstd_m·w_d + b_d,  rstd = 1/sqrt(var + eps), var biased.
//   forward:  a segment of T threads per row (T a power of two, R = WG / T rows per workgroup); two passes over
//             the row (mean, then the centered variance: no E[x²] − E[x]² cancellation), then y. The second and
//             third reads of a row hit the cache; DRAM sees x once.
// Backward (x̂ = (x − μ)·rstd, g = dy·w):
//   bwd_dx:          dx = rstd·(g − (Σ_d g + x̂·Σ_d g·x̂)/D), per row as in the forward.
//   bwd_params:      dw_d = Σ_m dy·x̂, db_d = Σ_m dy: wgX columns × wgY row lanes per workgroup, the rows split into
//                    `chunks` → partial[chunk·2D + d] (dw) and partial[chunk·2D + D + d] (db).
//   bwd_params_sum:  sums the chunk partials into dweight / dbias.
// HAS_W / HAS_B select the affine terms; a missing weight / bias binding is a placeholder that is never accessed.
// Workgroups are addressed on a 2-D grid (flat = wid.y·nwg.x + wid.x).

override WG: u32 = 256u;    // power of two
override HAS_W: u32 = 0u;
override HAS_B: u32 = 0u;

struct Params {
  M: u32,          // rows
  D: u32,          // row length
  T: u32,          // threads per row (power of two, <= WG)
  R: u32,          // rows per workgroup (WG / T)
  eps: f32,
  wgX: u32,        // bwd_params: columns per workgroup (power of two)
  chunks: u32,     // bwd_params: workgroups splitting the rows
  chunkRows: u32,  // bwd_params: rows per chunk
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> weight: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> dy: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<T>;
@group(0) @binding(6) var<storage, read_write> mean: array<f32>;
@group(0) @binding(7) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<T>;
@group(0) @binding(9) var<storage, read_write> partial: array<f32>;
@group(0) @binding(10) var<storage, read_write> dweight: array<T>;
@group(0) @binding(11) var<storage, read_write> dbias: array<T>;

var<workgroup> red0: array<f32, WG>;
var<workgroup> red1: array<f32, WG>;

fn flatId(wid: vec3u, nwg: vec3u) -> u32 { return wid.y * nwg.x + wid.x; }

// Sums (a, b) over the `span` threads of each aligned segment (t = position in the segment, stride = distance
// between a segment's threads in lid); every thread gets its segment's sums. Call from uniform control flow with a
// uniform span (a run-time trip count: lavapipe compiles unrolled barrier loops very slowly).
fn segmentSum2(lid: u32, t: u32, span: u32, stride: u32, a: f32, b: f32) -> vec2f {
  red0[lid] = a;
  red1[lid] = b;
  workgroupBarrier();
  for (var s = span / 2u; s > 0u; s >>= 1u) {
    if (t < s) {
      red0[lid] += red0[lid + s * stride];
      red1[lid] += red1[lid + s * stride];
    }
    workgroupBarrier();
  }
  let first = lid - t * stride;
  let out = vec2f(red0[first], red1[first]);
  workgroupBarrier();  // the arrays are reused by the next reduction
  return out;
}

fn affine(v: f32, d: u32) -> f32 {
  var o = v;
  if (HAS_W == 1u) { o *= f32(weight[d]); }
  if (HAS_B == 1u) { o += f32(bias[d]); }
  return o;
}

// Threads t, t + T, t + 2T, ... of a row, four loads in flight per step.

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_index) lid: u32) {
  let flat = flatId(wid, nwg);
  // Whole workgroups past the grid leave together, so the barriers stay in uniform control flow.
  if (flat * params.R >= params.M) { return; }
  let TPR = params.T;
  let D = params.D;
  let t = lid % TPR;
  let row = flat * params.R + lid / TPR;
  // Rows past M (last workgroup) read nothing but still take part in the barriers.
  let live = row < params.M;
  let base = row * D;
  var s = 0.0;
  if (live) {
    for (var d = t; d < D; d += 4u * TPR) {
      // Lanes past the row are set to 0 explicitly: a var declared in a loop is not reliably re-zeroed per
      // iteration (Tint → SPIR-V on lavapipe keeps the previous iteration's values).
      var v: array<f32, 4>;
      for (var u = 0u; u < 4u; u++) {
        if (d + u * TPR < D) { v[u] = f32(x[base + d + u * TPR]); } else { v[u] = 0.0; }
      }
      s += (v[0] + v[1]) + (v[2] + v[3]);
    }
  }
  let mu = segmentSum2(lid, t, TPR, 1u, s, 0.0).x / f32(D);
  var q = 0.0;
  if (live) {
    for (var d = t; d < D; d += 4u * TPR) {
      for (var u = 0u; u < 4u; u++) {
        if (d + u * TPR < D) {
          let e = f32(x[base + d + u * TPR]) - mu;
          q += e * e;
        }
      }
    }
  }
  let rs = inverseSqrt(segmentSum2(lid, t, TPR, 1u, q, 0.0).x / f32(D) + params.eps);
  if (!live) { return; }
  if (t == 0u) {
    mean[row] = mu;
    rstd[row] = rs;
  }
  for (var d = t; d < D; d += 4u * TPR) {
    var v: array<f32, 4>;
    for (var u = 0u; u < 4u; u++) {
      if (d + u * TPR < D) { v[u] = f32(x[base + d + u * TPR]); }
    }
    for (var u = 0u; u < 4u; u++) {
      let k = d + u * TPR;
      if (k < D) { y[base + k] = toT(affine((v[u] - mu) * rs, k)); }
    }
  }
}

@compute @workgroup_size(WG)
fn bwd_dx(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_index) lid: u32) {
  let flat = flatId(wid, nwg);
  if (flat * params.R >= params.M) { return; }
  let TPR = params.T;
  let D = params.D;
  let t = lid % TPR;
  let row = flat * params.R + lid / TPR;
  let live = row < params.M;
  let base = row * D;
  var mu = 0.0;
  var rs = 0.0;
  if (live) {
    mu = mean[row];
    rs = rstd[row];
  }
  var s0 = 0.0;
  var s1 = 0.0;
  if (live) {
    for (var d = t; d < D; d += 4u * TPR) {
      var v: array<f32, 4>;
      var g: array<f32, 4>;
      for (var u = 0u; u < 4u; u++) {
        let k = d + u * TPR;
        if (k < D) {
          v[u] = f32(x[base + k]);
          g[u] = f32(dy[base + k]);
          if (HAS_W == 1u) { g[u] *= f32(weight[k]); }
        } else {
          v[u] = mu;
          g[u] = 0.0;
        }
      }
      for (var u = 0u; u < 4u; u++) {
        // Lanes past the row hold g = 0, x = μ and add nothing (set explicitly, as in forward).
        s0 += g[u];
        s1 += g[u] * (v[u] - mu) * rs;
      }
    }
  }
  let S = segmentSum2(lid, t, TPR, 1u, s0, s1) / f32(D);
  if (!live) { return; }
  for (var d = t; d < D; d += 4u * TPR) {
    var v: array<f32, 4>;
    var g: array<f32, 4>;
    for (var u = 0u; u < 4u; u++) {
      let k = d + u * TPR;
      if (k < D) {
        v[u] = f32(x[base + k]);
        g[u] = f32(dy[base + k]);
        if (HAS_W == 1u) { g[u] *= f32(weight[k]); }
      }
    }
    for (var u = 0u; u < 4u; u++) {
      let k = d + u * TPR;
      if (k < D) { dx[base + k] = toT(rs * (g[u] - S.x - (v[u] - mu) * rs * S.y)); }
    }
  }
}

@compute @workgroup_size(WG)
fn bwd_params(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let flat = flatId(wid, nwg);
  let wgX = params.wgX;
  let tiles = (params.D + wgX - 1u) / wgX;
  let chunk = flat / tiles;
  if (chunk >= params.chunks) { return; }
  let wgY = WG / wgX;
  let col = lid % wgX;
  let lane = lid / wgX;
  let d = (flat % tiles) * wgX + col;
  var sw = 0.0;
  var sb = 0.0;
  if (d < params.D) {
    let m0 = chunk * params.chunkRows;
    let m1 = min(params.M, m0 + params.chunkRows);
    for (var m = m0 + lane; m < m1; m += wgY) {
      let g = f32(dy[m * params.D + d]);
      sw += g * (f32(x[m * params.D + d]) - mean[m]) * rstd[m];
      sb += g;
    }
  }
  // Lanes of one column are wgX apart in lid.
  let s = segmentSum2(lid, lane, wgY, wgX, sw, sb);
  if (lane == 0u && d < params.D) {
    partial[chunk * 2u * params.D + d] = s.x;
    partial[chunk * 2u * params.D + params.D + d] = s.y;
  }
}

@compute @workgroup_size(WG)
fn bwd_params_sum(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                  @builtin(local_invocation_index) lid: u32) {
  let d = flatId(wid, nwg) * WG + lid;
  if (d >= params.D) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var i = 0u; i < params.chunks; i++) {
    sw += partial[i * 2u * params.D + d];
    sb += partial[i * 2u * params.D + params.D + d];
  }
  if (HAS_W == 1u) { dweight[d] = toT(sw); }
  if (HAS_B == 1u) { dbias[d] = toT(sb); }
}
