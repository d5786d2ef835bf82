// Attention forward for headDim 64 with subgroup shuffles (FlashAttention-2's split: no probability tile in shared
// memory, no cross-thread row max):
//   O = softmax(Q·Kᵀ·scale [+ causal mask]) · V,  LSE = logsumexp of each row (natural log), as kernels/attention.wgsl
//   `forward` computes them, with the same layout, strides, offsets and uniform block.
//
// A workgroup of 64 invocations owns FBR = 16·QROWS queries. Each quad (4 adjacent invocations) owns QROWS = 4 rows
// (or 2: twice the workgroups for small problems, e.g. 1024 queries × 20 heads, where 4 rows leave SMs idle); invocation j of
// the quad holds the d-vec4s j, j+4, j+8, j+12 of those rows' Q (pre-scaled, registers) and O (accumulators). Per key
// it forms partial dot products over its 16 d and the quad adds them up with two xor shuffles, after which all four
// hold the 4 rows' full scores: each keeps the row maxima and sums itself, and multiplies the probabilities into its
// own output columns. Scores and row statistics are vec4s over the quad's 4 rows.
// K and V tiles (BC = 16 keys) are double-buffered in shared memory; the next tile is loaded into registers while this
// one is computed and stored after it, so there is one barrier per tile. Reads of a key's K / V slices by a quad's 4
// invocations are 4 consecutive vec4s (the interleaved slices), which every quad of a warp shares (broadcast).
// Requirement: subgroup lanes are consecutive local invocation indices in aligned groups of at least 4 (so a quad is
// lanes 4i .. 4i+3 of one subgroup): the case on the GPUs and CPU drivers we run; the parity tests check it per device.

enable subgroups;

override QROWS: u32 = 4u;        // forward: rows per quad, 4 or 2
override FBR: u32 = 16u * QROWS;  // forward: queries per workgroup
const BC: u32 = 16u;
const NEG_BIG: f32 = -3.0e38;
const LN2: f32 = 0.6931471805599453;

