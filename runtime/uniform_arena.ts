// Uniform arena: every dispatch of a batch writes its parameters into one host staging area at aligned offsets;
// the whole batch is uploaded with one writeBuffer just before the batch is submitted. Queue order makes reuse of
// the same GPU buffer by the next batch safe.

export class UniformArena {
  private staging: ArrayBuffer;
  private bytes: Uint8Array;
  private used = 0;
  private gpuBuffer: GPUBuffer;

  constructor(
    private readonly device: GPUDevice,
    private readonly align: number,
    readonly capacity = 1 << 18,
  ) {
    this.staging = new ArrayBuffer(capacity);
    this.bytes = new Uint8Array(this.staging);
    this.gpuBuffer = this.makeBuffer();
  }

  private makeBuffer(): GPUBuffer {
    return this.device.createBuffer({
      size: this.capacity,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: 'uniform-arena',
    });
  }

  /** True when `size` more bytes fit in this batch. */
  fits(size: number): boolean {
    return Math.ceil(this.used / this.align) * this.align + size <= this.capacity;
  }

  /** Copies `data` in; returns the binding for it. Caller must check fits() first. */
  push(data: ArrayBuffer): GPUBufferBinding {
    const offset = Math.ceil(this.used / this.align) * this.align;
    this.bytes.set(new Uint8Array(data), offset);
    this.used = offset + data.byteLength;
    return { buffer: this.gpuBuffer, offset, size: data.byteLength };
  }

  /** Uploads the batch's uniforms; call right before queue.submit of the batch. */
  flush(queue: GPUQueue): void {
    if (this.used === 0) return;
    queue.writeBuffer(this.gpuBuffer, 0, this.staging, 0, Math.ceil(this.used / 4) * 4);
    this.used = 0;
  }

  get pending(): number {
    return this.used;
  }

  destroy(): void {
    this.gpuBuffer.destroy();
  }
}
