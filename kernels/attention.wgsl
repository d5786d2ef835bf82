// Fused multi-head attention (flash-attention style), forward and backward. Q, K, V, O, dO, dQ, dK, dV are stored as
// T (f32 or f16, the harness's element prelude); LSE, Dv, the tiles in workgroup memory and all math are f32.
//
//   forward:   O = softmax(Q·Kᵀ·scale [+ causal mask]) · V, online softmax over key tiles (no N×M buffer);
//              also writes LSE = logsumexp of each row of scaled scores (natural log) for the backward.
//   bwd_prep:  Dv = rowsum(dO ⊙ O) per (b, head, query row)  (FlashAttention-2's D).
//   bwd_dq:    dQ = scale · Σ_keys dS · K, over key tiles, one workgroup per query block.
//   bwd_dkdv:  dV = Σ_queries Pᵀ · dO, dK = scale · Σ_queries dSᵀ · Q, over query tiles, one workgroup per key block;
//              P = exp(S − LSE) is recomputed from the saved LSE and dS = P ⊙ (dO·Vᵀ − Dv). No atomics.
//
// Layout (token-major, as a linear layer produces it; heads are split by strides, no transposes):
//   Q, O, dO, dQ: [B, N, heads·headDim]     K, V, dK, dV: [B, M, heads·headDim]     LSE, Dv: [B, heads, N]
// Buffers are read as vec4 (headDim is a multiple of 4); qStride / kStride / vStride / oStride are the vec4s per
// token row of Q, K, V (a fused projection's output rows hold several of them: then qOff / kOff / vOff say where
// each starts, in vec4s) and of O, dO, dQ, dK, dV (always contiguous: heads·headDim/4). The causal mask is top-left aligned: query n sees keys
// m ≤ n (CLIP's text encoder has N = M).
//
// Tiling (all kernels). A workgroup owns BR "rows" (queries; keys in bwd_dkdv) and walks the "columns" (keys;
// queries in bwd_dkdv) BC at a time. WG = (BR/TM)·TX threads: thread (ty, tx) owns rows ty·TM + i (i < TM), score
// columns tx + j·TX (j < TN = BC/TX) and output vec4 columns tx + c·TX (c < TC). Two register-tiled GEMMs per tile:
//   form A  (scores):  s[i][j] = Σ_d X[row i][d] · Y[col j][d]      X: [BR][XS] rows, Y: [BC][YS] columns (vec4 in d)
//   form B  (output):  acc[i][c] += Σ_col P[row i][col] · Y[col][c]  P: [BR][PS] (vec4 over columns)
// In shared memory the X and P reads of a row group are broadcasts, Y rows are YS = DVP + 1 vec4s apart (68 floats
// for headDim 64, so 8 lanes reading 8 columns at one d hit 8 disjoint bank quads), and form B's Y reads are
// contiguous vec4 runs. Column tiles are copied global → shared by all threads between two barriers; the copies are
// unrolled, so a thread's loads are all in flight before its first store.
// Scores are kept in the log2 domain: the row operand of Q·Kᵀ is pre-scaled by scale·log2(e) once, so the softmax
// is exp2(s − m) with no per-score multiply. Masked scores are NEG_BIG (finite, so no inf − inf NaNs); every row's
// first tile holds key 0, which no mask hides, so a row max is finite from the first tile on.
//
// Unrolling. Loop bounds are override constants, substituted before the driver compiles, so every loop unrolls and
// the private arrays (sized for the largest tiles: TM·TN ≤ 64, TM·TC ≤ 32) live in registers. With ROLL the d / column
// / copy loops take their trip counts from the uniform `one` (= 1) instead: same arithmetic, far less code, for CPU
// Vulkan (lavapipe compiles each unrolled shared-memory access lane by lane, tens of seconds per pipeline). The
// register-indexing loops (TM, TN, TC) unroll either way.

override HD: u32 = 64u;          // head dim (multiple of 4)
override BR: u32 = 64u;          // rows per workgroup
override BC: u32 = 32u;          // columns per tile (multiple of 4 and of TX)
override TM: u32 = 4u;           // rows per thread
override TX: u32 = 8u;           // threads per row group (multiple of 4)
override XP: u32 = 0u;           // vec4 padding per X row
override YP: u32 = 1u;           // vec4 padding per Y row
override PP: u32 = 1u;           // vec4 padding per P row
override ROLL: bool = false;

