// Errors the library throws. Each names what was expected and what was received.

/** A tensor, binding or dispatch exceeds a device limit. */
export class LimitError extends Error {
  constructor(
    readonly limit: string,
    readonly value: number,
    readonly max: number,
    readonly what: string,
  ) {
    super(`${what}: ${limit} would be ${value}, but this device allows at most ${max}`);
    this.name = 'LimitError';
  }
}

/** Operand shapes do not fit the op. */
export class ShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShapeError';
  }
}

/** Operand dtypes do not fit the op or the device. */
export class DTypeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DTypeError';
  }
}

/** A WGSL module failed to compile or a pipeline failed to build; names the kernel and variant. */
export class KernelCompileError extends Error {
  constructor(
    readonly kernel: string,
    readonly variant: unknown,
    detail: string,
  ) {
    super(`kernel '${kernel}' (variant ${JSON.stringify(variant)}) failed to build:\n${detail}`);
    this.name = 'KernelCompileError';
  }
}

/** The WGSL source and the wrapper's declared bindings / uniform layout disagree. */
export class KernelLayoutError extends Error {
  constructor(kernel: string, detail: string) {
    super(`kernel '${kernel}': wrapper declaration does not match its WGSL: ${detail}`);
    this.name = 'KernelLayoutError';
  }
}

/** A GPU validation / out-of-memory / internal error raised while a kernel ran, or device loss. */
export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuError';
  }
}

/** An op has no backward. */
export class MissingBackwardError extends Error {
  constructor(op: string) {
    super(`op '${op}' has no backward implementation`);
    this.name = 'MissingBackwardError';
  }
}
