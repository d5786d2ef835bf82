// The TypeScript half of the trainer's diffusers check (scripts/check_lora_diffusers.py): trains a LoRA with
// TcdDistiller on a tiny SDXL-shaped folder (scripts/make_tiny_sdxl.ts) and a few generated captioned images, then
// evaluates the UNet with that LoRA file (loaded back like any user LoRA) on seeded inputs and writes:
//   <out>/model/                                  the tiny SDXL folder (its unet/ is what diffusers loads)
//   <out>/run/pytorch_lora_weights.safetensors    the LoRA the trainer wrote (peft / diffusers naming)
//   <out>/parity.safetensors                      sample, timestep, encoder_hidden_states, text_embeds, time_ids,
//                                                 output (this library's UNet + LoRA), output_base (no LoRA)
//
//   npx tsx scripts/export_lora_parity.ts <out-dir> [--steps 3] [--seed 0]
//   python scripts/check_lora_diffusers.py <out-dir>          # needs torch, diffusers, peft, safetensors
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Gpu } from '../runtime/device.js';
import { Var } from '../src/autograd/tape.js';
import { openCheckpoint } from '../src/io/checkpoint.js';
import { loadLoraFile } from '../src/io/lora_format.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { encodePng } from '../src/pipeline/png.js';
import { normalRef } from '../src/reference/random.js';
import { randomKey } from '../src/kernels/random.js';
import { Tensor } from '../src/tensor.js';
import { TcdDistiller } from '../src/trainer/distiller.js';
import type { UNetConfigJson } from '../src/unet/config.js';
import { UNet2DConditionModel } from '../src/unet/unet.js';
import { makeTinySdxl } from './make_tiny_sdxl.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { steps: { type: 'string' }, seed: { type: 'string' } } });
if (positionals.length !== 1) {
  process.stderr.write('usage: npx tsx scripts/export_lora_parity.ts <out-dir> [--steps 3] [--seed 0]\n');
  process.exit(2);
}
const out = resolve(positionals[0]);
const steps = Number(values.steps ?? 3);
const seed = Number(values.seed ?? 0);
const model = join(out, 'model');
const data = join(out, 'images');
await makeTinySdxl(model);
await mkdir(data, { recursive: true });
for (let i = 0; i < 4; i++) {
  const w = 40 + 8 * i;
  const h = 40;
  const px = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) px[(y * w + x) * 3 + c] = Math.round(127.5 + 127 * Math.sin(x / (3 + i) + y / (5 - c) + i));
  await writeFile(join(data, `img${i}.png`), encodePng({ data: px, width: w, height: h, channels: 3 }));
  await writeFile(join(data, `img${i}.txt`), ['a red fox', 'a bowl of fruit', 'a city at night', 'a cat'][i]);
}

const gpu = await Gpu.create();
try {
  console.log(`device: ${gpu.describe()}`);
  // A large learning rate so that B moves well away from its zero init and the LoRA visibly changes the output.
  const d = await TcdDistiller.create(gpu, {
    model,
    data,
    output: join(out, 'run'),
    maxSteps: steps,
    resolution: 32,
    rank: 4,
    alpha: 8,
    batchSize: 2,
    lr: 1e-2,
    seed,
    checkpointEvery: 0,
    gradientCheckpointing: false,
  });
  const { lora } = await d.train({ onStep: (r) => console.log(`update ${r.step}: loss ${r.loss.toExponential(3)}`) });
  d.dispose();

  const unet = new UNet2DConditionModel(gpu, JSON.parse(await readFile(join(model, 'unet', 'config.json'), 'utf8')) as UNetConfigJson);
  const ckpt = await openCheckpoint(join(model, 'unet'), { component: 'unet' });
  await unet.loadWeights(ckpt);
  await ckpt.close();
  const B = 2;
  const [C, tokens] = [unet.config.inChannels, 8];
  const cross = 32;
  const normal = (n: number, stream: number) => Float32Array.from(normalRef(n, randomKey({ seed: 4242 + seed, stream })));
  const tensors = {
    sample: { shape: [B, C, 16, 16], data: normal(B * C * 256, 0) },
    encoder_hidden_states: { shape: [B, tokens, cross], data: normal(B * tokens * cross, 1) },
    text_embeds: { shape: [B, 32], data: normal(B * 32, 2) },
    time_ids: { shape: [B, 6], data: Float32Array.from([32, 40, 0, 4, 32, 32, 40, 32, 4, 0, 32, 32]) },
    timestep: { shape: [B], data: Float32Array.from([999, 259]) },
  };
  const v = (k: keyof typeof tensors) => new Var(Tensor.fromArray(gpu, tensors[k].data, tensors[k].shape, { label: k }));
  const run = async () => {
    const inputs = { sample: v('sample'), encoderHiddenStates: v('encoder_hidden_states'), textEmbeds: v('text_embeds'), timeIds: v('time_ids') };
    const y = unet.forward({ ...inputs, timestep: Array.from(tensors.timestep.data) });
    const data = await y.value.toArray();
    y.dispose();
    Object.values(inputs).forEach((x) => x.dispose());
    return data;
  };
  const base = await run();
  const set = await loadLoraFile(lora!, { modules: unet.loraModules() });
  unet.attachLora(set, { trainable: false });
  const adapted = await run();
  let diff = 0;
  for (let i = 0; i < base.length; i++) diff = Math.max(diff, Math.abs(base[i] - adapted[i]));
  console.log(`LoRA ${lora}: ${set.adapters.length} adapters, max |output − output_base| = ${diff.toExponential(3)}`);
  const file = join(out, 'parity.safetensors');
  await writeSafetensors(file, {
    ...Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: t.data }])),
    output: { dtype: 'F32', shape: tensors.sample.shape, data: adapted },
    output_base: { dtype: 'F32', shape: tensors.sample.shape, data: base },
  });
  console.log(`wrote ${file}`);
  unet.dispose();
} finally {
  await gpu.destroy();
}
