// Matrix multiplication, batched over the grid's z:
//   Y = act(alpha · (op(A)·op(B) [+ op(A2)·op(B2)]) + bias) [+ res]
//   op(A) is A [M, K], or with TRANS_A A stored [K, M] and transposed; op(B) is B [K, N], or with TRANS_B B stored
//   [N, K]. The optional second operand pair (PAIR2: op(A2) [M, K2], op(B2) [K2, N], own transposes) is walked after
//   K into the same accumulators, so LoRA's low-rank term x·Aᵀ·Bᵀ costs no second pass over Y. bias is per column
//   (length N); params.storePre also writes the pre-activation (alpha·acc + bias) that the activation's backward
//   needs (a uniform, not an override: it costs one uniform branch per output and saves a pipeline per use).
//
// Tiling. A workgroup of WG_X × WG_Y = (BN/TN) × (BM/TM) threads computes a BM × BN block of Y; each thread holds
// TM × TN outputs in registers as (TM/4) × (TN/4) sub-blocks of 4×4 spaced 4·WG_Y rows / 4·WG_X columns apart, so
// its shared-memory reads are vec4s that a warp reads as broadcasts (A) or contiguous runs (B) without bank
// conflicts, and its global stores coalesce. K is walked BK at a time through two shared buffers stored k-major
// (As[k][m], Bs[k][n]; rows padded by PAD vec4s to spread the transposing stores over banks); the next tile's global
// loads are issued into registers before the current tile is computed, so one barrier per tile suffices.
// Sizes are override constants, which Dawn substitutes before the driver compiles. The register arrays have fixed
// maximal sizes (WGSL wants const sizes there; the wrapper keeps TM, TN ∈ {4, 8} and ≤ 4 loads per thread) and are
// indexed by constants only: per-row / per-unit code is written out under override guards instead of looped.
//
// VEC4 (set with the prelude's `Elem = vec4<T>`): buffers are read and written as vec4s, which needs the
// contiguous dim of every operand and N to be multiples of 4. Otherwise Elem = T and all accesses are scalar.
// T is the storage type (f32, or f16 for the f16 variant); loads convert to f32 (toVec4), the tiles in workgroup
// memory and the accumulators are f32 in both, stores convert back (elem4, elem1).
// M, N, K are arbitrary either way (≥ 0): partial tiles load zeros and store nothing outside Y.

override BM: u32 = 128u;
override BN: u32 = 128u;
override BK: u32 = 8u;
override TM: u32 = 8u;
override TN: u32 = 8u;
override PAD: u32 = 1u;        // vec4s of padding per shared k-row
override GROUP_M: u32 = 8u;    // tile rows per group of the swizzled tile order (L2 reuse of B columns)
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override PAIR2: bool = false;
override TRANS_A2: bool = false;
override TRANS_B2: bool = false;
override HAS_BIAS: bool = false;
override HAS_RES: bool = false;  // a residual [.., M, N] added after the activation (a layer's skip connection)
override ACT: u32 = 16u;       // the elementwise UNARY_OPS id: 16 identity, 11 silu, 12 gelu_tanh, 13 gelu_erf, 14 quick_gelu
override VEC4: bool = false;

override WG_X: u32 = BN / TN;
override WG_Y: u32 = BM / TM;
override THREADS: u32 = WG_X * WG_Y;
override SA: u32 = BM / 4u + PAD;          // vec4 stride of one k-row of As
override SB: u32 = BN / 4u + PAD;
override AS_LEN: u32 = 2u * BK * SA;
override BS_LEN: u32 = 2u * BK * SB;
override LA: u32 = BM * BK / 4u / THREADS;  // 4-element units of the A tile each thread loads
override LB: u32 = BN * BK / 4u / THREADS;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  K2: u32,
  batchA: u32,   // element strides between batch entries (0: broadcast)
  batchB: u32,
  batchA2: u32,
  batchB2: u32,
  batchY: u32,
  tilesM: u32,
  tilesN: u32,
  alpha: f32,
  storePre: u32,
  ldA: u32,      // row length of A stored [M, K] and of B stored [N, K] (pair 1): K, or the full K of a split-K slice
  ldB: u32,
  firstZOnly: u32,  // split-K: the bias and the second pair go into slice z = 0 only (the slices are summed afterwards)
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<Elem>;
@group(0) @binding(2) var<storage, read> b: array<Elem>;
@group(0) @binding(3) var<storage, read> a2: array<Elem>;
@group(0) @binding(4) var<storage, read> b2: array<Elem>;
@group(0) @binding(5) var<storage, read> bias: array<Elem>;
@group(0) @binding(6) var<storage, read_write> y: array<Elem>;
@group(0) @binding(7) var<storage, read_write> pre: array<Elem>;
@group(0) @binding(8) var<storage, read> res: array<Elem>;

