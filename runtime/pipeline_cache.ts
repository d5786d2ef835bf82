// Pipeline cache keyed by a typed variant object: the key is the kernel name plus a canonical (sorted-key)
// serialisation of the whole variant, so no variant field can be forgotten in a hand-built key.

export type VariantValue = string | number | boolean;
export type Variant = Readonly<Record<string, VariantValue>>;

export function variantKey(kernel: string, entry: string, variant: Variant): string {
  const names = Object.keys(variant);
  // Sorted field names, memoised per name list (a kernel's variants share one): the key is built per dispatch.
  const listKey = names.join(',');
  let sorted = SORTED_NAMES.get(listKey);
  if (!sorted) {
    sorted = [...names].sort();
    SORTED_NAMES.set(listKey, sorted);
  }
  let key = `${kernel}|${entry}`;
  for (const k of sorted) {
    const v = variant[k];
    // Strings are quoted so that no value can imitate a separator or another type.
    key += `|${k}=${typeof v === 'string' ? JSON.stringify(v) : String(v)}`;
  }
  return key;
}

const SORTED_NAMES = new Map<string, string[]>();

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
