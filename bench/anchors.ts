// Reference figures for bench cases, from bench/anchors.json (a copy of shared/anchors/pytorch_h100.json's
// micro-benchmarks plus the WebGPU peer numbers of shared/spec/webgpu.md; the project never reads ../shared).
// Usage in a bench file:   reference: pytorchH100('matmul_4096_fp32_tf32off')
import type { Reference } from './case.js';
import anchors from './anchors.json' with { type: 'json' };

export const ANCHORS = anchors;

type EntryName = keyof typeof anchors.entries;

/** The PyTorch H100 figure `name` (a key of anchors.json "entries") as a Reference, meaningful on NVIDIA only. */
export function pytorchH100(name: EntryName): Reference {
  const e = anchors.entries[name] as { GFLOPs_per_s?: number; GB_per_s?: number; median_ms: number; dtype: string; shape: string };
  const value = e.GFLOPs_per_s ?? e.GB_per_s;
  if (value === undefined) throw new Error(`anchors.json entry '${name}' has no throughput`);
  return {
    value,
    source: `PyTorch ${anchors.torch} ${e.dtype}, ${e.shape}, ${e.median_ms.toFixed(3)} ms on ${anchors.gpu} (bench/anchors.json: ${name})`,
    adapter: anchors.adapter,
  };
}

/** A WebGPU peer measured on the same H100 (anchors.json "webgpu_peers_h100"), e.g. TF.js 4096³ f32 matmul. */
export function webgpuPeerH100(name: keyof typeof anchors.webgpu_peers_h100.entries): Reference {
  const e = anchors.webgpu_peers_h100.entries[name];
  return { value: e.GFLOPs_per_s, source: `${e.note} on ${anchors.gpu} (bench/anchors.json: ${name})`, adapter: anchors.adapter };
}

/** H100 SXM HBM3 peak bandwidth: a roofline for memory-bound kernels (GB/s), not a measurement. */
export function hbmRooflineH100(): Reference {
  const r = anchors.roofline.h100_sxm_hbm3_GB_per_s;
  return { value: r.value, source: r.source, adapter: anchors.adapter };
}