struct Params {
  N: u32,           // queries
  M: u32,           // keys
  heads: u32,
  rows: u32,        // unused here (the uniform block is attention.wgsl's)
  qStride: u32,     // vec4s per token row of Q
  kStride: u32,
  vStride: u32,
  oStride: u32,     // of O (contiguous: heads·headDim/4)
  scaleLog2: f32,   // scale · log2(e)
  scale: f32,
  causal: u32,      // 1: query n sees keys m ≤ n only
  one: u32,
  qOff: u32,        // vec4 offset of Q's first element in its binding
  kOff: u32,
  vOff: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<T4>;
@group(0) @binding(2) var<storage, read> k: array<T4>;
@group(0) @binding(3) var<storage, read> v: array<T4>;
@group(0) @binding(4) var<storage, read_write> o: array<T4>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

var<workgroup> KS: array<vec4f, 512>;  // [2][BC][16]
var<workgroup> VS: array<vec4f, 512>;

// Q rows 0..3 of the quad (row-major: qRC = row R, slice C) and the output accumulators, as named registers.
var<private> q00: vec4f; var<private> q01: vec4f; var<private> q02: vec4f; var<private> q03: vec4f;
var<private> q10: vec4f; var<private> q11: vec4f; var<private> q12: vec4f; var<private> q13: vec4f;
var<private> q20: vec4f; var<private> q21: vec4f; var<private> q22: vec4f; var<private> q23: vec4f;
var<private> q30: vec4f; var<private> q31: vec4f; var<private> q32: vec4f; var<private> q33: vec4f;
var<private> o00: vec4f; var<private> o01: vec4f; var<private> o02: vec4f; var<private> o03: vec4f;
var<private> o10: vec4f; var<private> o11: vec4f; var<private> o12: vec4f; var<private> o13: vec4f;
var<private> o20: vec4f; var<private> o21: vec4f; var<private> o22: vec4f; var<private> o23: vec4f;
var<private> o30: vec4f; var<private> o31: vec4f; var<private> o32: vec4f; var<private> o33: vec4f;

// Vec4 c of head h of token `tok` of a [B, count, ·] buffer; zero past `count`.
fn qAt(b: u32, tok: u32, h: u32, c: u32) -> vec4f {
  let i = params.qOff + (b * params.N + min(tok, params.N - 1u)) * params.qStride + h * 16u + c;
  return select(vec4f(0.0), vec4f(q[i]), tok < params.N);
}
fn kAt(b: u32, tok: u32, h: u32, c: u32) -> vec4f {
  let i = params.kOff + (b * params.M + min(tok, params.M - 1u)) * params.kStride + h * 16u + c;
  return select(vec4f(0.0), vec4f(k[i]), tok < params.M);
}
fn vAt(b: u32, tok: u32, h: u32, c: u32) -> vec4f {
  let i = params.vOff + (b * params.M + min(tok, params.M - 1u)) * params.vStride + h * 16u + c;
  return select(vec4f(0.0), vec4f(v[i]), tok < params.M);
}

// A K / V tile of BC = 16 keys from key t0: 4 + 4 vec4 units per invocation (unit u = tid + 64·i: key u / 16, vec4
// u % 16; consecutive invocations read consecutive vec4s of a key row), loaded into registers and stored separately,
// so the next tile's loads are in flight while the current tile is computed.
struct KvUnits { k0: vec4f, k1: vec4f, k2: vec4f, k3: vec4f, v0: vec4f, v1: vec4f, v2: vec4f, v3: vec4f }

fn fetchKv(b: u32, t0: u32, h: u32, tid: u32) -> KvUnits {
  let u1 = tid + 64u;
  let u2 = tid + 128u;
  let u3 = tid + 192u;
  return KvUnits(
    kAt(b, t0 + tid / 16u, h, tid % 16u), kAt(b, t0 + u1 / 16u, h, u1 % 16u),
    kAt(b, t0 + u2 / 16u, h, u2 % 16u), kAt(b, t0 + u3 / 16u, h, u3 % 16u),
    vAt(b, t0 + tid / 16u, h, tid % 16u), vAt(b, t0 + u1 / 16u, h, u1 % 16u),
    vAt(b, t0 + u2 / 16u, h, u2 % 16u), vAt(b, t0 + u3 / 16u, h, u3 % 16u));
}

// Into KS / VS at vec4 offset `base` (0 or 256: the double buffer's halves).
fn storeKv(base: u32, tid: u32, r: KvUnits) {
  KS[base + tid] = r.k0; KS[base + tid + 64u] = r.k1; KS[base + tid + 128u] = r.k2; KS[base + tid + 192u] = r.k3;
  VS[base + tid] = r.v0; VS[base + tid + 64u] = r.v1; VS[base + tid + 128u] = r.v2; VS[base + tid + 192u] = r.v3;
}

// Partial scores of the quad's 4 rows against the key whose slices start at KS[kb] (this invocation's 16 d).
fn partialScores(kb: u32, j: u32) -> vec4f {
  let k0 = KS[kb + j];
  let k1 = KS[kb + j + 4u];
  let k2 = KS[kb + j + 8u];
  let k3 = KS[kb + j + 12u];
  var s = vec4f(
    dot(q00, k0) + dot(q01, k1) + dot(q02, k2) + dot(q03, k3),
    dot(q10, k0) + dot(q11, k1) + dot(q12, k2) + dot(q13, k3),
    0.0, 0.0);
  if (QROWS == 4u) {
    s.z = dot(q20, k0) + dot(q21, k1) + dot(q22, k2) + dot(q23, k3);
    s.w = dot(q30, k0) + dot(q31, k1) + dot(q32, k2) + dot(q33, k3);
  }
  return s;
}

// Full scores: the quad's sum of partial scores.
fn quadSum(s: vec4f) -> vec4f {
  let s2 = s + subgroupShuffleXor(s, 1u);
  return s2 + subgroupShuffleXor(s2, 2u);
}

// Masked (key past M, or after the row's query under the causal mask) → NEG_BIG. rows: the quad's 4 query indices.
fn maskKey(s: vec4f, key: u32, rows: vec4u) -> vec4f {
  var hide = vec4u(key) >= vec4u(params.M);
  if (params.causal != 0u) { hide = hide | (vec4u(key) > rows); }
  return select(s, vec4f(NEG_BIG), hide);
}

// O rows += p (the 4 rows' probabilities of one key) × the key's V slices starting at VS[vb].
fn accumulate(p: vec4f, vb: u32, j: u32) {
  let v0 = VS[vb + j];
  let v1 = VS[vb + j + 4u];
  let v2 = VS[vb + j + 8u];
  let v3 = VS[vb + j + 12u];
  o00 = fma(vec4f(p.x), v0, o00); o01 = fma(vec4f(p.x), v1, o01); o02 = fma(vec4f(p.x), v2, o02); o03 = fma(vec4f(p.x), v3, o03);
  o10 = fma(vec4f(p.y), v0, o10); o11 = fma(vec4f(p.y), v1, o11); o12 = fma(vec4f(p.y), v2, o12); o13 = fma(vec4f(p.y), v3, o13);
  if (QROWS == 4u) {
    o20 = fma(vec4f(p.z), v0, o20); o21 = fma(vec4f(p.z), v1, o21); o22 = fma(vec4f(p.z), v2, o22); o23 = fma(vec4f(p.z), v3, o23);
    o30 = fma(vec4f(p.w), v0, o30); o31 = fma(vec4f(p.w), v1, o31); o32 = fma(vec4f(p.w), v2, o32); o33 = fma(vec4f(p.w), v3, o33);
  }
}

fn rescale(a: vec4f) {
  o00 *= a.x; o01 *= a.x; o02 *= a.x; o03 *= a.x;
  o10 *= a.y; o11 *= a.y; o12 *= a.y; o13 *= a.y;
  if (QROWS == 4u) {
    o20 *= a.z; o21 *= a.z; o22 *= a.z; o23 *= a.z;
    o30 *= a.w; o31 *= a.w; o32 *= a.w; o33 *= a.w;
  }
}

fn max4(a: vec4f, b: vec4f, c: vec4f, d: vec4f) -> vec4f { return max(max(a, b), max(c, d)); }

fn storeRow(b: u32, row: u32, h: u32, j: u32, inv: f32, x0: vec4f, x1: vec4f, x2: vec4f, x3: vec4f) {
  if (row >= params.N) { return; }
  let base = (b * params.N + row) * params.oStride + h * 16u + j;
  o[base] = toT4(x0 * inv);
  o[base + 4u] = toT4(x1 * inv);
  o[base + 8u] = toT4(x2 * inv);
  o[base + 12u] = toT4(x3 * inv);
}

@compute @workgroup_size(64)
fn forward_sg(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let j = tid % 4u;
  let q0 = wid.x * FBR;
  let h = wid.y;
  let b = wid.z;
  let r = q0 + (tid / 4u) * QROWS;  // the quad's first row
  let rows = vec4u(r, r + 1u, r + 2u, r + 3u);
  let sc = params.scaleLog2;
  q00 = qAt(b, r, h, j) * sc; q01 = qAt(b, r, h, j + 4u) * sc; q02 = qAt(b, r, h, j + 8u) * sc; q03 = qAt(b, r, h, j + 12u) * sc;
  q10 = qAt(b, r + 1u, h, j) * sc; q11 = qAt(b, r + 1u, h, j + 4u) * sc; q12 = qAt(b, r + 1u, h, j + 8u) * sc; q13 = qAt(b, r + 1u, h, j + 12u) * sc;
  if (QROWS == 4u) {
    q20 = qAt(b, r + 2u, h, j) * sc; q21 = qAt(b, r + 2u, h, j + 4u) * sc; q22 = qAt(b, r + 2u, h, j + 8u) * sc; q23 = qAt(b, r + 2u, h, j + 12u) * sc;
    q30 = qAt(b, r + 3u, h, j) * sc; q31 = qAt(b, r + 3u, h, j + 4u) * sc; q32 = qAt(b, r + 3u, h, j + 8u) * sc; q33 = qAt(b, r + 3u, h, j + 12u) * sc;
  }

  // Keys this block needs: all M, or under the causal mask those up to its last query.
  var kEnd = params.M;
  if (params.causal != 0u) { kEnd = min(params.M, min(params.N, q0 + FBR)); }
  let nT = (kEnd + BC - 1u) / BC;

  // Tile units: 16 keys × 16 vec4s of K and of V = 4 + 4 per invocation (unit u: key u / 16, vec4 u % 16).
  storeKv(0u, tid, fetchKv(b, 0u, h, tid));
  workgroupBarrier();

  var m = vec4f(NEG_BIG);  // row maxima (log2 domain)
  var l = vec4f(0.0);      // row sums
  for (var t = 0u; t < nT; t++) {
    let k0 = t * BC;
    let more = t + 1u < nT;
    var next: KvUnits;
    if (more) { next = fetchKv(b, k0 + BC, h, tid); }
    let buf = (t % 2u) * 256u;
    let masked = k0 + BC > params.M || (params.causal != 0u && k0 + BC - 1u > q0);
    // Two chunks of 8 keys: scores, the quad sum, masking, the online softmax, then P·V.
    for (var c = 0u; c < 2u; c++) {
      let kb = buf + c * 128u;
      var s0 = quadSum(partialScores(kb, j));
      var s1 = quadSum(partialScores(kb + 16u, j));
      var s2 = quadSum(partialScores(kb + 32u, j));
      var s3 = quadSum(partialScores(kb + 48u, j));
      var s4 = quadSum(partialScores(kb + 64u, j));
      var s5 = quadSum(partialScores(kb + 80u, j));
      var s6 = quadSum(partialScores(kb + 96u, j));
      var s7 = quadSum(partialScores(kb + 112u, j));
      if (masked) {
        let e = k0 + c * 8u;
        s0 = maskKey(s0, e, rows); s1 = maskKey(s1, e + 1u, rows); s2 = maskKey(s2, e + 2u, rows); s3 = maskKey(s3, e + 3u, rows);
        s4 = maskKey(s4, e + 4u, rows); s5 = maskKey(s5, e + 5u, rows); s6 = maskKey(s6, e + 6u, rows); s7 = maskKey(s7, e + 7u, rows);
      }
      // Key 0 is in the first chunk and no mask hides it, so the maxima are finite from the first chunk on.
      let mNew = max(m, max(max4(s0, s1, s2, s3), max4(s4, s5, s6, s7)));
      let alpha = exp2(m - mNew);
      m = mNew;
      s0 = exp2(s0 - mNew); s1 = exp2(s1 - mNew); s2 = exp2(s2 - mNew); s3 = exp2(s3 - mNew);
      s4 = exp2(s4 - mNew); s5 = exp2(s5 - mNew); s6 = exp2(s6 - mNew); s7 = exp2(s7 - mNew);
      l = l * alpha + (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)));
      rescale(alpha);
      accumulate(s0, kb, j); accumulate(s1, kb + 16u, j); accumulate(s2, kb + 32u, j); accumulate(s3, kb + 48u, j);
      accumulate(s4, kb + 64u, j); accumulate(s5, kb + 80u, j); accumulate(s6, kb + 96u, j); accumulate(s7, kb + 112u, j);
    }
    // The other buffer's last readers finished before the previous iteration's barrier.
    if (more) { storeKv(256u - buf, tid, next); }
    workgroupBarrier();
  }

  let inv = 1.0 / l;
  storeRow(b, r, h, j, inv.x, o00, o01, o02, o03);
  storeRow(b, r + 1u, h, j, inv.y, o10, o11, o12, o13);
  if (QROWS == 4u) {
    storeRow(b, r + 2u, h, j, inv.z, o20, o21, o22, o23);
    storeRow(b, r + 3u, h, j, inv.w, o30, o31, o32, o33);
  }
  if (j == 0u) {
    let lseRow = (m + log2(l)) * LN2;
    let base = (b * params.heads + h) * params.N;
    if (r < params.N) { lse[base + r] = lseRow.x; }
    if (r + 1u < params.N) { lse[base + r + 1u] = lseRow.y; }
    if (QROWS == 4u && r + 2u < params.N) { lse[base + r + 2u] = lseRow.z; }
    if (QROWS == 4u && r + 3u < params.N) { lse[base + r + 3u] = lseRow.w; }
  }
}

