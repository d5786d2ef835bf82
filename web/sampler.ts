// The demo's tiny-model TCD sampler: a UNet2DConditionModel from config.json + weights.safetensors (fetched from
// this server or chosen by the user), conditioning from io.safetensors when present (the golden's inputs) else seeded
// random, and the TCD loop: UNet ε̂ → TCDScheduler.step (diffusers semantics, one fused tcd_step dispatch) with
// γ (eta) re-noising. No VAE or text encoder here: the result is the latent, drawn channel-wise as an image.
// (Switch to src/pipeline once it exists.)
import {
  type ByteSource,
  type Gpu,
  Tensor,
  UNet2DConditionModel,
  type UNetConfigJson,
  autograd,
  blobSource,
  readHeader,
  readTensorF32,
} from '../src/index.js';
import { TCDScheduler } from '../src/schedulers/index.js';
import { seededNormal } from './random.js';

export interface Conditioning {
  encoderHiddenStates: { data: Float32Array; shape: number[] };
  textEmbeds?: { data: Float32Array; shape: number[] };
  timeIds?: { data: Float32Array; shape: number[] };
  /** Where it came from (io.safetensors or random). */
  source: string;
}

export interface TinyModel {
  name: string;
  config: UNetConfigJson;
  unet: UNet2DConditionModel;
  cond: Conditioning;
  latentShape: [number, number, number, number];
  params: number;
}

/** First batch item of a [B, ...] tensor in a safetensors source. */
async function firstItem(src: ByteSource, header: Awaited<ReturnType<typeof readHeader>>, name: string) {
  const e = header.tensors.get(name);
  if (!e) return undefined;
  const all = await readTensorF32(src, header, name);
  const per = all.length / e.shape[0];
  return { data: all.slice(0, per), shape: [1, ...e.shape.slice(1)] };
}

async function conditioningFrom(config: UNetConfigJson, io: ByteSource | undefined): Promise<Conditioning> {
  if (io) {
    const header = await readHeader(io);
    const ehs = await firstItem(io, header, 'encoder_hidden_states');
    if (ehs) {
      return {
        encoderHiddenStates: ehs,
        textEmbeds: await firstItem(io, header, 'text_embeds'),
        timeIds: await firstItem(io, header, 'time_ids'),
        source: `${io.name} (batch item 0)`,
      };
    }
  }
  // Seeded stand-ins with the shapes the config implies (8 tokens).
  const c = config as unknown as Record<string, unknown>;
  const cross = Number(c.cross_attention_dim ?? 32);
  const cond: Conditioning = { encoderHiddenStates: { data: seededNormal(8 * cross, 7), shape: [1, 8, cross] }, source: 'seeded random' };
  if (c.addition_embed_type === 'text_time') {
    const textDim = Number(c.projection_class_embeddings_input_dim) - 6 * Number(c.addition_time_embed_dim);
    const px = 8 * Number(c.sample_size ?? 16);
    cond.textEmbeds = { data: seededNormal(textDim, 8), shape: [1, textDim] };
    cond.timeIds = { data: Float32Array.from([px, px, 0, 0, px, px]), shape: [1, 6] };
  }
  return cond;
}

async function build(gpu: Gpu, name: string, config: UNetConfigJson, weights: ByteSource, io?: ByteSource): Promise<TinyModel> {
  const unet = new UNet2DConditionModel(gpu, config);
  await unet.loadWeights(weights);
  let params = 0;
  for (const p of unet.parameters.values()) params += p.shape.reduce((a, d) => a * d, 1);
  const c = config as unknown as Record<string, number>;
  const size = c.sample_size ?? 16;
  return { name, config, unet, cond: await conditioningFrom(config, io), latentShape: [1, c.in_channels ?? 4, size, size], params };
}

/** config.json, weights.safetensors and (optional) io.safetensors from a folder URL of this server. */
export async function loadFromServer(gpu: Gpu, folder: string): Promise<TinyModel> {
  const get = async (file: string, optional = false) => {
    const res = await fetch(`${folder}${file}`);
    if (res.status === 404 && optional) return undefined;
    if (!res.ok) throw new Error(`${folder}${file}: HTTP ${res.status} ${res.statusText}`);
    return res;
  };
  const config = (await (await get('config.json'))!.json()) as UNetConfigJson;
  const weights = blobSource(await (await get('weights.safetensors'))!.blob(), `${folder}weights.safetensors`);
  const ioRes = await get('io.safetensors', true);
  const io = ioRes ? blobSource(await ioRes.blob(), `${folder}io.safetensors`) : undefined;
  return build(gpu, folder, config, weights, io);
}

