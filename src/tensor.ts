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

/** A tensor's bytes: a pooled buffer of ours, or a range of an engine's buffer (Tensor.fromBuffer: never pooled). */
class Storage {
  refs = 1;
  /** Bumped by host writes into the buffer (caches of derived results compare it). */
  version = 0;
  readonly buffer: GPUBuffer;
  constructor(
    readonly gpu: Gpu,
    private readonly pooled: PooledBuffer | undefined,
    external?: { buffer: GPUBuffer; offset: number },
  ) {
    this.buffer = pooled?.buffer ?? external!.buffer;
    this.offset = external?.offset ?? 0;
    this.size = pooled ? pooled.bytes : external!.buffer.size - this.offset;
  }
  readonly offset: number;
  /** Bytes of the storage from `offset` (what its owner asked for), the bound of sub-views. */
  readonly size: number;
  release(): void {
    if (--this.refs === 0 && this.pooled) this.gpu.pool.release(this.pooled);
    if (this.refs < 0) throw new Error(`buffer '${this.buffer.label}' released twice`);
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
    /** Where a sub-view (view()) starts within the storage. */
    private readonly viewOffset = 0,
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

  /**
   * Wraps `shape` elements of an engine's GPUBuffer starting at byte `offset`, without a copy (as ONNX Runtime Web's
   * Tensor.fromGpuBuffer). The buffer stays the engine's: release() only drops our reference; it is never pooled,
   * reused or destroyed by us. Kernels bind it at `offset` (a multiple of minStorageBufferOffsetAlignment); it needs
   * STORAGE usage, COPY_SRC for toArray() and COPY_DST for write().
   */
  static fromBuffer(
    gpu: Gpu,
    buffer: GPUBuffer,
    shape: Shape,
    opts: { dtype?: DType; offset?: number; label?: string } = {},
  ): Tensor {
    const dtype = opts.dtype ?? 'f32';
    const offset = opts.offset ?? 0;
    const label = opts.label ?? (buffer.label || 'external');
    checkShape(shape, label);
    if (!(dtype in BYTES_PER_ELEMENT)) throw new DTypeError(`tensor '${label}': dtype must be 'f32' or 'f16', got '${dtype}'`);
    if (dtype === 'f16' && !gpu.hasF16)
      throw new DTypeError(`tensor '${label}': dtype f16 needs the 'shader-f16' feature, which this device does not offer`);
    if (!(buffer.usage & GPUBufferUsage.STORAGE))
      throw new Error(`tensor '${label}': the buffer needs GPUBufferUsage.STORAGE (${GPUBufferUsage.STORAGE}) to be bound by kernels; its usage is ${buffer.usage}`);
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    if (!Number.isInteger(offset) || offset < 0 || offset % align !== 0)
      throw new RangeError(`tensor '${label}': offset must be a non-negative multiple of minStorageBufferOffsetAlignment (${align}), got ${offset}`);
    const bytes = Math.max(4, Math.ceil((numel(shape) * BYTES_PER_ELEMENT[dtype]) / 4) * 4); // as bound (bindingBytes)
    if (offset + bytes > buffer.size)
      throw new RangeError(`tensor '${label}': ${shapeStr(shape)} ${dtype} at offset ${offset} needs ${offset + bytes} bytes, the buffer has ${buffer.size}`);
    return new Tensor(gpu, [...shape], dtype, new Storage(gpu, undefined, { buffer, offset }), label);
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
    if (t.size > 0) gpu.queue.clear(t.buffer, t.byteOffset, t.bindingBytes);
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
    return this.storage.buffer;
  }
  /** Where the tensor starts in `buffer` (0 except for Tensor.fromBuffer and sub-views). */
  get byteOffset(): number {
    return this.storage.offset + this.viewOffset;
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
    this.needUsage(GPUBufferUsage.COPY_DST, 'COPY_DST', 'write()');
    this.storage.version++;
    this.gpu.write(this.buffer, this.byteOffset, new Uint8Array(bytes.buffer, bytes.byteOffset, len));
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
    this.gpu.write(this.buffer, this.byteOffset, new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
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
    return new Tensor(this.gpu, out, this.dtype, this.storage, this.label, this.viewOffset);
  }

  /**
   * A view of `shape` elements starting `byteOffset` bytes after this tensor's start, sharing its storage (e.g. one
   * weight inside a buffer that holds several back to back). Kernels bind it at its offset, so the offset must be a
   * multiple of minStorageBufferOffsetAlignment. Release each view.
   */
  view(byteOffset: number, shape: Shape, label = this.label): Tensor {
    this.assertLive();
    checkShape(shape, label);
    const align = this.gpu.limits.minStorageBufferOffsetAlignment;
    const at = this.viewOffset + byteOffset;
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || (this.byteOffset + byteOffset) % align !== 0)
      throw new RangeError(`view of '${this.label}': offset ${byteOffset} must be a non-negative multiple of minStorageBufferOffsetAlignment (${align}) from the buffer's start`);
    const bytes = numel(shape) * BYTES_PER_ELEMENT[this.dtype];
    if (at + bytes > this.storage.size)
      throw new RangeError(`view of '${this.label}': ${shapeStr(shape)} ${this.dtype} at offset ${byteOffset} ends at byte ${at + bytes} of the storage, which has ${this.storage.size}`);
    this.storage.refs++;
    return new Tensor(this.gpu, [...shape], this.dtype, this.storage, label, at);
  }

  /** Whether `other` is a view of the same storage that starts where this tensor ends (weights laid out back to back). */
  isFollowedBy(other: Tensor): boolean {
    return other.storage === this.storage && other.dtype === this.dtype && other.viewOffset === this.viewOffset + this.bytes;
  }

  async toArray(): Promise<Float32Array> {
    this.assertLive();
    this.needUsage(GPUBufferUsage.COPY_SRC, 'COPY_SRC', 'toArray()');
    const raw = await this.gpu.read(this.buffer, this.byteOffset, this.bindingBytes);
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

  /** Pooled buffers have every usage we need; an engine's buffer (fromBuffer) may not. */
  private needUsage(flag: number, name: string, what: string): void {
    if (!(this.buffer.usage & flag))
      throw new Error(`tensor '${this.label}': ${what} needs GPUBufferUsage.${name} on its buffer; the buffer's usage is ${this.buffer.usage}`);
  }

  private assertLive(): void {
    if (this.released) throw new Error(`tensor '${this.label}' ${shapeStr(this.shape)} used after release()`);
  }

  toString(): string {
    return `Tensor(${this.label}, ${shapeStr(this.shape)}, ${this.dtype})`;
  }
}
