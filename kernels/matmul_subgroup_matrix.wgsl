// f16 GEMM on subgroup matrices (Dawn's chromium_experimental_subgroup_matrix: Vulkan cooperative matrices, i.e.
// tensor cores on NVIDIA): Y[z] = alpha · A[z]·op(B[z]) (+ bias), A [M, K] row-major, B [K, N] or (TRANS_B) [N, K]
// row-major, f16 in and out, products accumulated in f32 result matrices.
//
// The wrapper's prelude fixes the adapter's config (SM_M × SM_N × SM_K: left SM_M×SM_K, right SM_K×SM_N, result
// SM_M×SM_N with f32 components) and SG (the subgroup size; the wrapper selects this kernel only where the
// adapter's subgroupMinSize equals its subgroupMaxSize, so a workgroup of 4·SG invocations is exactly 4 subgroups).
//
// Tiling. A workgroup computes a BM × BN = 4·SM_M × 4·SM_N block of Y: its 4 subgroups form a 2 × 2 grid, each
// holding 2 × 2 result matrices (acc00 .. acc11) for the whole K loop. K advances BK = 2·SM_K at a time through two
// workgroup-memory buffers (double buffering): every invocation loads its share of the next A and B tiles from
// global memory into registers (zero outside the matrices, so any M, N, K work), the subgroups multiply the current
// tiles (subgroupMatrixLoad from workgroup memory, subgroupMatrixMultiplyAccumulate), then the registers go to the
// other buffer and one barrier follows. B tiles are stored [BK][BN] in workgroup memory whatever B's layout (TRANS_B
// transposes while staging). The epilogue stores each result matrix to a per-subgroup f32 staging area and the
// subgroup's invocations write it out with bounds checks, alpha, the bias and the f16 rounding (±Infinity on
// overflow, as the element prelude's toT).
//
// Layout: `subgroup_matrix_left<T, K, M>` has K columns and M rows, `subgroup_matrix_right<T, N, K>` N columns and K
// rows, `subgroup_matrix_result<T, N, M>` N columns and M rows; subgroupMatrixLoad / Store take (pointer, first
// element, column-major?, stride in elements between rows).
enable f16;
enable chromium_experimental_subgroup_matrix;

override TRANS_B: bool = false;
override HAS_BIAS: bool = false;

const WG: u32 = 4u * SG;
const BM: u32 = 4u * SM_M;
const BN: u32 = 4u * SM_N;
const BK: u32 = 2u * SM_K;
const A_TILE: u32 = BM * BK;
const B_TILE: u32 = BK * BN;
const LA: u32 = (A_TILE + WG - 1u) / WG;   // A-tile elements each invocation stages
const LB: u32 = (B_TILE + WG - 1u) / WG;

alias Left = subgroup_matrix_left<f16, SM_K, SM_M>;
alias Right = subgroup_matrix_right<f16, SM_N, SM_K>;
alias Result = subgroup_matrix_result<f32, SM_N, SM_M>;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  tilesN: u32,
  batchA: u32,   // element strides between batch entries (0: broadcast)
  batchB: u32,
  batchY: u32,
  alpha: f32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f16>;
@group(0) @binding(2) var<storage, read> b: array<f16>;
@group(0) @binding(3) var<storage, read> bias: array<f16>;
@group(0) @binding(4) var<storage, read_write> y: array<f16>;

var<workgroup> As: array<f16, 2u * A_TILE>;
var<workgroup> Bs: array<f16, 2u * B_TILE>;
var<workgroup> Cs: array<f32, 4u * SM_M * SM_N>;   // one result matrix per subgroup (epilogue staging)

var<private> F16_INF_BITS: u32 = 0x7c007c00u;
fn toF16(v: f32) -> f16 {
  let inf = bitcast<vec2<f16>>(F16_INF_BITS).x;
  if (v >= 65520.0) { return inf; }
  if (v <= -65520.0) { return -inf; }
  return f16(v);
}

// Element e of the A tile at (m0, k0): row e / BK, column e % BK; zero outside A.
fn loadA(z: u32, m0: u32, k0: u32, e: u32) -> f16 {
  let r = m0 + e / BK;
  let c = k0 + e % BK;
  if (e >= A_TILE || r >= params.M || c >= params.K) { return f16(0.0); }
  return a[z * params.batchA + r * params.K + c];
}