var<workgroup> As: array<vec4f, AS_LEN>;
var<workgroup> Bs: array<vec4f, BS_LEN>;

var<private> acc: array<vec4f, 16>;  // [TM][TN/4]
var<private> ra: array<vec4f, 4>;    // next A tile, in flight
var<private> rb: array<vec4f, 4>;

const BUF_A: u32 = 0u;
const BUF_B: u32 = 1u;
const BUF_A2: u32 = 2u;
const BUF_B2: u32 = 3u;
const BUF_BIAS: u32 = 4u;
const BUF_RES: u32 = 5u;

// tanh with its argument clamped to ±10 (tanh(±10) is ±1 in f32): SwiftShader's tanh returns NaN for |u| ≳ 90.
fn tanhSafe(u: vec4f) -> vec4f { return tanh(clamp(u, vec4f(-10.0), vec4f(10.0))); }

fn readBuf(buf: u32, i: u32) -> Elem {
  switch buf {
    case 0u: { return a[i]; }
    case 1u: { return b[i]; }
    case 2u: { return a2[i]; }
    case 3u: { return b2[i]; }
    case 4u: { return bias[i]; }
    default: { return res[i]; }
  }
}

// Elements e .. e+3 of a buffer, which sit at columns col .. col+3 of a row of length rowLen; zero past the row's
// end or where !valid (row outside the matrix). In VEC4 mode e and rowLen are multiples of 4.
fn fetch4(buf: u32, e: u32, col: u32, rowLen: u32, valid: bool) -> vec4f {
  if (VEC4) {
    if (!valid || col >= rowLen) { return vec4f(0.0); }
    return toVec4(readBuf(buf, e / 4u));
  }
  var v = vec4f(0.0);
  if (valid && col < rowLen) { v.x = toVec4(readBuf(buf, e)).x; }
  if (valid && col + 1u < rowLen) { v.y = toVec4(readBuf(buf, e + 1u)).x; }
  if (valid && col + 2u < rowLen) { v.z = toVec4(readBuf(buf, e + 2u)).x; }
  if (valid && col + 3u < rowLen) { v.w = toVec4(readBuf(buf, e + 3u)).x; }
  return v;
}

fn store4(toPre: bool, e: u32, col: u32, v: vec4f) {
  if (VEC4) {
    if (toPre) { pre[e / 4u] = elem4(v); } else { y[e / 4u] = elem4(v); }
    return;
  }
  if (toPre) {
    pre[e] = elem1(v.x);  // col < N holds (emit checked it)
    if (col + 1u < params.N) { pre[e + 1u] = elem1(v.y); }
    if (col + 2u < params.N) { pre[e + 2u] = elem1(v.z); }
    if (col + 3u < params.N) { pre[e + 3u] = elem1(v.w); }
  } else {
    y[e] = elem1(v.x);
    if (col + 1u < params.N) { y[e + 1u] = elem1(v.y); }
    if (col + 2u < params.N) { y[e + 2u] = elem1(v.z); }
    if (col + 3u < params.N) { y[e + 3u] = elem1(v.w); }
  }
}

// Register arrays (acc, ra, rb) are only ever indexed by constants: the per-unit, per-row and per-column code below is
// written out (guarded by override constants) rather than looped, because a single dynamically indexed access makes
// a driver move the whole array to local memory. On the H100 that happened once the epilogue grew (bias, scalar
// stores): 2 instead of 35 TFLOP/s.

