// The UNet against a diffusers golden folder (TCD_GOLDEN, default test/fixtures/tiny_unet): the model is built from
// its config.json and weights.safetensors; forward output and every act.* activation of io.safetensors; with
// lora.safetensors attached (unfused, scale from lora_config.json) the LoRA output, the loss sum(out · R) and its
// gradients w.r.t. sample, encoder_hidden_states, text_embeds and every LoRA tensor (grads.safetensors); then the
// same gradients with gradient checkpointing. Metric everywhere: max|got − want| / max|want| per tensor.
// Components missing from the folder are reported as skipped, by name.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { mul, sumAllOp } from '../src/autograd/ops.js';
import { Tape, Var, tidy } from '../src/autograd/tape.js';
import { Tensor } from '../src/tensor.js';
import type { UNetConfigJson } from '../src/unet/config.js';
import { UNet2DConditionModel } from '../src/unet/unet.js';
import { type GoldenFile, goldenDir, openGolden, readJson, relMaxErr } from './golden_io.js';
import { testGpu } from './helpers.js';

const DIR = goldenDir('test/fixtures/tiny_unet');
/**
 * TCD_DTYPE=f16 runs the model in f16 (weights and activations; f32 math in the kernels) against the same f32/f64
 * goldens. Its tolerances: each f16 layer output carries ≈ 2^-11 relative rounding, which compounds over the
 * tiny UNet's ≈ 40 layers in sequence (√40·2^-11·a few ≈ 1e-2 of max|want|) — measured on lavapipe in the report.
 */
const DTYPE = process.env.TCD_DTYPE === 'f16' ? 'f16' : 'f32';
/** Forward output and activations. */
const TOL_FORWARD = DTYPE === 'f16' ? 5e-3 : 1e-4;
/** Gradients (longer f32 chains: the backward of every layer). */
const TOL_GRAD = DTYPE === 'f16' ? 3e-2 : 1e-4;

let gpu: Gpu;
let config: UNetConfigJson | undefined;
let weights: GoldenFile | undefined;
let io: GoldenFile | undefined;
let lora: GoldenFile | undefined;
let grads: GoldenFile | undefined;
let loraConfig: { r: number; lora_alpha: number; scale?: number } | undefined;

function skipped(what: string): void {
  console.log(`skipped: ${what}`);
}

beforeAll(async () => {
  gpu = await testGpu();
  config = readJson<UNetConfigJson>(DIR, 'config.json');
  weights = await openGolden(DIR, 'weights.safetensors');
  io = await openGolden(DIR, 'io.safetensors');
  lora = await openGolden(DIR, 'lora.safetensors');
  grads = await openGolden(DIR, 'grads.safetensors');
  loraConfig = readJson(DIR, 'lora_config.json');
  console.log(`[golden] ${DIR} [dtype ${DTYPE}]`);
  if (DTYPE === 'f16' && !gpu.hasF16) throw new Error(`TCD_DTYPE=f16: the device does not offer shader-f16 (${gpu.describe()})`);
});

afterAll(async () => {
  for (const f of [weights, io, lora, grads]) await f?.close();
  await gpu?.destroy();
});

async function buildModel(): Promise<UNet2DConditionModel> {
  const unet = new UNet2DConditionModel(gpu, config!, { dtype: DTYPE });
  await unet.loadWeights(weights!.src);
  return unet;
}

interface Inputs {
  sample: Var;
  encoderHiddenStates: Var;
  textEmbeds?: Var;
  timeIds?: Var;
  timestep: number[];
  dispose(): void;
}

async function loadInputs(requiresGrad: boolean): Promise<Inputs> {
  const v = async (name: string, grad: boolean) =>
    new Var(Tensor.fromArray(gpu, await io!.f32(name), io!.shape(name), { label: name }), grad, name);
  const sample = await v('sample', requiresGrad);
  const encoderHiddenStates = await v('encoder_hidden_states', requiresGrad);
  const textEmbeds = io!.has('text_embeds') ? await v('text_embeds', requiresGrad) : undefined;
  const timeIds = io!.has('time_ids') ? await v('time_ids', false) : undefined;
  const timestep = Array.from(await io!.read('timestep'));
  const all = [sample, encoderHiddenStates, textEmbeds, timeIds].filter((x): x is Var => !!x);
  return { sample, encoderHiddenStates, textEmbeds, timeIds, timestep, dispose: () => all.forEach((x) => x.dispose()) };
}

function report(rows: [string, number][], tol: number): void {
  const worst = rows.reduce((a, b) => (b[1] > a[1] ? b : a), ['', 0] as [string, number]);
  console.log(`  ${rows.length} tensors, worst ${worst[0]}: ${worst[1].toExponential(2)} (tolerance ${tol})`);
  const bad = rows.filter(([, e]) => !(e <= tol));
  expect(bad.map(([n, e]) => `${n}: ${e.toExponential(2)}`), `tensors over ${tol} (max|got−want| / max|want|)`).toEqual([]);
}

interface StepResult {
  out: Float32Array;
  loss: number;
  grads: Map<string, Float32Array>;
}

