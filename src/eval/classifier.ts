// The evaluation image model: a small CNN trained on the emoji training split to predict an image's category. Its
// pooled features are the space of the Fréchet distance (the project's stand-in for Inception features, which would
// mean downloading a model), and its accuracy on generated images of held-out captions measures text–image agreement.
//   x [B, 3, H, W] → 3 × (3×3 stride-2 conv → GroupNorm → SiLU) → 3×3 conv → GroupNorm → SiLU → mean over H·W
//   → features [B, C] → Linear → logits [B, classes]
// Trained with softmax cross-entropy; its gradient (softmax(z) − onehot) / B seeds the tape at the logits.
import type { Gpu } from '../../runtime/device.js';
import { mean, reshape } from '../autograd/ops.js';
import { Tape, Var, noGrad, tidy } from '../autograd/tape.js';
import { binary, unary } from '../kernels/elementwise.js';
import { softmax } from '../kernels/softmax.js';
import { Conv2d } from '../nn/conv2d.js';
import { type RandomInitOptions, initRandomParameters } from '../nn/init.js';
import { Linear } from '../nn/linear.js';
import { ModelContext, Module, type Param } from '../nn/module.js';
import { GroupNorm } from '../nn/norm.js';
import { Tensor } from '../tensor.js';
import { FullAdamW } from '../teacher/optimizer.js';
import { type LoadWeightsOptions, type WeightSource, loadStateDict } from '../unet/weights.js';

export interface ClassifierConfig {
  channels: number[];
  classes: number;
  groups: number;
}

export const EMOJI_CLASSIFIER_CONFIG: ClassifierConfig = { channels: [32, 64, 128, 128], classes: 10, groups: 8 };

export class ImageClassifier extends Module {
  readonly convs: Conv2d[] = [];
  readonly norms: GroupNorm[] = [];
  readonly head: Linear;

  constructor(
    readonly gpu: Gpu,
    readonly config: ClassifierConfig,
  ) {
    super(new ModelContext(gpu), '');
    let cin = 3;
    config.channels.forEach((c, i) => {
      const last = i === config.channels.length - 1;
      this.convs.push(new Conv2d(this.ctx, `convs.${i}`, cin, c, { kernel: 3, stride: last ? 1 : 2, padding: 1 }));
      this.norms.push(new GroupNorm(this.ctx, `norms.${i}`, config.groups, c, 1e-5));
      cin = c;
    });
    this.head = new Linear(this.ctx, 'head', cin, config.classes);
  }

  get parameters(): ReadonlyMap<string, Param> {
    return this.ctx.params;
  }

  get featureDim(): number {
    return this.config.channels.at(-1)!;
  }

  initRandom(opts: RandomInitOptions = {}): void {
    initRandomParameters(this.gpu, this.parameters, { trainable: () => true, ...opts });
  }

  loadWeights(source: WeightSource, opts: LoadWeightsOptions = {}): Promise<void> {
    return loadStateDict(this.ctx, source, opts);
  }

  dispose(): void {
    for (const p of this.parameters.values()) {
      p.var?.dispose();
      p.var = undefined;
    }
  }

  /** Mean-pooled features [B, C]. */
  features(x: Var): Var {
    let h = x;
    this.convs.forEach((conv, i) => (h = this.norms[i].forward(conv.forward(h), true)));
    const [B, C, H, W] = h.shape;
    return mean(reshape(h, [B, C, H * W]), 2);
  }

  logits(x: Var): Var {
    return this.head.forward(this.features(x));
  }

