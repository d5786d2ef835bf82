// tiny_unet/: the UNet against diffusers. The model is built from config.json and weights.safetensors; forward output
// and every act.* activation of io.safetensors; with lora.safetensors attached (unfused, the scale lora_config.json
// documents) the LoRA output, the loss sum(out · R) and its gradients w.r.t. sample, encoder_hidden_states,
// text_embeds and every LoRA tensor (grads.safetensors); then the same gradients with gradient checkpointing.
// Metric everywhere: max|got − want| / max|want| per tensor. Parts missing from the folder are reported as skipped.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../runtime/device.js';
import { mul, sumAllOp } from '../../src/autograd/ops.js';
import { Tape, Var, tidy } from '../../src/autograd/tape.js';
import { Tensor } from '../../src/tensor.js';
import type { UNetConfigJson } from '../../src/unet/config.js';
import { UNet2DConditionModel } from '../../src/unet/unet.js';
import { type GoldenFile, type LoraConfigJson, documentedLoraScale, goldenExists, joinPath, openGolden, readJson, relMaxErr } from '../golden_io.js';
import { type ErrorRow, GOLDEN_DTYPE, type GoldenSuite, goldenGpu, reportRows, requireGoldenDType, skipped, tolFor } from './suite.js';

const NAME = 'tiny_unet';
/** Forward output and activations. */
// TCD_DTYPE=f16: each f16 layer output carries ≈ 2^-11 relative rounding, compounding over the tiny UNet's ≈ 40
// layers in sequence; measured on lavapipe: forward 1.97e-3, LoRA gradients 1.26e-2, checkpointed vs unchecked 3.8e-3.
const TOL_FORWARD = tolFor(1e-4, 5e-3);
/** Gradients (longer f32 chains: the backward of every layer). */
const TOL_GRAD = tolFor(1e-4, 3e-2);

/** A diffusers UNet folder: config.json naming UNet2DConditionModel, and its weights. */
export function isUNetFolder(dir: string): boolean {
  if (!goldenExists(dir, 'config.json') || !goldenExists(dir, 'weights.safetensors')) return false;
  return readJson<{ _class_name?: string }>(dir, 'config.json')?._class_name === 'UNet2DConditionModel';
}

export const unetSuite: GoldenSuite = {
  name: NAME,
  lookedFor: ['tiny_unet/config.json (UNet2DConditionModel)', 'tiny_unet/weights.safetensors'],
  present: (root) => isUNetFolder(joinPath(root, NAME)),
  define(root) {
    defineUNet(joinPath(root, NAME));
  },
};

interface StepResult {
  out: Float32Array;
  loss: number;
  grads: Map<string, Float32Array>;
}