override DV: u32 = HD / 4u;                 // vec4s per head row
override TN: u32 = BC / TX;                 // score columns per thread
override TC: u32 = (DV + TX - 1u) / TX;     // output vec4 columns per thread
override DVP: u32 = TC * TX;                // head row padded so every thread owns TC columns (== DV when TX | DV)
override WG: u32 = (BR / TM) * TX;
override XS: u32 = DVP + XP;
override YS: u32 = DVP + YP;
override PS: u32 = BC / 4u + PP;
override X_LEN: u32 = BR * XS;
override Y_LEN: u32 = BC * YS;
override P_LEN: u32 = BR * PS;
override RED_LEN: u32 = BR * TX / 4u;
override LU: u32 = (BC * DV + WG - 1u) / WG;   // vec4s of one column tile each thread copies
override LX: u32 = (BR * DV + WG - 1u) / WG;   // vec4s of the row block each thread copies

const NEG_BIG: f32 = -3.0e38;
const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;

struct Params {
  N: u32,           // queries
  M: u32,           // keys
  heads: u32,
  rows: u32,        // bwd_prep: B·N·heads
  qStride: u32,     // vec4s per token row of Q
  kStride: u32,     // of K
  vStride: u32,     // of V
  oStride: u32,     // of O, dO, dQ, dK, dV (contiguous: heads·headDim/4)
  scaleLog2: f32,   // scale · log2(e)
  scale: f32,
  causal: u32,      // 1: query n sees keys m ≤ n only
  one: u32,         // 1: the trip-count factor of rolled loops (ROLL)
  qOff: u32,        // vec4 offset of Q's first element in its binding (0 unless Q is a slice of wider rows)
  kOff: u32,
  vOff: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<T4>;
@group(0) @binding(2) var<storage, read> k: array<T4>;
@group(0) @binding(3) var<storage, read> v: array<T4>;
@group(0) @binding(4) var<storage, read_write> o: array<T4>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read> dout: array<T4>;
@group(0) @binding(7) var<storage, read_write> dvec: array<f32>;
@group(0) @binding(8) var<storage, read_write> dq: array<T4>;
@group(0) @binding(9) var<storage, read_write> dk: array<T4>;
@group(0) @binding(10) var<storage, read_write> dv: array<T4>;

// Row operands (BR rows), column tiles (BC rows each), P-like tiles, the row-max exchange, per-column scalars.
// Each entry point's workgroup storage is the arrays its call graph touches, hence one copy function per array.
var<workgroup> X1: array<vec4f, X_LEN>;
var<workgroup> X2: array<vec4f, X_LEN>;
var<workgroup> Y1: array<vec4f, Y_LEN>;
var<workgroup> Y2: array<vec4f, Y_LEN>;
var<workgroup> P1: array<vec4f, P_LEN>;
var<workgroup> P2: array<vec4f, P_LEN>;
var<workgroup> red: array<vec4f, RED_LEN>;
var<workgroup> colL: array<f32, BC>;     // bwd_dkdv: LSE·log2(e) of the tile's queries
var<workgroup> colD: array<f32, BC>;     // bwd_dkdv: Dv of the tile's queries

var<private> sA: array<f32, 64>;         // [TM][TN]
var<private> sB: array<f32, 64>;
var<private> accA: array<vec4f, 32>;     // [TM][TC]
var<private> accB: array<vec4f, 32>;

// Trip count n, or n read through the uniform (not a constant to the driver) under ROLL.
fn trips(n: u32) -> u32 {
  if (ROLL) { return n * params.one; }
  return n;
}

// Element (vec4) index of vec4 c of head h of token `tok` (clamped into range: callers zero what lies past `count`).
fn rowIndex(stride: u32, b: u32, tok: u32, count: u32, h: u32, c: u32) -> u32 {
  return (b * count + min(tok, count - 1u)) * stride + h * DV + c;
}

// Copies of BR row-block tokens (r0 ..) into X1 / X2 times `mul`, and of BC column-tile tokens (t0 ..) into Y1 / Y2;
// tokens past `count` read as zero. `buf`: 0 q, 1 k, 2 v, 3 dO.
fn readBuf(buf: u32, i: u32) -> vec4f {
  switch buf {
    case 0u: { return vec4f(q[i]); }
    case 1u: { return vec4f(k[i]); }
    case 2u: { return vec4f(v[i]); }
    default: { return vec4f(dout[i]); }
  }
}

fn strideOf(buf: u32) -> u32 {
  switch buf {
    case 0u: { return params.qStride; }
    case 1u: { return params.kStride; }
    case 2u: { return params.vStride; }
    default: { return params.oStride; }
  }
}

fn offsetOf(buf: u32) -> u32 {
  switch buf {
    case 0u: { return params.qOff; }
    case 1u: { return params.kOff; }
    case 2u: { return params.vOff; }
    default: { return 0u; }
  }
}

fn fetch(buf: u32, b: u32, tok: u32, count: u32, h: u32, c: u32) -> vec4f {
  return select(vec4f(0.0), readBuf(buf, offsetOf(buf) + rowIndex(strideOf(buf), b, tok, count, h, c)), tok < count);
}

fn copyX1(buf: u32, b: u32, r0: u32, count: u32, h: u32, mul: f32, tid: u32) {
  for (var j = 0u; j < trips(LX); j++) {
    let u = tid + j * WG;
    if (u < BR * DV) { X1[(u / DV) * XS + u % DV] = fetch(buf, b, r0 + u / DV, count, h, u % DV) * mul; }
  }
}

fn copyX2(buf: u32, b: u32, r0: u32, count: u32, h: u32, mul: f32, tid: u32) {
  for (var j = 0u; j < trips(LX); j++) {
    let u = tid + j * WG;
    if (u < BR * DV) { X2[(u / DV) * XS + u % DV] = fetch(buf, b, r0 + u / DV, count, h, u % DV) * mul; }
  }
}

fn copyY1(buf: u32, b: u32, t0: u32, count: u32, h: u32, tid: u32) {
  for (var j = 0u; j < trips(LU); j++) {
    let u = tid + j * WG;
    if (u < BC * DV) { Y1[(u / DV) * YS + u % DV] = fetch(buf, b, t0 + u / DV, count, h, u % DV); }
  }
}

fn copyY2(buf: u32, b: u32, t0: u32, count: u32, h: u32, tid: u32) {
  for (var j = 0u; j < trips(LU); j++) {
    let u = tid + j * WG;
    if (u < BC * DV) { Y2[(u / DV) * YS + u % DV] = fetch(buf, b, t0 + u / DV, count, h, u % DV); }
  }
}

fn dot4(a: vec4f, b: vec4f, acc: f32) -> f32 {
  return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, acc))));
}