// ---- Backward (FlashAttention-2 split, probabilities recomputed from the saved LSE; D = rowsum(dO ⊙ O) comes from
// attention.wgsl's bwd_prep). Quads again share their rows and split the head dim into the same 4 interleaved
// slices; a quad sums the partial scores S and dP = dO·Vᵀ of its rows with one vec4 shuffle pair.
//   bwd_dkdv_sg: a quad owns 2 keys (K pre-scaled, V in registers), walks the query tiles (Q, dO, LSE, D of 16 queries,
//                double-buffered) and accumulates dV += P·dO and dK += dS·Q in registers. 32 keys per workgroup.
//   bwd_dq_sg:   a quad owns 2 queries (Q pre-scaled, dO, LSE, D), walks the key tiles (K, V as in the forward) and
//                accumulates dQ += dS·K. 32 queries per workgroup. (1 row per quad, twice the workgroups, measured
//                slower on the H100 even at 1024² × 20 heads: 1.82 ms against 1.29 for the whole backward.)
// dS = P ⊙ (dP − D); dK and dQ are scaled by `scale` at the end (scores are in the log2 domain).

@group(0) @binding(6) var<storage, read> dout: array<T4>;
@group(0) @binding(7) var<storage, read_write> dvec: array<f32>;
@group(0) @binding(8) var<storage, read_write> dq: array<T4>;
@group(0) @binding(9) var<storage, read_write> dk: array<T4>;
@group(0) @binding(10) var<storage, read_write> dv: array<T4>;

