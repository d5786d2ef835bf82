// The emoji teacher's training code (src/teacher/) at tiny sizes on real emoji (test/fixtures/emoji):
//   - the VAE loss's gradients (incl. the encoder's asymmetric downsampler, now trainable) vs finite differences;
//   - full-parameter training of the UNet + both text encoders makes the ε loss fall on a fixed batch;
//   - trainTeacher runs both stages, checkpoints, resumes to the same weights as an uninterrupted run, and its
//     checkpoint is a diffusers folder the sampling pipeline loads.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { Tape, Var, tidy } from '../src/autograd/tape.js';
import { EMOJI_MODEL_INDEX, EMOJI_SCHEDULER_CONFIG, emojiTokenizers } from '../src/datasets/emoji/configs.js';
import { readEmojiCatalog, loadEmojiImage } from '../src/datasets/emoji/files.js';
import { TcdSdxlPipeline } from '../src/pipeline/tcd_sdxl_pipeline.js';
import { SDXL_NOISE_SCHEDULE, alphasCumprod } from '../src/schedulers/noise_schedule.js';
import { findCheckpoint, readState, readTensors } from '../src/teacher/folder.js';
import { packCheckpoint, unpackCheckpoint } from '../src/teacher/transport.js';
import { diffusionLoss, vaeLoss } from '../src/teacher/losses.js';
import { FullAdamW } from '../src/teacher/optimizer.js';
import { type TeacherConfigs, TeacherModels, StepRng, trainTeacher } from '../src/teacher/trainer.js';
import { Tensor } from '../src/tensor.js';
import type { ClipTextConfigJson } from '../src/text/clip_config.js';
import type { UNetConfigJson } from '../src/unet/config.js';
import type { VaeConfigJson } from '../src/vae/config.js';
import { finiteDiff, testGpu } from './helpers.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(async () => {
  await gpu?.destroy();
});

const VAE: VaeConfigJson = {
  _class_name: 'AutoencoderKL',
  block_out_channels: [8, 16],
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'],
  latent_channels: 4,
  layers_per_block: 1,
  norm_num_groups: 4,
  mid_block_add_attention: false,
  sample_size: 16,
  scaling_factor: 1,
};
const CLIP = { vocab_size: 1000, max_position_embeddings: 77, bos_token_id: 998, eos_token_id: 999, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 };
const TE1: ClipTextConfigJson = { ...CLIP, architectures: ['CLIPTextModel'], hidden_act: 'quick_gelu' };
const TE2: ClipTextConfigJson = { ...CLIP, architectures: ['CLIPTextModelWithProjection'], hidden_act: 'gelu', projection_dim: 32 };

async function tinyConfigs(): Promise<TeacherConfigs> {
  const unet = JSON.parse(await readFile('test/fixtures/tiny_unet/config.json', 'utf8')) as UNetConfigJson;
  return {
    vae: VAE,
    textEncoder: TE1,
    textEncoder2: TE2,
    unet: { ...unet, sample_size: 8 }, // cross_attention_dim 32 = 16 + 16; 80 added inputs = 32 + 6 × 8
    scheduler: EMOJI_SCHEDULER_CONFIG,
    noise: SDXL_NOISE_SCHEDULE,
    modelIndex: EMOJI_MODEL_INDEX,
    timeIds: [16, 16, 0, 0, 16, 16],
  };
}

async function tokenizers() {
  const vocab = JSON.parse(await readFile('test/fixtures/clip_tokenizer/vocab.json', 'utf8'));
  return emojiTokenizers(vocab, await readFile('test/fixtures/clip_tokenizer/merges.txt', 'utf8'), 1000);
}

/** The fixture emoji at 16×16 (4×4 box average of the 64×64 RGB), [-1, 1]. */
async function emojiData() {
  const items = await readEmojiCatalog('test/fixtures/emoji');
  const N = items.length;
  const images = new Float32Array(N * 3 * 256);
  for (const [n, it] of items.entries()) {
    const img = await loadEmojiImage('test/fixtures/emoji', it);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 16; y++)
        for (let x = 0; x < 16; x++) {
          let s = 0;
          for (let dy = 0; dy < 4; dy++) for (let dx = 0; dx < 4; dx++) s += img.data[3 * ((4 * y + dy) * 64 + 4 * x + dx) + c];
          images[n * 768 + c * 256 + y * 16 + x] = (2 * s) / (16 * 255) - 1;
        }
  }
  return { images, imageShape: [N, 3, 16, 16] as [number, number, number, number], captions: items.map((i) => i.caption) };
}