// Form A on (X1, Y1) into sA.
fn scoresA(tx: u32, ty: u32) {
  for (var e = 0u; e < TM * TN; e++) { sA[e] = 0.0; }
  for (var d = 0u; d < trips(DV); d++) {
    var xv: array<vec4f, 8>;
    for (var i = 0u; i < TM; i++) { xv[i] = X1[(ty * TM + i) * XS + d]; }
    for (var j = 0u; j < TN; j++) {
      let yv = Y1[(tx + j * TX) * YS + d];
      for (var i = 0u; i < TM; i++) { sA[i * TN + j] = dot4(xv[i], yv, sA[i * TN + j]); }
    }
  }
}

// Form A on (X2, Y2) into sB.
fn scoresB(tx: u32, ty: u32) {
  for (var e = 0u; e < TM * TN; e++) { sB[e] = 0.0; }
  for (var d = 0u; d < trips(DV); d++) {
    var xv: array<vec4f, 8>;
    for (var i = 0u; i < TM; i++) { xv[i] = X2[(ty * TM + i) * XS + d]; }
    for (var j = 0u; j < TN; j++) {
      let yv = Y2[(tx + j * TX) * YS + d];
      for (var i = 0u; i < TM; i++) { sB[i * TN + j] = dot4(xv[i], yv, sB[i * TN + j]); }
    }
  }
}

// Form B: acc += P · Y, for the three pairs the kernels use.
fn outP1Y2(tx: u32, ty: u32, toB: bool) {   // forward: accA += P·V;  bwd_dkdv: accB += Pᵀ·dO
  for (var c4 = 0u; c4 < trips(BC / 4u); c4++) {
    var pv: array<vec4f, 8>;
    for (var i = 0u; i < TM; i++) { pv[i] = P1[(ty * TM + i) * PS + c4]; }
    for (var cc = 0u; cc < 4u; cc++) {
      for (var c = 0u; c < TC; c++) {
        let yv = Y2[(c4 * 4u + cc) * YS + tx + c * TX];
        for (var i = 0u; i < TM; i++) {
          if (toB) { accB[i * TC + c] = fma(vec4f(pv[i][cc]), yv, accB[i * TC + c]); }
          else { accA[i * TC + c] = fma(vec4f(pv[i][cc]), yv, accA[i * TC + c]); }
        }
      }
    }
  }
}

