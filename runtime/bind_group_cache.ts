// Bind groups reused across dispatches. A bind group is keyed by its layout and the storage buffers (and binding
// sizes) it binds; the uniform binding takes a dynamic offset into the uniform arena, so it does not enter the key.
// Pool buffers are recycled in the same order step after step, so a training step or a sampler step finds almost
// every bind group of the previous one (creating one costs tens of µs on dawn.node: it dominated host recording).
// Entries are dropped when the pool destroys buffers (trim, teardown), and all at once past `maxEntries`.

export class BindGroupCache {
  private readonly map = new Map<string, GPUBindGroup>();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 1;
  hits = 0;
  misses = 0;

  constructor(private readonly maxEntries = 1 << 16) {}

  private id(o: object): number {
    let i = this.ids.get(o);
    if (i === undefined) {
      i = this.nextId++;
      this.ids.set(o, i);
    }
    return i;
  }

  /**
   * The bind group of `layout` over these bindings: per binding a tensor-like { buffer, bindingBytes }, or undefined
   * for the uniform binding (the arena buffer `uniform`, bound at a dynamic offset). `create` builds it on a miss.
   */
  get(
    layout: GPUBindGroupLayout,
    bindings: readonly number[],
    buffers: readonly ({ buffer: GPUBuffer; byteOffset?: number; bindingBytes: number } | undefined)[],
    uniform: GPUBufferBinding | undefined,
    create: () => GPUBindGroup,
  ): GPUBindGroup {
    let key = String(this.id(layout));
    for (let k = 0; k < bindings.length; k++) {
      const b = buffers[k];
      key += b ? `,${bindings[k]}:${this.id(b.buffer)}@${b.byteOffset ?? 0}:${b.bindingBytes}` : `,${bindings[k]}:u${this.id(uniform!.buffer)}:${uniform!.size}`;
    }
    let bg = this.map.get(key);
    if (bg) {
      this.hits++;
      return bg;
    }
    this.misses++;
    if (this.map.size >= this.maxEntries) this.map.clear();
    bg = create();
    this.map.set(key, bg);
    return bg;
  }

  clear(): void {
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }
}
