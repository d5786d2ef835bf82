// Fused AdamW (torch.optim.AdamW semantics, decoupled weight decay) and gradient-norm clipping, in place.
//   adamw:          per element, in torch's order (single-tensor path):
//                     p ← p·(1 − lr·wd)
//                     m ← lerp(m, g, 1 − β1)                    (torch's lerp: fma(w, g − m, m) for |w| < 0.5)
//                     v ← v·β2 + (1 − β2)·g·g
//                     p ← p − step_size · m / (sqrt(v) / sqrt(1 − β2^t) + eps),  step_size = lr / (1 − β1^t)
//                   Step-dependent scalars come from the host in uniforms, so one pipeline serves every step.
//   clip_coef:      one thread: coef_out[0] = min(1, max_norm / (‖g‖ + 1e-6)) from norm[0], rounded as torch rounds it
//                   (reciprocal(‖g‖ + 1e-6) · max_norm, the reciprocal correctly rounded), so clipped gradients are
//                   bit-identical to torch.nn.utils.clip_grad_norm_'s.
//   adamw_pair:     adamw on two tensors in one dispatch (elements 0 .. n of p/g/m/v, then n2 of p2/g2/m2/v2): a LoRA
//                   step updates ~1600 small tensors, and a dispatch each cost more than their arithmetic.
//   adamw_clipped:  adamw with g scaled on the fly by coef[0] (clip_grad_norm_ then step without a pass over the
//                   grads or a readback; the grads themselves stay unscaled).
//   clip_scale:     grad ← grad · coef[0] in place (clip_grad_norm_'s own scaling).
// One thread per element; a 2-D grid of 256-wide workgroups.

struct Params {
  n: u32,
  decay: f32,      // 1 − lr·wd
  lerpW: f32,      // 1 − β1
  beta2: f32,
  omb2: f32,       // 1 − β2
  stepSize: f32,   // lr / (1 − β1^t)
  bc2Sqrt: f32,    // sqrt(1 − β2^t)
  eps: f32,
  maxNorm: f32,
  n2: u32,         // adamw_pair: elements of the second tensor
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> norm: array<f32>;
@group(0) @binding(6) var<storage, read_write> coef_out: array<f32>;
@group(0) @binding(7) var<storage, read> coef: array<f32>;
@group(0) @binding(8) var<storage, read_write> grad: array<f32>;
@group(0) @binding(9) var<storage, read_write> p2: array<f32>;
@group(0) @binding(10) var<storage, read> g2: array<f32>;
@group(0) @binding(11) var<storage, read_write> m2: array<f32>;
@group(0) @binding(12) var<storage, read_write> v2: array<f32>;

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 { return (wid.y * nwg.x + wid.x) * 256u + lid; }

// #include lib/div_rn.wgsl  (div_rn: a / b correctly rounded)

// torch: clip_coef = max_norm / (total_norm + 1e-6) is Tensor.__rtruediv__, i.e. reciprocal(total_norm + 1e-6) ·
// max_norm; then clamp(max=1).
@compute @workgroup_size(1)
fn clip_coef() {
  coef_out[0] = min(div_rn(1.0, norm[0] + 1e-6) * params.maxNorm, 1.0);
}

// One element: (p, m, v) after the step.
fn adamStep(pi: f32, gi: f32, mi: f32, vi: f32) -> vec3f {
  let pd = pi * params.decay;
  let w = params.lerpW;
  // torch's lerp (both branches as its vectorised CPU and CUDA kernels compute them).
  let m1 = select(fma(w - 1.0, gi - mi, gi), fma(w, gi - mi, mi), abs(w) < 0.5);
  let v1 = vi * params.beta2 + (params.omb2 * gi) * gi;
  let denom = sqrt(v1) / params.bc2Sqrt + params.eps;
  return vec3f(pd + (-params.stepSize * m1) / denom, m1, v1);
}

fn update(i: u32, gi: f32) {
  let r = adamStep(p[i], gi, m[i], v[i]);
  m[i] = r.y;
  v[i] = r.z;
  p[i] = r.x;
}

@compute @workgroup_size(256)
fn adamw(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  update(i, g[i]);
}

@compute @workgroup_size(256)
fn adamw_pair(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i < params.n) {
    update(i, g[i]);
    return;
  }
  let j = i - params.n;
  if (j >= params.n2) { return; }
  let r = adamStep(p2[j], g2[j], m2[j], v2[j]);
  m2[j] = r.y;
  v2[j] = r.z;
  p2[j] = r.x;
}

@compute @workgroup_size(256)
fn adamw_clipped(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  update(i, g[i] * coef[0]);
}

@compute @workgroup_size(256)
fn clip_scale(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  grad[i] = grad[i] * coef[0];
}
