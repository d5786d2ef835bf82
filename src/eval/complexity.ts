// Image complexity (the paper's Table 1 reports it to show few-step samplers losing detail): edge density, the share
// of pixels on an edge of the luminance image.
//   Y = (0.299 R + 0.587 G + 0.114 B) / 255 per pixel (ITU-R BT.601), replicate padding at the borders;
//   Gx, Gy = Sobel 3×3 responses, normalised by 4 so a step of height h between flat areas gives |G| = h;
//   edge pixel ⇔ √(Gx² + Gy²) > threshold (default 0.1: a luminance step of a tenth of the range).
// A flat image scores 0; the fine outlines and facial features of a crisp emoji raise it; the blurred, detail-poor
// images of too few sampling steps lower it. (Compressed size is the other common measure; the Table-1 script
// reports PNG bytes per pixel alongside, in Node.)
import type { RgbImage } from '../vae/image.js';

/** Luminance in [0, 1] of an interleaved RGB(A) image, row-major [H, W]. */
export function luminance(img: RgbImage): Float64Array {
  const { width: W, height: H, channels: C, data } = img;
  if (C < 3) throw new Error(`luminance: ${C} channels; expected RGB or RGBA`);
  if (data.length !== W * H * C) throw new Error(`luminance: ${data.length} bytes for ${W}×${H}×${C}`);
  const y = new Float64Array(W * H);
  for (let p = 0; p < W * H; p++) y[p] = (0.299 * data[C * p] + 0.587 * data[C * p + 1] + 0.114 * data[C * p + 2]) / 255;
  return y;
}

/** Sobel gradient magnitude per pixel (normalised as in the header). */
export function sobelMagnitude(y: Float64Array, W: number, H: number): Float64Array {
  const at = (r: number, c: number) => y[Math.min(H - 1, Math.max(0, r)) * W + Math.min(W - 1, Math.max(0, c))];
  const out = new Float64Array(W * H);
  for (let r = 0; r < H; r++)
    for (let c = 0; c < W; c++) {
      const gx = (at(r - 1, c + 1) + 2 * at(r, c + 1) + at(r + 1, c + 1) - at(r - 1, c - 1) - 2 * at(r, c - 1) - at(r + 1, c - 1)) / 4;
      const gy = (at(r + 1, c - 1) + 2 * at(r + 1, c) + at(r + 1, c + 1) - at(r - 1, c - 1) - 2 * at(r - 1, c) - at(r - 1, c + 1)) / 4;
      out[r * W + c] = Math.hypot(gx, gy);
    }
  return out;
}

/** Share of pixels whose Sobel magnitude exceeds `threshold`, in [0, 1]. */
export function edgeDensity(img: RgbImage, threshold = 0.1): number {
  const m = sobelMagnitude(luminance(img), img.width, img.height);
  let n = 0;
  for (const v of m) if (v > threshold) n++;
  return n / m.length;
}
