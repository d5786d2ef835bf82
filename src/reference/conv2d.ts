// Plain-loop CPU references (float64) for conv2d and its gradients, written from the definition
//   y[b, co, oy, ox] = bias[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx] · x[b, ci, oy·s − p + ky, ox·s − p + kx]
// (zero outside the image), not from the WGSL: the gradients scatter along the forward loops instead of gathering.

export interface ConvRefGeometry {
  B: number;
  Cin: number;
  H: number;
  W: number;
  Cout: number;
  kH: number;
  kW: number;
  stride: number;
  padY: number;
  padX: number;
}

export function convRefOut(g: ConvRefGeometry): [number, number] {
  return [Math.floor((g.H + 2 * g.padY - g.kH) / g.stride) + 1, Math.floor((g.W + 2 * g.padX - g.kW) / g.stride) + 1];
}

/** Visits every (output, tap) pair whose input pixel lies inside the image: f(yIndex, xIndex, wIndex). */
function forEachTap(g: ConvRefGeometry, f: (yi: number, xi: number, wi: number) => void): void {
  const [Ho, Wo] = convRefOut(g);
  for (let b = 0; b < g.B; b++)
    for (let co = 0; co < g.Cout; co++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++) {
          const yi = ((b * g.Cout + co) * Ho + oy) * Wo + ox;
          for (let ci = 0; ci < g.Cin; ci++)
            for (let ky = 0; ky < g.kH; ky++) {
              const iy = oy * g.stride - g.padY + ky;
              if (iy < 0 || iy >= g.H) continue;
              for (let kx = 0; kx < g.kW; kx++) {
                const ix = ox * g.stride - g.padX + kx;
                if (ix < 0 || ix >= g.W) continue;
                f(yi, ((b * g.Cin + ci) * g.H + iy) * g.W + ix, ((co * g.Cin + ci) * g.kH + ky) * g.kW + kx);
              }
            }
        }
}

/** y [B, Cout, Hout, Wout]. */
export function conv2dRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  g: ConvRefGeometry,
  bias?: ArrayLike<number>,
  residual?: ArrayLike<number>,
): Float64Array {
  const [Ho, Wo] = convRefOut(g);
  const y = new Float64Array(g.B * g.Cout * Ho * Wo);
  forEachTap(g, (yi, xi, wi) => {
    y[yi] += w[wi] * x[xi];
  });
  if (bias) for (let i = 0; i < y.length; i++) y[i] += bias[Math.floor(i / (Ho * Wo)) % g.Cout];
  if (residual) for (let i = 0; i < y.length; i++) y[i] += residual[i];
  return y;
}

/** dx, dw, dbias of y = conv(x, w) + bias given dy. */
export function conv2dBackwardRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  dy: ArrayLike<number>,
  g: ConvRefGeometry,
): { dx: Float64Array; dw: Float64Array; dbias: Float64Array } {
  const [Ho, Wo] = convRefOut(g);
  const dx = new Float64Array(g.B * g.Cin * g.H * g.W);
  const dw = new Float64Array(g.Cout * g.Cin * g.kH * g.kW);
  const dbias = new Float64Array(g.Cout);
  forEachTap(g, (yi, xi, wi) => {
    dx[xi] += dy[yi] * w[wi];
    dw[wi] += dy[yi] * x[xi];
  });
  for (let i = 0; i < dy.length; i++) dbias[Math.floor(i / (Ho * Wo)) % g.Cout] += dy[i];
  return { dx, dw, dbias };
}

/** y = conv(x, W) + bias + scale · conv1x1(conv(x, A), B); A [r, Cin, kH, kW], B [Cout, r, 1, 1]. */
export function loraConv2dRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  a: ArrayLike<number>,
  bUp: ArrayLike<number>,
  scale: number,
  r: number,
  g: ConvRefGeometry,
  bias?: ArrayLike<number>,
): Float64Array {
  const [Ho, Wo] = convRefOut(g);
  const y = conv2dRef(x, w, g, bias);
  const h = conv2dRef(x, a, { ...g, Cout: r });
  const hw = Ho * Wo;
  for (let b = 0; b < g.B; b++)
    for (let co = 0; co < g.Cout; co++)
      for (let j = 0; j < r; j++)
        for (let p = 0; p < hw; p++) y[(b * g.Cout + co) * hw + p] += scale * bUp[co * r + j] * h[(b * r + j) * hw + p];
  return y;
}
