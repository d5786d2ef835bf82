// 2-D convolution (NCHW, PyTorch cross-correlation, zero padding, groups = 1) as implicit GEMM, its input and weight
// gradients, and the LoRA fusion. Entry points:
//
//   conv        Y[b, m, py, px] = alpha · Σ_{c, ky, kx} Wp[ky·kw + kx][c][m] · S[b, c, sy, sx]
//                                 (+ pair 2) + bias[m] + res[b, m, py, px]
//               GEMM view: M = Cd (destination channels), N = B·Hd·Wd (destination pixels), K = Cs·kh·kw.
//               The source pixel of destination row py and tap row ky is sy = (py·stride − padY + ky) / dil; it
//               counts only when in range and (dil > 1) when the division is exact; likewise sx.
//                 forward:       S = x, Wp = W packed [kh·kw][Cin][Cout], stride = s, dil = 1, pad = p.
//                 input grad:    S = dy, Wp = W transposed and flipped, [kh·kw][Cout][Cin] (a transposed conv),
//                                stride = 1, dil = s, pad = k−1−p: only the taps whose forward pixel exists add up.
//               Pair 2 walks a second operand after the K loop into the same accumulators (C2 channels, weights a2):
//                 pair2 = 1  pointwise: x2[b, c, py, px] (LoRA up-projection h → y, a 1×1 conv at the output pixel);
//                 pair2 = 2  the same gather as pair 1 over x2 (LoRA input grad: dy·Wᵀ + dh·Aᵀ in one pass).
//               FLAG_SPLIT: the workgroups of grid z take the z-th share of the K tiles and write raw partial sums to
//               y[z][...]; splitk_sum adds the shares and applies the epilogue.
//   conv_wgrad  dW[m][c·kh·kw + tap] = alpha · Σ_{b, py, px} dy[b, m, py, px] · x[b, c, sy, sx] (forward geometry)
//               GEMM view: M = Cd (dy channels), N = Cs·kh·kw, K = B·Hd·Wd walked one BK-wide run of a row at a time;
//               grid z splits K (partials y[z][M][N], summed by the wrapper).
//   pack_weight W [Co][Ci][kh·kw] → alpha·W as [tap][Ci][Co], or with FLAG_FLIP as [tap][Co][Ci] with the taps
//               reversed.
//   splitk_sum  y[i] = Σ_z x[z·count + i] + bias[channel] + res[i].
//
// Tiling (conv, conv_wgrad). A workgroup of WG_X × WG_Y = (BN/TN) × (BM/TM) threads computes a BM × BN block; each
// thread holds TM × TN outputs in registers as (TM/4) × (TN/4) sub-blocks of 4×4 spaced 4·WG_Y rows / 4·WG_X columns
// apart, so its shared-memory reads are vec4 broadcasts (A) or contiguous runs (B). K is walked BK at a time through
// two shared buffers stored k-major (As[k][m], Bs[k][n]); the next tile's global loads go to registers before the
// current tile is computed, so one barrier per tile suffices. Tile sizes are override constants, so the inner loops
// unroll; the geometry (kernel size, stride, pair 2, epilogue) is uniform, so one pipeline per tile serves every
// conv (each pipeline costs seconds to build on CPU Vulkan drivers).
//
// The im2col gather is done while loading the B tile, with its index math hoisted: a conv K tile is BK channels of
// one tap (K order: channel block, tap, channel). Each thread keeps its output pixel (b, py·stride − pad, ...) for the
// whole K loop, steps the (channel block, ky, kx) of the tile with counters instead of divisions, computes one source
// offset and validity per tile, and then only adds a channel stride per element. Weights are packed so that A-tile
// rows are contiguous over m (coalesced loads).

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 8u;
override TM: u32 = 4u;
override TN: u32 = 4u;

override WG_X: u32 = BN / TN;
override WG_Y: u32 = BM / TM;
override THREADS: u32 = WG_X * WG_Y;
// vec4 stride of one k-row of As / Bs; the extra vec4 keeps conv_wgrad's transposing A stores free of bank conflicts.
override SA: u32 = BM / 4u + 1u;
override SB: u32 = BN / 4u + 1u;
override AS_LEN: u32 = 2u * BK * SA;
override BS_LEN: u32 = 2u * BK * SB;
override LA: u32 = BM * BK / THREADS;  // A-tile elements each thread loads
override LB: u32 = BN * BK / THREADS;