  /** Features and class probabilities of images [N, 3, H, W] (host, [-1, 1]), in chunks, without a tape. */
  async evaluate(images: Float32Array, shape: readonly [number, number, number, number], chunk = 64): Promise<{ features: Float32Array; probabilities: Float32Array }> {
    const [N, C, H, W] = shape;
    const D = this.featureDim;
    const K = this.config.classes;
    const features = new Float32Array(N * D);
    const probabilities = new Float32Array(N * K);
    for (let n0 = 0; n0 < N; n0 += chunk) {
      const n = Math.min(chunk, N - n0);
      const x = new Var(Tensor.fromArray(this.gpu, images.subarray(n0 * C * H * W, (n0 + n) * C * H * W), [n, C, H, W], { label: 'images' }));
      const { f, p } = noGrad(() =>
        tidy(() => {
          const f = this.features(x);
          return { f, p: new Var(softmax(this.head.forward(f).value)) };
        }),
      );
      features.set(await f.value.toArray(), n0 * D);
      probabilities.set(await p.value.toArray(), n0 * K);
      [f, p, x].forEach((v) => v.dispose());
    }
    return { features, probabilities };
  }
}

export interface ClassifierTrainOptions {
  steps: number;
  batch: number;
  lr: number;
  seed?: number;
  onLog?: (step: number, loss: number, accuracy: number) => void;
  logEvery?: number;
}

/** Index of the largest value of each row of K. */
export function argmaxRows(p: ArrayLike<number>, K: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < p.length / K; r++) {
    let best = 0;
    for (let k = 1; k < K; k++) if (p[r * K + k] > p[r * K + best]) best = k;
    out.push(best);
  }
  return out;
}

/** mulberry32 (the same generator as the test helpers and LoRA init). */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Trains with AdamW on softmax cross-entropy (random batches with replacement; horizontal flips would change
 * arrows' meaning, so no augmentation). Returns the cross-entropy of each logged step.
 */
export async function trainClassifier(
  model: ImageClassifier,
  images: Float32Array,
  shape: readonly [number, number, number, number],
  labels: readonly number[],
  opts: ClassifierTrainOptions,
): Promise<number[]> {
  const gpu = model.gpu;
  const [N, C, H, W] = shape;
  const K = model.config.classes;
  if (labels.length !== N) throw new Error(`trainClassifier: ${labels.length} labels for ${N} images`);
  for (const l of labels) if (!(Number.isInteger(l) && l >= 0 && l < K)) throw new Error(`trainClassifier: label ${l} outside 0…${K - 1}`);
  const params = [...model.parameters].map(([name, p]) => ({ name, var: p.v }));
  const opt = new FullAdamW(gpu, params, { weightDecay: 1e-4 });
  const rand = rng(opts.seed ?? 0);
  const per = C * H * W;
  const losses: number[] = [];
  try {
    for (let step = 1; step <= opts.steps; step++) {
      const idx = Array.from({ length: opts.batch }, () => Math.min(N - 1, Math.floor(rand() * N)));
      const xb = new Float32Array(opts.batch * per);
      idx.forEach((n, b) => xb.set(images.subarray(n * per, (n + 1) * per), b * per));
      const onehot = new Float32Array(opts.batch * K);
      idx.forEach((n, b) => (onehot[b * K + labels[n]] = 1));
      const tape = new Tape();
      const logits = tape.record(() => tidy(() => model.logits(new Var(Tensor.fromArray(gpu, xb, [opts.batch, C, H, W], { label: 'images' })))));
      const p = softmax(logits.value);
      const target = Tensor.fromArray(gpu, onehot, [opts.batch, K], { label: 'onehot' });
      const diff = binary('sub', p, target);
      const seed = unary('scale', diff, { alpha: 1 / opts.batch });
      diff.release();
      target.release();
      const log = step % (opts.logEvery ?? 50) === 0 || step === opts.steps;
      const probs = log ? await p.toArray() : undefined;
      p.release();
      tape.backward(logits, seed);
      logits.dispose();
      opt.update(opts.lr);
      if (probs) {
        let ce = 0;
        let right = 0;
        const pred = argmaxRows(probs, K);
        idx.forEach((n, b) => {
          ce -= Math.log(Math.max(1e-12, probs[b * K + labels[n]]));
          if (pred[b] === labels[n]) right++;
        });
        losses.push(ce / opts.batch);
        opts.onLog?.(step, ce / opts.batch, right / opts.batch);
      }
    }
  } finally {
    opt.release();
  }
  return losses;
}
