// diffusers DiagonalGaussianDistribution (autoencoders/vae.py) over the encoder's moments [B, 2·latent, h, w]:
// mean, logvar = chunk(2, dim=1); logvar = clamp(logvar, -30, 20); std = exp(0.5·logvar); sample = mean + std·ε;
// mode = mean. The split and clamp run on the host (the moments are small), in float32 like PyTorch.
import type { Gpu } from '../../runtime/device.js';
import { ShapeError } from '../../runtime/errors.js';
import { add, mul } from '../kernels/elementwise.js';
import { Tensor, shapeStr } from '../tensor.js';
import type { HostTensor } from './tiling.js';

const f32 = Math.fround;

export class DiagonalGaussian {
  private constructor(
    /** [B, latent, h, w]. */
    readonly mean: Tensor,
    /** Clamped to [-30, 20]. */
    readonly logvar: Tensor,
    readonly std: Tensor,
  ) {}

  static fromMoments(gpu: Gpu, moments: HostTensor): DiagonalGaussian {
    const [B, C2, h, w] = moments.shape;
    if (C2 % 2) throw new ShapeError(`latent distribution: moments ${shapeStr(moments.shape)} need an even channel count (mean and logvar)`);
    const C = C2 / 2;
    const plane = C * h * w;
    const mean = new Float32Array(B * plane);
    const logvar = new Float32Array(B * plane);
    const std = new Float32Array(B * plane);
    for (let b = 0; b < B; b++) {
      const src = b * 2 * plane;
      mean.set(moments.data.subarray(src, src + plane), b * plane);
      for (let i = 0; i < plane; i++) {
        const lv = Math.min(20, Math.max(-30, moments.data[src + plane + i]));
        logvar[b * plane + i] = lv;
        std[b * plane + i] = f32(Math.exp(f32(0.5 * lv)));
      }
    }
    const shape = [B, C, h, w];
    return new DiagonalGaussian(
      Tensor.fromArray(gpu, mean, shape, { label: 'latent_dist.mean' }),
      Tensor.fromArray(gpu, logvar, shape, { label: 'latent_dist.logvar' }),
      Tensor.fromArray(gpu, std, shape, { label: 'latent_dist.std' }),
    );
  }

  /** The mean (a new view; release it). */
  mode(): Tensor {
    return this.mean.reshape(this.mean.shape);
  }

  /** mean + std·ε with injected standard-normal noise ε of the mean's shape. */
  sample(noise: Tensor | Float32Array): Tensor {
    const eps = noise instanceof Tensor ? noise : Tensor.fromArray(this.mean.gpu, noise, this.mean.shape, { label: 'latent_dist.noise' });
    if (eps.size !== this.mean.size || eps.rank !== 4 || eps.shape.some((d, i) => d !== this.mean.shape[i]))
      throw new ShapeError(`latent_dist.sample: noise ${shapeStr(eps.shape)} must have the latent shape ${shapeStr(this.mean.shape)}`);
    const scaled = mul(this.std, eps);
    const z = add(this.mean, scaled);
    scaled.release();
    if (eps !== noise) eps.release();
    return z;
  }

  dispose(): void {
    for (const t of [this.mean, this.logvar, this.std]) t.release();
  }
}
