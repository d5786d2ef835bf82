// Elementwise ops and their gradients.
//   unary:        y = f(x)              (OP selects f; alpha is the scale for OP_SCALE)
//   unary_grad:   dx = dy * f'(x)
//   binary:       y = a (op) b          with numpy broadcasting (rank <= 8, strides 0 on broadcast dims)
//   binary_grad:  the per-element gradient of a or b on the broadcast (output) shape; the wrapper then sums it
//                 over the broadcast dims (reduce.sumTo) to the operand's shape.
// Storage is T (f32 or f16, the harness's element prelude); the math is f32 in both.
// Elements are addressed by a 2-D grid of 256-wide workgroups so more than 65535*256 elements fit one dispatch.

const OP_ADD: u32 = 0u;  const OP_SUB: u32 = 1u;  const OP_MUL: u32 = 2u;  const OP_DIV: u32 = 3u;
const OP_SCALE: u32 = 10u; const OP_SILU: u32 = 11u; const OP_GELU_TANH: u32 = 12u; const OP_GELU_ERF: u32 = 13u;
const OP_QUICK_GELU: u32 = 14u; const OP_EXP: u32 = 15u; const OP_IDENTITY: u32 = 16u;

override OP: u32 = 0u;
// For binary_grad: which operand's gradient (0 = a, 1 = b).
override WRT: u32 = 0u;

struct Params {
  n: u32,          // elements of the output
  rank: u32,
  alpha: f32,
  shape: array<vec4u, 2>,    // output shape (dims beyond rank are 1)
  aStrides: array<vec4u, 2>, // element strides of a on the output index space (0 where broadcast)
  bStrides: array<vec4u, 2>,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read> dy: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

// tanh with its argument clamped to ±10 (tanh(±10) is ±1 in f32): SwiftShader's tanh returns NaN for |u| ≳ 90.
fn tanhSafe(u: f32) -> f32 { return tanh(clamp(u, -10.0, 10.0)); }

fn dim(v: array<vec4u, 2>, i: u32) -> u32 { return v[i / 4u][i % 4u]; }

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 { return (wid.y * nwg.x + wid.x) * 256u + lid; }

fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }

// #include lib/erf.wgsl  (erf_f32, erf4)

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

fn unaryF(x: f32) -> f32 {
  switch OP {
    case 10u: { return params.alpha * x; }
    case 11u: { return x * sigmoid(x); }
    case 12u: { return 0.5 * x * (1.0 + tanhSafe(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))); }
    case 13u: { return 0.5 * x * (1.0 + erf_f32(x * INV_SQRT_2)); }
    case 14u: { return x * sigmoid(1.702 * x); }
    case 15u: { return exp(x); }
    default: { return x; }
  }
}

fn unaryGrad(x: f32) -> f32 {
  switch OP {
    case 10u: { return params.alpha; }
    case 11u: { let s = sigmoid(x); return s * (1.0 + x * (1.0 - s)); }
    case 12u: {
      let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
      let t = tanhSafe(u);
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
    }
    case 13u: { return 0.5 * (1.0 + erf_f32(x * INV_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x); }
    case 14u: { let s = sigmoid(1.702 * x); return s + 1.702 * x * s * (1.0 - s); }
    case 15u: { return exp(x); }
    default: { return 1.0; }
  }
}

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  y[i] = toT(unaryF(f32(a[i])));
}

@compute @workgroup_size(256)
fn unary_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  y[i] = toT(f32(dy[i]) * unaryGrad(f32(a[i])));
}

// Offsets of a and b for output element i (row-major over params.shape).
fn operandOffsets(i: u32) -> vec2u {
  var rem = i;
  var oa = 0u;
  var ob = 0u;
  for (var d = i32(params.rank) - 1; d >= 0; d--) {
    let k = u32(d);
    let s = dim(params.shape, k);
    let c = rem % s;
    rem = rem / s;
    oa += c * dim(params.aStrides, k);
    ob += c * dim(params.bStrides, k);
  }
  return vec2u(oa, ob);
}

fn binaryF(x: f32, z: f32) -> f32 {
  switch OP {
    case 0u: { return x + z; }
    case 1u: { return x - z; }
    case 2u: { return x * z; }
    default: { return x / z; }
  }
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let o = operandOffsets(i);
  y[i] = toT(binaryF(f32(a[o.x]), f32(b[o.y])));
}

// Gradient of one operand (WRT) of y = a (op) b, per output element; dy is contiguous over the output shape.
@compute @workgroup_size(256)
fn binary_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let o = operandOffsets(i);
  let g = f32(dy[i]);
  let av = f32(a[o.x]);
  let bv = f32(b[o.y]);
  var r: f32;
  switch OP {
    case 0u: { r = g; }
    case 1u: { r = select(g, -g, WRT == 1u); }
    case 2u: { r = select(g * bv, g * av, WRT == 1u); }
    default: { r = select(g / bv, -g * av / (bv * bv), WRT == 1u); }
  }
  y[i] = toT(r);
}
