// Image files → 8-bit RGB: PNG through pngjs (src/pipeline/png.ts: any colour type and bit depth, 16-bit rescaled to 8)
// and JPEG (baseline and progressive, including greyscale / CMYK) through jpeg-js, with libjpeg's chroma upsampling and
// colour conversion (jpeg_libjpeg.ts) so pixels stay close to what Pillow gives. The format is sniffed from the bytes,
// not the extension. Transparency is composited over a background colour (white unless told otherwise).
// Note: PIL's image.convert("RGB"), which diffusers' training scripts use, drops alpha instead; pass
// `background: null` for that behaviour.
import { decodePng } from '../../pipeline/png.js';
import type { RgbImage } from '../../vae/image.js';
import { decodeJpegRgba } from './jpeg_libjpeg.js';

export class ImageDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageDecodeError';
  }
}

export type ImageFormat = 'png' | 'jpeg';

export interface DecodeImageOptions {
  /** Colour under transparent pixels, [r, g, b] bytes (default white); null drops alpha as PIL's convert("RGB"). */
  background?: readonly [number, number, number] | null;
  /** Largest image accepted, megapixels (default 100: a corrupt header cannot ask for gigabytes). */
  maxMegapixels?: number;
  /**
   * Turn a JPEG upright by its EXIF Orientation (default true), as the Hugging Face `datasets` Image feature that
   * diffusers' imagefolder loading goes through does (PIL.ImageOps.exif_transpose).
   */
  exifTranspose?: boolean;
}

/**
 * PIL.ImageOps.exif_transpose of interleaved pixels: orientation 2 mirrors, 3 rotates 180°, 4 flips vertically,
 * 5 transposes, 6 rotates 90° clockwise, 7 transverses, 8 rotates 90° counter-clockwise; 1 (or none) keeps it.
 */
export function applyExifOrientation(img: RgbImage, orientation: number | undefined): RgbImage {
  if (!orientation || orientation === 1) return img;
  if (!Number.isInteger(orientation) || orientation < 1 || orientation > 8) throw new ImageDecodeError(`EXIF orientation ${orientation}: expected 1..8`);
  const { width: w, height: h, channels: C, data } = img;
  const swap = orientation >= 5;
  const W = swap ? h : w;
  const H = swap ? w : h;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      // Source pixel (sx, sy) of output (x, y).
      const [sx, sy] =
        orientation === 2 ? [w - 1 - x, y]
        : orientation === 3 ? [w - 1 - x, h - 1 - y]
        : orientation === 4 ? [x, h - 1 - y]
        : orientation === 5 ? [y, x]
        : orientation === 6 ? [y, h - 1 - x]
        : orientation === 7 ? [w - 1 - y, h - 1 - x]
        : [w - 1 - y, x];
      for (let c = 0; c < C; c++) out[(y * W + x) * C + c] = data[(sy * w + sx) * C + c];
    }
  return { data: out, width: W, height: H, channels: C };
}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** The format of an image file's bytes, or undefined when it is neither PNG nor JPEG. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (bytes.length >= 8 && PNG_MAGIC.every((b, i) => bytes[i] === b)) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

/**
 * Decodes PNG or JPEG bytes to interleaved RGBA (4 channels) as stored; `name` is used in errors. Use toRgb (or
 * decodeImage) for the 3-channel image the VAE takes.
 */
export function decodeImageRgba(bytes: Uint8Array, name: string, opts: Pick<DecodeImageOptions, 'maxMegapixels' | 'exifTranspose'> = {}): RgbImage {
  const format = sniffImageFormat(bytes);
  const maxMp = opts.maxMegapixels ?? 100;
  if (!format) {
    const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new ImageDecodeError(`${name}: not a PNG or JPEG file (first bytes ${head || '(empty file)'}; expected 89 50 4e 47 … or ff d8 ff)`);
  }
  let img: RgbImage;
  try {
    if (format === 'png') img = decodePng(bytes);
    else {
      const j = decodeJpegRgba(bytes, { maxResolutionInMP: maxMp, maxMemoryUsageInMB: Math.max(512, maxMp * 16) });
      img = { data: j.data, width: j.width, height: j.height, channels: 4 };
      if (opts.exifTranspose !== false) img = applyExifOrientation(img, j.orientation);
    }
  } catch (e) {
    throw new ImageDecodeError(
      `${name}: corrupt or unsupported ${format.toUpperCase()} (${(e as Error).message}): expected a complete ${format.toUpperCase()} file, got ${bytes.length} bytes that do not decode (truncated or damaged?)`,
    );
  }
  if (!(img.width > 0 && img.height > 0) || img.data.length !== img.width * img.height * 4)
    throw new ImageDecodeError(`${name}: ${format.toUpperCase()} decoded to ${img.width}×${img.height} with ${img.data.length} bytes; expected width·height·4`);
  if (img.width * img.height > maxMp * 1e6) throw new ImageDecodeError(`${name}: ${img.width}×${img.height} is larger than the ${maxMp}-megapixel limit`);
  return img;
}

/**
 * RGBA (or RGB) → RGB. Each channel becomes round((c·a + bg·(255 − a)) / 255) in exact integer arithmetic; a null
 * background drops alpha.
 */
export function toRgb(img: RgbImage, background: readonly [number, number, number] | null = [255, 255, 255]): RgbImage {
  const { width, height, channels, data } = img;
  if (channels === 3) return img;
  if (channels !== 4) throw new ImageDecodeError(`toRgb: ${channels} channels; expected 3 (RGB) or 4 (RGBA)`);
  if (background && !background.every((v) => Number.isInteger(v) && v >= 0 && v <= 255))
    throw new ImageDecodeError(`toRgb: background ${JSON.stringify(background)} must be three integers in [0, 255]`);
  const out = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const a = data[4 * p + 3];
    for (let c = 0; c < 3; c++) {
      const v = data[4 * p + c];
      // (x + 127) / 255 rounded down = x / 255 rounded half up, for x = c·a + bg·(255 − a) in [0, 65025].
      out[3 * p + c] = background ? Math.floor((v * a + background[c] * (255 - a) + 127) / 255) : v;
    }
  }
  return { data: out, width, height, channels: 3 };
}

/** Bytes → RGB with alpha composited (see DecodeImageOptions). */
export function decodeImage(bytes: Uint8Array, name: string, opts: DecodeImageOptions = {}): RgbImage {
  return toRgb(decodeImageRgba(bytes, name, opts), opts.background === undefined ? [255, 255, 255] : opts.background);
}

/** Node: reads and decodes an image file. */
export async function readImageFile(path: string, opts: DecodeImageOptions = {}): Promise<RgbImage> {
  const { readFile } = await import('node:fs/promises');
  const bytes = await readFile(path).catch((e: NodeJS.ErrnoException) => {
    throw new ImageDecodeError(e.code === 'ENOENT' ? `${path}: no such file` : `${path}: ${e.message}`);
  });
  return decodeImage(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), path, opts);
}
