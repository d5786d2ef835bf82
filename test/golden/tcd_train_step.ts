// One guided TCD distillation step (Algorithm 2, tcd.md §5.2 / §11) against diffusers + peft + torch:
// root/tcd_train_step (inputs, intermediate tensors, LoRA gradients, the LoRA after one clipped AdamW step) with the
// tiny UNet of root/tiny_unet. Every value of the step comes from the golden: latents, noise, text inputs, time ids,
// index / end index / w and the ᾱ table from inputs.safetensors; grid size, huber_c, the AdamW hyperparameters,
// max_grad_norm and which loss is back-propagated from train_step.json; the LoRA and its scale from tiny_unet.
// Metric: max|got − want| / max|want| per tensor, dtype f32.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../runtime/device.js';
import { adamwRef } from '../../src/reference/adamw.js';
import { DdimSolver } from '../../src/trainer/ddim_solver.js';
import { LoraAdamW } from '../../src/trainer/lora_optimizer.js';
import { type LossType, type TcdBatch, type TcdStepResult, tcdDistillStep } from '../../src/trainer/tcd_distill_step.js';
import type { UNetConfigJson } from '../../src/unet/config.js';
import { UNet2DConditionModel } from '../../src/unet/unet.js';
import { type GoldenFile, documentedLoraScale, goldenExists, joinPath as join, openGolden, readJson, relMaxErr } from '../golden_io.js';
import { GOLDEN_DTYPE, type GoldenSuite, goldenGpu, requireGoldenDType, tolFor } from './suite.js';

// TCD_DTYPE=f16 (the UNet's weights and activations in f16, LoRA masters, gradients, solver and optimizer in f32):
// f16 rounding compounds through the UNet's layers (see unet.ts); measured on lavapipe in the constants' comments.
const F16_TOL_FORWARD = 2e-2; // measured 5.9e-3 (pred_noise: the guidance w up to 9 amplifies ε_c − ε_u)
const F16_TOL_GRAD = 1e-1; // measured 4.6e-2 (the loss gradient amplifies ε by α_s·|e^−h − 1|·σ_t/α_t)
const F16_TOL_SCALAR = 1e-2; // measured 2.9e-4
/** UNet outputs and everything computed from them (f32 GPU UNet vs torch CPU f32). */
const TOL_FORWARD = tolFor(1e-4, F16_TOL_FORWARD);
/** Solver tables and x_start: the same float32 arithmetic as torch. */
const TOL_EXACT = 1.2e-7;
/** LoRA gradients: the UNet backward, seeded by a loss gradient that amplifies ε by up to α_s·|e^−h − 1|·σ_t/α_t. */
const TOL_GRAD = tolFor(2e-4, F16_TOL_GRAD);
/** The gradient norm and the clip coefficient (one float32 reduction order vs another). */
const TOL_SCALAR = tolFor(1e-5, F16_TOL_SCALAR);
/** LoRA after the AdamW step vs torch, as max|got − want| / lr where the update is well conditioned (see below). */
const TOL_UPDATE = 1e-2;
/** … vs a float64 AdamW on the same gradients: float32 rounding of the parameters (|p| < 2: ulp 2.4e-7). */
const TOL_UPDATE_OWN = 5e-3;

interface TrainStepJson {
  solver: { num_ddim_timesteps: number; num_train_timesteps?: number };
  hyperparameters?: Record<string, unknown>;
  order_of_computation: string[];
  results?: Record<string, unknown>;
}

export interface TrainHyper {
  numDdimTimesteps: number;
  huberC: number;
  loss: LossType;
  lr: number;
  beta1: number;
  beta2: number;
  weightDecay: number;
  eps: number;
  maxGradNorm: number;
}

/**
 * The step's hyperparameters as the golden states them: structured keys when it has them (`hyperparameters`, or
 * `optimizer` / `loss` objects), else parsed from its order_of_computation lines, which name every value.
 */
