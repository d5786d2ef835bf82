// Sinusoidal timestep embedding, diffusers get_timestep_embedding (embeddings.py):
//   arg[n, i] = scale · (f32(t[n]) · freq[i]),  i < half = dim / 2, freq from the host (see below)
//   y[n, :]   = [sin(arg) | cos(arg)], or [cos(arg) | sin(arg)] with flip_sin_to_cos; an odd dim leaves a zero last.
// Every product is rounded to f32 as torch rounds it. freq[i] = f32(exp(f32(f32(−ln(max_period)) · i) / f32(half −
// shift))) is computed on the host (correctly rounded exp; the WGSL exp may be off by 3 + 2·|x| ulp, up to ~21 ulp
// here) and passed as a small buffer.
// sin/cos are evaluated here rather than with the built-ins, which WGSL specifies only to 2^-11 absolute inside
// [−π, π]: arguments reach 1000 (timesteps) and several thousand (SDXL size conditioning).
// One thread per output element; a 2-D grid of 256-wide workgroups.

struct Params {
  n: u32,      // N · dim
  dim: u32,
  half: u32,
  flip: u32,   // 1: [cos | sin]
  scale: f32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read> freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 { return (wid.y * nwg.x + wid.x) * 256u + lid; }

// Cephes sinf/cosf: Cody–Waite reduction modulo π/4 with π/4 split in three parts (y·DP1 and y·DP2 are exact for
// |x| < 8192), then minimax polynomials on [−π/4, π/4]. A few ulp for |x| < 8192; degrades slowly beyond.
const FOPI: f32 = 1.27323954473516;   // 4/π
const DP1: f32 = 0.78515625;
const DP2: f32 = 2.4187564849853515625e-4;
const DP3: f32 = 3.77489497744594108e-8;

// (sin x, cos x)
fn sincos_f32(x: f32) -> vec2f {
  let ax = abs(x);
  var j = u32(ax * FOPI);
  j += j & 1u;                        // round the octant up to even: r in [−π/4, π/4]
  let yj = f32(j);
  let r = ((ax - yj * DP1) - yj * DP2) - yj * DP3;
  let z = r * r;
  let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  // ax = r + (j/2)·π/2: rotate by quarter turns.
  var sn: f32;
  var cs: f32;
  switch (j & 7u) {
    case 0u: { sn = s; cs = c; }
    case 2u: { sn = c; cs = -s; }
    case 4u: { sn = -s; cs = -c; }
    default: { sn = -c; cs = s; }
  }
  return vec2f(select(sn, -sn, x < 0.0), cs);
}

@compute @workgroup_size(256)
fn embed(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = flatIndex(wid, nwg, lid);
  if (e >= params.n) { return; }
  let k = e % params.dim;
  let row = e / params.dim;
  let half = params.half;
  if (k >= 2u * half) { y[e] = 0.0; return; }   // odd dim: zero pad
  let second = k >= half;
  let i = select(k, k - half, second);
  let arg = params.scale * (t[row] * freq[i]);
  let sc = sincos_f32(arg);
  // First half is sin (cos when flipped), second half the other.
  let useCos = second != (params.flip == 1u);
  y[e] = select(sc.x, sc.y, useCos);
}
