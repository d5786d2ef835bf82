// Interop with an engine that owns its WebGPU objects (as ONNX Runtime Web takes a `device` and
// Tensor.fromGpuBuffer): the device and every input buffer are created here with dawn.node directly, as an engine
// would (default limits, no features requested), wrapped with Gpu.fromDevice / Tensor.fromBuffer (no copy, at byte
// offsets), run through matmul, conv2d and attention, and read back by the engine's own encoder and mapping after
// gpu.flush(). The engine's device, buffers and error handler must outlive our destroy().
import { create, globals } from 'webgpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '../runtime/device.js';
import { attention } from '../src/kernels/attention.js';
import { conv2d } from '../src/kernels/conv2d.js';
import { Kernel } from '../src/kernels/kernel.js';
import { LimitError } from '../runtime/errors.js';
import { matmul } from '../src/kernels/matmul.js';
import { attentionRef } from '../src/reference/attention.js';
import { conv2dRef } from '../src/reference/conv2d.js';
import { matmulRef } from '../src/reference/matmul.js';
import { Tensor } from '../src/tensor.js';
import { expectClose, seeded } from './helpers.js';

// The engine's own flag constants (dawn.node does not make them global; Gpu.fromDevice must not need them to be).
const FLAGS = globals as unknown as Record<'GPUBufferUsage' | 'GPUMapMode' | 'GPUShaderStage', Record<string, number>>;
const USAGE = FLAGS.GPUBufferUsage;
const MAP_READ_MODE = FLAGS.GPUMapMode.READ;
const ENGINE_STORAGE = USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST;

let engineGpu: GPU | undefined;
let adapter: GPUAdapter;
let device: GPUDevice;
let gpu: Gpu;
const engineErrors: string[] = [];
let lost = false;

/** An engine buffer holding `parts` at the given byte offsets (written through a mapping, not by us). */
function engineBuffer(size: number, parts: [number, Float32Array][], usage = ENGINE_STORAGE, label = 'engine buffer'): GPUBuffer {
  const b = device.createBuffer({ size, usage, mappedAtCreation: true, label });
  const bytes = new Uint8Array(b.getMappedRange());
  for (const [offset, data] of parts) bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
  b.unmap();
  return b;
}