// Unit u (0 .. BM·BK/4) of the A tile at k0 of pair p: 4 elements along the stored contiguous dim.
fn loadUnitA(p: u32, k0: u32, m0: u32, z: u32, u: u32) -> vec4f {
  let second = p == 1u;
  let kLen = select(params.K, params.K2, second);
  let buf = select(BUF_A, BUF_A2, second);
  let base = z * select(params.batchA, params.batchA2, second);
  if (select(TRANS_A, TRANS_A2, second)) {  // stored [K, M]: units run along M
    let row = k0 + u / (BM / 4u);
    let col = m0 + (u % (BM / 4u)) * 4u;
    return fetch4(buf, base + row * params.M + col, col, params.M, row < kLen);
  }
  let row = m0 + u / (BK / 4u);             // stored [M, K]: units run along K
  let col = k0 + (u % (BK / 4u)) * 4u;
  return fetch4(buf, base + row * select(params.ldA, kLen, second) + col, col, kLen, row < params.M);
}

fn loadUnitB(p: u32, k0: u32, n0: u32, z: u32, u: u32) -> vec4f {
  let second = p == 1u;
  let kLen = select(params.K, params.K2, second);
  let buf = select(BUF_B, BUF_B2, second);
  let base = z * select(params.batchB, params.batchB2, second);
  if (select(TRANS_B, TRANS_B2, second)) {  // stored [N, K]: units run along K
    let row = n0 + u / (BK / 4u);
    let col = k0 + (u % (BK / 4u)) * 4u;
    return fetch4(buf, base + row * select(params.ldB, kLen, second) + col, col, kLen, row < params.N);
  }
  let row = k0 + u / (BN / 4u);             // stored [K, N]: units run along N
  let col = n0 + (u % (BN / 4u)) * 4u;
  return fetch4(buf, base + row * params.N + col, col, params.N, row < kLen);
}

// Global loads of the next tile into registers (ra, rb); at most 4 units per thread (the wrapper checks).
fn loadTile(p: u32, k0: u32, m0: u32, n0: u32, z: u32, lid: u32) {
  ra[0] = loadUnitA(p, k0, m0, z, lid);
  if (LA > 1u) { ra[1] = loadUnitA(p, k0, m0, z, lid + THREADS); }
  if (LA > 2u) { ra[2] = loadUnitA(p, k0, m0, z, lid + 2u * THREADS); }
  if (LA > 3u) { ra[3] = loadUnitA(p, k0, m0, z, lid + 3u * THREADS); }
  rb[0] = loadUnitB(p, k0, n0, z, lid);
  if (LB > 1u) { rb[1] = loadUnitB(p, k0, n0, z, lid + THREADS); }
  if (LB > 2u) { rb[2] = loadUnitB(p, k0, n0, z, lid + 2u * THREADS); }
  if (LB > 3u) { rb[3] = loadUnitB(p, k0, n0, z, lid + 3u * THREADS); }
}

// Unit u into shared buffer `buf`, k-major; units that run along K are scattered one element per k-row.
fn storeUnitA(p: u32, buf: u32, u: u32, v: vec4f) {
  let off = buf * BK * SA;
  if (select(TRANS_A, TRANS_A2, p == 1u)) {
    As[off + (u / (BM / 4u)) * SA + u % (BM / 4u)] = v;
    return;
  }
  let m = u / (BK / 4u);
  let k = (u % (BK / 4u)) * 4u;
  As[off + k * SA + m / 4u][m % 4u] = v.x;
  As[off + (k + 1u) * SA + m / 4u][m % 4u] = v.y;
  As[off + (k + 2u) * SA + m / 4u][m % 4u] = v.z;
  As[off + (k + 3u) * SA + m / 4u][m % 4u] = v.w;
}

fn storeUnitB(p: u32, buf: u32, u: u32, v: vec4f) {
  let off = buf * BK * SB;
  if (!select(TRANS_B, TRANS_B2, p == 1u)) {
    Bs[off + (u / (BN / 4u)) * SB + u % (BN / 4u)] = v;
    return;
  }
  let n = u / (BK / 4u);
  let k = (u % (BK / 4u)) * 4u;
  Bs[off + k * SB + n / 4u][n % 4u] = v.x;
  Bs[off + (k + 1u) * SB + n / 4u][n % 4u] = v.y;
  Bs[off + (k + 2u) * SB + n / 4u][n % 4u] = v.z;
  Bs[off + (k + 3u) * SB + n / 4u][n % 4u] = v.w;
}

