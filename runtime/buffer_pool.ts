// Buffer pool: storage buffers in size classes (16 per octave, 256-byte aligned), reused after explicit release.
import { LimitError } from './errors.js';

export interface PooledBuffer {
  readonly buffer: GPUBuffer;
  /** Size class (allocated bytes). */
  readonly capacity: number;
  /** Bytes the owner asked for. */
  readonly bytes: number;
}

export interface PoolStats {
  /** Bytes held by live (acquired, not released) buffers, by capacity. */
  currentBytes: number;
  peakBytes: number;
  /** Bytes kept in free lists for reuse. */
  cachedBytes: number;
  allocations: number;
  reuses: number;
}

const STORAGE_USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/**
 * Rounds up to a size class: 256-byte multiples below 4 KiB, then 16 classes per power of two up to 16 MiB, then
 * whole MiB. Buffers are mostly weights and activations whose exact sizes recur (model shapes), so coarse classes
 * waste memory and buy little reuse: SDXL's 9.565 GiB of UNet weights take 9.583 GiB in these classes, 9.923 with 4
 * classes per octave below 16 MiB, 10.58 with 4 per octave everywhere.
 */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (b <= 4096) return b;
  if (b > LARGE) return Math.ceil(b / MIB) * MIB;
  const octave = 2 ** Math.floor(Math.log2(b));
  const step = octave / 16;
  return Math.ceil(b / step) * step;
}

const MIB = 1 << 20;
const LARGE = 16 * MIB;

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  /** Every buffer this pool created and has not destroyed (live or free), for destroyAll(). */
  private readonly created = new Set<GPUBuffer>();
  private readonly stats: PoolStats = { currentBytes: 0, peakBytes: 0, cachedBytes: 0, allocations: 0, reuses: 0 };

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBufferSize: number,
  ) {}

  acquire(bytes: number, label: string): PooledBuffer {
    if (bytes > this.maxBufferSize) throw new LimitError('maxBufferSize', bytes, this.maxBufferSize, `buffer '${label}'`);
    let capacity = sizeClass(bytes);
    if (capacity > this.maxBufferSize) capacity = Math.ceil(bytes / 4) * 4;
    const list = this.free.get(capacity);
    let buffer = list?.pop();
    if (buffer) {
      this.stats.reuses++;
      this.stats.cachedBytes -= capacity;
      buffer.label = label;
    } else {
      buffer = this.device.createBuffer({ size: capacity, usage: STORAGE_USAGE(), label });
      this.created.add(buffer);
      this.stats.allocations++;
    }
    this.stats.currentBytes += capacity;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, this.stats.currentBytes);
    return { buffer, capacity, bytes };
  }

  release(b: PooledBuffer): void {
    this.stats.currentBytes -= b.capacity;
    this.stats.cachedBytes += b.capacity;
    const list = this.free.get(b.capacity);
    if (list) list.push(b.buffer);
    else this.free.set(b.capacity, [b.buffer]);
  }

  /** Destroys every cached (free) buffer. */
  trim(): void {
    for (const list of this.free.values())
      for (const b of list) {
        b.destroy();
        this.created.delete(b);
      }
    this.free.clear();
    this.stats.cachedBytes = 0;
  }

  /**
   * Destroys every buffer, live ones too (device teardown): dawn.node can crash at process exit when buffers of a
   * destroyed device are still referenced (seen with models a test never disposed). Tensors still holding one fail
   * loudly if used afterwards.
   */
  destroyAll(): void {
    this.trim();
    for (const b of this.created) b.destroy();
    this.created.clear();
  }

  resetPeak(): void {
    this.stats.peakBytes = this.stats.currentBytes;
  }

  report(): PoolStats {
    return { ...this.stats };
  }
}
