// The runtime and harness: limits, shape and compile errors, layout checks, pool, batching, profiler, cache keys.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { KernelCompileError, KernelLayoutError, LimitError, ShapeError } from '../runtime/errors.js';
import { variantKey } from '../runtime/pipeline_cache.js';
import { sizeClass } from '../runtime/buffer_pool.js';
import { adamwKernel } from '../src/kernels/adamw.js';
import { WGSL_INCLUDES, WGSL_SOURCES } from '../src/kernels/wgsl_sources.generated.js';
import { add, silu, unary } from '../src/kernels/elementwise.js';
import { Kernel } from '../src/kernels/kernel.js';
import { fillNormal } from '../src/kernels/random.js';
import { Tensor } from '../src/tensor.js';
import { seeded, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(() => gpu?.destroy());

describe('device', () => {
  it('reports adapter, features and the maximum limits it asked for', () => {
    const s = gpu.summary();
    expect(s.host).toBe(typeof window === 'undefined' ? 'node' : 'browser');
    expect(s.limits.maxStorageBufferBindingSize).toBe(gpu.adapter!.limits.maxStorageBufferBindingSize);
    expect(s.limits.maxComputeWorkgroupStorageSize).toBe(gpu.adapter!.limits.maxComputeWorkgroupStorageSize);
    expect(s.limits.maxComputeInvocationsPerWorkgroup).toBe(gpu.adapter!.limits.maxComputeInvocationsPerWorkgroup);
    for (const f of ['timestamp-query', 'subgroups', 'shader-f16'] as const)
      expect(gpu.device.features.has(f), f).toBe(gpu.adapter!.features.has(f));
  });
});

describe('errors', () => {
  it('an over-limit tensor binding names the limit, the value and the tensor', () => {
    const max = gpu.limits.maxStorageBufferBindingSize;
    const maxBuf = gpu.limits.maxBufferSize;
    const elems = Math.floor(max / 4) + 64;
    if (elems * 4 > maxBuf) return; // the buffer itself cannot exist here; covered by the next test
    const big = Tensor.empty(gpu, [elems], 'f32', 'huge-activation');
    expect(() => silu(big)).toThrow(LimitError);
    expect(() => silu(big)).toThrow(new RegExp(`maxStorageBufferBindingSize would be ${elems * 4}.*at most ${max}`));
    expect(() => silu(big)).toThrow(/huge-activation/);
    big.release();
  });

  it('a tensor over maxBufferSize is refused before allocation', () => {
    const max = gpu.limits.maxBufferSize;
    const elems = Math.floor(max / 4) + 1;
    expect(() => Tensor.empty(gpu, [elems], 'f32', 'too-big')).toThrow(LimitError);
    expect(() => Tensor.empty(gpu, [elems], 'f32', 'too-big')).toThrow(/maxBufferSize.*too-big|too-big.*maxBufferSize/);
  });

  it('a shape mismatch names both shapes', () => {
    const a = Tensor.zeros(gpu, [2, 3], 'f32', 'a');
    const b = Tensor.zeros(gpu, [3, 2], 'f32', 'b');
    expect(() => add(a, b)).toThrow(ShapeError);
    expect(() => add(a, b)).toThrow(/\[2, 3\] and \[3, 2\]/);
    expect(() => Tensor.fromArray(gpu, [1, 2, 3], [2, 2])).toThrow(/shape \[2, 2\] holds 4 elements, data has 3/);
    expect(() => a.reshape([4, 2])).toThrow(/cannot view \[2, 3\] as \[4, 2\]/);
    a.release();
    b.release();
  });

  it('compile-error lines name the kernel file, or the kernels/lib file an `// #include` appended', () => {
    // adamw.wgsl includes lib/div_rn.wgsl (scripts/gen-wgsl.mjs appends it after the kernel's own lines).
    const [start, file] = WGSL_INCLUDES.adamw[0];
    expect(file).toBe('kernels/lib/div_rn.wgsl');
    expect(WGSL_SOURCES.adamw.split('\n')[start - 1]).toMatch(/^\/\/ a \/ b rounded to nearest/);
    expect(adamwKernel.sourceLine({}, start + 3)).toBe('kernels/lib/div_rn.wgsl line 4');
    expect(adamwKernel.sourceLine({}, 5)).toBe('kernels/adamw.wgsl line 5');
    expect(WGSL_SOURCES.adamw).toMatch(/fn div_rn\(/);
  });

  it('a WGSL compile error is thrown as KernelCompileError naming the kernel and the line', async () => {
    const broken = new Kernel<{ k: number }>({
      name: 'broken_for_test',
      entryPoints: ['main'],
      bindings: [{ name: 'y', kind: 'read_write' }],
      // Parses (wgsl_reflect accepts it) but does not type-check: a float literal into a u32.
      source: `@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main() {
  let x: u32 = 1.5;
  y[0] = f32(x);
}`,
    });
    const y = Tensor.zeros(gpu, [4]);
    broken.run(gpu, { entry: 'main', variant: { k: 1 }, buffers: { y }, workgroups: [1] });
    const err = await gpu.sync().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KernelCompileError);
    expect((err as Error).message).toMatch(/broken_for_test/);
    expect((err as Error).message).toMatch(/line 3/);
    // The failure is remembered: the next use throws at once.
    expect(() => broken.run(gpu, { entry: 'main', variant: { k: 1 }, buffers: { y }, workgroups: [1] })).toThrow(KernelCompileError);
    // The device still works afterwards.
    const x = Tensor.fromArray(gpu, [1, 2], [2]);
    expect(Array.from(await unary('scale', x, { alpha: 2 }).toArray())).toEqual([2, 4]);
    y.release();
    x.release();
  });

  it('a wrapper whose bindings disagree with its WGSL fails at load', () => {
    const src = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main() { y[0] = x[0]; }`;
    const make = (bindings: { name: string; kind: 'read' | 'read_write' | 'uniform' }[]) => () =>
      new Kernel({ name: 'mismatch', entryPoints: ['main'], bindings, source: src });
    expect(make([{ name: 'x', kind: 'read' }, { name: 'y', kind: 'read_write' }])).not.toThrow();
    expect(make([{ name: 'x', kind: 'read_write' }, { name: 'y', kind: 'read_write' }])).toThrow(KernelLayoutError);
    expect(make([{ name: 'y', kind: 'read' }, { name: 'x', kind: 'read_write' }])).toThrow(/binding 0: wrapper declares read 'y', WGSL has read 'x'/);
    expect(make([{ name: 'x', kind: 'read' }])).toThrow(/binding 1 'y' is not declared/);
    expect(() => new Kernel({ name: 'noentry', entryPoints: ['other'], bindings: [{ name: 'x', kind: 'read' }, { name: 'y', kind: 'read_write' }], source: src })).toThrow(
      /entry point 'other' not found/,
    );
  });

  it('a uniform layout that disagrees with the WGSL struct fails at load', () => {
    const src = `struct Params { n: u32, scale: f32, shape: vec4u, };
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main() { y[0] = params.scale * f32(params.n + params.shape.x); }`;
    const bindings = [
      { name: 'params', kind: 'uniform' as const },
      { name: 'y', kind: 'read_write' as const },
    ];
    expect(
      () => new Kernel({ name: 'u', entryPoints: ['main'], bindings, source: src, uniforms: [['n', 'u32'], ['scale', 'f32'], ['shape', 'vec4u']] }),
    ).not.toThrow();
    expect(
      () => new Kernel({ name: 'u', entryPoints: ['main'], bindings, source: src, uniforms: [['n', 'u32'], ['shape', 'vec4u']] }),
    ).toThrow(/uniform fields differ/);
  });
});

describe('tensors', () => {
  it('f16 tensors round-trip where the device offers shader-f16, and f32-only kernels refuse them', async () => {
    if (!gpu.hasF16) {
      expect(() => Tensor.empty(gpu, [4], 'f16', 'h')).toThrow(/shader-f16/);
      return;
    }
    const vals = [0, 1, -2.5, 65504, 1e-5, 0.1, 3.14159];
    const h = Tensor.fromArray(gpu, vals, [7], { dtype: 'f16', label: 'h' });
    const back = await h.toArray();
    // f16 keeps 11 significant bits: relative error <= 2^-11 (subnormals: absolute 2^-24).
    vals.forEach((v, i) => expect(Math.abs(back[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -24));
    expect(back[3]).toBe(65504);
    // f16-capable kernels take it (test/f16_numerics.test.ts); an f32-only one (random fills) refuses it.
    expect(silu(h).dtype).toBe('f16');
    expect(() => fillNormal(h, { seed: 0 })).toThrow(/dtype f16, expected f32/);
    h.release();
  });
});

describe('buffer pool', () => {
  it('reuses released buffers by size class and tracks current and peak bytes', () => {
    const before = gpu.pool.report();
    const a = Tensor.empty(gpu, [1000], 'f32', 'pool-a');
    const mid = gpu.pool.report();
    expect(mid.currentBytes - before.currentBytes).toBe(sizeClass(4000));
    a.release();
    const b = Tensor.empty(gpu, [990], 'f32', 'pool-b');
    const after = gpu.pool.report();
    expect(after.reuses).toBe(mid.reuses + 1);
    expect(after.peakBytes).toBeGreaterThanOrEqual(mid.currentBytes);
    b.release();
    expect(gpu.pool.report().currentBytes).toBe(before.currentBytes);
  });

  it('reports bytes requested vs allocated at the peak, and the peak of live + cached bytes', () => {
    gpu.pool.resetPeak();
    const r0 = gpu.pool.report();
    expect(r0.peakHeldBytes).toBe(r0.currentBytes + r0.cachedBytes);
    const a = Tensor.empty(gpu, [1001], 'f32', 'pool-req-a'); // 4004 bytes asked, one size class allocated
    const b = Tensor.empty(gpu, [5000], 'f32', 'pool-req-b');
    const r1 = gpu.pool.report();
    expect(r1.peakBytes - r0.currentBytes).toBe(sizeClass(4004) + sizeClass(20000));
    expect(r1.requestedAtPeakBytes - r0.requestedBytes).toBe(4004 + 20000);
    // Held (live + cached) only grows while nothing is destroyed: its peak is the latest value.
    expect(r1.peakHeldBytes).toBe(r1.currentBytes + r1.cachedBytes);
    b.release(); // cached: still held by the device
    const c = Tensor.empty(gpu, [100], 'f32', 'pool-req-c');
    const r2 = gpu.pool.report();
    expect(r2.peakBytes).toBe(r1.peakBytes);
    expect(r2.peakHeldBytes).toBe(r2.currentBytes + r2.cachedBytes);
    expect(r2.peakHeldBytes).toBeGreaterThanOrEqual(r1.peakHeldBytes);
    a.release();
    c.release();
    expect(gpu.pool.report().requestedBytes).toBe(r0.requestedBytes);
  });

  it('sub-views: a weight inside a shared buffer reads its own bytes; bounds and offset alignment are checked', async () => {
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    const n = align / 4; // one alignment unit of f32
    const data = Float32Array.from({ length: 3 * n }, (_, i) => i);
    const pack = Tensor.fromArray(gpu, data, [3 * n], { label: 'pack' });
    const second = pack.view(4 * n, [n, 1], 'second');
    const third = pack.view(8 * n, [n], 'third');
    const first = pack.view(0, [n]);
    expect(second.byteOffset).toBe(4 * n);
    expect(Array.from(await second.toArray())).toEqual(Array.from(data.subarray(n, 2 * n)));
    const flat = second.reshape([n]);
    const sum = add(flat, third);
    expect(Array.from(await sum.toArray())).toEqual(Array.from({ length: n }, (_, i) => 2 * i + 3 * n));
    flat.release();
    sum.release();
    expect(first.isFollowedBy(second)).toBe(true);
    expect(second.isFollowedBy(third)).toBe(true);
    expect(first.isFollowedBy(third)).toBe(false);
    // A write through a view lands in the shared buffer only there.
    second.write(new Float32Array(n).fill(-1));
    const all = await pack.toArray();
    expect(all[n - 1]).toBe(n - 1);
    expect(all[n]).toBe(-1);
    expect(all[2 * n]).toBe(2 * n);
    expect(() => pack.view(4, [1])).toThrow(/multiple of minStorageBufferOffsetAlignment/);
    expect(() => pack.view(8 * n, [n + 1])).toThrow(/ends at byte .* which has/);
    // The buffer stays until its last view is released.
    const live = gpu.pool.report().currentBytes;
    pack.release();
    first.release();
    second.release();
    expect(gpu.pool.report().currentBytes).toBe(live);
    third.release();
    expect(gpu.pool.report().currentBytes).toBe(live - sizeClass(12 * n));
  });

  it('size classes are 256-byte aligned with at most 6.25% waste above 4 KiB', () => {
    for (const n of [1, 255, 257, 4096, 5000, 1 << 20, (1 << 20) + 1, 123456789]) {
      const c = sizeClass(n);
      expect(c).toBeGreaterThanOrEqual(n);
      expect(c % 256).toBe(0);
      if (n > 4096) expect(c / n).toBeLessThanOrEqual(1.0625);
    }
  });

  it('views share storage; the buffer returns to the pool after the last view is released', async () => {
    const before = gpu.pool.report().currentBytes;
    const t = Tensor.fromArray(gpu, seeded(12, 1), [3, 4]);
    const v = t.reshape([2, -1]);
    expect(v.shape).toEqual([2, 6]);
    t.release();
    expect(gpu.pool.report().currentBytes).toBeGreaterThan(before);
    v.release();
    expect(gpu.pool.report().currentBytes).toBe(before);
    await expect(v.toArray()).rejects.toThrow(/used after release/);
  });
});

describe('submission', () => {
  it('batched and immediate modes give the same results; writes after recorded work do not overtake it', async () => {
    for (const immediate of [false, true]) {
      gpu.queue.immediate = immediate;
      const x = Tensor.fromArray(gpu, [1, 2, 3], [3]);
      const y = unary('scale', x, { alpha: 10 }); // recorded, maybe not yet submitted
      x.write([7, 8, 9]); // must land after the recorded dispatch read x
      const z = unary('scale', x, { alpha: 1 });
      expect(Array.from(await y.toArray())).toEqual([10, 20, 30]);
      expect(Array.from(await z.toArray())).toEqual([7, 8, 9]);
      [x, y, z].forEach((t) => t.release());
    }
    gpu.queue.immediate = false;
  });

  it('many dispatches in one batch chain correctly', async () => {
    let x = Tensor.fromArray(gpu, [1], [1]);
    for (let i = 0; i < 200; i++) {
      const next = unary('scale', x, { alpha: 1.01 });
      x.release();
      x = next;
    }
    expect((await x.toArray())[0]).toBeCloseTo(1.01 ** 200, 3);
    x.release();
  });

  it('the profiler reports one time per dispatch', async () => {
    const prof = gpu.startProfiling();
    const x = Tensor.fromArray(gpu, seeded(4096, 2), [4096]);
    const y = silu(x);
    const z = silu(y);
    gpu.stopProfiling();
    await gpu.sync();
    const times = await prof.collect();
    if (gpu.hasTimestamps) {
      expect(times.map((t) => t.label)).toEqual(['unary.silu', 'unary.silu']);
      for (const t of times) expect(t.ms).toBeGreaterThanOrEqual(0);
    }
    [x, y, z].forEach((t) => t.release());
  });
});

describe('pipeline cache', () => {
  it('keys come from the whole variant object, independent of field order', () => {
    expect(variantKey('k', 'e', { a: 1, b: true })).toBe(variantKey('k', 'e', { b: true, a: 1 }));
    expect(variantKey('k', 'e', { a: 1, b: true })).not.toBe(variantKey('k', 'e', { a: 1, b: false }));
    expect(variantKey('k', 'e', { a: 1 })).not.toBe(variantKey('k', 'f', { a: 1 }));
  });
});

describe('labels', () => {
  it('result labels stay bounded when ops are chained in a loop', async () => {
    let x = Tensor.fromArray(gpu, [1, 2], [2], { label: 'x' });
    for (let i = 0; i < 40; i++) {
      const next = add(x, x);
      x.release();
      x = next;
    }
    expect(x.label.length).toBeLessThanOrEqual(120);
    expect(x.label.startsWith('add(add(')).toBe(true);
    expect(Array.from(await x.toArray())).toEqual([2 ** 40, 2 ** 41]);
    x.release();
  });
});
