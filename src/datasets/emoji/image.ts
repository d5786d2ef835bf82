// Emoji images: RGBA (transparent background) → RGB over a plain background, the form the VAE and every metric see.
import type { RgbImage } from '../../vae/image.js';

/** Background the alpha channel is composited over (default white: emoji are drawn for light backgrounds too). */
export type Rgb = readonly [number, number, number];
export const DEFAULT_BACKGROUND: Rgb = [255, 255, 255];

/**
 * out = round(α·rgb + (1 − α)·background) per channel, α = A / 255 (the PNGs store straight, not premultiplied,
 * alpha). RGB input is returned as a copy; other channel counts are an error.
 */
export function compositeOver(img: RgbImage, background: Rgb = DEFAULT_BACKGROUND): RgbImage {
  const { width, height, channels, data } = img;
  if (data.length !== width * height * channels) throw new Error(`compositeOver: ${data.length} bytes for ${width}×${height}×${channels}`);
  if (background.some((v) => !(Number.isInteger(v) && v >= 0 && v <= 255)))
    throw new Error(`compositeOver: background must be three integers in 0…255, got ${JSON.stringify(background)}`);
  if (channels === 3) return { width, height, channels, data: data.slice() };
  if (channels !== 4) throw new Error(`compositeOver: ${channels} channels; expected 3 (RGB) or 4 (RGBA)`);
  const out = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const a = data[4 * p + 3] / 255;
    for (let c = 0; c < 3; c++) out[3 * p + c] = Math.round(a * data[4 * p + c] + (1 - a) * background[c]);
  }
  return { width, height, channels: 3, data: out };
}
