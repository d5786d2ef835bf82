// One TCD sampler step (diffusers TCDScheduler.step, epsilon prediction; Strategic Stochastic Sampling), per element:
//   x0   = (x_t − sqrt(1 − ᾱ_t)·ε̂) / sqrt(ᾱ_t)                         pred_original_sample
//   x_s  = sqrt(ᾱ_s)·x0 + sqrt(1 − ᾱ_s)·ε̂                              pred_noised_sample (TCF(1), DDIM form)
//   prev = sqrt(ᾱ_prev/ᾱ_s)·x_s + sqrt(1 − ᾱ_prev/ᾱ_s)·z               tcd_step_noise (eta > 0 and not the last step)
//   prev = x_s                                                         tcd_step (eta = 0 or the last step)
// The scalars are computed on the host in float32 exactly as torch does (0-dim float32 tensors), and each element
// goes through the same float32 operations in the same order as diffusers on the CPU, each rounded once:
//   * products that feed a sum are multiplied by params.one (1.0, unknown to the compiler): a driver that contracts
//     (a·b)·one + c into fma(a·b, one, c) still rounds a·b first, so contraction cannot change the result;
//   * the division is correctly rounded (div_rn) where a GPU's x / y may be off by up to 2.5 ulp.
// So the output is bit-identical to torch's CPU float32 step (diffusers' golden vectors).
// One thread per element; a 2-D grid of 256-wide workgroups.

struct Params {
  n: u32,
  sqrtBetaT: f32,    // sqrt(1 − ᾱ_t)
  sqrtAlphaT: f32,   // sqrt(ᾱ_t)
  sqrtAlphaS: f32,
  sqrtBetaS: f32,
  cPrev: f32,        // sqrt(ᾱ_prev / ᾱ_s)
  cNoise: f32,       // sqrt(1 − ᾱ_prev / ᾱ_s)
  one: f32,          // 1.0 (see above)
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> sample: array<f32>;
@group(0) @binding(2) var<storage, read> model_output: array<f32>;
@group(0) @binding(3) var<storage, read> noise: array<f32>;
@group(0) @binding(4) var<storage, read_write> prev: array<f32>;
@group(0) @binding(5) var<storage, read_write> denoised: array<f32>;
@group(0) @binding(6) var<storage, read_write> x0: array<f32>;

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 { return (wid.y * nwg.x + wid.x) * 256u + lid; }

// #include lib/div_rn.wgsl  (div_rn: a / b correctly rounded)

// a·b rounded on its own even where the sum it feeds gets contracted into an fma.
fn mul_rn(a: f32, b: f32) -> f32 { return (a * b) * params.one; }

// Writes x0 and x_s of element i and returns x_s.
fn denoise(i: u32) -> f32 {
  let eps = model_output[i];
  let p0 = div_rn(sample[i] - mul_rn(params.sqrtBetaT, eps), params.sqrtAlphaT);
  let xs = mul_rn(params.sqrtAlphaS, p0) + mul_rn(params.sqrtBetaS, eps);
  x0[i] = p0;
  denoised[i] = xs;
  return xs;
}

@compute @workgroup_size(256)
fn tcd_step(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  prev[i] = denoise(i);
}

@compute @workgroup_size(256)
fn tcd_step_noise(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let xs = denoise(i);
  prev[i] = mul_rn(params.cPrev, xs) + mul_rn(params.cNoise, noise[i]);
}
