// Resampling and channel concatenation for the UNet's up path (NCHW, f32).
//   upsample_nearest:       y[p, ho, wo] = x[p, src(ho), src(wo)] over planes p = b·C + c (torch F.interpolate
//                           mode='nearest'; src(d) = d when out == in, d >> 1 when out == 2·in, else
//                           min(floor(f32(d) · scale), in − 1) with scale = f32(in / out), as PyTorch computes it).
//   upsample_nearest_grad:  dx[p, h, w] = Σ dy[p, ho, wo] over the (ho, wo) whose source is (h, w): a gather, so no
//                           atomics and a fixed summation order (rows, then columns, ascending — PyTorch's order).
//   concat:                 y = cat([a, b], axis) with a, b viewed as [O, Ca, I], [O, Cb, I] (channels: O = B,
//                           I = H·W). One dispatch writes both inputs into the output.
//   split:                  the inverse (backward of concat): one dispatch reads x once and writes both parts.
// One thread per output element (per input element for split); a 2-D grid of 256-wide workgroups. Storage is T
// (f32 or f16, the harness's element prelude): copies are exact, the gradient sums in f32.

struct Params {
  n: u32,        // threads with work
  O: u32,        // concat / split: rows before the axis
  Ca: u32,       // concat / split: extent of the first part along the axis
  Cb: u32,       // concat / split: extent of the second part
  I: u32,        // concat / split: elements after the axis
  H: u32,        // upsample: input height / width
  W: u32,
  Ho: u32,       // upsample: output height / width
  Wo: u32,
  scaleH: f32,   // upsample: f32(H / Ho), f32(W / Wo)
  scaleW: f32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
@group(0) @binding(4) var<storage, read_write> y2: array<T>;

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 { return (wid.y * nwg.x + wid.x) * 256u + lid; }

// Nearest source index of output index d (PyTorch's nearest_idx).
fn srcIndex(d: u32, inSize: u32, outSize: u32, scale: f32) -> u32 {
  if (outSize == inSize) { return d; }
  if (outSize == 2u * inSize) { return d >> 1u; }
  return min(u32(floor(f32(d) * scale)), inSize - 1u);
}

// First output index whose source is >= s (src is non-decreasing in d); outSize if none.
fn firstDst(s: u32, inSize: u32, outSize: u32, scale: f32) -> u32 {
  if (outSize == inSize) { return s; }
  if (outSize == 2u * inSize) { return 2u * s; }
  // Start near the exact preimage and walk to the boundary (a step or two at most).
  var d = min(u32(f32(s) * f32(outSize) / f32(inSize)), outSize);
  loop {
    if (d == 0u || srcIndex(d - 1u, inSize, outSize, scale) < s) { break; }
    d -= 1u;
  }
  loop {
    if (d >= outSize || srcIndex(d, inSize, outSize, scale) >= s) { break; }
    d += 1u;
  }
  return d;
}

@compute @workgroup_size(256)
fn upsample_nearest(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let wo = i % params.Wo;
  let t = i / params.Wo;
  let ho = t % params.Ho;
  let plane = t / params.Ho;
  let h = srcIndex(ho, params.H, params.Ho, params.scaleH);
  let w = srcIndex(wo, params.W, params.Wo, params.scaleW);
  y[i] = toT(f32(a[(plane * params.H + h) * params.W + w]));
}

@compute @workgroup_size(256)
fn upsample_nearest_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let w = i % params.W;
  let t = i / params.W;
  let h = t % params.H;
  let plane = t / params.H;
  let h0 = firstDst(h, params.H, params.Ho, params.scaleH);
  let h1 = firstDst(h + 1u, params.H, params.Ho, params.scaleH);
  let w0 = firstDst(w, params.W, params.Wo, params.scaleW);
  let w1 = firstDst(w + 1u, params.W, params.Wo, params.scaleW);
  var s = 0.0;
  for (var ho = h0; ho < h1; ho++) {
    let row = (plane * params.Ho + ho) * params.Wo;
    for (var wo = w0; wo < w1; wo++) { s += f32(a[row + wo]); }
  }
  y[i] = toT(s);
}

@compute @workgroup_size(256)
fn concat(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let C = params.Ca + params.Cb;
  let inner = i % params.I;
  let t = i / params.I;
  let c = t % C;
  let o = t / C;
  if (c < params.Ca) {
    y[i] = toT(f32(a[(o * params.Ca + c) * params.I + inner]));
  } else {
    y[i] = toT(f32(b[(o * params.Cb + (c - params.Ca)) * params.I + inner]));
  }
}

@compute @workgroup_size(256)
fn split(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let C = params.Ca + params.Cb;
  let inner = i % params.I;
  let t = i / params.I;
  let c = t % C;
  let o = t / C;
  if (c < params.Ca) {
    y[(o * params.Ca + c) * params.I + inner] = toT(f32(a[i]));
  } else {
    y2[(o * params.Cb + (c - params.Ca)) * params.I + inner] = toT(f32(a[i]));
  }
}
