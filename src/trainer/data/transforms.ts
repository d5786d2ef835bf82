// The SDXL training-image transform of diffusers' train_lcm_distill_lora_sdxl.py (preprocess_train), on 8-bit RGB:
//   original_size = (h, w)
//   resize:  torchvision Resize(resolution, BILINEAR) on a PIL image: shorter side → resolution, longer side →
//            int(resolution · long / short); PIL's bilinear resampling, which antialiases when shrinking (the triangle
//            filter is widened by the scale factor). Reproduced as Pillow's Resample.c does it: separable, horizontal
//            pass then vertical, 22-bit fixed-point weights, each pass rounded and clipped to uint8 (bit-exact
//            against Pillow 12.3 goldens in test/fixtures/trainer_data).
//   crop:    CenterCrop: top = round((H − res) / 2), left = round((W − res) / 2) (Python round, half to even);
//            RandomCrop: top ~ U{0..H − res}, then left ~ U{0..W − res}.
//   flip:    with random_flip, p = 0.5: mirror the crop and set left = res − left, the script's `x1 = image.width −
//            x1` on the cropped image (its formula, kept as is: it is what SDXL LoRAs are trained with).
//   pixels:  ToTensor + Normalize(0.5, 0.5): x/255·2 − 1 in float32, [3, res, res].
//   time_ids = original_size + crop_top_left + (res, res).
// Randomness: draws from an injected Rng in that order (top, left, flip), one draw each.
import { roundHalfEven } from '../../schedulers/numeric.js';
import { bytesToImage, type RgbImage } from '../../vae/image.js';
import { type Rng, nextFloat, nextInt } from './rng.js';

export class TransformError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransformError';
  }
}

export interface TransformOptions {
  /** Square training resolution (SDXL: 1024). */
  resolution: number;
  /** CenterCrop instead of RandomCrop (diffusers --center_crop). */
  centerCrop?: boolean;
  /** Mirror with probability 0.5 (diffusers --random_flip). */
  randomFlip?: boolean;
}

export interface PreparedImage {
  /** [3, res, res] float32 in [-1, 1]. */
  pixels: Float32Array;
  shape: [number, number, number];
  /** (height, width) of the decoded image. */
  originalSize: [number, number];
  /** (top, left) of the crop in the resized image; left = res − left after a flip (diffusers). */
  cropTopLeft: [number, number];
  targetSize: [number, number];
  flipped: boolean;
  /** original_size + crop_top_left + target_size. */
  timeIds: [number, number, number, number, number, number];
}

function checkResolution(res: number): void {
  if (!Number.isInteger(res) || res < 1) throw new TransformError(`resolution must be a positive integer, got ${res}`);
}

function checkRgb(img: RgbImage, what: string): void {
  if (img.channels !== 3) throw new TransformError(`${what}: ${img.channels} channels; expected an RGB image (3; composite alpha with toRgb first)`);
  if (img.data.length !== img.width * img.height * 3) throw new TransformError(`${what}: ${img.data.length} bytes for ${img.width}×${img.height}×3`);
}

/** torchvision's output size for Resize(resolution) of an h × w image: [height, width]. */
export function resizedSize(height: number, width: number, resolution: number): [number, number] {
  checkResolution(resolution);
  const [short, long] = width <= height ? [width, height] : [height, width];
  const newLong = Math.trunc((resolution * long) / short);
  return width <= height ? [newLong, resolution] : [resolution, newLong];
}

// ---- Pillow's resampling (libImaging/Resample.c), bilinear ------------------------------------------------------

const PRECISION_BITS = 32 - 8 - 2;

interface Coeffs {
  ksize: number;
  /** Per output pixel: first input index and tap count. */
  bounds: Int32Array;
  /** Fixed-point weights, ksize per output pixel. */
  kk: Int32Array;
}

function bilinearFilter(x: number): number {
  const a = Math.abs(x);
  return a < 1 ? 1 - a : 0;
}