export function trainHyper(json: TrainStepJson): TrainHyper {
  const text = json.order_of_computation.join('\n');
  const grab = (re: RegExp, what: string): string => {
    const m = re.exec(text);
    if (!m) throw new Error(`train_step.json: cannot find ${what} in order_of_computation (pattern ${re})`);
    return m[1];
  };
  const hp = (json.hyperparameters ?? {}) as Record<string, unknown>;
  const pick = (keys: string[], fallback: () => number | string): number | string => {
    for (const k of keys) if (hp[k] !== undefined) return hp[k] as number | string;
    return fallback();
  };
  const adam = () => {
    const m = /AdamW\(lr=([^,]+),\s*betas=\(([^,]+),\s*([^)]+)\),\s*weight_decay=([^,]+),\s*eps=([^,)]+)/.exec(text);
    if (!m) throw new Error('train_step.json: no AdamW(lr=…, betas=(…), weight_decay=…, eps=…) in order_of_computation');
    return m;
  };
  const betas = hp.betas as [number, number] | undefined;
  return {
    numDdimTimesteps: json.solver.num_ddim_timesteps,
    huberC: Number(pick(['huber_c'], () => grab(/huber_c\s*=\s*([0-9.eE+-]+)/, 'huber_c'))),
    loss: String(pick(['loss_type', 'loss'], () => grab(/loss_(l2|huber)\.backward\(\)/, 'which loss is back-propagated'))) as LossType,
    lr: Number(pick(['lr', 'learning_rate'], () => adam()[1])),
    beta1: Number(betas?.[0] ?? pick(['beta1', 'adam_beta1'], () => adam()[2])),
    beta2: Number(betas?.[1] ?? pick(['beta2', 'adam_beta2'], () => adam()[3])),
    weightDecay: Number(pick(['weight_decay', 'adam_weight_decay'], () => adam()[4])),
    eps: Number(pick(['eps', 'adam_epsilon'], () => adam()[5])),
    maxGradNorm: Number(pick(['max_grad_norm'], () => grab(/clip_grad_norm_\([^,]+,\s*([0-9.eE+-]+)\)/, 'max_grad_norm'))),
  };
}

function report(rows: [string, number][], tol: number): void {
  const worst = rows.reduce((a, b) => (b[1] > a[1] ? b : a), ['', 0] as [string, number]);
  console.log(`  ${rows.length} compared (dtype ${GOLDEN_DTYPE}), worst ${worst[0]}: ${worst[1].toExponential(2)} (tolerance ${tol})`);
  const bad = rows.filter(([, e]) => !(e <= tol));
  expect(bad.map(([n, e]) => `${n}: ${e.toExponential(2)}`), `over ${tol}`).toEqual([]);
}

const LOOKED_FOR = ['tcd_train_step/train_step.json', 'tiny_unet/config.json'];

