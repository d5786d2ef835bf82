// Conversions between the VAE's [-1, 1] NCHW images and 8-bit interleaved RGB, as diffusers' VaeImageProcessor does
// on its numpy / PIL path, in float32:
//   postprocess: (x / 2 + 0.5).clamp(0, 1) → ·255 → np.round (half to even) → uint8   (image_processor.py)
//   preprocess:  uint8 / 255 → 2·x − 1
import { ShapeError } from '../../runtime/errors.js';
import { type Gpu } from '../../runtime/device.js';
import { Tensor, shapeStr } from '../tensor.js';
import { roundHalfEven } from '../schedulers/numeric.js';

export interface RgbImage {
  /** Interleaved [H, W, channels] bytes. */
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

const f32 = Math.fround;


/** One value of a [-1, 1] image → its byte, in float32 like diffusers' numpy path. */
export function toByte(x: number): number {
  let v = f32(f32(x / 2) + 0.5);
  if (!(v >= 0)) v = 0; // NaN → 0, as torch.clamp leaves NaN and uint8 casting is undefined; pick black.
  if (v > 1) v = 1;
  return roundHalfEven(f32(v * 255));
}

/** Sample `index` of a [B, C, H, W] float image in [-1, 1] → interleaved bytes [H, W, C]. */
export function imageToBytes(data: ArrayLike<number>, shape: readonly number[], index = 0): RgbImage {
  if (shape.length !== 4) throw new ShapeError(`toImage: image ${shapeStr(shape)} must be [B, C, H, W]`);
  const [B, C, H, W] = shape;
  if (!Number.isInteger(index) || index < 0 || index >= B) throw new ShapeError(`toImage: sample ${index} of a batch of ${B}`);
  if (data.length !== B * C * H * W) throw new ShapeError(`toImage: ${data.length} values for shape ${shapeStr(shape)}`);
  const out = new Uint8Array(H * W * C);
  const base = index * C * H * W;
  for (let c = 0; c < C; c++)
    for (let p = 0; p < H * W; p++) out[p * C + c] = toByte(data[base + c * H * W + p]);
  return { data: out, width: W, height: H, channels: C };
}

/** GPU image [B, C, H, W] → bytes of sample `index` (reads the tensor back). */
export async function toImage(image: Tensor, index = 0): Promise<RgbImage> {
  return imageToBytes(await image.toArray(), image.shape, index);
}

/** Interleaved bytes [H, W, C] → [1, C, H, W] float32 in [-1, 1] on the host. */
export function bytesToImage(img: RgbImage): Float32Array {
  const { data, width: W, height: H, channels: C } = img;
  if (data.length !== H * W * C) throw new ShapeError(`fromImage: ${data.length} bytes for ${H}×${W}×${C}`);
  const out = new Float32Array(C * H * W);
  for (let c = 0; c < C; c++) for (let p = 0; p < H * W; p++) out[c * H * W + p] = f32(2 * f32(data[p * C + c] / 255) - 1);
  return out;
}

/** Interleaved bytes → a [1, C, H, W] tensor in [-1, 1] (the encoder's input). */
export function fromImage(gpu: Gpu, img: RgbImage): Tensor {
  return Tensor.fromArray(gpu, bytesToImage(img), [1, img.channels, img.height, img.width], { label: 'image' });
}
