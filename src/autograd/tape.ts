// Tape-based reverse-mode autograd over the kernels.
//
// A Var wraps a Tensor. Ops (src/autograd/ops.ts) record a GradNode on the active tape only when some input needs a
// gradient, so frozen weights and no-grad inference record nothing. A node saves *views* of the tensors its
// backward needs; tidy() drops the primary references of intermediates when a forward scope ends, so after
// backward releases a node's saved views its activations return to the pool at once.
import { MissingBackwardError, ShapeError } from '../../runtime/errors.js';
import { add } from '../kernels/elementwise.js';
import { type Tensor, shapeStr } from '../tensor.js';

export class Var {
  /** Accumulated gradient (leaves that require grad). */
  grad?: Tensor;
  /** The node that produced this Var (undefined for leaves and untracked results). */
  node?: GradNode;

  constructor(
    public value: Tensor,
    /** Leaves: whether to accumulate a gradient. Trainable parameters set this; frozen weights do not. */
    readonly requiresGrad = false,
    readonly name = value.label,
  ) {
    scopes.at(-1)?.push(this);
  }

  /** True when a gradient flows to this Var (a trainable leaf or the result of a tracked op). */
  get needsGrad(): boolean {
    return this.requiresGrad || this.node !== undefined;
  }
  get shape() {
    return this.value.shape;
  }

  /** Frees the value (and gradient). */
  dispose(): void {
    this.value.release();
    this.grad?.release();
    this.grad = undefined;
  }

  zeroGrad(): void {
    this.grad?.release();
    this.grad = undefined;
  }
}

export interface GradNode {
  readonly op: string;
  readonly inputs: readonly Var[];
  output?: Var;
  /** Gradients for each input (undefined where the input needs none). */
  backward(dy: Tensor): (Tensor | undefined)[];
  /** Frees saved tensors; called right after backward, or when the tape is discarded. */
  release(): void;
}

export class Tape {
  readonly nodes: GradNode[] = [];

  /** Runs fn with this tape recording. */
  record<T>(fn: () => T): T {
    tapes.push(this);
    try {
      return fn();
    } finally {
      tapes.pop();
    }
  }

  /**
   * Back-propagates from `root` (seed dy, default ones for a 1-element root) through the recorded nodes in reverse,
   * accumulating into .grad of leaves that require grad. Each node's saved tensors are freed as soon as its
   * backward has run; intermediate gradients as soon as they are consumed.
   */
  backward(root: Var, seed: Tensor): void {
    if (seed.size !== root.value.size)
      throw new ShapeError(`backward: seed ${shapeStr(seed.shape)} must match the root ${shapeStr(root.shape)}`);
    const pending = new Map<Var, Tensor>();
    pending.set(root, seed.reshape(root.shape));
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const node = this.nodes[i];
      const dy = node.output && pending.get(node.output);
      if (!dy) {
        node.release();
        continue;
      }
      pending.delete(node.output!);
      const grads = node.backward(dy);
      node.release();
      dy.release();
      node.inputs.forEach((input, k) => {
        const g = grads[k];
        if (!g) return;
        if (g.size !== input.value.size)
          throw new ShapeError(`backward of ${node.op}: gradient ${shapeStr(g.shape)} for input '${input.name}' ${shapeStr(input.shape)}`);
        if (input.node) accumulate(pending, input, g);
        else if (input.requiresGrad) {
          if (input.grad) {
            const sum = addShaped(input.grad, g);
            input.grad.release();
            input.grad = sum;
          } else input.grad = g.shape.every((d, j) => d === input.shape[j]) ? g : reshapeOwned(g, input.shape);
        } else g.release();
      });
    }
    this.nodes.length = 0;
    for (const g of pending.values()) g.release();
  }

  /** Drops the recorded graph without back-propagating. */
  discard(): void {
    for (const n of this.nodes) n.release();
    this.nodes.length = 0;
  }
}

function reshapeOwned(t: Tensor, shape: readonly number[]): Tensor {
  const v = t.reshape(shape);
  t.release();
  return v;
}

/** a + g in a's shape; consumes g. */
function addShaped(a: Tensor, g: Tensor): Tensor {
  const view = g.reshape(a.shape);
  const sum = add(a, view);
  view.release();
  g.release();
  return sum;
}

