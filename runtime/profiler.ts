// Per-kernel GPU time from timestamp queries (one compute pass per timed dispatch). Where the device lacks
// 'timestamp-query', times come from the wall clock around onSubmittedWorkDone, per flushed batch.

export interface KernelTime {
  label: string;
  ms: number;
}

export class Profiler {
  readonly gpuTimestamps: boolean;
  private querySet?: GPUQuerySet;
  private resolveBuf?: GPUBuffer;
  private readbackPool: GPUBuffer[] = [];
  private labels: string[] = [];
  private pendingReads: Promise<void>[] = [];
  readonly times: KernelTime[] = [];

  constructor(
    private readonly device: GPUDevice,
    readonly capacity = 512,
  ) {
    this.gpuTimestamps = device.features.has('timestamp-query');
    if (this.gpuTimestamps) {
      this.querySet = device.createQuerySet({ type: 'timestamp', count: capacity * 2, label: 'profiler-queries' });
      this.resolveBuf = device.createBuffer({
        size: capacity * 16,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
        label: 'profiler-resolve',
      });
    }
  }

  /** Timestamp writes for the next timed pass, or undefined when the batch is full (caller flushes). */
  nextPass(label: string): GPUComputePassTimestampWrites | undefined {
    if (!this.querySet || this.labels.length >= this.capacity) return undefined;
    const i = this.labels.length;
    this.labels.push(label);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  get full(): boolean {
    return this.labels.length >= this.capacity;
  }

  /** Appends resolve + copy to the encoder of the batch about to be submitted; returns work to run after submit. */
  encodeResolve(encoder: GPUCommandEncoder): (() => void) | undefined {
    const n = this.labels.length;
    if (!this.querySet || !this.resolveBuf || n === 0) return undefined;
    const labels = this.labels;
    this.labels = [];
    const bytes = n * 16;
    const readback =
      this.readbackPool.pop() ??
      this.device.createBuffer({
        size: this.capacity * 16,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        label: 'profiler-readback',
      });
    encoder.resolveQuerySet(this.querySet, 0, 2 * n, this.resolveBuf, 0);
    encoder.copyBufferToBuffer(this.resolveBuf, 0, readback, 0, bytes);
    return () => {
      this.pendingReads.push(
        readback.mapAsync(GPUMapMode.READ, 0, bytes).then(() => {
          const t = new BigInt64Array(readback.getMappedRange(0, bytes).slice(0));
          readback.unmap();
          this.readbackPool.push(readback);
          for (let i = 0; i < n; i++) {
            const ns = Number(t[2 * i + 1] - t[2 * i]);
            // Invalid (negative / zero-width reordered) intervals are dropped, not reported as 0.
            if (ns >= 0) this.times.push({ label: labels[i], ms: ns / 1e6 });
          }
        }),
      );
    };
  }

  recordWall(label: string, ms: number): void {
    this.times.push({ label, ms });
  }

  /** Waits for outstanding readbacks; returns and clears the collected times. */
  async collect(): Promise<KernelTime[]> {
    await Promise.all(this.pendingReads);
    this.pendingReads = [];
    return this.times.splice(0, this.times.length);
  }

  destroy(): void {
    this.querySet?.destroy();
    this.resolveBuf?.destroy();
    for (const b of this.readbackPool) b.destroy();
  }
}
