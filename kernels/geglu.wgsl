// GEGLU (diffusers activations.GEGLU, after its proj Linear): the projection p[R, 2F] is split along the last dim,
// hidden = p[r, 0..F) (FIRST half) and gate = p[r, F..2F) (SECOND half), and y[r, j] = hidden · GELU_erf(gate).
//   geglu:       y from p, one feature per thread
//   geglu_grad:  dp[R, 2F] from p and dy[R, F]:  dp[r, j] = dy·GELU(gate),  dp[r, F + j] = dy·hidden·GELU'(gate)
//   *_vec4:      the same with 4 consecutive features per thread through vec4 views of the same buffers (F % 4 == 0),
//                so each thread issues 16-byte loads/stores (the op is memory-bound).
// Storage is T / T4 (f32 or f16, the harness's element prelude); the math is f32 in both.
// Threads are addressed by a 2-D grid of 256-wide workgroups (more than 65535·256 items fit one dispatch).

struct Params {
  n: u32,    // threads with work: R·F (scalar) or R·F/4 (vec4)
  F: u32,    // features per row of y, in elements (scalar) or vec4s (vec4)
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> p: array<T>;
@group(0) @binding(2) var<storage, read> dy: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
@group(0) @binding(4) var<storage, read> p4: array<T4>;
@group(0) @binding(5) var<storage, read> dy4: array<T4>;
@group(0) @binding(6) var<storage, read_write> y4: array<T4>;

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 { return (wid.y * nwg.x + wid.x) * 256u + lid; }

// #include lib/erf.wgsl  (erf_f32, erf4)

const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

fn gelu(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_f32(x * INV_SQRT_2)); }
fn gelu_grad(x: f32) -> f32 { return 0.5 * (1.0 + erf_f32(x * INV_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x); }
fn gelu4(x: vec4f) -> vec4f { return vec4f(gelu(x.x), gelu(x.y), gelu(x.z), gelu(x.w)); }
fn gelu_grad4(x: vec4f) -> vec4f { return vec4f(gelu_grad(x.x), gelu_grad(x.y), gelu_grad(x.z), gelu_grad(x.w)); }

// Index of hidden[r, j] in p (gate[r, j] is F further on).
fn hiddenIndex(i: u32) -> u32 {
  let r = i / params.F;
  return i + r * params.F;
}

@compute @workgroup_size(256)
fn geglu(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let h = hiddenIndex(i);
  y[i] = toT(f32(p[h]) * gelu(f32(p[h + params.F])));
}

@compute @workgroup_size(256)
fn geglu_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let h = hiddenIndex(i);
  let a = f32(p[h]);
  let g = f32(p[h + params.F]);
  let d = f32(dy[i]);
  y[h] = toT(d * gelu(g));
  y[h + params.F] = toT(d * a * gelu_grad(g));
}

@compute @workgroup_size(256)
fn geglu_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let h = hiddenIndex(i);
  y4[i] = toT4(vec4f(p4[h]) * gelu4(vec4f(p4[h + params.F])));
}

@compute @workgroup_size(256)
fn geglu_grad_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let h = hiddenIndex(i);
  let a = vec4f(p4[h]);
  let g = vec4f(p4[h + params.F]);
  let d = vec4f(dy4[i]);
  y4[h] = toT4(d * gelu4(g));
  y4[h + params.F] = toT4(d * a * gelu_grad4(g));
}