fn storeTile(p: u32, buf: u32, lid: u32) {
  storeUnitA(p, buf, lid, ra[0]);
  if (LA > 1u) { storeUnitA(p, buf, lid + THREADS, ra[1]); }
  if (LA > 2u) { storeUnitA(p, buf, lid + 2u * THREADS, ra[2]); }
  if (LA > 3u) { storeUnitA(p, buf, lid + 3u * THREADS, ra[3]); }
  storeUnitB(p, buf, lid, rb[0]);
  if (LB > 1u) { storeUnitB(p, buf, lid + THREADS, rb[1]); }
  if (LB > 2u) { storeUnitB(p, buf, lid + 2u * THREADS, rb[2]); }
  if (LB > 3u) { storeUnitB(p, buf, lid + 3u * THREADS, rb[3]); }
}

// Row r of the thread's outputs += av · (its TN columns): acc[r·TN/4 + j] for the column groups j.
fn fmaRow(r: u32, av: f32, b0: vec4f, b1: vec4f) {
  let i = r * (TN / 4u);
  acc[i] = fma(vec4f(av), b0, acc[i]);
  if (TN == 8u) { acc[i + 1u] = fma(vec4f(av), b1, acc[i + 1u]); }
}

fn computeTile(buf: u32, tx: u32, ty: u32) {
  let offA = buf * BK * SA + ty;
  let offB = buf * BK * SB + tx;
  for (var k = 0u; k < BK; k++) {
    // Rows ty·4 .. +3 and, with TM = 8, 4·WG_Y rows further; columns likewise with WG_X.
    let a0 = As[offA + k * SA];
    let b0 = Bs[offB + k * SB];
    var a1 = vec4f(0.0);
    var b1 = vec4f(0.0);
    if (TM == 8u) { a1 = As[offA + k * SA + WG_Y]; }
    if (TN == 8u) { b1 = Bs[offB + k * SB + WG_X]; }
    fmaRow(0u, a0.x, b0, b1);
    fmaRow(1u, a0.y, b0, b1);
    fmaRow(2u, a0.z, b0, b1);
    fmaRow(3u, a0.w, b0, b1);
    if (TM == 8u) {
      fmaRow(4u, a1.x, b0, b1);
      fmaRow(5u, a1.y, b0, b1);
      fmaRow(6u, a1.z, b0, b1);
      fmaRow(7u, a1.w, b0, b1);
    }
  }
}

// Activations: the same math as kernels/elementwise.wgsl (unaryF), on vec4s.
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const INV_SQRT_2: f32 = 0.7071067811865476;

fn sigmoid4(x: vec4f) -> vec4f { return 1.0 / (1.0 + exp(-x)); }

// #include lib/erf.wgsl  (erf_f32, erf4)

fn activate(x: vec4f) -> vec4f {
  switch ACT {
    case 11u: { return x * sigmoid4(x); }
    case 12u: { return 0.5 * x * (1.0 + tanhSafe(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))); }
    case 13u: { return 0.5 * x * (1.0 + erf4(x * INV_SQRT_2)); }
    case 14u: { return x * sigmoid4(1.702 * x); }
    default: { return x; }
  }
}

// Epilogue of 4 outputs (row m, columns n .. n+3): alpha, bias, optional pre-activation store, activation, residual,
// store. Split-K (firstZOnly): slice 0 carries the bias into the sum; sum_slices adds the residual.
fn emit(m: u32, n: u32, z: u32, sum: vec4f) {
  if (m >= params.M || n >= params.N) { return; }
  var v = params.alpha * sum;
  if (HAS_BIAS && (z == 0u || params.firstZOnly == 0u)) { v += fetch4(BUF_BIAS, n, n, params.N, true); }
  let e = z * params.batchY + m * params.N + n;
  if (params.storePre != 0u) { store4(true, e, n, v); }
  var out = activate(v);
  if (HAS_RES && params.firstZOnly == 0u) { out += fetch4(BUF_RES, e, n, params.N, true); }
  store4(false, e, n, out);
}

