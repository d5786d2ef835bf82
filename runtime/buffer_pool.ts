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
  /** Bytes held by live (acquired, not released) buffers, by capacity (size class: what is allocated). */
  currentBytes: number;
  /** Peak of currentBytes (size-class rounding included). */
  peakBytes: number;
  /** Bytes the owners of live buffers asked for (currentBytes without the size-class rounding). */
  requestedBytes: number;
  /** requestedBytes at the moment of peakBytes: peakBytes − this is what the rounding added to the peak. */
  requestedAtPeakBytes: number;
  /** Peak of live + cached bytes: what the device held at most. */
  peakHeldBytes: number;
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
  /**
   * Free buffers per size class, sorted by creation order (descending; the oldest at the end). acquire() takes the
   * oldest free buffer of its class, so the buffers a sequence of acquires gets depend only on which buffers are free,
   * not on the order they were released in: repeated steps bind the same buffers, and their bind groups are reused.
   */
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly order = new WeakMap<GPUBuffer, number>();
  private nextOrder = 0;
  /** Every buffer this pool created and has not destroyed (live or free), for destroyAll(). */
  private readonly created = new Set<GPUBuffer>();
  private readonly stats: PoolStats = {
    currentBytes: 0,
    peakBytes: 0,
    requestedBytes: 0,
    requestedAtPeakBytes: 0,
    peakHeldBytes: 0,
    cachedBytes: 0,
    allocations: 0,
    reuses: 0,
  };
  /** Called before buffers are destroyed (trim, destroyAll): caches holding buffers drop them. */
  onDestroy?: () => void;

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
      this.order.set(buffer, this.nextOrder++);
      this.created.add(buffer);
      this.stats.allocations++;
    }
    const s = this.stats;
    s.currentBytes += capacity;
    s.requestedBytes += bytes;
    if (s.currentBytes > s.peakBytes) {
      s.peakBytes = s.currentBytes;
      s.requestedAtPeakBytes = s.requestedBytes;
    }
    s.peakHeldBytes = Math.max(s.peakHeldBytes, s.currentBytes + s.cachedBytes);
    return { buffer, capacity, bytes };
  }

  release(b: PooledBuffer): void {
    this.stats.currentBytes -= b.capacity;
    this.stats.requestedBytes -= b.bytes;
    this.stats.cachedBytes += b.capacity;
    let list = this.free.get(b.capacity);
    if (!list) this.free.set(b.capacity, (list = []));
    // Sorted insert (descending creation order), so pop() yields the oldest free buffer.
    const o = this.order.get(b.buffer) ?? 0;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.order.get(list[mid]) ?? 0) > o) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, b.buffer);
  }

  /** Destroys every cached (free) buffer. */
  trim(): void {
    this.onDestroy?.();
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
    this.onDestroy?.();
    for (const b of this.created) b.destroy();
    this.created.clear();
  }

  resetPeak(): void {
    this.stats.peakBytes = this.stats.currentBytes;
    this.stats.requestedAtPeakBytes = this.stats.requestedBytes;
    this.stats.peakHeldBytes = this.stats.currentBytes + this.stats.cachedBytes;
  }

  report(): PoolStats {
    return { ...this.stats };
  }
}
