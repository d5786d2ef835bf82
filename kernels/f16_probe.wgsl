// f16 builtins evaluated in f16 arithmetic, for the f16 probe (src/kernels/f16_support.ts): the builtins Dawn's CTS
// flags on some drivers (exp, tanh, division, sqrt, pow near overflow) and f32 → f16 conversion. One thread per
// input; each writes OPS results to y[i·OPS + op]. Library kernels compute in f32; this checks that a device's f16
// arithmetic itself is sound before f16 is trusted on it (kernels that compute in f16, e.g. subgroup-matrix ones).
enable f16;

const OPS: u32 = 6u;

struct Params {
  n: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f16>;
@group(0) @binding(2) var<storage, read> x32: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f16>;

@compute @workgroup_size(64)
fn builtins(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= params.n) { return; }
  let v = x[i];
  let o = i * OPS;
  y[o] = exp(v);                        // overflows to +Inf above ln(65504) ≈ 11.09
  y[o + 1u] = tanh(v);
  y[o + 2u] = f16(1.0) / v;             // division (v = 0 gives ±Inf)
  y[o + 3u] = sqrt(abs(v));
  y[o + 4u] = pow(f16(2.0), v + f16(5.0));  // 2^(v + 5): up to 2^15.9, near the f16 overflow at 2^16
  y[o + 5u] = f16(clamp(x32[i], -65504.0, 65504.0));  // f32 → f16 conversion in range
}