fn emitRow(r: u32, m0: u32, n0: u32, tx: u32, ty: u32, z: u32) {
  let m = m0 + (r / 4u) * WG_Y * 4u + ty * 4u + r % 4u;
  let i = r * (TN / 4u);
  emit(m, n0 + tx * 4u, z, acc[i]);
  if (TN == 8u) { emit(m, n0 + WG_X * 4u + tx * 4u, z, acc[i + 1u]); }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tile = wid.y * nwg.x + wid.x;
  if (tile >= params.tilesM * params.tilesN) { return; }
  // Swizzled order: GROUP_M tile rows sweep the columns together, so concurrent workgroups share B tiles in L2.
  let span = GROUP_M * params.tilesN;
  let first = (tile / span) * GROUP_M;
  let rows = min(params.tilesM - first, GROUP_M);
  let m0 = (first + (tile % span) % rows) * BM;
  let n0 = ((tile % span) / rows) * BN;
  let z = wid.z;
  let tx = lid3.x;
  let ty = lid3.y;

  // Pair 1's K tiles, then pair 2's (a split-K slice z > 0 has no second pair: it goes into slice 0 only). Two loops
  // with a constant pair each, so every load's buffer and layout are known to the compiler (one loop that switched
  // pairs by a variable made all loads go through a runtime buffer switch). The next tile's loads are issued before
  // the current tile's compute; the last tile of pair 1 prefetches pair 2's first.
  let nt1 = (params.K + BK - 1u) / BK;
  let nt2 = select(0u, (params.K2 + BK - 1u) / BK, PAIR2 && (z == 0u || params.firstZOnly == 0u));
  if (nt1 > 0u) {
    loadTile(0u, 0u, m0, n0, z, lid);
    storeTile(0u, 0u, lid);
  } else if (nt2 > 0u) {
    loadTile(1u, 0u, m0, n0, z, lid);
    storeTile(1u, 0u, lid);
  }
  workgroupBarrier();
  if (!PAIR2) {
    // One pair: one loop (a single copy of the unrolled tile code measured fastest for plain GEMMs).
    for (var t = 0u; t < nt1; t++) {
      let more = t + 1u < nt1;
      if (more) { loadTile(0u, (t + 1u) * BK, m0, n0, z, lid); }
      computeTile(t % 2u, tx, ty);
      if (more) { storeTile(0u, (t + 1u) % 2u, lid); }
      workgroupBarrier();
    }
  } else {
    // Two pairs: pair 1's steady state without per-tile branches, its last tile peeled (prefetching pair 2's first),
    // then pair 2 (H100 LoRA 1024×1280×10240 r64: 1.17 → 1.01 ms against one loop switching pairs).
    for (var t = 0u; t + 1u < nt1; t++) {
      loadTile(0u, (t + 1u) * BK, m0, n0, z, lid);
      computeTile(t % 2u, tx, ty);
      storeTile(0u, (t + 1u) % 2u, lid);
      workgroupBarrier();
    }
    if (nt1 > 0u) {
      let t = nt1 - 1u;
      let more2 = nt2 > 0u;
      if (more2) { loadTile(1u, 0u, m0, n0, z, lid); }
      computeTile(t % 2u, tx, ty);
      if (more2) { storeTile(1u, (t + 1u) % 2u, lid); }
      workgroupBarrier();
    }
    for (var t = 0u; t < nt2; t++) {
      let g = nt1 + t;  // global tile index: its shared buffer is g % 2
      let more = t + 1u < nt2;
      if (more) { loadTile(1u, (t + 1u) * BK, m0, n0, z, lid); }
      computeTile(g % 2u, tx, ty);
      if (more) { storeTile(1u, (g + 1u) % 2u, lid); }
      workgroupBarrier();
    }
  }

  emitRow(0u, m0, n0, tx, ty, z);
  emitRow(1u, m0, n0, tx, ty, z);
  emitRow(2u, m0, n0, tx, ty, z);
  emitRow(3u, m0, n0, tx, ty, z);
  if (TM == 8u) {
    emitRow(4u, m0, n0, tx, ty, z);
    emitRow(5u, m0, n0, tx, ty, z);
    emitRow(6u, m0, n0, tx, ty, z);
    emitRow(7u, m0, n0, tx, ty, z);
  }
}

// Split-K: y[i] = Σ_z y_z[i] over params.K slices of params.M elements (Elems: vec4s in VEC4 mode) [+ res[i]].
@compute @workgroup_size(256)
fn sum_slices(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * 256u + lid;
  if (i >= params.M) { return; }
  var acc = toVec4(a[i]);
  for (var z = 1u; z < params.K; z++) { acc += toVec4(a[z * params.M + i]); }
  if (HAS_RES) { acc += toVec4(res[i]); }
  y[i] = elem4(acc);
}