function accumulate(pending: Map<Var, Tensor>, v: Var, g: Tensor): void {
  const prev = pending.get(v);
  if (!prev) {
    pending.set(v, g);
    return;
  }
  const sum = addShaped(prev, g);
  prev.release();
  pending.set(v, sum);
}

const tapes: Tape[] = [];
const scopes: Var[][] = [];
let gradDisabled = 0;

/** The tape ops record on, or undefined (no tape, or inside noGrad). */
export function activeTape(): Tape | undefined {
  return gradDisabled ? undefined : tapes.at(-1);
}

export function noGrad<T>(fn: () => T): T {
  gradDisabled++;
  try {
    return fn();
  } finally {
    gradDisabled--;
  }
}

/**
 * Runs fn and disposes the value of every Var created inside that is not part of the result (a Var, an array or a
 * plain object of Vars). Saved views keep what backward needs alive; everything else returns to the pool.
 */
export function tidy<T>(fn: () => T): T {
  const scope: Var[] = [];
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const keep = new Set<Var>();
  const collect = (x: unknown) => {
    if (x instanceof Var) keep.add(x);
    else if (Array.isArray(x)) x.forEach(collect);
    else if (x && typeof x === 'object' && Object.getPrototypeOf(x) === Object.prototype) Object.values(x).forEach(collect);
  };
  collect(result!);
  for (const v of scope) {
    if (keep.has(v)) scopes.at(-1)?.push(v);
    else if (!v.value.isReleased) v.value.release();
  }
  return result!;
}

export interface OpRecord {
  op: string;
  inputs: readonly Var[];
  /** Views of the tensors backward needs (made only when the op is tracked). */
  save?: () => Tensor[];
  /** Gradients for the inputs given dy and the saved tensors; need[k] says whether input k needs one. */
  backward?: (dy: Tensor, saved: Tensor[], need: boolean[]) => (Tensor | undefined)[];
}

/** Wraps an op's output in a Var and records its node when a tape is active and some input needs a gradient. */
export function track(out: Tensor, rec: OpRecord): Var {
  const v = new Var(out);
  const tape = activeTape();
  const need = rec.inputs.map((i) => i.needsGrad);
  if (!tape || !need.some(Boolean)) return v;
  if (!rec.backward) throw new MissingBackwardError(rec.op);
  const saved = rec.save?.() ?? [];
  const backward = rec.backward;
  const node: GradNode = {
    op: rec.op,
    inputs: rec.inputs,
    output: v,
    backward: (dy) => backward(dy, saved, need).map((g, k) => (need[k] ? g : (g?.release(), undefined))),
    release: () => {
      for (const t of saved.splice(0)) t.release();
    },
  };
  v.node = node;
  tape.nodes.push(node);
  return v;
}

/** A view of a Var's value for saving (released by the node after backward). */
export function keep(v: Var | Tensor): Tensor {
  const t = v instanceof Var ? v.value : v;
  return t.reshape(t.shape);
}

/**
 * Gradient checkpointing: runs fn without recording (its intermediates are freed at once) and records one node
 * whose backward re-runs fn on a private tape and back-propagates through it. Trainable parameters that fn closes
 * over receive their gradients during that replay.
 */
export function checkpoint(name: string, fn: (inputs: Var[]) => Var, inputs: Var[]): Var {
  const tape = activeTape();
  if (!tape) return fn(inputs);
  const out = noGrad(() => tidy(() => fn(inputs)));
  // A view of its own: `out` sits in the enclosing tidy scope, and disposing it there must not free the result
  // when the result is kept (e.g. pushed to a list of skip connections and returned).
  const result = new Var(out.value.reshape(out.shape));
  if (!inputs.includes(out)) out.value.release();
  const saved = inputs.map((i) => keep(i));
  const node: GradNode = {
    op: `checkpoint(${name})`,
    inputs,
    output: result,
    backward: (dy) => {
      const sub = new Tape();
      const leaves = inputs.map((i, k) => new Var(keep(saved[k]), i.needsGrad, i.name));
      const o = sub.record(() => tidy(() => fn(leaves)));
      sub.backward(o, dy);
      o.value.release();
      return leaves.map((l) => {
        l.value.release();
        const g = l.grad;
        l.grad = undefined;
        return g;
      });
    },
    release: () => {
      for (const t of saved.splice(0)) t.release();
    },
  };
  result.node = node;
  tape.nodes.push(node);
  return result;
}
