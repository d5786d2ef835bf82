// Reductions over one axis, and their broadcast backward.
//   reduce_axis:    x viewed as [O, N, I]; y[q] = POST(scale · Σ_j PRE(x[o, j, i])) for each output q = o·I + i.
//                   A workgroup of WG threads is wgX outputs × wgY reducing threads (a uniform split, so one
//                   pipeline serves every shape); wgX = 1 gives one contiguous row per workgroup (coalesced along
//                   N), wgX > 1 gives wgX neighbouring outputs (coalesced along I).
//                   The N range can be split into `chunks` workgroups that write partial sums y[outOffset +
//                   chunk·Q + q]; the wrapper then reduces the [chunks, Q] partials in a second dispatch.
//                   Each thread accumulates a strided slice in f32 (four interleaved sums), then a tree in
//                   workgroup memory combines the wgY slices: the summation is pairwise above the per-thread
//                   level, so 10^8 elements keep f32 accuracy (tested against float64).
//   broadcast_axis: dx[o, j, i] = scale · dy[o, i] (backward of sum / mean).

const PRE_NONE: u32 = 0u;
const PRE_SQUARE: u32 = 1u;
const POST_NONE: u32 = 0u;
const POST_SQRT: u32 = 1u;

override WG: u32 = 256u;    // power of two
override PRE: u32 = 0u;
override POST: u32 = 0u;

struct Params {
  Q: u32,            // outputs (O·I)
  N: u32,            // length of the reduced axis
  I: u32,            // elements after the reduced axis (its stride)
  tiles: u32,        // ceil(Q / wgX)
  chunks: u32,       // workgroups splitting N
  rowsPerChunk: u32,
  outOffset: u32,    // first element of y written
  scale: f32,        // applied to each output (1/N for mean, 1 for partial sums)
  wgX: u32,          // outputs per workgroup (power of two)
  wgY: u32,          // threads reducing each output: WG / wgX
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, WG>;

fn pre(v: f32) -> f32 {
  if (PRE == PRE_SQUARE) { return v * v; }
  return v;
}

fn post(v: f32) -> f32 {
  if (POST == POST_SQRT) { return sqrt(v); }
  return v;
}

@compute @workgroup_size(WG)
fn reduce_axis(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
               @builtin(local_invocation_index) lid: u32) {
  let flat = wid.y * nwg.x + wid.x;
  let tile = flat % params.tiles;
  let chunk = flat / params.tiles;
  // Whole workgroups past the grid leave together, so the barriers below stay in uniform control flow.
  if (chunk >= params.chunks) { return; }
  let wgX = params.wgX;
  let wgY = params.wgY;
  let c = lid % wgX;
  let r = lid / wgX;
  let q = tile * wgX + c;
  var acc = 0.0;
  if (q < params.Q) {
    let o = q / params.I;
    let base = o * params.N * params.I + q % params.I;
    let j0 = chunk * params.rowsPerChunk;
    let j1 = min(params.N, j0 + params.rowsPerChunk);
    // Four independent accumulators keep four loads in flight per thread.
    let I = params.I;
    var a = vec4f(0.0);
    var j = j0 + r;
    for (; j + 3u * wgY < j1; j += 4u * wgY) {
      a += vec4f(pre(x[base + j * I]), pre(x[base + (j + wgY) * I]), pre(x[base + (j + 2u * wgY) * I]),
                 pre(x[base + (j + 3u * wgY) * I]));
    }
    for (; j < j1; j += wgY) { a.x += pre(x[base + j * I]); }
    acc = (a.x + a.y) + (a.z + a.w);
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = wgY / 2u; s > 0u; s >>= 1u) {
    if (r < s) { red[lid] += red[lid + s * wgX]; }
    workgroupBarrier();
  }
  if (r == 0u && q < params.Q) {
    y[params.outOffset + chunk * params.Q + q] = post(params.scale * red[c]);
  }
}

@compute @workgroup_size(256)
fn broadcast_axis(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                  @builtin(local_invocation_index) lid: u32) {
  let k = (wid.y * nwg.x + wid.x) * 256u + lid;
  let NI = params.N * params.I;
  if (k >= params.Q * params.N) { return; }
  // dx is [O, N, I]; dy is [O, I] (q = o·I + i).
  let q = (k / NI) * params.I + k % params.I;
  y[k] = params.scale * x[q];
}