fn outP1Y1(tx: u32, ty: u32) {   // bwd_dq: accA += dS·K
  for (var c4 = 0u; c4 < trips(BC / 4u); c4++) {
    var pv: array<vec4f, 8>;
    for (var i = 0u; i < TM; i++) { pv[i] = P1[(ty * TM + i) * PS + c4]; }
    for (var cc = 0u; cc < 4u; cc++) {
      for (var c = 0u; c < TC; c++) {
        let yv = Y1[(c4 * 4u + cc) * YS + tx + c * TX];
        for (var i = 0u; i < TM; i++) { accA[i * TC + c] = fma(vec4f(pv[i][cc]), yv, accA[i * TC + c]); }
      }
    }
  }
}

fn outP2Y1(tx: u32, ty: u32) {   // bwd_dkdv: accA += dSᵀ·Q
  for (var c4 = 0u; c4 < trips(BC / 4u); c4++) {
    var pv: array<vec4f, 8>;
    for (var i = 0u; i < TM; i++) { pv[i] = P2[(ty * TM + i) * PS + c4]; }
    for (var cc = 0u; cc < 4u; cc++) {
      for (var c = 0u; c < TC; c++) {
        let yv = Y1[(c4 * 4u + cc) * YS + tx + c * TX];
        for (var i = 0u; i < TM; i++) { accA[i * TC + c] = fma(vec4f(pv[i][cc]), yv, accA[i * TC + c]); }
      }
    }
  }
}

// sA entries whose (row, col) pair is masked become NEG_BIG. keysAreCols: rows are queries (forward, bwd_dq).
fn maskScores(tx: u32, ty: u32, r0: u32, c0: u32, colCount: u32, keysAreCols: bool) {
  for (var i = 0u; i < TM; i++) {
    let row = r0 + ty * TM + i;
    for (var j = 0u; j < TN; j++) {
      let col = c0 + tx + j * TX;
      let query = select(col, row, keysAreCols);
      let key = select(row, col, keysAreCols);
      let hide = col >= colCount || (params.causal != 0u && key > query);
      sA[i * TN + j] = select(sA[i * TN + j], NEG_BIG, hide);
    }
  }
}

fn setP1(row: u32, col: u32, x: f32) { P1[row * PS + col / 4u][col % 4u] = x; }
fn setP2(row: u32, col: u32, x: f32) { P2[row * PS + col / 4u][col % 4u] = x; }

// Sum (sumOf) or max of the TX values the row group put in red for row `row`.
fn redRow(row: u32, sumOf: bool) -> f32 {
  var acc = select(NEG_BIG, 0.0, sumOf);
  for (var g = 0u; g < TX / 4u; g++) {
    let w = red[(row * TX) / 4u + g];
    if (sumOf) { acc += (w.x + w.y) + (w.z + w.w); }
    else { acc = max(acc, max(max(w.x, w.y), max(w.z, w.w))); }
  }
  return acc;
}

// Keys a query block [q0, q0 + BR) needs: all M, or under the causal mask those up to its last query.
fn keyEnd(q0: u32) -> u32 {
  if (params.causal != 0u) { return min(params.M, min(params.N, q0 + BR)); }
  return params.M;
}