/** The engine reads a range back with its own encoder, submit and mapping. */
async function engineRead(src: GPUBuffer, offset: number, bytes: number): Promise<Float32Array> {
  const staging = device.createBuffer({ size: bytes, usage: USAGE.MAP_READ | USAGE.COPY_DST, label: 'engine readback' });
  const enc = device.createCommandEncoder({ label: 'engine readback' });
  enc.copyBufferToBuffer(src, offset, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(MAP_READ_MODE);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out;
}

beforeAll(async () => {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  engineGpu = create([]) as GPU;
  adapter = (await engineGpu.requestAdapter())!;
  expect(adapter, 'an adapter').toBeTruthy();
  device = await adapter.requestDevice({ label: 'engine device' });
  device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => engineErrors.push(ev.error.message);
  device.lost.then(() => (lost = true));
  gpu = Gpu.fromDevice(device);
  const desc = gpu.describe();
  console.log(`[adapter] ${desc} (engine device, default limits)`);
  const want = process.env.TCD_EXPECT_ADAPTER;
  if (want) expect(desc, `adapter must match TCD_EXPECT_ADAPTER=${want}`).toMatch(new RegExp(want, 'i'));
});

afterAll(() => {
  if (device && !lost) device.destroy();
  engineGpu = undefined;
});

describe('Gpu.fromDevice + Tensor.fromBuffer', () => {
  it('uses the engine device as created: its limits and features, its error handler, the spec flag constants', () => {
    expect(gpu.device).toBe(device);
    expect(gpu.limits.maxStorageBuffersPerShaderStage).toBe(device.limits.maxStorageBuffersPerShaderStage);
    expect(gpu.limits.maxComputeWorkgroupStorageSize).toBe(device.limits.maxComputeWorkgroupStorageSize);
    expect(gpu.hasF16).toBe(device.features.has('shader-f16'));
    expect(device.onuncapturederror, 'the engine keeps its uncaptured-error handler').not.toBeNull();
    // Flags installed by fromDevice equal dawn's own.
    for (const name of ['GPUBufferUsage', 'GPUMapMode', 'GPUShaderStage'] as const)
      expect({ ...(globalThis as unknown as Record<string, object>)[name] }).toEqual({ ...FLAGS[name] });
  });

  it('matmul on engine buffers (one at a byte offset) equals the CPU product; read back by the engine', async () => {
    const [M, K, N] = [19, 24, 13];
    const x = seeded(M * K, 1);
    const w = seeded(N * K, 2);
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    const bx = engineBuffer(align + M * K * 4, [[align, x]], ENGINE_STORAGE, 'engine x');
    const bw = engineBuffer(N * K * 4, [[0, w]], ENGINE_STORAGE, 'engine w');
    const tx = Tensor.fromBuffer(gpu, bx, [M, K], { dtype: 'f32', offset: align, label: 'x' });
    const tw = Tensor.fromBuffer(gpu, bw, [N, K], { label: 'w' });
    const y = matmul(tx, tw, { transB: true });
    gpu.flush(); // our work is submitted before the engine's readback
    const got = await engineRead(y.buffer, y.byteOffset, y.bytes);
    expectClose(got, matmulRef(x, [M, K], w, [N, K], { transB: true }).y, { atol: 1e-5, rtol: 1e-4 }, 'matmul');
    // Our readback of an engine-buffer tensor works too (offset respected).
    expectClose(await tx.toArray(), x, { atol: 0, rtol: 0 }, 'x via toArray');
    for (const t of [tx, tw, y]) t.release();
    // Released external tensors leave the engine's buffers intact and usable.
    expectClose(await engineRead(bx, align, M * K * 4), x, { atol: 0, rtol: 0 }, 'engine x after release');
    bx.destroy();
    bw.destroy();
  });

  it('conv2d 3×3 pad 1 with bias on engine buffers equals the CPU convolution', async () => {
    const g = { B: 2, Cin: 3, H: 7, W: 6, Cout: 5, kH: 3, kW: 3, stride: 1, padY: 1, padX: 1 };
    const x = seeded(g.B * g.Cin * g.H * g.W, 3);
    const w = seeded(g.Cout * g.Cin * 9, 4);
    const bias = seeded(g.Cout, 5);
    // All three in one engine buffer, each at an aligned offset.
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    const up = (n: number) => Math.ceil((n * 4) / align) * align;
    const [ox, ow, ob] = [0, up(x.length), up(x.length) + up(w.length)];
    const buf = engineBuffer(ob + up(bias.length), [[ox, x], [ow, w], [ob, bias]], ENGINE_STORAGE, 'engine conv operands');
    const tx = Tensor.fromBuffer(gpu, buf, [g.B, g.Cin, g.H, g.W], { offset: ox, label: 'x' });
    const tw = Tensor.fromBuffer(gpu, buf, [g.Cout, g.Cin, 3, 3], { offset: ow, label: 'w' });
    const tb = Tensor.fromBuffer(gpu, buf, [g.Cout], { offset: ob, label: 'bias' });
    const y = conv2d(tx, tw, { padding: 1, bias: tb });
    expect(y.shape).toEqual([g.B, g.Cout, g.H, g.W]);
    gpu.flush();
    expectClose(await engineRead(y.buffer, y.byteOffset, y.bytes), conv2dRef(x, w, g, bias), { atol: 1e-4, rtol: 1e-4 }, 'conv2d');
    for (const t of [tx, tw, tb, y]) t.release();
    buf.destroy();
  });

  it('attention over Q, K, V at offsets of one engine buffer equals the CPU attention', async () => {
    const d = { B: 1, N: 9, M: 11, heads: 2, headDim: 8 };
    const C = d.heads * d.headDim;
    const q = seeded(d.B * d.N * C, 6);
    const k = seeded(d.B * d.M * C, 7);
    const v = seeded(d.B * d.M * C, 8);
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    const up = (n: number) => Math.ceil((n * 4) / align) * align;
    const [oq, ok, ov] = [0, up(q.length), up(q.length) + up(k.length)];
    const buf = engineBuffer(ov + up(v.length), [[oq, q], [ok, k], [ov, v]], ENGINE_STORAGE, 'engine qkv');
    const tq = Tensor.fromBuffer(gpu, buf, [d.B, d.N, C], { offset: oq, label: 'q' });
    const tk = Tensor.fromBuffer(gpu, buf, [d.B, d.M, C], { offset: ok, label: 'k' });
    const tv = Tensor.fromBuffer(gpu, buf, [d.B, d.M, C], { offset: ov, label: 'v' });
    const o = attention(tq, tk, tv, { heads: d.heads });
    gpu.flush();
    expectClose(await engineRead(o.buffer, o.byteOffset, o.bytes), attentionRef(q, k, v, d).o, { atol: 1e-5, rtol: 1e-4 }, 'attention');
    for (const t of [tq, tk, tv, o]) t.release();
    buf.destroy();
  });

  it('rejects engine buffers it cannot use, saying what was expected and what was received', async () => {
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    const b = engineBuffer(1024, [], ENGINE_STORAGE, 'engine small');
    expect(() => Tensor.fromBuffer(gpu, b, [4], { offset: 4 })).toThrow(`offset must be a non-negative multiple of minStorageBufferOffsetAlignment (${align}), got 4`);
    expect(() => Tensor.fromBuffer(gpu, b, [300])).toThrow('needs 1200 bytes, the buffer has 1024');
    const uniform = device.createBuffer({ size: 256, usage: USAGE.UNIFORM | USAGE.COPY_DST, label: 'engine uniform' });
    expect(() => Tensor.fromBuffer(gpu, uniform, [4])).toThrow(/needs GPUBufferUsage\.STORAGE \(128\).*usage is 72/);
    const noCopy = device.createBuffer({ size: 256, usage: USAGE.STORAGE, label: 'engine storage only' });
    const t = Tensor.fromBuffer(gpu, noCopy, [4]);
    await expect(t.toArray()).rejects.toThrow('toArray() needs GPUBufferUsage.COPY_SRC');
    expect(() => t.write([1, 2, 3, 4])).toThrow('write() needs GPUBufferUsage.COPY_DST');
    expect(() => Gpu.fromDevice(null as unknown as GPUDevice)).toThrow('Gpu.fromDevice: expected a GPUDevice, got null');
    t.release();
    for (const x of [b, uniform, noCopy]) x.destroy();
  });

  it('a kernel needing more storage buffers than the engine device allows names the limit', () => {
    const max = gpu.limits.maxStorageBuffersPerShaderStage;
    const n = max + 1;
    const decl = Array.from({ length: n }, (_, i) => `@group(0) @binding(${i}) var<storage, read_write> b${i}: array<f32>;`).join('\n');
    const body = Array.from({ length: n }, (_, i) => `b${i}[0] = 1.0;`).join(' ');
    const wide = new Kernel<Record<string, never>>({
      name: 'wide',
      entryPoints: ['main'],
      bindings: Array.from({ length: n }, (_, i) => ({ name: `b${i}`, kind: 'read_write' as const })),
      source: `${decl}\n@compute @workgroup_size(1) fn main() { ${body} }\n`,
    });
    let err: unknown;
    try {
      wide.pipeline(gpu, 'main', {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LimitError);
    expect((err as Error).message).toBe(
      `kernel wide.main{} (request a higher limit when creating the device): maxStorageBuffersPerShaderStage would be ${n}, but this device allows at most ${max}`,
    );
  });

  it('destroy() frees only our buffers: the engine device and its buffers keep working, no GPU error was raised', async () => {
    const data = seeded(64, 9);
    const b = engineBuffer(256, [[0, data]], ENGINE_STORAGE, 'engine survivor');
    const t = Tensor.fromBuffer(gpu, b, [64]);
    const y = matmul(t.reshape([8, 8]), t.reshape([8, 8]));
    await y.toArray();
    await gpu.destroy();
    expectClose(await engineRead(b, 0, 256), data, { atol: 0, rtol: 0 }, 'engine buffer after destroy');
    await device.queue.onSubmittedWorkDone();
    expect(lost, 'device lost').toBe(false);
    expect(engineErrors, 'uncaptured GPU errors on the engine device').toEqual([]);
    b.destroy();
  });
});
