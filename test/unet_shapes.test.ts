// UNet geometry the golden folder does not cover: non-square latents whose sides are not divisible by 2^levels
// (Downsample2D rounds up, the up path upsamples to the skip's exact size), per-sample timesteps, and batch
// independence (a sample's output does not depend on the rest of the batch). Random weights, small config.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { Var } from '../src/autograd/tape.js';
import { Tensor, numel } from '../src/tensor.js';
import { UNet2DConditionModel } from '../src/unet/unet.js';
import { relMaxErr } from './golden_io.js';
import { seeded, testGpu } from './helpers.js';
import { microUNetConfig } from './micro_unet.js';

let gpu: Gpu;
let unet: UNet2DConditionModel;

const CONFIG = microUNetConfig();
const [H, W, TOKENS] = [5, 7, 3];

beforeAll(async () => {
  gpu = await testGpu();
  unet = new UNet2DConditionModel(gpu, CONFIG);
  let seed = 100;
  await unet.loadWeights(new Map([...unet.parameters].map(([k, p]) => [k, { data: seeded(numel(p.shape), seed++, -0.3, 0.3), shape: p.shape }])));
});
afterAll(async () => {
  unet?.dispose();
  await gpu?.destroy();
});

/** Inputs for samples `which` of a fixed random batch of 2. */
function inputs(which: number[]) {
  const pick = (data: Float32Array, per: number) => Float32Array.from(which.flatMap((i) => Array.from(data.subarray(i * per, (i + 1) * per))));
  const B = which.length;
  const v = (data: Float32Array, per: number, shape: number[]) => new Var(Tensor.fromArray(gpu, pick(data, per), [B, ...shape]));
  return {
    sample: v(seeded(2 * 4 * H * W, 1), 4 * H * W, [4, H, W]),
    encoderHiddenStates: v(seeded(2 * TOKENS * 8, 2), TOKENS * 8, [TOKENS, 8]),
    textEmbeds: v(seeded(2 * 8, 3), 8, [8]),
    timeIds: v(Float32Array.from([1024, 1024, 0, 0, 1024, 1024, 768, 1344, 16, 32, 1024, 1024]), 6, [6]),
  };
}

async function run(which: number[], timestep: number | number[]): Promise<{ shape: readonly number[]; out: Float32Array }> {
  const inp = inputs(which);
  const y = unet.forward({ ...inp, timestep });
  const out = { shape: y.shape, out: await y.value.toArray() };
  y.dispose();
  Object.values(inp).forEach((x) => x.dispose());
  return out;
}

describe('UNet geometry', () => {
  it(`latent ${H}×${W}: output keeps the size; per-sample timesteps; samples are independent of the batch`, async () => {
    const both = await run([0, 1], [500, 700]);
    expect(both.shape).toEqual([2, 4, H, W]);
    expect(both.out.every(Number.isFinite)).toBe(true);
    const second = await run([1], 700);
    const n = 4 * H * W;
    expect(relMaxErr(both.out.subarray(n), second.out)).toBeLessThan(1e-5);
    // A scalar timestep is broadcast over the batch.
    const scalar = await run([0, 1], 500);
    const list = await run([0, 1], [500, 500]);
    expect(Array.from(scalar.out)).toEqual(Array.from(list.out));
    expect(relMaxErr(scalar.out.subarray(0, n), both.out.subarray(0, n))).toBeLessThan(1e-5);
  });

  it('1×1-conv projections (use_linear_projection false, SD 1.x) give the same output as linear ones', async () => {
    const convUnet = new UNet2DConditionModel(gpu, { ...CONFIG, use_linear_projection: false });
    // Same values: proj_in / proj_out weights [C, C] viewed as [C, C, 1, 1].
    const sd = await Promise.all(
      [...unet.parameters].map(async ([k, p]) => [k, { data: await p.v.value.toArray(), shape: convUnet.parameters.get(k)!.shape }] as const),
    );
    await convUnet.loadWeights(new Map(sd));
    const inp = inputs([0, 1]);
    const a = unet.forward({ ...inp, timestep: [500, 700] });
    const b = convUnet.forward({ ...inp, timestep: [500, 700] });
    expect(relMaxErr(await b.value.toArray(), await a.value.toArray())).toBeLessThan(1e-5);
    [a, b, ...Object.values(inp)].forEach((x) => x.dispose());
    convUnet.dispose();
  });
});
