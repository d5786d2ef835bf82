// 8-bit RGB PNG files (pngjs), written atomically. Node only.
import pngjs from 'pngjs';
import { writeFileAtomic } from '../io/safetensors.js';
import type { RgbImage } from '../vae/image.js';

const { PNG } = pngjs;

/** PNG bytes of an interleaved RGB (3 channels) or RGBA (4) image. */
export function encodePng(img: RgbImage): Uint8Array {
  const { width, height, channels, data } = img;
  if (channels !== 3 && channels !== 4) throw new Error(`encodePng: ${channels} channels; expected 3 (RGB) or 4 (RGBA)`);
  if (data.length !== width * height * channels) throw new Error(`encodePng: ${data.length} bytes for ${width}×${height}×${channels}`);
  const alpha = channels === 4;
  const buf = PNG.sync.write(
    { width, height, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) } as InstanceType<typeof PNG>,
    { colorType: alpha ? 6 : 2, inputColorType: alpha ? 6 : 2, inputHasAlpha: alpha },
  );
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Decodes a PNG into interleaved RGBA bytes (any PNG colour type / depth is converted). */
export function decodePng(bytes: Uint8Array): RgbImage {
  const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return { width: png.width, height: png.height, channels: 4, data: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength) };
}

/** Writes the image as a PNG (temporary file + rename: a reader never sees half a file). */
export async function writePng(path: string, img: RgbImage): Promise<void> {
  await writeFileAtomic(path, encodePng(img));
}
