// Reductions.
//   sum_to: y[i] = sum of x over the dims where the target shape has 1 (x's shape elsewhere); one invocation per
//           output element, f32 accumulation. Used to reduce broadcast gradients back to an operand's shape.

struct Params {
  n: u32,        // output elements
  rank: u32,
  inner: u32,    // elements summed per output
  _pad: u32,
  outShape: array<vec4u, 2>,  // target shape (1 on reduced dims)
  redShape: array<vec4u, 2>,  // x's size on reduced dims, 1 on kept dims
  xStrides: array<vec4u, 2>,  // row-major element strides of x
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn dim(v: array<vec4u, 2>, i: u32) -> u32 { return v[i / 4u][i % 4u]; }

fn offsetOf(i: u32, shape: array<vec4u, 2>) -> u32 {
  var rem = i;
  var off = 0u;
  for (var d = i32(params.rank) - 1; d >= 0; d--) {
    let k = u32(d);
    let s = dim(shape, k);
    off += (rem % s) * dim(params.xStrides, k);
    rem = rem / s;
  }
  return off;
}

@compute @workgroup_size(256)
fn sum_to(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * 256u + lid;
  if (i >= params.n) { return; }
  let base = offsetOf(i, params.outShape);
  var acc = 0.0;
  for (var j = 0u; j < params.inner; j++) {
    acc += x[base + offsetOf(j, params.redShape)];
  }
  y[i] = acc;
}