export const tcdTrainStepSuite: GoldenSuite = {
  name: 'tcd_train_step',
  lookedFor: LOOKED_FOR,
  present(root: string): boolean {
    return LOOKED_FOR.every((f) => goldenExists(root, f));
  },
  define(root: string): void {
    const dir = join(root, 'tcd_train_step');
    const unetDir = join(root, 'tiny_unet');
    let gpu: Gpu;
    let files: Record<'inputs' | 'step' | 'grads' | 'updated' | 'weights' | 'lora', GoldenFile>;
    let hyper: TrainHyper;
    let unet: UNet2DConditionModel;
    let solver: DdimSolver;
    let result: TcdStepResult;
    let batch: TcdBatch;
    let loraScale: number;

    describe('TCD distillation step vs diffusers (tcd_train_step)', () => {
      beforeAll(async () => {
        gpu = await goldenGpu();
        const open = async (d: string, f: string) => {
          const g = await openGolden(d, f);
          if (!g) throw new Error(`${join(d, f)} is missing`);
          return g;
        };
        files = {
          inputs: await open(dir, 'inputs.safetensors'),
          step: await open(dir, 'step.safetensors'),
          grads: await open(dir, 'grads.safetensors'),
          updated: await open(dir, 'lora_updated.safetensors'),
          weights: await open(unetDir, 'weights.safetensors'),
          lora: await open(unetDir, 'lora.safetensors'),
        };
        hyper = trainHyper(readJson<TrainStepJson>(dir, 'train_step.json')!);
        const loraConfig = readJson<{ r: number; lora_alpha: number; scale?: number }>(unetDir, 'lora_config.json')!;
        loraScale = documentedLoraScale(loraConfig, join(unetDir, 'lora_config.json'));
        console.log(`[golden] ${dir}: ${JSON.stringify(hyper)}, LoRA scale ${loraScale}`);
        requireGoldenDType(gpu);
        unet = new UNet2DConditionModel(gpu, readJson<UNetConfigJson>(unetDir, 'config.json')!, { dtype: GOLDEN_DTYPE });
        await unet.loadWeights(files.weights.src);
        await unet.loadLora(files.lora.src, { scale: loraScale });
        solver = new DdimSolver(await files.inputs.read('alphas_cumprod'), hyper.numDdimTimesteps);
      });

      afterAll(async () => {
        unet?.dispose();
        for (const f of Object.values(files ?? {})) await f.close();
      });

      it('DDIM solver tables: grid, ᾱ_prev (float64), α / σ schedules', async () => {
        const inp = files.inputs;
        expect(Array.from(solver.timesteps)).toEqual(Array.from(await inp.read('ddim_timesteps')));
        const rows: [string, number][] = [
          ['ddim_alpha_cumprods', relMaxErr(solver.alphaCumprods, await inp.read('ddim_alpha_cumprods'))],
          ['ddim_alpha_cumprods_prev', relMaxErr(solver.alphaCumprodsPrev, await inp.read('ddim_alpha_cumprods_prev'))],
          ['alpha_schedule', relMaxErr(solver.alphaSchedule, await inp.read('alpha_schedule'))],
          ['sigma_schedule', relMaxErr(solver.sigmaSchedule, await inp.read('sigma_schedule'))],
        ];
        for (const [k, e] of rows) console.log(`  ${k}: ${e.toExponential(2)}`);
        report(rows, TOL_EXACT);
      });

      it('one step: x_start, student, teacher cond / uncond, x_prev, target, l2 and Huber losses', async () => {
        const inp = files.inputs;
        const shape = inp.shape('latents') as [number, number, number, number];
        const B = shape[0];
        const ehsShape = inp.shape('encoder_hidden_states');
        const t0 = performance.now();
        batch = {
            latents: await inp.f32('latents'),
            latentShape: shape,
            noise: await inp.f32('noise'),
            encoderHiddenStates: await inp.f32('encoder_hidden_states'),
            tokens: ehsShape[1],
            textEmbeds: await inp.f32('text_embeds'),
            timeIds: await inp.f32('time_ids'),
            index: Array.from(await inp.read('index')),
            endIndex: Array.from(await inp.read('end_index')),
            w: Array.from(await inp.read('w')),
        };
        result = await tcdDistillStep(unet, solver, batch, { loss: hyper.loss, huberC: hyper.huberC, keepTensors: true });
        console.log(`  4 UNet forwards + 1 backward, B = ${B}: ${(performance.now() - t0).toFixed(0)} ms`);
        expect(result.tStart).toEqual(Array.from(await inp.read('start_timesteps')));
        expect(result.tN).toEqual(Array.from(await inp.read('timesteps')));
        expect(result.tM).toEqual(Array.from(await inp.read('end_timesteps')));
        const t = result.tensors!;
        const st = files.step;
        const exact: [string, number][] = [['x_start', relMaxErr(t.xStart, await st.read('x_start'))]];
        report(exact, TOL_EXACT);
        const rows: [string, number][] = [
          ['eps_student', relMaxErr(t.epsStudent, await st.read('eps_student'))],
          ['model_pred (student prediction)', relMaxErr(t.modelPred, await st.read('model_pred'))],
          ['eps_c (teacher cond)', relMaxErr(t.epsCond, await st.read('eps_c'))],
          ['eps_u (teacher uncond)', relMaxErr(t.epsUncond, await st.read('eps_u'))],
          ['pred_x0', relMaxErr(t.predX0, await st.read('pred_x0'))],
          ['pred_noise', relMaxErr(t.predNoise, await st.read('pred_noise'))],
          ['x_prev', relMaxErr(t.xPrev, await st.read('x_prev'))],
          ['x_prev_f64_before_cast', relMaxErr(t.xPrevF64, await st.read('x_prev_f64_before_cast'))],
          ['eps_t', relMaxErr(t.epsTarget, await st.read('eps_t'))],
          ['target', relMaxErr(t.target, await st.read('target'))],
          ['loss_l2', relMaxErr([result.lossL2], await st.read('loss_l2'))],
          ['loss_huber', relMaxErr([result.lossHuber], await st.read('loss_huber'))],
        ];
        for (const [k, e] of rows) console.log(`  ${k}: ${e.toExponential(2)}`);
        console.log(`  loss_l2 ${result.lossL2} (torch ${(await st.read('loss_l2'))[0]}), loss_huber ${result.lossHuber} (torch ${(await st.read('loss_huber'))[0]})`);
        expect(t.modelPred.some((v) => v !== 0) && t.target.some((v) => v !== 0), 'non-zero outputs').toBe(true);
        report(rows, TOL_FORWARD);
      });

      it(`every LoRA gradient of the back-propagated loss`, async () => {
        expect(result, 'the step ran').toBeTruthy();
        const g = files.grads;
        const keys = g.keys().filter((k) => k.startsWith('grad.'));
        const params = new Map(unet.loraParameters().map((p) => [`grad.${p.name}`, p.var]));
        expect(keys.filter((k) => !params.get(k)?.grad), 'golden gradients without a gradient here').toEqual([]);
        expect(keys.length, 'LoRA tensors in grads.safetensors vs the model').toBe(params.size);
        const rows: [string, number][] = [];
        for (const k of keys) rows.push([k, relMaxErr(await params.get(k)!.grad!.toArray(), await g.read(k))]);
        report(rows, TOL_GRAD);
      });

      it('gradient checkpointing (resnets + transformer blocks): the same step, the same LoRA gradients', async () => {
        expect(result, 'the step ran').toBeTruthy();
        const params = unet.loraParameters();
        const plain = new Map<string, Float32Array>();
        for (const p of params) {
          plain.set(p.name, await p.var.grad!.toArray());
          p.var.zeroGrad();
        }
        unet.gradientCheckpointing = { resnets: true, transformerBlocks: true };
        const t0 = performance.now();
        const again = await tcdDistillStep(unet, solver, batch, { loss: hyper.loss, huberC: hyper.huberC });
        console.log(`  checkpointed step ${(performance.now() - t0).toFixed(0)} ms`);
        unet.gradientCheckpointing = {};
        expect(again.lossL2, 'same loss').toBe(result.lossL2);
        const vsTorch: [string, number][] = [];
        const vsPlain: [string, number][] = [];
        for (const p of params) {
          const g = await p.var.grad!.toArray();
          vsTorch.push([`${p.name} (checkpointed)`, relMaxErr(g, await files.grads.read(`grad.${p.name}`))]);
          vsPlain.push([`${p.name} vs unchecked`, relMaxErr(g, plain.get(p.name)!)]);
        }
        report(vsTorch, TOL_GRAD);
        // Replays run the same kernels; only the order in which residual branches' gradients are summed differs.
        report(vsPlain, tolFor(1e-5, 2e-2)); // f16: 5.9e-3 measured
      });

      it('global grad-norm clipping and one AdamW step: norm, clip coefficient, updated LoRA', async () => {
        expect(result, 'the step ran').toBeTruthy();
        const params = unet.loraParameters();
        const before = new Map<string, Float32Array>();
        const grads = new Map<string, Float32Array>();
        for (const p of params) {
          before.set(p.name, await p.var.value.toArray());
          grads.set(p.name, await p.var.grad!.toArray());
        }
        const opt = new LoraAdamW(params, { beta1: hyper.beta1, beta2: hyper.beta2, eps: hyper.eps, weightDecay: hyper.weightDecay, maxGradNorm: hyper.maxGradNorm });
        const rep = await opt.update(hyper.lr);
        const st = files.step;
        const scalars: [string, number][] = [
          ['grad_norm_preclip', relMaxErr([rep.gradNorm], await st.read('grad_norm_preclip'))],
          ['clip_coef', relMaxErr([rep.clipCoef], await st.read('clip_coef'))],
        ];
        for (const [k, e] of scalars) console.log(`  ${k}: ${e.toExponential(2)}`);
        console.log(`  grad norm ${rep.gradNorm} (torch ${(await st.read('grad_norm_preclip'))[0]}), clip coef ${rep.clipCoef}`);
        report(scalars, TOL_SCALAR);
        // (a) The update against a float64 AdamW on this library's own clipped gradients (the optimizer's math).
        // (b) Against torch's updated LoRA where the step is well conditioned: the step-1 update is
        //     lr·g/(|g| + eps), whose sensitivity to g grows as eps/(|g| + eps)²; below |g| = WELL (100× eps·…)
        //     a gradient difference of 1e-9 already moves it by a sizeable fraction of lr.
        const WELL = 1e-6;
        const own: [string, number][] = [];
        const vsTorch: [string, number][] = [];
        let changed = 0;
        let total = 0;
        let illConditioned = 0;
        let worstIll = 0;
        for (const p of params) {
          const got = await p.var.value.toArray();
          const want = await files.updated.read(p.name);
          const b = before.get(p.name)!;
          const g = grads.get(p.name)!;
          const ref = Float64Array.from(b);
          adamwRef(ref, Float64Array.from(g, (x) => x * rep.clipCoef), new Float64Array(b.length), new Float64Array(b.length), 1, {
            lr: hyper.lr, beta1: hyper.beta1, beta2: hyper.beta2, eps: hyper.eps, weightDecay: hyper.weightDecay,
          });
          let worstOwn = 0;
          let worstTorch = 0;
          for (let i = 0; i < got.length; i++) {
            worstOwn = Math.max(worstOwn, Math.abs(got[i] - ref[i]));
            const d = Math.abs(got[i] - want[i]);
            if (Math.abs(g[i] * rep.clipCoef) >= WELL) worstTorch = Math.max(worstTorch, d);
            else {
              illConditioned++;
              worstIll = Math.max(worstIll, d);
            }
            if (got[i] !== b[i]) changed++;
          }
          total += got.length;
          own.push([`${p.name} vs float64 AdamW`, worstOwn / hyper.lr]);
          vsTorch.push([`${p.name} vs torch`, worstTorch / hyper.lr]);
        }
        console.log(`  ${changed} of ${total} LoRA values changed; max|Δ| in units of lr:`);
        expect(changed, 'the step changed the LoRA').toBeGreaterThan(total / 2);
        report(own, TOL_UPDATE_OWN);
        console.log(`  ${illConditioned} values with |clipped g| < ${WELL} left out of the torch comparison (worst there ${(worstIll / hyper.lr).toExponential(2)} lr)`);
        if (GOLDEN_DTYPE === 'f16') {
          // Step 1 of AdamW moves each value by ≈ lr·sign(g) wherever |g| ≫ eps: a gradient within f16 rounding of 0
          // may flip it, so the update is compared with torch only in f32; the f16 gradients were compared above.
          console.log('  (f16) updated LoRA vs torch not compared: the step-1 update is sign-like; gradients compared above');
          return;
        }
        expect(illConditioned, 'ill-conditioned values are a small minority').toBeLessThan(total / 100);
        report(vsTorch, TOL_UPDATE);
        opt.dispose();
      });
    });
  },
};