/** precompute_coeffs + normalize_coeffs_8bpc for an inSize → outSize axis (box = whole axis). */
function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 1 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(2 * outSize);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero.
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = bilinearFilter((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (let x = 0; x < ksize; x++) {
      const w = x < xmax && ww !== 0 ? k[x] / ww : 0;
      kk[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * 2 ** PRECISION_BITS : 0.5 + w * 2 ** PRECISION_BITS);
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v: number): number {
  if (v >= 2 ** PRECISION_BITS * 256) return 255;
  if (v <= 0) return 0;
  return v >> PRECISION_BITS; // v < 2^30 here
}

const HALF = 2 ** (PRECISION_BITS - 1);

/** ImagingResampleHorizontal_8bpc: w → outW along rows, 3 interleaved channels. */
function resampleHorizontal(src: Uint8Array, w: number, h: number, outW: number): Uint8Array {
  const { ksize, bounds, kk } = precomputeCoeffs(w, outW);
  const out = new Uint8Array(outW * h * 3);
  for (let y = 0; y < h; y++) {
    const row = y * w * 3;
    const orow = y * outW * 3;
    for (let x = 0; x < outW; x++) {
      const min = bounds[2 * x];
      const n = bounds[2 * x + 1];
      const kb = x * ksize;
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      for (let t = 0; t < n; t++) {
        const i = row + (min + t) * 3;
        const k = kk[kb + t];
        s0 += src[i] * k;
        s1 += src[i + 1] * k;
        s2 += src[i + 2] * k;
      }
      out[orow + 3 * x] = clip8(s0);
      out[orow + 3 * x + 1] = clip8(s1);
      out[orow + 3 * x + 2] = clip8(s2);
    }
  }
  return out;
}

/** ImagingResampleVertical_8bpc: h → outH along columns. */
function resampleVertical(src: Uint8Array, w: number, h: number, outH: number): Uint8Array {
  const { ksize, bounds, kk } = precomputeCoeffs(h, outH);
  const stride = w * 3;
  const out = new Uint8Array(outH * stride);
  for (let y = 0; y < outH; y++) {
    const min = bounds[2 * y];
    const n = bounds[2 * y + 1];
    const kb = y * ksize;
    for (let x = 0; x < stride; x++) {
      let s = HALF;
      for (let t = 0; t < n; t++) s += src[(min + t) * stride + x] * kk[kb + t];
      out[y * stride + x] = clip8(s);
    }
  }
  return out;
}

/** PIL's Image.resize((width, height), BILINEAR) of an 8-bit RGB image. */
export function resizeBilinear(img: RgbImage, width: number, height: number): RgbImage {
  checkRgb(img, 'resize');
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) throw new TransformError(`resize: target ${width}×${height} must be positive integers`);
  let data = img.data;
  let w = img.width;
  if (width !== img.width) {
    data = resampleHorizontal(data, w, img.height, width);
    w = width;
  }
  if (height !== img.height) data = resampleVertical(data, w, img.height, height);
  return { data: data === img.data ? data.slice() : data, width, height, channels: 3 };
}

/** torchvision Resize(resolution, BILINEAR) on a PIL image. */
export function resizeShorterSide(img: RgbImage, resolution: number): RgbImage {
  const [h, w] = resizedSize(img.height, img.width, resolution);
  return resizeBilinear(img, w, h);
}

// ---- crop, flip ---------------------------------------------------------------------------------------------------

/** (top, left) of a res × res crop of an h × w image: centred (torchvision CenterCrop) or uniformly random. */
export function cropTopLeft(height: number, width: number, resolution: number, opts: { center: boolean; rng?: Rng }): [number, number] {
  if (height < resolution || width < resolution) throw new TransformError(`crop: a ${resolution}² crop does not fit a ${width}×${height} image`);
  if (opts.center) return [roundHalfEven((height - resolution) / 2), roundHalfEven((width - resolution) / 2)];
  if (!opts.rng) throw new TransformError('crop: a random crop needs an rng');
  const top = nextInt(opts.rng, 0, height - resolution);
  const left = nextInt(opts.rng, 0, width - resolution);
  return [top, left];
}

export function cropImage(img: RgbImage, top: number, left: number, height: number, width: number): RgbImage {
  checkRgb(img, 'crop');
  if (top < 0 || left < 0 || top + height > img.height || left + width > img.width)
    throw new TransformError(`crop: [${top}, ${left}] + ${width}×${height} lies outside the ${img.width}×${img.height} image`);
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) out.set(img.data.subarray(((top + y) * img.width + left) * 3, ((top + y) * img.width + left + width) * 3), y * width * 3);
  return { data: out, width, height, channels: 3 };
}

export function flipHorizontal(img: RgbImage): RgbImage {
  checkRgb(img, 'flip');
  const { width: W, height: H } = img;
  const out = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++)
      for (let c = 0; c < 3; c++) out[(y * W + x) * 3 + c] = img.data[(y * W + (W - 1 - x)) * 3 + c];
  return { data: out, width: W, height: H, channels: 3 };
}

/** SDXL's add_time_ids: original_size + crop_top_left + target_size. */
export function sdxlTimeIds(
  originalSize: readonly [number, number],
  crop: readonly [number, number],
  targetSize: readonly [number, number],
): [number, number, number, number, number, number] {
  return [originalSize[0], originalSize[1], crop[0], crop[1], targetSize[0], targetSize[1]];
}

/** The whole transform of one decoded RGB image (see the file comment). `rng` is needed unless centre-cropped and unflipped. */
export function prepareImage(img: RgbImage, opts: TransformOptions, rng?: Rng): PreparedImage {
  checkRgb(img, 'prepareImage');
  const res = opts.resolution;
  checkResolution(res);
  const originalSize: [number, number] = [img.height, img.width];
  const resized = resizeShorterSide(img, res);
  let [top, left] = cropTopLeft(resized.height, resized.width, res, { center: !!opts.centerCrop, rng });
  let out = cropImage(resized, top, left, res, res);
  let flipped = false;
  if (opts.randomFlip) {
    if (!rng) throw new TransformError('prepareImage: randomFlip needs an rng');
    if (nextFloat(rng) < 0.5) {
      flipped = true;
      left = res - left;
      out = flipHorizontal(out);
    }
  }
  const cropTl: [number, number] = [top, left];
  return {
    pixels: bytesToImage(out),
    shape: [3, res, res],
    originalSize,
    cropTopLeft: cropTl,
    targetSize: [res, res],
    flipped,
    timeIds: sdxlTimeIds(originalSize, cropTl, [res, res]),
  };
}