// Per key tile: S = Q·Kᵀ; row max over the row group (red); barrier; rescale, P = exp2(S − m) → P1 while the next K
// and this V are copied in; barrier; O += P·V. Two barriers per tile.
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let tx = tid % TX;
  let ty = tid / TX;
  let q0 = wid.x * BR;
  let h = wid.y;
  let b = wid.z;
  let N = params.N;
  let M = params.M;

  copyX1(0u, b, q0, N, h, params.scaleLog2, tid);
  copyY1(1u, b, 0u, M, h, tid);
  let nT = (keyEnd(q0) + BC - 1u) / BC;
  workgroupBarrier();

  var m: array<f32, 8>;   // running row max (log2 domain), the same in every thread of a row group
  var l: array<f32, 8>;   // this thread's share of the running row sum
  for (var i = 0u; i < TM; i++) { m[i] = NEG_BIG; l[i] = 0.0; }
  for (var e = 0u; e < TM * TC; e++) { accA[e] = vec4f(0.0); }

  for (var t = 0u; t < nT; t++) {
    let k0 = t * BC;
    scoresA(tx, ty);
    if (k0 + BC > M || (params.causal != 0u && k0 + BC - 1u > q0)) { maskScores(tx, ty, q0, k0, M, true); }
    for (var i = 0u; i < TM; i++) {
      var mx = sA[i * TN];
      for (var j = 1u; j < TN; j++) { mx = max(mx, sA[i * TN + j]); }
      let row = ty * TM + i;
      red[(row * TX + tx) / 4u][tx % 4u] = mx;
    }
    // red is complete; every thread is done with Y1 (this tile's K) and with Y2, P1 (the previous tile's V, P).
    workgroupBarrier();
    copyY2(2u, b, k0, M, h, tid);
    if (t + 1u < nT) { copyY1(1u, b, k0 + BC, M, h, tid); }
    for (var i = 0u; i < TM; i++) {
      let row = ty * TM + i;
      let mNew = max(m[i], redRow(row, false));
      let alpha = exp2(m[i] - mNew);
      m[i] = mNew;
      var ls = 0.0;
      for (var j = 0u; j < TN; j++) {
        let p = exp2(sA[i * TN + j] - mNew);
        ls += p;
        setP1(row, tx + j * TX, p);
      }
      l[i] = l[i] * alpha + ls;
      for (var c = 0u; c < TC; c++) { accA[i * TC + c] *= alpha; }
    }
    workgroupBarrier();
    outP1Y2(tx, ty, false);
  }

  // Row sums: combine the row group's shares (red is free: its last reads precede the loop's last barrier).
  for (var i = 0u; i < TM; i++) {
    let row = ty * TM + i;
    red[(row * TX + tx) / 4u][tx % 4u] = l[i];
  }
  workgroupBarrier();
  for (var i = 0u; i < TM; i++) {
    let row = q0 + ty * TM + i;
    if (row >= N) { continue; }
    let lt = redRow(ty * TM + i, true);
    let inv = 1.0 / lt;
    let base = (b * N + row) * params.oStride + h * DV;
    for (var c = 0u; c < TC; c++) {
      let col = tx + c * TX;
      if (col < DV) { o[base + col] = toT4(accA[i * TC + c] * inv); }
    }
    if (tx == 0u) { lse[(b * params.heads + h) * N + row] = (m[i] + log2(lt)) * LN2; }
  }
}

// Dv = rowsum(dO ⊙ O): one thread per (b, n, head), rows ordered (b, n, head) so neighbours read neighbouring memory.
@compute @workgroup_size(256)
fn bwd_prep(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
            @builtin(local_invocation_index) lid: u32) {
  let r = (wid.y * nwg.x + wid.x) * 256u + lid;
  if (r >= params.rows) { return; }
  let h = r % params.heads;
  let bn = r / params.heads;
  let n = bn % params.N;
  let b = bn / params.N;
  let ob = bn * params.oStride + h * DV;
  var acc = vec4f(0.0);
  for (var c = 0u; c < trips(DV); c++) { acc = fma(vec4f(dout[ob + c]), vec4f(o[ob + c]), acc); }
  dvec[(b * params.heads + h) * params.N + n] = (acc.x + acc.y) + (acc.z + acc.w);
}