describe('teacher losses', () => {
  it('VAE loss gradients (encoder downsampler, quant_conv, decoder) match finite differences', async () => {
    const vae = new TeacherModels(gpu, await tinyConfigs()).vae;
    vae.initRandom({ seed: 3, trainable: () => true });
    const data = await emojiData();
    const x = data.images.slice(0, 2 * 768);
    const noise = new StepRng(1, 'test').normals(2 * 4 * 8 * 8);
    const run = () =>
      tidy(() => vaeLoss(vae, new Var(Tensor.fromArray(gpu, x, [2, 3, 16, 16])), new Var(Tensor.fromArray(gpu, noise, [2, 4, 8, 8])), 0.1).loss);
    const tape = new Tape();
    const loss = tape.record(run);
    tape.backward(loss, Tensor.fromArray(gpu, [1], [1]));
    const probes: Record<string, number[]> = {
      'encoder.down_blocks.0.downsamplers.0.conv.weight': [0, 4, 8, 200],
      'quant_conv.weight': [3, 40],
      'decoder.conv_out.weight': [1, 100],
      'encoder.conv_in.bias': [2],
    };
    let worst = 0;
    for (const [name, idx] of Object.entries(probes)) {
      const p = vae.parameters.get(name)!;
      const g = await p.v.grad!.toArray();
      const fd = await finiteDiff(
        async ([w]) => {
          const old = p.var!;
          p.var = new Var(Tensor.fromArray(gpu, w, p.shape), true, name);
          try {
            return (await run().value.toArray())[0];
          } finally {
            p.var.dispose();
            p.var = old;
          }
        },
        [await p.v.value.toArray()],
        0,
        idx,
        1e-2,
      );
      idx.forEach((i, k) => {
        const err = Math.abs(g[i] - fd[k]) / Math.max(1e-3, Math.abs(fd[k]));
        worst = Math.max(worst, err);
        expect(err, `${name}[${i}]: autograd ${g[i]}, finite difference ${fd[k]}`).toBeLessThan(3e-2);
      });
    }
    console.log(`  VAE loss ${(await loss.value.toArray())[0].toFixed(4)}; worst relative gradient error ${worst.toExponential(2)}`);
    vae.dispose();
  });

  it('full-parameter training (UNet + both text encoders) lowers the ε loss on a fixed batch', async () => {
    const configs = await tinyConfigs();
    const models = new TeacherModels(gpu, configs);
    models.unet.initRandom({ seed: 1, trainable: () => true });
    models.textEncoder.initRandom({ seed: 2 });
    models.textEncoder2.initRandom({ seed: 3 });
    const { tokenizers: [t1, t2] } = await tokenizers();
    const data = await emojiData();
    const captions = data.captions.slice(0, 2);
    const rng = new StepRng(0, 'fixed');
    const batch = {
      latents: rng.normals(2 * 4 * 8 * 8),
      latentShape: [2, 4, 8, 8] as [number, number, number, number],
      timesteps: [250, 700],
      noise: rng.normals(2 * 4 * 8 * 8),
      dropText: [false, true],
      ids1: t1.encodeBatch(captions),
      ids2: t2.encodeBatch(captions),
      timeIds: configs.timeIds,
    };
    const params = [...models.unet.parameters, ...models.textEncoder.parameters, ...models.textEncoder2.parameters].map(([name, p], i) => ({ name: `${i}.${name}`, var: p.v }));
    const opt = new FullAdamW(gpu, params, { weightDecay: 0 });
    const ac = alphasCumprod(SDXL_NOISE_SCHEDULE, 'float64');
    const one = Tensor.fromArray(gpu, [1], [1]);
    const losses: number[] = [];
    const t0 = performance.now();
    for (let s = 0; s < 6; s++) {
      const tape = new Tape();
      const loss = tape.record(() => tidy(() => diffusionLoss(models, batch, ac)));
      tape.backward(loss, one);
      // Every weight gets a gradient except text_encoder's last layer and final norm: SDXL reads its penultimate
      // hidden state (here, with one layer, the embeddings) and no pooled output.
      if (s === 0) {
        const none = params.filter((p) => !p.var.grad).map((p) => p.name.replace(/^\d+\./, ''));
        const te1Tail = [...models.textEncoder.parameters.keys()].filter((n) => /layers\.0\.|final_layer_norm/.test(n));
        expect(none).toEqual(te1Tail);
      }
      opt.update(2e-3);
      losses.push((await loss.value.toArray())[0]);
      loss.dispose();
    }
    console.log(`  ε losses ${losses.map((l) => l.toFixed(4)).join(' → ')} (${((performance.now() - t0) / 6).toFixed(0)} ms / step)`);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses.at(-1)!).toBeLessThan(0.8 * losses[0]);
    opt.release();
    models.dispose();
  });
});

