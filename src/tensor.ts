// Tensor: shape + dtype + contiguous storage in a pooled GPU buffer. Views (reshape) share the storage,
// which is returned to the pool when the last view is released.
import type { Gpu } from '../runtime/device.js';
import { DTypeError, ShapeError } from '../runtime/errors.js';
import type { PooledBuffer } from '../runtime/buffer_pool.js';
import { BYTES_PER_ELEMENT, type DType, f16BitsToF32, f32ToF16Bits } from './dtype.js';

export type Shape = readonly number[];

const MAX_LABEL = 120;

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

function checkShape(shape: Shape, what: string): void {
  for (const d of shape)
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${what}: shape ${shapeStr(shape)} must hold non-negative integers`);
}

class Storage {
  refs = 1;
  /** Bumped by host writes into the buffer (caches of derived results compare it). */
  version = 0;
  constructor(
    readonly gpu: Gpu,
    readonly pooled: PooledBuffer,
  ) {}
  release(): void {
    if (--this.refs === 0) this.gpu.pool.release(this.pooled);
    if (this.refs < 0) throw new Error(`buffer '${this.pooled.buffer.label}' released twice`);
  }
}

export class Tensor {
  private released = false;

  private constructor(
    readonly gpu: Gpu,
    readonly shape: Shape,
    readonly dtype: DType,
    private readonly storage: Storage,
    readonly label: string,
  ) {}

  static empty(gpu: Gpu, shape: Shape, dtype: DType = 'f32', label = 'tensor'): Tensor {
    // Kernels name results after their inputs (`add(scale(x), y)`); in a loop those names would nest without
    // bound (a sampler's 20 steps overflowed string length), so labels are cut.
    if (label.length > MAX_LABEL) label = `${label.slice(0, MAX_LABEL - 3)}...`;
    checkShape(shape, label);
    if (dtype === 'f16' && !gpu.hasF16)
      throw new DTypeError(`tensor '${label}': dtype f16 needs the 'shader-f16' feature, which this device does not offer`);
    const bytes = Math.max(4, numel(shape) * BYTES_PER_ELEMENT[dtype]);
    return new Tensor(gpu, [...shape], dtype, new Storage(gpu, gpu.pool.acquire(bytes, label)), label);
  }

  static fromArray(
    gpu: Gpu,
    data: ArrayLike<number>,
    shape: Shape,
    opts: { dtype?: DType; label?: string } = {},
  ): Tensor {
    const label = opts.label ?? 'tensor';
    if (data.length !== numel(shape))
      throw new ShapeError(`tensor '${label}': shape ${shapeStr(shape)} holds ${numel(shape)} elements, data has ${data.length}`);
    const t = Tensor.empty(gpu, shape, opts.dtype ?? 'f32', label);
    t.write(data);
    return t;
  }

  /**
   * An f16 tensor from raw IEEE half bits (e.g. an F16 tensor of a safetensors file): the bytes go to the GPU as
   * they are, with no f32 copy on the host or the device.
   */
  static fromF16Bits(gpu: Gpu, bits: Uint16Array, shape: Shape, opts: { label?: string } = {}): Tensor {
    const label = opts.label ?? 'tensor';
    if (bits.length !== numel(shape))
      throw new ShapeError(`tensor '${label}': shape ${shapeStr(shape)} holds ${numel(shape)} elements, data has ${bits.length}`);
    const t = Tensor.empty(gpu, shape, 'f16', label);
    t.writeF16Bits(bits);
    return t;
  }

  /** Zero-filled, cleared on the GPU in order with the pending work (no host upload, no batch flush). */
  static zeros(gpu: Gpu, shape: Shape, dtype: DType = 'f32', label = 'zeros'): Tensor {
    const t = Tensor.empty(gpu, shape, dtype, label);
    if (t.size > 0) gpu.queue.clear(t.buffer, t.bindingBytes);
    return t;
  }

  get size(): number {
    return numel(this.shape);
  }
  get rank(): number {
    return this.shape.length;
  }
  get bytes(): number {
    return this.size * BYTES_PER_ELEMENT[this.dtype];
  }
  get buffer(): GPUBuffer {
    this.assertLive();
    return this.storage.pooled.buffer;
  }
  /** Bytes a binding of this tensor covers (rounded up to 4 as WebGPU requires). */
  get bindingBytes(): number {
    return Math.max(4, Math.ceil(this.bytes / 4) * 4);
  }

  /** Changes with every write() into this tensor's storage (views share it). */
  get version(): number {
    return this.storage.version;
  }

  write(data: ArrayLike<number>): void {
    this.assertLive();
    if (data.length !== this.size)
      throw new ShapeError(`tensor '${this.label}': write of ${data.length} elements into shape ${shapeStr(this.shape)}`);
    let bytes: ArrayBufferView;
    if (this.dtype === 'f32') bytes = data instanceof Float32Array ? data : Float32Array.from(data);
    else {
      const h = new Uint16Array(Math.ceil(data.length / 2) * 2);
      for (let i = 0; i < data.length; i++) h[i] = f32ToF16Bits(data[i]);
      bytes = h;
    }
    // writeBuffer needs a multiple of 4 bytes.
    const len = Math.ceil(bytes.byteLength / 4) * 4;
    this.storage.version++;
    this.gpu.write(this.buffer, 0, new Uint8Array(bytes.buffer, bytes.byteOffset, len));
  }

  /** Writes raw half bits into an f16 tensor (no conversion). */
  writeF16Bits(bits: Uint16Array): void {
    this.assertLive();
    if (this.dtype !== 'f16') throw new DTypeError(`tensor '${this.label}': writeF16Bits needs dtype f16, the tensor is ${this.dtype}`);
    if (bits.length !== this.size)
      throw new ShapeError(`tensor '${this.label}': write of ${bits.length} elements into shape ${shapeStr(this.shape)}`);
    // writeBuffer needs a multiple of 4 bytes: an odd count (or a view at an odd byte offset) is copied once.
    let src = bits;
    if (bits.length % 2 || bits.byteOffset % 4) {
      src = new Uint16Array(Math.ceil(bits.length / 2) * 2);
      src.set(bits);
    }
    this.storage.version++;
    this.gpu.write(this.buffer, 0, new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
  }

  /** Reshape without a copy; -1 infers one dimension. The view shares storage; release each view. */
  reshape(shape: Shape): Tensor {
    this.assertLive();
    const known = shape.filter((d) => d !== -1);
    const inferred = shape.length - known.length;
    if (inferred > 1) throw new ShapeError(`reshape of '${this.label}': at most one -1 allowed, got ${shapeStr(shape)}`);
    const out = inferred ? shape.map((d) => (d === -1 ? this.size / numel(known) : d)) : [...shape];
    if (numel(out) !== this.size || !out.every(Number.isInteger))
      throw new ShapeError(`reshape of '${this.label}': cannot view ${shapeStr(this.shape)} as ${shapeStr(shape)}`);
    this.storage.refs++;
    return new Tensor(this.gpu, out, this.dtype, this.storage, this.label);
  }

  async toArray(): Promise<Float32Array> {
    this.assertLive();
    const raw = await this.gpu.read(this.buffer, 0, this.bindingBytes);
    if (this.dtype === 'f32') return new Float32Array(raw, 0, this.size);
    const h = new Uint16Array(raw, 0, this.size);
    const out = new Float32Array(this.size);
    for (let i = 0; i < out.length; i++) out[i] = f16BitsToF32(h[i]);
    return out;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.storage.release();
  }

  get isReleased(): boolean {
    return this.released;
  }

  private assertLive(): void {
    if (this.released) throw new Error(`tensor '${this.label}' ${shapeStr(this.shape)} used after release()`);
  }

  toString(): string {
    return `Tensor(${this.label}, ${shapeStr(this.shape)}, ${this.dtype})`;
  }
}
