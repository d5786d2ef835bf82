// a / b rounded to nearest (ties to even) by long division of the 24-bit significands in u32: exact on any device,
// where both the built-in division (2.5 ulp allowed) and an fma-based correction (WGSL's fma may be unfused, as on
// llvmpipe) are not. Zero, subnormal or non-finite operands and quotients outside the normal range fall back to a / b.
fn div_rn(a: f32, b: f32) -> f32 {
  let ua = bitcast<u32>(a);
  let ub = bitcast<u32>(b);
  let ea = i32((ua >> 23u) & 0xffu);
  let eb = i32((ub >> 23u) & 0xffu);
  if (ea == 0 || ea == 255 || eb == 0 || eb == 255) { return a / b; }
  let mb = (ub & 0x7fffffu) | 0x800000u;
  var rem = (ua & 0x7fffffu) | 0x800000u;
  var e = ea - eb + 127;
  // Scale so the quotient of the significands lies in [1, 2).
  if (rem < mb) { rem = rem << 1u; e -= 1; }
  // 24 significant bits and a guard bit; the remainder left over is the sticky bit. rem < 2·mb < 2^25 throughout.
  var q = 0u;
  for (var i = 0u; i < 25u; i++) {
    q = q << 1u;
    if (rem >= mb) { rem -= mb; q |= 1u; }
    rem = rem << 1u;
  }
  let guard = q & 1u;
  q = q >> 1u;
  if (guard == 1u && (rem != 0u || (q & 1u) == 1u)) { q += 1u; }
  if (q == 0x1000000u) { q = 0x800000u; e += 1; }
  if (e <= 0 || e >= 255) { return a / b; }
  return bitcast<f32>(((ua ^ ub) & 0x80000000u) | (u32(e) << 23u) | (q & 0x7fffffu));
}