const LOG2E: f32 = 1.4426950408889634;

var<workgroup> QT: array<vec4f, 512>;   // [2][16 queries][16]: Q
var<workgroup> OT: array<vec4f, 512>;   // [2][16][16]: dO
var<workgroup> LT: array<f32, 32>;      // [2][16]: LSE · log2(e)
var<workgroup> DT: array<f32, 32>;      // [2][16]: D

// Two rows' registers: operand X (rows a, b; slices 0..3), operand Y, and two accumulators each.
var<private> xa0: vec4f; var<private> xa1: vec4f; var<private> xa2: vec4f; var<private> xa3: vec4f;
var<private> xb0: vec4f; var<private> xb1: vec4f; var<private> xb2: vec4f; var<private> xb3: vec4f;
var<private> ya0: vec4f; var<private> ya1: vec4f; var<private> ya2: vec4f; var<private> ya3: vec4f;
var<private> yb0: vec4f; var<private> yb1: vec4f; var<private> yb2: vec4f; var<private> yb3: vec4f;
var<private> ga0: vec4f; var<private> ga1: vec4f; var<private> ga2: vec4f; var<private> ga3: vec4f;
var<private> gb0: vec4f; var<private> gb1: vec4f; var<private> gb2: vec4f; var<private> gb3: vec4f;
var<private> ha0: vec4f; var<private> ha1: vec4f; var<private> ha2: vec4f; var<private> ha3: vec4f;
var<private> hb0: vec4f; var<private> hb1: vec4f; var<private> hb2: vec4f; var<private> hb3: vec4f;