function defineUNet(dir: string): void {
  let gpu: Gpu;
  let config: UNetConfigJson;
  let weights: GoldenFile;
  let io: GoldenFile | undefined;
  let lora: GoldenFile | undefined;
  let grads: GoldenFile | undefined;
  let loraConfig: LoraConfigJson | undefined;
  let loraModel: UNet2DConditionModel | undefined;
  let plain: StepResult | undefined;

  async function buildModel(): Promise<UNet2DConditionModel> {
    const unet = new UNet2DConditionModel(gpu, config, { dtype: GOLDEN_DTYPE });
    await unet.loadWeights(weights.src);
    return unet;
  }

  async function loadInputs(requiresGrad: boolean) {
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

  async function checkGrads(r: StepResult, what: string): Promise<void> {
    const gradKeys = grads!.keys().filter((k) => k.startsWith('grad.'));
    const missing = gradKeys.filter((k) => !r.grads.has(k));
    expect(missing, 'golden gradients the model produced no gradient for').toEqual([]);
    const rows: ErrorRow[] = [];
    for (const k of gradKeys) rows.push([k, relMaxErr(r.grads.get(k)!, await grads!.read(k))]);
    for (const [k, e] of rows.filter(([k]) => !k.includes('lora_'))) console.log(`  ${k}: ${e.toExponential(2)}`);
    reportRows(NAME, what, rows, TOL_GRAD, false);
  }

  describe(`${NAME}: UNet2DConditionModel vs golden`, () => {
    beforeAll(async () => {
      gpu = await goldenGpu();
      config = readJson<UNetConfigJson>(dir, 'config.json')!;
      weights = (await openGolden(dir, 'weights.safetensors'))!;
      io = await openGolden(dir, 'io.safetensors');
      lora = await openGolden(dir, 'lora.safetensors');
      grads = await openGolden(dir, 'grads.safetensors');
      loraConfig = readJson<LoraConfigJson>(dir, 'lora_config.json');
      console.log(`[golden ${NAME}] ${dir} (${GOLDEN_DTYPE})`);
      requireGoldenDType(gpu);
    });

    afterAll(async () => {
      loraModel?.dispose();
      for (const f of [weights, io, lora, grads]) await f?.close();
    });

    it('forward: output and every act.* activation', async () => {
      if (!io) return skipped(NAME, `forward (no io.safetensors in ${dir})`);
      const unet = await buildModel();
      const inp = await loadInputs(false);
      const acts = new Map<string, Tensor>();
      const out = unet.forward(inp, {
        probe: { wants: (name) => io!.has(`act.${name}`), capture: (name, t) => acts.set(`act.${name}`, t) },
      });
      const got = await out.value.toArray();
      const rows: ErrorRow[] = [['output', relMaxErr(got, await io.read('output'))]];
      if (io.has('output_f64')) console.log(`  output vs output_f64: ${relMaxErr(got, await io.read('output_f64')).toExponential(2)}`);
      const wanted = io.keys().filter((k) => k.startsWith('act.'));
      const notProbed = wanted.filter((k) => !acts.has(k));
      expect(notProbed, 'act.* keys the model never emitted').toEqual([]);
      for (const k of wanted) {
        const t = acts.get(k)!;
        expect(t.shape, `${k} shape`).toEqual(io.shape(k));
        rows.push([k, relMaxErr(await t.toArray(), await io.read(k))]);
        t.release();
      }
      reportRows(NAME, 'forward output + act.*', rows, TOL_FORWARD);
      out.dispose();
      inp.dispose();
      unet.dispose();
    });

    it('LoRA (unfused): output, loss and gradients w.r.t. sample, text inputs and every LoRA tensor', async () => {
      if (!io) return skipped(NAME, 'LoRA (needs io.safetensors)');
      if (!lora || !loraConfig) return skipped(NAME, `LoRA (no lora.safetensors / lora_config.json in ${dir})`);
      if (!grads) return skipped(NAME, `LoRA gradients (no grads.safetensors in ${dir})`);
      loraModel = await buildModel();
      const scale = documentedLoraScale(loraConfig, `${dir}/lora_config.json`);
      const adapted = await loraModel.loadLora(lora.src, { scale });
      console.log(`  ${adapted.length} adapted modules, scale ${scale} (r ${loraConfig.r}, lora_alpha ${loraConfig.lora_alpha})`);
      const t0 = performance.now();
      plain = await loraStep(loraModel);
      console.log(`  forward + backward ${(performance.now() - t0).toFixed(0)} ms (first run: includes pipeline compilation)`);
      const rows: ErrorRow[] = [];
      if (grads.has('output_lora')) rows.push(['output_lora', relMaxErr(plain.out, await grads.read('output_lora'))]);
      else skipped(NAME, 'output_lora (not in grads.safetensors)');
      if (grads.has('loss')) rows.push(['loss', relMaxErr([plain.loss], await grads.read('loss'))]);
      reportRows(NAME, 'LoRA output + loss', rows, TOL_FORWARD);
      await checkGrads(plain, 'LoRA gradients');
    });

    it('gradient checkpointing (resnets + transformer blocks): same gradients, every activation freed', async () => {
      if (!loraModel || !plain) return skipped(NAME, 'checkpointing (needs the LoRA and grads parts)');
      const before = gpu.pool.report().currentBytes;
      loraModel.gradientCheckpointing = { resnets: true, transformerBlocks: true };
      const t0 = performance.now();
      const ckpt = await loraStep(loraModel);
      console.log(`  checkpointed forward + backward ${(performance.now() - t0).toFixed(0)} ms`);
      expect(gpu.pool.report().currentBytes, 'pool bytes in use after a checkpointed step').toBe(before);
      await checkGrads(ckpt, 'checkpointed LoRA gradients');
      // Replays run the same kernels; only the order in which residual branches' gradients are summed differs.
      const rows: ErrorRow[] = [...plain.grads].map(([k, g]) => [`${k} vs unchecked`, relMaxErr(ckpt.grads.get(k)!, g)]);
      rows.push(['output vs unchecked', relMaxErr(ckpt.out, plain.out)]);
      reportRows(NAME, 'checkpointed vs unchecked', rows, tolFor(1e-5, 1e-2), false);
    });
  });
}
