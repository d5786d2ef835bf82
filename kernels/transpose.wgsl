// Batched transpose of the last two dims: y[b, c, r] = x[b, r, c] for x [B, R, C], y [B, C, R].
// The UNet's Transformer2DModel needs it twice per call: NCHW feature maps viewed as [B, C, H·W] become token rows
// [B, H·W, C] for proj_in, and proj_out's token rows go back to [B, C, H·W]. The backward of a transpose is the
// transpose of dy.
// A 16×16 tile goes through workgroup memory so both the global reads (along C) and the writes (along R) are
// coalesced; the tile row is padded to 17 floats so the column reads hit distinct banks.
// Grid: x = ceil(C / 16) tiles along C, y = ceil(R / 16) tiles along R, z = B (the wrapper folds large y into z-less
// 2-D grids where needed; see src/kernels/transpose.ts).

struct Params {
  R: u32,
  C: u32,
  tilesR: u32,   // tiles along R (the grid's y extent is tilesR · B when the batch is folded into y)
  fold: u32,     // 1: wid.y = b · tilesR + tile row (batch folded into y); 0: batch in wid.z
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

var<workgroup> tile: array<f32, 272>;   // 16 rows × 17

@compute @workgroup_size(16, 16)
fn transpose(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  var b = wid.z;
  var tr = wid.y;
  if (params.fold == 1u) {
    b = wid.y / params.tilesR;
    tr = wid.y % params.tilesR;
  }
  let R = params.R;
  let C = params.C;
  let base = b * R * C;
  let r0 = tr * 16u;
  let c0 = wid.x * 16u;
  let r = r0 + lid.y;
  let c = c0 + lid.x;
  if (r < R && c < C) { tile[lid.y * 17u + lid.x] = f32(x[base + r * C + c]); }
  workgroupBarrier();
  // Output row oc (a column of x), output column orr (a row of x): neighbouring threads write neighbouring floats.
  let oc = c0 + lid.y;
  let orr = r0 + lid.x;
  if (oc < C && orr < R) { y[base + oc * R + orr] = toT(tile[lid.x * 17u + lid.y]); }
}