/** LoRA forward + backward of sum(out · R); returns the output, loss and every gradient grads.safetensors has. */
async function loraStep(unet: UNet2DConditionModel): Promise<StepResult> {
  const inp = await loadInputs(true);
  const R = new Var(Tensor.fromArray(gpu, await grads!.f32('R'), grads!.shape('R'), { label: 'R' }));
  const tape = new Tape();
  const { out, loss } = tape.record(() =>
    tidy(() => {
      const o = unet.forward(inp);
      return { out: o, loss: sumAllOp(mul(o, R)) };
    }),
  );
  const result: StepResult = { out: await out.value.toArray(), loss: (await loss.value.toArray())[0], grads: new Map() };
  const seed = Tensor.fromArray(gpu, [1], [1]);
  tape.backward(loss, seed);
  seed.release();
  const vars = new Map<string, Var | undefined>([
    ['grad.sample', inp.sample],
    ['grad.encoder_hidden_states', inp.encoderHiddenStates],
    ['grad.text_embeds', inp.textEmbeds],
    ...unet.loraParameters().map((p) => [`grad.${p.name}`, p.var] as [string, Var]),
  ]);
  for (const [name, v] of vars) {
    if (!v?.grad) continue;
    result.grads.set(name, await v.grad.toArray());
    v.zeroGrad();
  }
  for (const x of [out, loss, R]) x.dispose();
  inp.dispose();
  return result;
}

async function checkGrads(r: StepResult): Promise<void> {
  const gradKeys = grads!.keys().filter((k) => k.startsWith('grad.'));
  const missing = gradKeys.filter((k) => !r.grads.has(k));
  expect(missing, 'golden gradients the model produced no gradient for').toEqual([]);
  const rows: [string, number][] = [];
  for (const k of gradKeys) rows.push([k, relMaxErr(r.grads.get(k)!, await grads!.read(k))]);
  for (const [k, e] of rows.filter(([k]) => !k.includes('lora_'))) console.log(`  ${k}: ${e.toExponential(2)}`);
  report(rows, TOL_GRAD);
}

let loraModel: UNet2DConditionModel | undefined;
let plain: StepResult | undefined;

describe(`UNet2DConditionModel vs golden`, () => {
  it('forward: output and every act.* activation', async () => {
    if (!config || !weights) return skipped(`everything (no config.json / weights.safetensors in ${DIR})`);
    if (!io) return skipped('forward (no io.safetensors)');
    const unet = await buildModel();
    const inp = await loadInputs(false);
    const acts = new Map<string, Tensor>();
    const out = unet.forward(inp, {
      probe: { wants: (name) => io!.has(`act.${name}`), capture: (name, t) => acts.set(`act.${name}`, t) },
    });
    const rows: [string, number][] = [['output', relMaxErr(await out.value.toArray(), await io.read('output'))]];
    if (io.has('output_f64')) console.log(`  output vs output_f64: ${relMaxErr(await out.value.toArray(), await io.read('output_f64')).toExponential(2)}`);
    const wanted = io.keys().filter((k) => k.startsWith('act.'));
    const notProbed = wanted.filter((k) => !acts.has(k));
    expect(notProbed, 'act.* keys the model never emitted').toEqual([]);
    for (const k of wanted) {
      const t = acts.get(k)!;
      expect(t.shape, `${k} shape`).toEqual(io.shape(k));
      rows.push([k, relMaxErr(await t.toArray(), await io.read(k))]);
      t.release();
    }
    for (const [k, e] of rows) console.log(`  ${k}: ${e.toExponential(2)}`);
    report(rows, TOL_FORWARD);
    out.dispose();
    inp.dispose();
    unet.dispose();
  });

  it('LoRA (unfused): output, loss and gradients w.r.t. sample, text inputs and every LoRA tensor', async () => {
    if (!config || !weights || !io) return skipped('LoRA (needs config.json, weights.safetensors, io.safetensors)');
    if (!lora || !loraConfig) return skipped('LoRA (no lora.safetensors / lora_config.json)');
    if (!grads) return skipped('grads (no grads.safetensors)');
    loraModel = await buildModel();
    const scale = (loraConfig.lora_alpha / loraConfig.r) * (loraConfig.scale ?? 1);
    const adapted = await loraModel.loadLora(lora.src, { scale });
    console.log(`  ${adapted.length} adapted modules, scale ${scale}`);
    const t0 = performance.now();
    plain = await loraStep(loraModel);
    console.log(`  forward + backward ${(performance.now() - t0).toFixed(0)} ms (first run: includes pipeline compilation)`);
    const rows: [string, number][] = [];
    if (grads.has('output_lora')) rows.push(['output_lora', relMaxErr(plain.out, await grads.read('output_lora'))]);
    else skipped('output_lora (not in grads.safetensors)');
    if (grads.has('loss')) rows.push(['loss', relMaxErr([plain.loss], await grads.read('loss'))]);
    for (const [k, e] of rows) console.log(`  ${k}: ${e.toExponential(2)}`);
    report(rows, TOL_FORWARD);
    await checkGrads(plain);
  });

  it('gradient checkpointing (resnets + transformer blocks): same gradients, every activation freed', async () => {
    if (!loraModel || !plain) return skipped('checkpointing (needs the LoRA and grads components)');
    const before = gpu.pool.report().currentBytes;
    loraModel.gradientCheckpointing = { resnets: true, transformerBlocks: true };
    const t0 = performance.now();
    const ckpt = await loraStep(loraModel);
    console.log(`  checkpointed forward + backward ${(performance.now() - t0).toFixed(0)} ms`);
    expect(gpu.pool.report().currentBytes, 'pool bytes in use after a checkpointed step').toBe(before);
    await checkGrads(ckpt);
    // Replays run the same kernels; only the order in which residual branches' gradients are summed differs (in f16
    // each differently ordered sum is rounded to f16: 3.8e-3 measured on lavapipe).
    const rows: [string, number][] = [...plain.grads].map(([k, g]) => [`${k} vs unchecked`, relMaxErr(ckpt.grads.get(k)!, g)]);
    rows.push(['output vs unchecked', relMaxErr(ckpt.out, plain.out)]);
    report(rows, DTYPE === 'f16' ? 1e-2 : 1e-5);
    loraModel.dispose();
  });
});
