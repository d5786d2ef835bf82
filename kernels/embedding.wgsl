// Row gather (embedding lookup), optionally plus a per-position row:
//   y[r, c] = table[idx[r], c] + (hasPos ? pos[r % T, c] : 0)        r < rows (= ids.size), c < D
// CLIP's text embeddings are token_embedding[ids] + position_embedding[0..T): one dispatch. Without pos it picks rows
// of any [R, D] matrix (the pooled EOS rows of the last hidden state).
// Indices arrive as f32 (exact integers below 2^24; vocabularies are far smaller) and are clamped to the table, so a
// bad id can never read out of bounds; the wrappers check ids on the host where they have them.
// One thread per output element; a 2-D grid of 256-wide workgroups.

struct Params {
  n: u32,          // rows · D
  D: u32,
  tableRows: u32,
  T: u32,          // positions (period of r for pos)
  hasPos: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> idx: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read> pos: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 { return (wid.y * nwg.x + wid.x) * 256u + lid; }

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = flatIndex(wid, nwg, lid);
  if (e >= params.n) { return; }
  let c = e % params.D;
  let r = e / params.D;
  let row = min(u32(max(idx[r], 0.0)), params.tableRows - 1u);
  var v = table[row * params.D + c];
  if (params.hasPos == 1u) { v += pos[(r % params.T) * params.D + c]; }
  y[e] = v;
}