describe('trainTeacher', () => {
  it('both stages; resumed run = uninterrupted run; the checkpoint loads in the sampling pipeline', async () => {
    const configs = await tinyConfigs();
    const tok = await tokenizers();
    const data = await emojiData();
    const base = {
      seed: 5,
      configs,
      tokenizers: tok.tokenizers,
      tokenizerFiles: tok.files,
      vae: { steps: 2, batch: 2, lr: 1e-3, klWeight: 1e-3 },
      diffusion: { steps: 2, batch: 2, lr: 1e-3, cfgDropout: 0.5 },
      checkpointEvery: 100,
      logEvery: 1,
    };
    const dirA = await mkdtemp(`${tmpdir()}/teacher-a-`);
    const dirB = await mkdtemp(`${tmpdir()}/teacher-b-`);
    try {
      const logs: string[] = [];
      const a = await trainTeacher(gpu, data, { ...base, runDir: dirA, onLog: (r) => logs.push(`${r.stage} ${r.step} ${r.loss.toFixed(4)}${r.checkpoint ? ' ckpt' : ''}`) });
      expect(a.stage).toBe('done');
      console.log(`  uninterrupted: ${logs.join(', ')}`);
      // B: a time budget of 0 s stops after every step (checkpointing); each call resumes.
      let calls = 0;
      let s = await trainTeacher(gpu, data, { ...base, runDir: dirB, maxSeconds: 0 });
      while (s.stage !== 'done' && calls++ < 10) s = await trainTeacher(gpu, data, { ...base, runDir: dirB, maxSeconds: 0 });
      expect(s.stage).toBe('done');
      expect(calls).toBeGreaterThanOrEqual(2);
      const ckA = (await findCheckpoint(dirA))!;
      const ckB = (await findCheckpoint(dirB))!;
      expect((await readState(ckB)).step).toBe(2);
      for (const f of ['vae/diffusion_pytorch_model.safetensors', 'unet/diffusion_pytorch_model.safetensors', 'text_encoder_2/model.safetensors']) {
        const wa = (await readTensors(`${ckA}/${f}`))!;
        const wb = (await readTensors(`${ckB}/${f}`))!;
        let worst = 0;
        for (const [k, e] of wa) for (let i = 0; i < e.data.length; i++) worst = Math.max(worst, Math.abs(e.data[i] - wb.get(k)!.data[i]));
        console.log(`  ${f}: max |resumed − uninterrupted| ${worst}`);
        expect(worst, f).toBeLessThanOrEqual(1e-6);
      }
      const vaeCfg = JSON.parse(await readFile(`${ckA}/vae/config.json`, 'utf8'));
      expect(vaeCfg.scaling_factor).not.toBe(1);
      expect((await readFile(`${dirA}/log.jsonl`, 'utf8')).trim().split('\n').length).toBeGreaterThanOrEqual(6);
      // Packed for a GPU session boundary (F16 shards, no moments) and unpacked: the weights are A's rounded to F16, and
      // training resumes from it (fresh AdamW, learning rate warmed up again).
      const dirP = `${dirB}/packed`;
      const dirC = `${dirB}/run-c`;
      const packedFiles = await packCheckpoint(ckA, dirP);
      expect(packedFiles.length).toBeLessThanOrEqual(8);
      const cState = await unpackCheckpoint(dirP, dirC, { vae: configs.vae, unet: configs.unet, text_encoder: configs.textEncoder, text_encoder_2: configs.textEncoder2 });
      expect(cState.step).toBe(2);
      const wa = (await readTensors(`${ckA}/unet/diffusion_pytorch_model.safetensors`))!;
      const wc = (await readTensors(`${dirC}/checkpoint/unet/diffusion_pytorch_model.safetensors`))!;
      // Round to nearest F16: |error| ≤ 2⁻¹¹·|x| for normals, half the subnormal spacing 2⁻²⁵ below.
      let excess = -Infinity;
      for (const [k, e] of wa)
        for (let i = 0; i < e.data.length; i++) excess = Math.max(excess, Math.abs(e.data[i] - wc.get(k)!.data[i]) - (2 ** -11 * Math.abs(e.data[i]) + 2 ** -25));
      console.log(`  packed (F16) UNet: rounding within the F16 bound (worst excess ${excess.toExponential(2)})`);
      expect(excess).toBeLessThanOrEqual(0);
      expect(JSON.parse(await readFile(`${dirC}/checkpoint/vae/config.json`, 'utf8')).scaling_factor).toBe(vaeCfg.scaling_factor);
      const c = await trainTeacher(gpu, data, { ...base, runDir: dirC, diffusion: { ...base.diffusion, steps: 3, warmupSteps: 2 } });
      expect([c.stage, c.step]).toEqual(['done', 3]);
      // The checkpoint is a diffusers SDXL folder: the sampling pipeline loads it and draws a 16×16 image.
      const pipe = await TcdSdxlPipeline.fromPretrained(gpu, ckA);
      const out = await pipe.generate({ prompt: data.captions[0], width: 16, height: 16, steps: 2, seed: 1, scheduler: 'ddim' });
      const img = out.images[0];
      expect([img.width, img.height]).toEqual([16, 16]);
      expect(new Set(img.data).size).toBeGreaterThan(1);
      pipe.dispose();
    } finally {
      await rm(dirA, { recursive: true, force: true });
      await rm(dirB, { recursive: true, force: true });
    }
  });
});
