// Softmax over the last axis, x viewed as [R, C] rows.
//   softmax:          y = exp(x − max) / Σ exp(x − max)   (max-subtracted: inputs of ±1e4 stay finite)
//   softmax_backward: dx = y ⊙ (dy − Σ y ⊙ dy)
// Each row is handled by `tpr` threads (a power of two; WG / tpr rows per workgroup), so a row of 77 does not idle
// a whole workgroup and a row of 4096 gets one. Thread t of a row takes the strided elements t, t + tpr, ...; the
// first VPT of them stay in registers (VPT is a const from the wrapper's prelude), so rows up to tpr·VPT are read
// once; elements beyond that are re-read from memory. Row max / sum combine in workgroup memory by a tree within
// each row's tpr-wide segment. Storage is T (f32 or f16); the math is f32 in both (an f16 row of ±65504 is
// max-subtracted in f32, so exp never overflows).

override WG: u32 = 256u;   // power of two

struct Params {
  R: u32,      // rows
  C: u32,      // row length
  tpr: u32,    // threads per row (power of two, divides WG)
  _pad: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> y: array<T>;
@group(0) @binding(3) var<storage, read> dy: array<T>;
@group(0) @binding(4) var<storage, read_write> out: array<T>;

var<workgroup> red: array<f32, WG>;

// Lowest finite f32: the identity of max that cannot turn into inf − inf.
const LOWEST: f32 = -0x1.fffffep+127f;

// Reductions over the tpr lanes of each row; every thread of the workgroup must call them (they hold barriers).
fn rowMax(lid: u32, t: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = params.tpr / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[lid - t];
  workgroupBarrier();  // red is reused by the next reduction
  return r;
}

fn rowSum(lid: u32, t: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = params.tpr / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[lid - t];
  workgroupBarrier();
  return r;
}

struct Lane {
  base: u32,   // first element of the row
  t: u32,      // lane within the row
  valid: bool, // the row exists (the last workgroup may hold fewer rows)
};

fn lane(wid: vec3u, nwg: vec3u, lid: u32) -> Lane {
  let tpr = params.tpr;
  let row = (wid.y * nwg.x + wid.x) * (WG / tpr) + lid / tpr;
  return Lane(row * params.C, lid % tpr, row < params.R);
}

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_index) lid: u32) {
  let L = lane(wid, nwg, lid);
  let C = select(0u, params.C, L.valid);
  let tpr = params.tpr;
  let tail = L.t + VPT * tpr;
  var v: array<f32, VPT>;
  var m = LOWEST;
  for (var k = 0u; k < VPT; k++) {
    let c = L.t + k * tpr;
    v[k] = LOWEST;
    if (c < C) { v[k] = f32(x[L.base + c]); }
    m = max(m, v[k]);
  }
  for (var c = tail; c < C; c += tpr) { m = max(m, f32(x[L.base + c])); }
  m = rowMax(lid, L.t, m);

  var s = 0.0;
  for (var k = 0u; k < VPT; k++) {
    let c = L.t + k * tpr;
    v[k] = select(0.0, exp(v[k] - m), c < C);
    s += v[k];
  }
  for (var c = tail; c < C; c += tpr) { s += exp(f32(x[L.base + c]) - m); }
  let inv = 1.0 / rowSum(lid, L.t, s);

  for (var k = 0u; k < VPT; k++) {
    let c = L.t + k * tpr;
    if (c < C) { out[L.base + c] = toT(v[k] * inv); }
  }
  for (var c = tail; c < C; c += tpr) { out[L.base + c] = toT(exp(f32(x[L.base + c]) - m) * inv); }
}

@compute @workgroup_size(WG)
fn softmax_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                    @builtin(local_invocation_index) lid: u32) {
  let L = lane(wid, nwg, lid);
  let C = select(0u, params.C, L.valid);
  let tpr = params.tpr;
  let tail = L.t + VPT * tpr;
  var yv: array<f32, VPT>;
  var gv: array<f32, VPT>;
  var d = 0.0;
  for (var k = 0u; k < VPT; k++) {
    let c = L.t + k * tpr;
    yv[k] = 0.0;
    gv[k] = 0.0;
    if (c < C) {
      yv[k] = f32(y[L.base + c]);
      gv[k] = f32(dy[L.base + c]);
    }
    d += yv[k] * gv[k];
  }
  for (var c = tail; c < C; c += tpr) { d += f32(y[L.base + c]) * f32(dy[L.base + c]); }
  d = rowSum(lid, L.t, d);

  for (var k = 0u; k < VPT; k++) {
    let c = L.t + k * tpr;
    if (c < C) { out[L.base + c] = toT(yv[k] * (gv[k] - d)); }
  }
  for (var c = tail; c < C; c += tpr) { out[L.base + c] = toT(f32(y[L.base + c]) * (f32(dy[L.base + c]) - d)); }
}