const FLAG_BIAS: u32 = 1u;
const FLAG_RES: u32 = 2u;
const FLAG_SPLIT: u32 = 4u;
const FLAG_FLIP: u32 = 8u;

struct Params {
  Cs: u32,       // gather source [B, Cs, Hs, Ws]
  Hs: u32,
  Ws: u32,
  Cd: u32,       // destination [B, Cd, Hd, Wd] (conv_wgrad: dy)
  Hd: u32,
  Wd: u32,
  batch: u32,
  padY: i32,
  padX: i32,
  kh: u32,
  kw: u32,
  stride: u32,
  dil: u32,
  dilShift: u32, // log2(dil) when dil is a power of two, else 32
  C2: u32,       // channels of the pair-2 source
  pair2: u32,
  flags: u32,
  tilesM: u32,
  tilesN: u32,
  tiles1: u32,   // K tiles of pair 1
  tilesK: u32,   // all K tiles
  splits: u32,
  segs: u32,     // conv_wgrad: BK-wide runs per dy row
  count: u32,    // pack_weight, splitk_sum: elements
  alpha: f32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> a: array<T>;
@group(0) @binding(3) var<storage, read> x2: array<T>;
@group(0) @binding(4) var<storage, read> a2: array<T>;
@group(0) @binding(5) var<storage, read> bias: array<T>;
@group(0) @binding(6) var<storage, read> res: array<T>;
@group(0) @binding(7) var<storage, read_write> y: array<T>;

var<workgroup> As: array<vec4f, AS_LEN>;
var<workgroup> Bs: array<vec4f, BS_LEN>;

var<private> acc: array<vec4f, 16>;  // [TM][TN/4]
var<private> ra: array<f32, 8>;      // next tile, in flight
var<private> rb: array<f32, 8>;
// This thread's B-tile column, fixed for the whole K loop. conv: its destination pixel; conv_wgrad: its (c, tap).
var<private> gOk: bool;
var<private> gY0: i32;
var<private> gX0: i32;
var<private> gB: u32;
var<private> gPix: u32;
// The K tile being loaded. conv: (channel block, tap, ky, kx); conv_wgrad: (b, py, run).
var<private> kT: u32;
var<private> k0: u32;
var<private> k1: u32;
var<private> k2: u32;
var<private> k3: u32;

// Tile order: the M tiles of one N tile run side by side, so they share the gathered source in L2.
fn tileOrigin(wid: vec3u, nwg: vec3u) -> vec3u {
  let tile = wid.y * nwg.x + wid.x;
  return vec3u((tile % params.tilesM) * BM, (tile / params.tilesM) * BN, tile);
}

// conv: position the tile counters at tile t (divisions once per split).
fn convSeek(t: u32) {
  kT = t;
  var tt = t;
  var taps = params.kh * params.kw;
  if (params.pair2 != 0u && t >= params.tiles1) {
    tt = t - params.tiles1;
    if (params.pair2 == 1u) { taps = 1u; }
  }
  k0 = tt / taps;
  k1 = tt % taps;
  k2 = k1 / params.kw;
  k3 = k1 % params.kw;
}

// conv: step the counters to the next tile.
fn convNext() {
  kT += 1u;
  if (kT == params.tiles1) {  // first tile of pair 2
    k0 = 0u; k1 = 0u; k2 = 0u; k3 = 0u;
    return;
  }
  if (params.pair2 == 1u && kT > params.tiles1) { k0 += 1u; return; }
  k1 += 1u;
  k3 += 1u;
  if (k3 == params.kw) { k3 = 0u; k2 += 1u; }
  if (k2 == params.kh) { k2 = 0u; k1 = 0u; k0 += 1u; }
}

// Source coordinate for destination offset n (= py·stride − pad + ky): n / dil when exact, else out of range.
fn srcCoord(n: i32) -> u32 {
  if (params.dil == 1u) { return u32(n); }  // negative values wrap and fail the range test
  if (params.dilShift < 32u) {
    let ok = (n & i32(params.dil - 1u)) == 0;
    return select(0xffffffffu, u32(n >> params.dilShift), ok);  // >> on i32 floors, so negatives stay negative
  }
  let ok = n >= 0 && n % i32(params.dil) == 0;
  return select(0xffffffffu, u32(n) / params.dil, ok);
}

// The conv K tile at the counters: BK channels of one tap, of pair 1 or pair 2.
fn convLoad(m0: u32, lid: u32) {
  let second = params.pair2 != 0u && kT >= params.tiles1;
  let C = select(params.Cs, params.C2, second);
  let Cd = params.Cd;
  // A: rows of the packed weight [tap][C][Cd]; consecutive threads read consecutive m.
  let am = m0 + lid % BM;
  let arow = (k1 * C + k0 * BK + lid / BM) * Cd + am;
  let ac = k0 * BK + lid / BM;
  for (var j = 0u; j < LA; j++) {
    let c = ac + j * (THREADS / BM);
    let i = arow + j * (THREADS / BM) * Cd;
    var v = 0.0;
    if (c < C && am < Cd) {
      if (second) { v = f32(a2[i]); } else { v = f32(a[i]); }
    }
    ra[j] = v;
  }
  // B: one source offset per tile for this thread's pixel, then a channel stride per element.
  var ok = gOk;
  var base = 0u;
  var cstride = params.Hs * params.Ws;
  if (second && params.pair2 == 1u) {
    cstride = params.Hd * params.Wd;
    base = gB * params.C2 * cstride + gPix;
  } else {
    let sy = srcCoord(gY0 + i32(k2));
    let sx = srcCoord(gX0 + i32(k3));
    ok = ok && sy < params.Hs && sx < params.Ws;
    base = gB * C * cstride + sy * params.Ws + sx;
  }
  let bc = k0 * BK + lid / BN;
  base += bc * cstride;
  for (var j = 0u; j < LB; j++) {
    let c = bc + j * (THREADS / BN);
    let i = base + j * (THREADS / BN) * cstride;
    var v = 0.0;
    if (ok && c < C) {
      if (second) { v = f32(x2[i]); } else { v = f32(x[i]); }
    }
    rb[j] = v;
  }
}

// conv_wgrad: counters (b, py, run) at tile t.
fn wgradSeek(t: u32) {
  let row = t / params.segs;
  k2 = t % params.segs;
  k0 = row / params.Hd;
  k1 = row % params.Hd;
}

fn wgradNext() {
  k2 += 1u;
  if (k2 == params.segs) { k2 = 0u; k1 += 1u; }
  if (k1 == params.Hd) { k1 = 0u; k0 += 1u; }
}

// The conv_wgrad K tile at the counters: the BK-wide run k2 of dy row (b = k0, py = k1).
fn wgradLoad(m0: u32, lid: u32) {
  let b = k0;
  let py = k1;
  let px0 = k2 * BK;
  let HWd = params.Hd * params.Wd;
  // A = dy [b, m, py, px0 + k]: consecutive threads read consecutive k (32-byte runs).
  let apx = px0 + lid % BK;
  let am = m0 + lid / BK;
  let abase = (b * params.Cd + am) * HWd + py * params.Wd + apx;
  for (var j = 0u; j < LA; j++) {
    let m = am + j * (THREADS / BK);
    var v = 0.0;
    if (apx < params.Wd && m < params.Cd) { v = f32(a[abase + j * (THREADS / BK) * HWd]); }
    ra[j] = v;
  }
  // B = x gathered at this thread's (c, tap) for the run's pixels.
  let iy = gY0 + i32(py * params.stride);
  let rowOk = gOk && u32(iy) < params.Hs;
  let base = (b * params.Cs * params.Hs + u32(iy)) * params.Ws + gPix;
  let kb = lid / BN;
  for (var j = 0u; j < LB; j++) {
    let px = px0 + kb + j * (THREADS / BN);
    let ix = gX0 + i32(px * params.stride);
    var v = 0.0;
    if (rowOk && px < params.Wd && u32(ix) < params.Ws) { v = f32(x[base + u32(ix)]); }
    rb[j] = v;
  }
}

// ra / rb into shared buffer `buf`. aKFast: A was loaded k-fastest (conv_wgrad), else m-fastest.
fn storeTile(buf: u32, lid: u32, aKFast: bool) {
  for (var j = 0u; j < LA; j++) {
    var k: u32;
    var m: u32;
    if (aKFast) {
      k = lid % BK;
      m = lid / BK + j * (THREADS / BK);
    } else {
      k = lid / BM + j * (THREADS / BM);
      m = lid % BM;
    }
    As[(buf * BK + k) * SA + m / 4u][m % 4u] = ra[j];
  }
  let n = lid % BN;
  for (var j = 0u; j < LB; j++) {
    let k = lid / BN + j * (THREADS / BN);
    Bs[(buf * BK + k) * SB + n / 4u][n % 4u] = rb[j];
  }
}

fn computeTile(buf: u32, tx: u32, ty: u32) {
  let offA = buf * BK * SA + ty;
  let offB = buf * BK * SB + tx;
  var fa: array<vec4f, 2>;
  var fb: array<vec4f, 2>;
  for (var k = 0u; k < BK; k++) {
    for (var i = 0u; i < TM / 4u; i++) { fa[i] = As[offA + k * SA + i * WG_Y]; }
    for (var j = 0u; j < TN / 4u; j++) { fb[j] = Bs[offB + k * SB + j * WG_X]; }
    for (var r = 0u; r < TM; r++) {
      let av = vec4f(fa[r / 4u][r % 4u]);
      for (var j = 0u; j < TN / 4u; j++) {
        acc[r * (TN / 4u) + j] = fma(av, fb[j], acc[r * (TN / 4u) + j]);
      }
    }
  }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn conv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let o = tileOrigin(wid, nwg);
  if (o.z >= params.tilesM * params.tilesN) { return; }
  let m0 = o.x;
  let n0 = o.y;
  let tx = lid3.x;
  let ty = lid3.y;
  let HWd = params.Hd * params.Wd;
  let N = params.batch * HWd;
  let n = n0 + lid % BN;
  gOk = n < N;
  gB = n / HWd;
  gPix = n % HWd;
  gY0 = i32((gPix / params.Wd) * params.stride) - params.padY;
  gX0 = i32((gPix % params.Wd) * params.stride) - params.padX;

  let z = wid.z;
  let kt0 = z * params.tilesK / params.splits;
  let nt = (z + 1u) * params.tilesK / params.splits - kt0;
  if (nt > 0u) {
    convSeek(kt0);
    convLoad(m0, lid);
    storeTile(0u, lid, false);
  }
  workgroupBarrier();
  for (var t = 0u; t < nt; t++) {
    let more = t + 1u < nt;
    if (more) {
      convNext();
      convLoad(m0, lid);
    }
    computeTile(t % 2u, tx, ty);
    if (more) { storeTile((t + 1u) % 2u, lid, false); }
    workgroupBarrier();
  }

  let split = (params.flags & FLAG_SPLIT) != 0u;
  let outBase = select(0u, z * params.Cd * N, split);
  // Written out per register row (like kernels/matmul.wgsl): acc is indexed by constants only. A looped epilogue
  // with early exits left acc in local memory on the H100 for 8 outputs per thread along pixels (10× slower).
  convEmitRow(0u, m0, n0, tx, ty, N, outBase, split);
  convEmitRow(1u, m0, n0, tx, ty, N, outBase, split);
  convEmitRow(2u, m0, n0, tx, ty, N, outBase, split);
  convEmitRow(3u, m0, n0, tx, ty, N, outBase, split);
  if (TM == 8u) {
    convEmitRow(4u, m0, n0, tx, ty, N, outBase, split);
    convEmitRow(5u, m0, n0, tx, ty, N, outBase, split);
    convEmitRow(6u, m0, n0, tx, ty, N, outBase, split);
    convEmitRow(7u, m0, n0, tx, ty, N, outBase, split);
  }
}

// Register row r of the thread: its (TN/4) groups of 4 pixel columns of output channel m.
fn convEmitRow(r: u32, m0: u32, n0: u32, tx: u32, ty: u32, N: u32, outBase: u32, split: bool) {
  let m = m0 + (r / 4u) * WG_Y * 4u + ty * 4u + r % 4u;
  if (m >= params.Cd) { return; }
  let i = r * (TN / 4u);
  convEmit4(acc[i], m, n0 + tx * 4u, N, outBase, split);
  if (TN == 8u) { convEmit4(acc[i + 1u], m, n0 + WG_X * 4u + tx * 4u, N, outBase, split); }
}

// 4 outputs of channel m at destination columns nb .. nb+3 (they may cross into the next image).
fn convEmit4(sum: vec4f, m: u32, nb: u32, N: u32, outBase: u32, split: bool) {
  if (nb >= N) { return; }
  let HWd = params.Hd * params.Wd;
  let hasBias = (params.flags & FLAG_BIAS) != 0u && !split;
  let hasRes = (params.flags & FLAG_RES) != 0u && !split;
  var bm = 0.0;
  if (hasBias) { bm = f32(bias[m]); }
  let v = params.alpha * sum + vec4f(bm);
  var b = nb / HWd;
  var p = nb - b * HWd;
  for (var c = 0u; c < 4u; c++) {
    if (nb + c >= N) { break; }
    if (p == HWd) { p = 0u; b += 1u; }
    let e = (b * params.Cd + m) * HWd + p;
    var out = v[c];
    if (hasRes) { out += f32(res[e]); }
    y[outBase + e] = toT(out);
    p += 1u;
  }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn conv_wgrad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let o = tileOrigin(wid, nwg);
  if (o.z >= params.tilesM * params.tilesN) { return; }
  let m0 = o.x;
  let n0 = o.y;
  let tx = lid3.x;
  let ty = lid3.y;
  let taps = params.kh * params.kw;
  let N = params.Cs * taps;
  let n = n0 + lid % BN;
  let tap = n % taps;
  gOk = n < N;
  gPix = (n / taps) * params.Hs * params.Ws;  // the channel's offset within an image
  gY0 = i32(tap / params.kw) - params.padY;
  gX0 = i32(tap % params.kw) - params.padX;

  let z = wid.z;
  let kt0 = z * params.tilesK / params.splits;
  let nt = (z + 1u) * params.tilesK / params.splits - kt0;
  if (nt > 0u) {
    wgradSeek(kt0);
    wgradLoad(m0, lid);
    storeTile(0u, lid, true);
  }
  workgroupBarrier();
  for (var t = 0u; t < nt; t++) {
    let more = t + 1u < nt;
    if (more) {
      wgradNext();
      wgradLoad(m0, lid);
    }
    computeTile(t % 2u, tx, ty);
    if (more) { storeTile((t + 1u) % 2u, lid, true); }
    workgroupBarrier();
  }

  for (var r = 0u; r < TM; r++) {
    let m = m0 + (r / 4u) * WG_Y * 4u + ty * 4u + r % 4u;
    if (m >= params.Cd) { continue; }
    for (var j = 0u; j < TN / 4u; j++) {
      let nb = n0 + j * WG_X * 4u + tx * 4u;
      let v = params.alpha * acc[r * (TN / 4u) + j];
      for (var c = 0u; c < 4u; c++) {
        if (nb + c >= N) { break; }
        y[(z * params.Cd + m) * N + nb + c] = toT(v[c]);
      }
    }
  }
}

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 { return (wid.y * nwg.x + wid.x) * 256u + lid; }

// Ci = params.Cs, Co = params.Cd, taps = kh·kw.
@compute @workgroup_size(256)
fn pack_weight(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
               @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.count) { return; }
  let taps = params.kh * params.kw;
  let plane = params.Cs * params.Cd;
  let tap = i / plane;
  let rc = i % plane;
  var co: u32;
  var ci: u32;
  var srcTap = tap;
  if ((params.flags & FLAG_FLIP) != 0u) {
    co = rc / params.Cs;
    ci = rc % params.Cs;
    srcTap = taps - 1u - tap;
  } else {
    ci = rc / params.Cd;
    co = rc % params.Cd;
  }
  y[i] = toT(params.alpha * f32(x[(co * params.Cs + ci) * taps + srcTap]));
}

// y [B, Cd, Hd·Wd] = Σ_z partials + bias + res.
@compute @workgroup_size(256)
fn splitk_sum(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.count) { return; }
  var v = 0.0;
  for (var z = 0u; z < params.splits; z++) { v += f32(x[z * params.count + i]); }
  if ((params.flags & FLAG_BIAS) != 0u) { v += f32(bias[(i / (params.Hd * params.Wd)) % params.Cd]); }
  if ((params.flags & FLAG_RES) != 0u) { v += f32(res[i]); }
  y[i] = toT(v);
}
