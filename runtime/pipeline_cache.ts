// Pipeline cache keyed by a typed variant object: the key is the kernel name plus a canonical (sorted-key)
// serialisation of the whole variant, so no variant field can be forgotten in a hand-built key.

export type VariantValue = string | number | boolean;
export type Variant = Readonly<Record<string, VariantValue>>;

export function variantKey(kernel: string, entry: string, variant: Variant): string {
  const fields = Object.keys(variant)
    .sort()
    .map((k) => [k, variant[k]]);
  return JSON.stringify([kernel, entry, fields]);
}

export class PipelineCache {
  private readonly map = new Map<string, GPUComputePipeline>();
  get(key: string): GPUComputePipeline | undefined {
    return this.map.get(key);
  }
  set(key: string, p: GPUComputePipeline): void {
    this.map.set(key, p);
  }
  get size(): number {
    return this.map.size;
  }
}