// dQ for one query block: X1 = Q·scale·log2(e), X2 = dO; per key tile Y1 = K, Y2 = V; P1 = dS.
@compute @workgroup_size(WG)
fn bwd_dq(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let tx = tid % TX;
  let ty = tid / TX;
  let q0 = wid.x * BR;
  let h = wid.y;
  let b = wid.z;
  let N = params.N;
  let M = params.M;

  copyX1(0u, b, q0, N, h, params.scaleLog2, tid);
  copyX2(3u, b, q0, N, h, 1.0, tid);
  var lr: array<f32, 8>;   // LSE·log2(e) of the thread's rows
  var dr: array<f32, 8>;   // Dv of the thread's rows
  for (var i = 0u; i < TM; i++) {
    let row = q0 + ty * TM + i;
    let idx = (b * params.heads + h) * N + min(row, N - 1u);
    lr[i] = select(0.0, lse[idx] * LOG2E, row < N);
    dr[i] = select(0.0, dvec[idx], row < N);
  }
  let nT = (keyEnd(q0) + BC - 1u) / BC;
  for (var e = 0u; e < TM * TC; e++) { accA[e] = vec4f(0.0); }

  for (var t = 0u; t < nT; t++) {
    let k0 = t * BC;
    copyY1(1u, b, k0, M, h, tid);
    copyY2(2u, b, k0, M, h, tid);
    workgroupBarrier();
    scoresA(tx, ty);   // S (log2 domain)
    scoresB(tx, ty);   // dP = dO·Vᵀ
    if (k0 + BC > M || (params.causal != 0u && k0 + BC - 1u > q0)) { maskScores(tx, ty, q0, k0, M, true); }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) {
        let p = exp2(sA[i * TN + j] - lr[i]);
        setP1(ty * TM + i, tx + j * TX, p * (sB[i * TN + j] - dr[i]));
      }
    }
    workgroupBarrier();
    outP1Y1(tx, ty);   // dQ += dS·K
    workgroupBarrier();   // Y1, Y2, P1 free for the next tile
  }

  for (var i = 0u; i < TM; i++) {
    let row = q0 + ty * TM + i;
    if (row >= N) { continue; }
    let base = (b * N + row) * params.oStride + h * DV;
    for (var c = 0u; c < TC; c++) {
      let col = tx + c * TX;
      if (col < DV) { dq[base + col] = toT4(accA[i * TC + c] * params.scale); }
    }
  }
}

// dK, dV for one key block: X1 = K·scale·log2(e), X2 = V; per query tile Y1 = Q, Y2 = dO, colL / colD;
// P1 = Pᵀ, P2 = dSᵀ (rows are keys). accA = dK / scale, accB = dV.
@compute @workgroup_size(WG)
fn bwd_dkdv(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let tx = tid % TX;
  let ty = tid / TX;
  let k0 = wid.x * BR;
  let h = wid.y;
  let b = wid.z;
  let N = params.N;
  let M = params.M;

  copyX1(1u, b, k0, M, h, params.scaleLog2, tid);
  copyX2(2u, b, k0, M, h, 1.0, tid);
  // Query tiles: all, or under the causal mask those from the block's first key on.
  let tFirst = select(0u, k0 / BC, params.causal != 0u);
  let nT = (N + BC - 1u) / BC;
  let statBase = (b * params.heads + h) * N;
  for (var e = 0u; e < TM * TC; e++) { accA[e] = vec4f(0.0); accB[e] = vec4f(0.0); }

  for (var t = tFirst; t < nT; t++) {
    let c0 = t * BC;
    copyY1(0u, b, c0, N, h, tid);
    copyY2(3u, b, c0, N, h, tid);
    if (tid < BC) {
      let qi = c0 + tid;
      let idx = statBase + min(qi, N - 1u);
      colL[tid] = select(0.0, lse[idx] * LOG2E, qi < N);
      colD[tid] = select(0.0, dvec[idx], qi < N);
    }
    workgroupBarrier();
    scoresA(tx, ty);   // Sᵀ (log2 domain)
    scoresB(tx, ty);   // dPᵀ = V·dOᵀ
    if (c0 + BC > N || (params.causal != 0u && c0 < k0 + BR - 1u)) { maskScores(tx, ty, k0, c0, N, false); }
    for (var j = 0u; j < TN; j++) {
      let col = tx + j * TX;
      let lc = colL[col];
      let dc = colD[col];
      for (var i = 0u; i < TM; i++) {
        let p = exp2(sA[i * TN + j] - lc);
        setP1(ty * TM + i, col, p);
        setP2(ty * TM + i, col, p * (sB[i * TN + j] - dc));
      }
    }
    workgroupBarrier();
    outP1Y2(tx, ty, true);   // dV += Pᵀ·dO
    outP2Y1(tx, ty);         // dK += dSᵀ·Q
    workgroupBarrier();
  }

  for (var i = 0u; i < TM; i++) {
    let row = k0 + ty * TM + i;
    if (row >= M) { continue; }
    let kb = (b * M + row) * params.oStride + h * DV;
    let vb = (b * M + row) * params.oStride + h * DV;
    for (var c = 0u; c < TC; c++) {
      let col = tx + c * TX;
      if (col < DV) {
        dk[kb + col] = toT4(accA[i * TC + c] * params.scale);
        dv[vb + col] = toT4(accB[i * TC + c]);
      }
    }
  }
}