/** Files the user picked: a config.json, one weights .safetensors, optionally io.safetensors (conditioning). */
export async function loadFromFiles(gpu: Gpu, files: FileList | File[]): Promise<TinyModel> {
  const list = [...files];
  const config = list.find((f) => f.name.endsWith('.json'));
  const io = list.find((f) => f.name === 'io.safetensors');
  const weights = list.filter((f) => f.name.endsWith('.safetensors') && f !== io);
  if (!config || weights.length !== 1)
    throw new Error(
      `pick a config.json and one weights .safetensors (optionally io.safetensors for conditioning); got: ${list.map((f) => f.name).join(', ') || 'nothing'}`,
    );
  const cfg = JSON.parse(await config.text()) as UNetConfigJson;
  return build(gpu, `${config.name} + ${weights[0].name}`, cfg, blobSource(weights[0]), io ? blobSource(io) : undefined);
}

export interface StepInfo {
  index: number;
  timestep: number;
  ms: number;
  /** The step's denoised estimate x̂_s (diffusers pred_noised_sample; host copy, for previews). */
  denoised: Float32Array;
}

export interface SampleResult {
  latents: Float32Array;
  shape: number[];
  timesteps: number[];
  steps: StepInfo[];
  totalMs: number;
}

/** TCD sampling of the tiny model: n steps, gamma (eta) in [0, 1], seeded initial and injected noise. */
export async function sampleTcd(
  gpu: Gpu,
  model: TinyModel,
  opts: { steps: number; eta: number; seed: number; onStep?: (s: StepInfo) => void },
): Promise<SampleResult> {
  const scheduler = new TCDScheduler();
  scheduler.setTimesteps(opts.steps);
  const timesteps = [...scheduler.timesteps];
  const shape = model.latentShape;
  const n = shape.reduce((a, d) => a * d, 1);
  const { Var, tidy } = autograd;
  const c = model.cond;
  const v = (x: { data: Float32Array; shape: number[] }, label: string) => new Var(Tensor.fromArray(gpu, x.data, x.shape, { label }));
  const ehs = v(c.encoderHiddenStates, 'encoder_hidden_states');
  const textEmbeds = c.textEmbeds && v(c.textEmbeds, 'text_embeds');
  const timeIds = c.timeIds && v(c.timeIds, 'time_ids');
  // initNoiseSigma is 1 for TCD.
  let latents = Tensor.fromArray(gpu, seededNormal(n, opts.seed), shape, { label: 'latents' });
  let draws = 0;
  const noise = () => Tensor.fromArray(gpu, seededNormal(n, opts.seed * 1000 + ++draws), shape, { label: 'noise' });
  const steps: StepInfo[] = [];
  const t0 = performance.now();
  try {
    for (let i = 0; i < timesteps.length; i++) {
      const ts = performance.now();
      const t = timesteps[i];
      const input = scheduler.scaleModelInput(latents, t);
      const sample = new Var(input);
      const eps = tidy(() => model.unet.forward({ sample, timestep: t, encoderHiddenStates: ehs, textEmbeds, timeIds }));
      input.release();
      const r = scheduler.step(eps.value, t, latents, { eta: opts.eta, noise });
      eps.dispose();
      const denoised = r.denoised ? await r.denoised.toArray() : await r.prevSample.toArray();
      r.denoised?.release();
      latents.release();
      latents = r.prevSample;
      const info = { index: i, timestep: t, ms: performance.now() - ts, denoised };
      steps.push(info);
      opts.onStep?.(info);
    }
    return { latents: await latents.toArray(), shape, timesteps, steps, totalMs: performance.now() - t0 };
  } finally {
    latents.release();
    for (const x of [ehs, textEmbeds, timeIds]) x?.dispose();
  }
}

/** Draws [1, C, h, w] latents (channels 0–2 as RGB, each stretched over mean ± 2.5σ) onto a canvas, pixelated. */
export function drawLatents(canvas: HTMLCanvasElement, data: Float32Array, shape: readonly number[]): void {
  const [, C, h, w] = shape;
  const img = new ImageData(w, h);
  const hw = h * w;
  for (let ch = 0; ch < 3; ch++) {
    const src = Math.min(ch, C - 1);
    let mean = 0;
    for (let i = 0; i < hw; i++) mean += data[src * hw + i];
    mean /= hw;
    let v = 0;
    for (let i = 0; i < hw; i++) v += (data[src * hw + i] - mean) ** 2;
    const sd = Math.sqrt(v / hw) || 1;
    for (let i = 0; i < hw; i++) img.data[4 * i + ch] = Math.max(0, Math.min(255, 127.5 + (127.5 * (data[src * hw + i] - mean)) / (2.5 * sd)));
  }
  for (let i = 0; i < hw; i++) img.data[4 * i + 3] = 255;
  const tmp = document.createElement('canvas');
  tmp.width = w;
  tmp.height = h;
  tmp.getContext('2d')!.putImageData(img, 0, 0);
  const ctx = canvas.getContext('2d')!;
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}