fn doutAt(b: u32, tok: u32, h: u32, c: u32) -> vec4f {
  let i = (b * params.N + min(tok, params.N - 1u)) * params.oStride + h * 16u + c;
  return select(vec4f(0.0), vec4f(dout[i]), tok < params.N);
}

// (x·u, x·w partial over this invocation's slices for rows a and b): s for the X pair against one key/query (u), and
// dP for the Y pair against another (w).
fn partialPair(u0: vec4f, u1: vec4f, u2: vec4f, u3: vec4f, w0: vec4f, w1: vec4f, w2: vec4f, w3: vec4f) -> vec4f {
  return vec4f(
    dot(xa0, u0) + dot(xa1, u1) + dot(xa2, u2) + dot(xa3, u3),
    dot(xb0, u0) + dot(xb1, u1) + dot(xb2, u2) + dot(xb3, u3),
    dot(ya0, w0) + dot(ya1, w1) + dot(ya2, w2) + dot(ya3, w3),
    dot(yb0, w0) + dot(yb1, w1) + dot(yb2, w2) + dot(yb3, w3));
}

@compute @workgroup_size(64)
fn bwd_dkdv_sg(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let j = tid % 4u;
  let k0 = wid.x * 32u;
  let h = wid.y;
  let b = wid.z;
  let N = params.N;
  let ka = k0 + (tid / 4u) * 2u;  // the quad's keys ka, ka + 1
  let sc = params.scaleLog2;
  xa0 = kAt(b, ka, h, j) * sc; xa1 = kAt(b, ka, h, j + 4u) * sc; xa2 = kAt(b, ka, h, j + 8u) * sc; xa3 = kAt(b, ka, h, j + 12u) * sc;
  xb0 = kAt(b, ka + 1u, h, j) * sc; xb1 = kAt(b, ka + 1u, h, j + 4u) * sc; xb2 = kAt(b, ka + 1u, h, j + 8u) * sc; xb3 = kAt(b, ka + 1u, h, j + 12u) * sc;
  ya0 = vAt(b, ka, h, j); ya1 = vAt(b, ka, h, j + 4u); ya2 = vAt(b, ka, h, j + 8u); ya3 = vAt(b, ka, h, j + 12u);
  yb0 = vAt(b, ka + 1u, h, j); yb1 = vAt(b, ka + 1u, h, j + 4u); yb2 = vAt(b, ka + 1u, h, j + 8u); yb3 = vAt(b, ka + 1u, h, j + 12u);
  ga0 = vec4f(0.0); ga1 = vec4f(0.0); ga2 = vec4f(0.0); ga3 = vec4f(0.0);   // dK, key a
  gb0 = vec4f(0.0); gb1 = vec4f(0.0); gb2 = vec4f(0.0); gb3 = vec4f(0.0);   // dK, key b
  ha0 = vec4f(0.0); ha1 = vec4f(0.0); ha2 = vec4f(0.0); ha3 = vec4f(0.0);   // dV, key a
  hb0 = vec4f(0.0); hb1 = vec4f(0.0); hb2 = vec4f(0.0); hb3 = vec4f(0.0);   // dV, key b

  // Query tiles: all, or under the causal mask those from the block's first key on.
  let tFirst = select(0u, k0 / BC, params.causal != 0u);
  let nT = (N + BC - 1u) / BC;
  let statBase = (b * params.heads + h) * N;
  let u0 = tid;
  let u1 = tid + 64u;
  let u2 = tid + 128u;
  let u3 = tid + 192u;
  if (tFirst < nT) {
    let c0 = tFirst * BC;
    QT[u0] = qAt(b, c0 + u0 / 16u, h, u0 % 16u); QT[u1] = qAt(b, c0 + u1 / 16u, h, u1 % 16u);
    QT[u2] = qAt(b, c0 + u2 / 16u, h, u2 % 16u); QT[u3] = qAt(b, c0 + u3 / 16u, h, u3 % 16u);
    OT[u0] = doutAt(b, c0 + u0 / 16u, h, u0 % 16u); OT[u1] = doutAt(b, c0 + u1 / 16u, h, u1 % 16u);
    OT[u2] = doutAt(b, c0 + u2 / 16u, h, u2 % 16u); OT[u3] = doutAt(b, c0 + u3 / 16u, h, u3 % 16u);
    if (tid < 16u) {
      let qi = min(c0 + tid, N - 1u);
      LT[tid] = lse[statBase + qi] * LOG2E;
      DT[tid] = dvec[statBase + qi];
    }
  }
  workgroupBarrier();

  for (var t = tFirst; t < nT; t++) {
    let c0 = t * BC;
    let more = t + 1u < nT;
    var nq0 = vec4f(0.0); var nq1 = vec4f(0.0); var nq2 = vec4f(0.0); var nq3 = vec4f(0.0);
    var no0 = vec4f(0.0); var no1 = vec4f(0.0); var no2 = vec4f(0.0); var no3 = vec4f(0.0);
    var nl = 0.0;
    var nd = 0.0;
    if (more) {
      let n0 = c0 + BC;
      nq0 = qAt(b, n0 + u0 / 16u, h, u0 % 16u); nq1 = qAt(b, n0 + u1 / 16u, h, u1 % 16u);
      nq2 = qAt(b, n0 + u2 / 16u, h, u2 % 16u); nq3 = qAt(b, n0 + u3 / 16u, h, u3 % 16u);
      no0 = doutAt(b, n0 + u0 / 16u, h, u0 % 16u); no1 = doutAt(b, n0 + u1 / 16u, h, u1 % 16u);
      no2 = doutAt(b, n0 + u2 / 16u, h, u2 % 16u); no3 = doutAt(b, n0 + u3 / 16u, h, u3 % 16u);
      if (tid < 16u) {
        let qi = min(n0 + tid, N - 1u);
        nl = lse[statBase + qi] * LOG2E;
        nd = dvec[statBase + qi];
      }
    }
    let buf = ((t - tFirst) % 2u) * 256u;
    let sbuf = ((t - tFirst) % 2u) * 16u;
    let masked = c0 + BC > N || (params.causal != 0u && c0 < k0 + 31u);
    for (var e = 0u; e < BC; e++) {
      let qb = buf + e * 16u;
      let q0v = QT[qb + j]; let q1v = QT[qb + j + 4u]; let q2v = QT[qb + j + 8u]; let q3v = QT[qb + j + 12u];
      let o0v = OT[qb + j]; let o1v = OT[qb + j + 4u]; let o2v = OT[qb + j + 8u]; let o3v = OT[qb + j + 12u];
      let s = quadSum(partialPair(q0v, q1v, q2v, q3v, o0v, o1v, o2v, o3v));  // (S_a, S_b, dP_a, dP_b)
      let L = LT[sbuf + e];
      let D = DT[sbuf + e];
      var pa = exp2(s.x - L);
      var pb = exp2(s.y - L);
      if (masked) {
        let query = c0 + e;
        let past = query >= N;
        pa = select(pa, 0.0, past || (params.causal != 0u && ka > query));
        pb = select(pb, 0.0, past || (params.causal != 0u && ka + 1u > query));
      }
      let dsa = pa * (s.z - D);
      let dsb = pb * (s.w - D);
      ha0 = fma(vec4f(pa), o0v, ha0); ha1 = fma(vec4f(pa), o1v, ha1); ha2 = fma(vec4f(pa), o2v, ha2); ha3 = fma(vec4f(pa), o3v, ha3);
      hb0 = fma(vec4f(pb), o0v, hb0); hb1 = fma(vec4f(pb), o1v, hb1); hb2 = fma(vec4f(pb), o2v, hb2); hb3 = fma(vec4f(pb), o3v, hb3);
      ga0 = fma(vec4f(dsa), q0v, ga0); ga1 = fma(vec4f(dsa), q1v, ga1); ga2 = fma(vec4f(dsa), q2v, ga2); ga3 = fma(vec4f(dsa), q3v, ga3);
      gb0 = fma(vec4f(dsb), q0v, gb0); gb1 = fma(vec4f(dsb), q1v, gb1); gb2 = fma(vec4f(dsb), q2v, gb2); gb3 = fma(vec4f(dsb), q3v, gb3);
    }
    if (more) {
      let nb = 256u - buf;
      QT[nb + u0] = nq0; QT[nb + u1] = nq1; QT[nb + u2] = nq2; QT[nb + u3] = nq3;
      OT[nb + u0] = no0; OT[nb + u1] = no1; OT[nb + u2] = no2; OT[nb + u3] = no3;
      if (tid < 16u) {
        LT[16u - sbuf + tid] = nl;
        DT[16u - sbuf + tid] = nd;
      }
    }
    workgroupBarrier();
  }

  let s = params.scale;
  if (ka < params.M) {
    let base = (b * params.M + ka) * params.oStride + h * 16u + j;
    dk[base] = toT4(ga0 * s); dk[base + 4u] = toT4(ga1 * s); dk[base + 8u] = toT4(ga2 * s); dk[base + 12u] = toT4(ga3 * s);
    dv[base] = toT4(ha0); dv[base + 4u] = toT4(ha1); dv[base + 8u] = toT4(ha2); dv[base + 12u] = toT4(ha3);
  }
  if (ka + 1u < params.M) {
    let base = (b * params.M + ka + 1u) * params.oStride + h * 16u + j;
    dk[base] = toT4(gb0 * s); dk[base + 4u] = toT4(gb1 * s); dk[base + 8u] = toT4(gb2 * s); dk[base + 12u] = toT4(gb3 * s);
    dv[base] = toT4(hb0); dv[base + 4u] = toT4(hb1); dv[base + 8u] = toT4(hb2); dv[base + 12u] = toT4(hb3);
  }
}

