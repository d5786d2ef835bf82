// Counter-based random fill. Element i takes its bits from a keyed hash of its counter alone, so the values do not
// depend on the dispatch shape and the CPU reference (src/reference/random.ts) reproduces the bits exactly.
//   bits(c)  = pcg(pcg(c + key0) ^ key1)                      (pcg: the PCG-RXS-M-XS 32-bit output permutation)
//   uniform: y = a + (b - a) · u,  u = (bits(i) >> 8) · 2^-24 ∈ [0, 1)
//   normal:  y = a + b · z,        z = √(−2 ln u1) · cos(2π u2) (Box–Muller), u1 = ((bits(2i) >> 8) + 1) · 2^-24
//            ∈ (0, 1], u2 = (bits(2i + 1) >> 8) · 2^-24; |z| <= √(2·24·ln 2) = 5.77
//   fill:    y = a
// Elements are addressed by a 2-D grid of 256-wide workgroups so more than 65535·256 elements fit one dispatch.

struct Params {
  n: u32,
  key0: u32,
  key1: u32,
  a: f32,
  b: f32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

const PI: f32 = 3.14159265358979;
const INV_2_24: f32 = 5.9604644775390625e-8;

fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

fn bits(c: u32) -> u32 { return pcg(pcg(c + params.key0) ^ params.key1); }

// ln(w) for w in (0, 1]. Near 1 the built-in log is only good to an absolute 2^-21, which is most of the value (and
// of √(−2 ln w)); there ln w = 2·atanh(s), s = (w − 1)/(w + 1), |s| <= 0.053, with w − 1 exact (Sterbenz).
fn ln01(w: f32) -> f32 {
  if (w < 0.9) { return log(w); }
  let s = (w - 1.0) / (w + 1.0);
  let s2 = s * s;
  return 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (0.2 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0)))));
}

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 { return (wid.y * nwg.x + wid.x) * 256u + lid; }

@compute @workgroup_size(256)
fn uniform_fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let u = f32(bits(i) >> 8u) * INV_2_24;
  y[i] = params.a + (params.b - params.a) * u;
}

@compute @workgroup_size(256)
fn normal_fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let u1 = f32((bits(2u * i) >> 8u) + 1u) * INV_2_24;
  let u2 = f32(bits(2u * i + 1u) >> 8u) * INV_2_24;
  // cos(2π u2) = −cos(2π u2 − π): the argument stays in [−π, π), where WGSL's cos error bound applies.
  let z = sqrt(max(-2.0 * ln01(u1), 0.0)) * -cos(2.0 * PI * u2 - PI);
  y[i] = params.a + params.b * z;
}

@compute @workgroup_size(256)
fn constant_fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  y[i] = params.a;
}
