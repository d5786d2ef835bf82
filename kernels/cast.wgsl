// Element type conversion between f32 and f16 tensors (same shape, contiguous).
//   to_f16: y16[i] = f16(x32[i]), round to nearest even; beyond the f16 range ±Infinity (as toT in the harness's
//           element prelude: WGSL leaves a runtime out-of-range conversion undefined).
//   to_f32: y32[i] = f32(x16[i]) (exact).
// Only compiled on devices with 'shader-f16'. Elements are addressed by a 2-D grid of 256-wide workgroups.
enable f16;

struct Params {
  n: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x32: array<f32>;
@group(0) @binding(2) var<storage, read> x16: array<f16>;
@group(0) @binding(3) var<storage, read_write> y32: array<f32>;
@group(0) @binding(4) var<storage, read_write> y16: array<f16>;

// Infinity from a private variable: a const-expression infinity is a shader-creation error.
var<private> F16_INF_BITS: u32 = 0x7c007c00u;

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 { return (wid.y * nwg.x + wid.x) * 256u + lid; }

@compute @workgroup_size(256)
fn to_f16(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let v = x32[i];
  let inf = bitcast<vec2<f16>>(F16_INF_BITS).x;
  if (v >= 65520.0) { y16[i] = inf; } else if (v <= -65520.0) { y16[i] = -inf; } else { y16[i] = f16(v); }
}

@compute @workgroup_size(256)
fn to_f32(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  y32[i] = f32(x16[i]);
}
