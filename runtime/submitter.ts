// Batched command submission: many dispatches share one command encoder and compute pass; the batch is submitted
// every `batchSize` dispatches, before any queue write, and at readback. `immediate` submits each dispatch on its
// own inside an error scope, so a GPU error names the exact kernel (debug mode).
import { GpuError } from './errors.js';
import type { Profiler } from './profiler.js';
import type { UniformArena } from './uniform_arena.js';

export interface Dispatch {
  label: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  /** The uniform binding's offset into the arena (layouts with a uniform bind it with a dynamic offset). */
  dynamicOffsets?: number[];
  workgroups: readonly [number, number, number];
}

export class Submitter {
  private encoder?: GPUCommandEncoder;
  private pass?: GPUComputePassEncoder;
  private count = 0;
  /** Dispatches recorded since creation (tests and benchmarks count work with it). */
  dispatchCount = 0;
  private labels: string[] = [];
  /** Errors seen by the batch error scopes, thrown at the next sync. */
  private errors: Promise<GPUError | null>[] = [];
  private errorLabels: string[][] = [];
  /** Pipeline-build checks (compile errors) that resolve asynchronously; thrown first at the next sync. */
  private checks: Promise<Error | null>[] = [];
  profiler?: Profiler;

  constructor(
    private readonly device: GPUDevice,
    private readonly uniforms: UniformArena,
    public batchSize = 64,
    public immediate = false,
  ) {}

  uniformsFit(size: number): boolean {
    return this.uniforms.fits(size);
  }

  pushUniforms(data: ArrayBuffer): GPUBufferBinding {
    if (!this.uniforms.fits(data.byteLength)) this.flush();
    return this.uniforms.push(data);
  }

  dispatch(d: Dispatch): void {
    if (!this.encoder) {
      this.device.pushErrorScope('validation');
      this.device.pushErrorScope('out-of-memory');
      this.device.pushErrorScope('internal');
      this.encoder = this.device.createCommandEncoder({ label: 'batch' });
    }
    const timestampWrites = this.profiler?.nextPass(d.label);
    if (timestampWrites || !this.pass) {
      this.pass?.end();
      this.pass = this.encoder.beginComputePass({ label: d.label, timestampWrites });
    }
    this.pass.setPipeline(d.pipeline);
    if (d.dynamicOffsets) this.pass.setBindGroup(0, d.bindGroup, d.dynamicOffsets);
    else this.pass.setBindGroup(0, d.bindGroup);
    this.pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
    if (timestampWrites) {
      this.pass.end();
      this.pass = undefined;
    }
    this.labels.push(d.label);
    this.count++;
    this.dispatchCount++;
    if (this.immediate || this.count >= this.batchSize || this.profiler?.full) this.flush();
  }

  /** Zeroes `size` bytes of a buffer from `offset`, in order with the batch's dispatches (no flush, unlike a queue write). */
  clear(buffer: GPUBuffer, offset: number, size: number): void {
    this.encoderForCopy().clearBuffer(buffer, offset, size);
  }

  /** Lets a caller append copies (readback) to the current batch's encoder. */
  encoderForCopy(): GPUCommandEncoder {
    this.pass?.end();
    this.pass = undefined;
    if (!this.encoder) {
      this.device.pushErrorScope('validation');
      this.device.pushErrorScope('out-of-memory');
      this.device.pushErrorScope('internal');
      this.encoder = this.device.createCommandEncoder({ label: 'batch' });
    }
    return this.encoder;
  }

  /** Submits the current batch (if any). */
  flush(): void {
    if (!this.encoder) return;
    this.pass?.end();
    this.pass = undefined;
    const after = this.profiler?.encodeResolve(this.encoder);
    this.uniforms.flush(this.device.queue);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = undefined;
    this.count = 0;
    const labels = this.labels;
    this.labels = [];
    for (let i = 0; i < 3; i++) {
      this.errors.push(this.device.popErrorScope());
      this.errorLabels.push(labels);
    }
    after?.();
  }

  get hasPending(): boolean {
    return this.encoder !== undefined;
  }

  /** Flushes, waits for the GPU, and throws the first GPU error of any batch since the last sync. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.throwErrors();
  }

  addCheck(p: Promise<Error | null>): void {
    this.checks.push(p);
  }

  async throwErrors(): Promise<void> {
    const failed = (await Promise.all(this.checks.splice(0))).find((e) => e !== null);
    if (failed) {
      // The batch errors are consequences of the failed build: drop them.
      this.errors = [];
      this.errorLabels = [];
      throw failed;
    }
    const errs = await Promise.all(this.errors);
    const labels = this.errorLabels;
    this.errors = [];
    this.errorLabels = [];
    const i = errs.findIndex((e) => e !== null);
    if (i >= 0) {
      const kernels = labels[i];
      const where = kernels.length === 1 ? `kernel '${kernels[0]}'` : `a batch of kernels [${kernels.join(', ')}]`;
      throw new GpuError(`GPU error in ${where}: ${errs[i]!.message}`);
    }
  }
}