@compute @workgroup_size(64)
fn bwd_dq_sg(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let j = tid % 4u;
  let q0 = wid.x * 32u;
  let h = wid.y;
  let b = wid.z;
  let N = params.N;
  let M = params.M;
  let qa = q0 + (tid / 4u) * 2u;  // the quad's queries qa, qa + 1
  let sc = params.scaleLog2;
  xa0 = qAt(b, qa, h, j) * sc; xa1 = qAt(b, qa, h, j + 4u) * sc; xa2 = qAt(b, qa, h, j + 8u) * sc; xa3 = qAt(b, qa, h, j + 12u) * sc;
  xb0 = qAt(b, qa + 1u, h, j) * sc; xb1 = qAt(b, qa + 1u, h, j + 4u) * sc; xb2 = qAt(b, qa + 1u, h, j + 8u) * sc; xb3 = qAt(b, qa + 1u, h, j + 12u) * sc;
  ya0 = doutAt(b, qa, h, j); ya1 = doutAt(b, qa, h, j + 4u); ya2 = doutAt(b, qa, h, j + 8u); ya3 = doutAt(b, qa, h, j + 12u);
  yb0 = doutAt(b, qa + 1u, h, j); yb1 = doutAt(b, qa + 1u, h, j + 4u); yb2 = doutAt(b, qa + 1u, h, j + 8u); yb3 = doutAt(b, qa + 1u, h, j + 12u);
  ga0 = vec4f(0.0); ga1 = vec4f(0.0); ga2 = vec4f(0.0); ga3 = vec4f(0.0);
  gb0 = vec4f(0.0); gb1 = vec4f(0.0); gb2 = vec4f(0.0); gb3 = vec4f(0.0);
  let statBase = (b * params.heads + h) * N;
  let La = lse[statBase + min(qa, N - 1u)] * LOG2E;
  let Lb = lse[statBase + min(qa + 1u, N - 1u)] * LOG2E;
  let Da = dvec[statBase + min(qa, N - 1u)];
  let Db = dvec[statBase + min(qa + 1u, N - 1u)];

  var kEnd = M;
  if (params.causal != 0u) { kEnd = min(M, min(N, q0 + 32u)); }
  let nT = (kEnd + BC - 1u) / BC;
  storeKv(0u, tid, fetchKv(b, 0u, h, tid));
  workgroupBarrier();

  for (var t = 0u; t < nT; t++) {
    let k0 = t * BC;
    let more = t + 1u < nT;
    var next: KvUnits;
    if (more) { next = fetchKv(b, k0 + BC, h, tid); }
    let buf = (t % 2u) * 256u;
    let masked = k0 + BC > M || (params.causal != 0u && k0 + BC - 1u > q0);
    for (var e = 0u; e < BC; e++) {
      let kb = buf + e * 16u;
      let k0v = KS[kb + j]; let k1v = KS[kb + j + 4u]; let k2v = KS[kb + j + 8u]; let k3v = KS[kb + j + 12u];
      let v0v = VS[kb + j]; let v1v = VS[kb + j + 4u]; let v2v = VS[kb + j + 8u]; let v3v = VS[kb + j + 12u];
      let s = quadSum(partialPair(k0v, k1v, k2v, k3v, v0v, v1v, v2v, v3v));  // (S_a, S_b, dP_a, dP_b)
      var pa = exp2(s.x - La);
      var pb = exp2(s.y - Lb);
      if (masked) {
        let key = k0 + e;
        let past = key >= M;
        pa = select(pa, 0.0, past || (params.causal != 0u && key > qa));
        pb = select(pb, 0.0, past || (params.causal != 0u && key > qa + 1u));
      }
      let dsa = pa * (s.z - Da);
      let dsb = pb * (s.w - Db);
      ga0 = fma(vec4f(dsa), k0v, ga0); ga1 = fma(vec4f(dsa), k1v, ga1); ga2 = fma(vec4f(dsa), k2v, ga2); ga3 = fma(vec4f(dsa), k3v, ga3);
      gb0 = fma(vec4f(dsb), k0v, gb0); gb1 = fma(vec4f(dsb), k1v, gb1); gb2 = fma(vec4f(dsb), k2v, gb2); gb3 = fma(vec4f(dsb), k3v, gb3);
    }
    // The other buffer's last readers finished before the previous iteration's barrier.
    if (more) { storeKv(256u - buf, tid, next); }
    workgroupBarrier();
  }

  let s = params.scale;
  if (qa < N) {
    let base = (b * N + qa) * params.oStride + h * 16u + j;
    dq[base] = toT4(ga0 * s); dq[base + 4u] = toT4(ga1 * s); dq[base + 8u] = toT4(ga2 * s); dq[base + 12u] = toT4(ga3 * s);
  }
  if (qa + 1u < N) {
    let base = (b * N + qa + 1u) * params.oStride + h * 16u + j;
    dq[base] = toT4(gb0 * s); dq[base + 4u] = toT4(gb1 * s); dq[base + 8u] = toT4(gb2 * s); dq[base + 12u] = toT4(gb3 * s);
  }
}