// Element e of the B tile at (k0, n0), in the [BK][BN] order of Bs; zero outside B.
fn loadB(z: u32, k0: u32, n0: u32, e: u32) -> f16 {
  let r = k0 + e / BN;
  let c = n0 + e % BN;
  if (e >= B_TILE || r >= params.K || c >= params.N) { return f16(0.0); }
  if (TRANS_B) { return b[z * params.batchB + c * params.K + r]; }
  return b[z * params.batchB + r * params.N + c];
}

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let z = wid.z;
  let m0 = (wid.x / params.tilesN) * BM;
  let n0 = (wid.x % params.tilesN) * BN;
  // Subgroup s of 4 (whole subgroups of SG invocations, see the header) owns the 2 × 2 result matrices at
  // rows sr·2·SM_M, columns sc·2·SM_N of the block.
  let s = lid / SG;
  let sr = s / 2u;
  let sc = s % 2u;
  let lane = lid % SG;

  var acc00 = Result();
  var acc01 = Result();
  var acc10 = Result();
  var acc11 = Result();

  var ra: array<f16, LA>;
  var rb: array<f16, LB>;
  for (var i = 0u; i < LA; i++) { ra[i] = loadA(z, m0, 0u, lid + i * WG); }
  for (var i = 0u; i < LB; i++) { rb[i] = loadB(z, 0u, n0, lid + i * WG); }
  for (var i = 0u; i < LA; i++) { let e = lid + i * WG; if (e < A_TILE) { As[e] = ra[i]; } }
  for (var i = 0u; i < LB; i++) { let e = lid + i * WG; if (e < B_TILE) { Bs[e] = rb[i]; } }
  workgroupBarrier();

  let tiles = (params.K + BK - 1u) / BK;
  for (var t = 0u; t < tiles; t++) {
    let cur = t % 2u;
    let more = t + 1u < tiles;
    // Prefetch the next tiles into registers while this one is multiplied.
    if (more) {
      let k1 = (t + 1u) * BK;
      for (var i = 0u; i < LA; i++) { ra[i] = loadA(z, m0, k1, lid + i * WG); }
      for (var i = 0u; i < LB; i++) { rb[i] = loadB(z, k1, n0, lid + i * WG); }
    }
    let aBase = cur * A_TILE + sr * 2u * SM_M * BK;
    let bBase = cur * B_TILE + sc * 2u * SM_N;
    for (var kk = 0u; kk < BK; kk += SM_K) {
      let a0 = subgroupMatrixLoad<Left>(&As, aBase + kk, false, BK);
      let a1 = subgroupMatrixLoad<Left>(&As, aBase + SM_M * BK + kk, false, BK);
      let b0 = subgroupMatrixLoad<Right>(&Bs, bBase + kk * BN, false, BN);
      let b1 = subgroupMatrixLoad<Right>(&Bs, bBase + kk * BN + SM_N, false, BN);
      acc00 = subgroupMatrixMultiplyAccumulate(a0, b0, acc00);
      acc01 = subgroupMatrixMultiplyAccumulate(a0, b1, acc01);
      acc10 = subgroupMatrixMultiplyAccumulate(a1, b0, acc10);
      acc11 = subgroupMatrixMultiplyAccumulate(a1, b1, acc11);
    }
    if (more) {
      let nxt = 1u - cur;
      for (var i = 0u; i < LA; i++) { let e = lid + i * WG; if (e < A_TILE) { As[nxt * A_TILE + e] = ra[i]; } }
      for (var i = 0u; i < LB; i++) { let e = lid + i * WG; if (e < B_TILE) { Bs[nxt * B_TILE + e] = rb[i]; } }
    }
    // One barrier per tile: the next tile's buffer is complete, and nobody still reads the one it overwrites next.
    workgroupBarrier();
  }

  emit(z, m0 + sr * 2u * SM_M, n0 + sc * 2u * SM_N, s, lane, acc00);
  emit(z, m0 + sr * 2u * SM_M, n0 + sc * 2u * SM_N + SM_N, s, lane, acc01);
  emit(z, m0 + sr * 2u * SM_M + SM_M, n0 + sc * 2u * SM_N, s, lane, acc10);
  emit(z, m0 + sr * 2u * SM_M + SM_M, n0 + sc * 2u * SM_N + SM_N, s, lane, acc11);
}

// Writes one result matrix (rows r0 .., columns c0 ..) through subgroup s's staging area. Every invocation calls it
// (the barriers are in uniform control flow).
fn emit(z: u32, r0: u32, c0: u32, s: u32, lane: u32, acc: Result) {
  let base = s * SM_M * SM_N;
  subgroupMatrixStore(&Cs, base, acc, false, SM_N);
  workgroupBarrier();
  for (var e = lane; e < SM_M * SM_N; e += SG) {
    let r = r0 + e / SM_N;
    let c = c0 + e % SM_N;
    if (r < params.M && c < params.N) {
      var v = params.alpha * Cs[base + e];
      if (HAS_BIAS) { v += f32(bias[c]); }
      y[z * params.batchY + r * params.N + c] = toF16(v);
    }
  }
  workgroupBarrier();
}
