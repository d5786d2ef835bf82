// The schedulers: the noise schedule in float64 (spec values and checksums), timestep tables of the spec, the
// single-step and loop vectors of tcd.md §9, step rules and the error cases. The golden loops of diffusers'
// scheduler.json (every intermediate sample, host and GPU) are the golden scheduler suite, test/golden/scheduler.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { ShapeError } from '../runtime/errors.js';
import { tcdStepScalars } from '../src/kernels/tcd_step.js';
import {
  DDIMScheduler,
  DPMSolverSinglestepScheduler,
  EulerDiscreteScheduler,
  type HostArray,
  LCMScheduler,
  type Precision,
  SDXL_NOISE_SCHEDULE,
  SchedulerError,
  type StepResult,
  TCDScheduler,
  alphasCumprod,
  fmaF32,
  fromDiffusersConfig,
  orderList,
  roundHalfEven,
  torchLinspaceF32,
} from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';
import tcdGolden from './fixtures/tcd_scheduler.json' with { type: 'json' };
import golden from './fixtures/scheduler/loops.json' with { type: 'json' };
import spec from './fixtures/scheduler/spec_vectors.json' with { type: 'json' };
import { expectClose, maxUlps, testGpu } from './helpers.js';

const f = Math.fround;
const TORCH_ALPHAS = Float64Array.from(tcdGolden.alphas_cumprod_float32, f);

describe('noise schedule', () => {
  it("float32 betas: ATen's float32 linspace (fused multiply-adds) keeps the end points (the ᾱ table vs diffusers: golden scheduler suite)", () => {
    const lin = torchLinspaceF32(Math.sqrt(0.00085), Math.sqrt(0.012), 1000);
    expect(lin[0]).toBe(f(Math.sqrt(0.00085)));
    expect(lin[999]).toBe(f(Math.sqrt(0.012)));
  });

  it('float64: the spec values (tcd.md §1.2, float64 column) and checksums (§9.1)', () => {
    const a = alphasCumprod(SDXL_NOISE_SCHEDULE, 'float64');
    const want: [number, number][] = [
      [0, 0.99915],
      [1, 0.9982960278384514],
      [19, 0.9822439910955454],
      [181, 0.7826544373862903],
      [259, 0.658975526890813],
      [349, 0.5081568534414641],
      [499, 0.27766965045646763],
      [531, 0.23659434141770772],
      [759, 0.05221292829431006],
      [999, 0.004660098513077238],
    ];
    for (const [t, v] of want) expect(Math.abs(a[t] - v), `ᾱ[${t}]`).toBeLessThanOrEqual(1e-15);
    expect(Math.abs(a.reduce((s, v) => s + v, 0) - 373.3766305691685)).toBeLessThan(1e-11);
    expect(Math.abs(TORCH_ALPHAS.reduce((s, v) => s + v, 0) - 373.3764712619595)).toBeLessThan(1e-11);
    // float32 vs float64 stay within the spec's 9.3e-7 relative.
    const a32 = alphasCumprod(SDXL_NOISE_SCHEDULE, 'float32');
    let rel = 0;
    for (let t = 0; t < 1000; t++) rel = Math.max(rel, Math.abs(a32[t] - a[t]) / a[t]);
    expect(rel).toBeLessThan(9.4e-7);
  });

  it('fmaF32 rounds once (a tie that double rounding gets wrong), roundHalfEven is numpy rounding', () => {
    // 1 + 2^-24 is halfway between 1 and the next float32; the tiny product tips it upwards.
    expect(fmaF32(2 ** -30, 2 ** -30, 1 + 2 ** -24)).toBe(1 + 2 ** -23);
    expect(Math.fround(2 ** -60 + (1 + 2 ** -24))).toBe(1);
    expect(fmaF32(-(2 ** -30), 2 ** -30, 1 + 2 ** -24)).toBe(1);
    expect([0.5, 1.5, 2.5, -0.5, 499.5, 249.75].map(roundHalfEven)).toEqual([0, 2, 2, -0, 500, 250]);
  });

  it('rejects unknown schedules and bad sizes', () => {
    expect(() => new TCDScheduler({ betaSchedule: 'cosine' as never })).toThrow(/unknown betaSchedule 'cosine'/);
    expect(() => new TCDScheduler({ numTrainTimesteps: 1 })).toThrow(/numTrainTimesteps must be an integer ≥ 2, got 1/);
    expect(() => new TCDScheduler({ trainedBetas: [0.1, 0.2] })).toThrow(/trainedBetas has 2 values, expected numTrainTimesteps = 1000/);
  });
});

describe('timesteps', () => {
  it('TCD: the spec tables (tcd.md §2.1–2.2, measured on diffusers and the official code)', () => {
    const ts = (n: number, o = {}, cfg = {}) => {
      const s = new TCDScheduler(cfg);
      s.setTimesteps(n, o);
      return s.timesteps;
    };
    expect(ts(3)).toEqual([999, 679, 339]);
    expect(ts(5)).toEqual([999, 799, 599, 399, 199]);
    expect(ts(6)).toEqual([999, 839, 679, 499, 339, 179]);
    expect(ts(12)).toEqual([999, 919, 839, 759, 679, 599, 499, 419, 339, 259, 179, 99]);
    expect(ts(16)).toEqual([999, 939, 879, 819, 759, 699, 639, 579, 499, 439, 379, 319, 259, 199, 139, 79]);
    expect(ts(26)).toEqual([
      999, 979, 939, 899, 859, 819, 779, 739, 699, 659, 619, 579, 539, 499, 479, 439, 399, 359, 319, 279, 239, 199, 159, 119, 79, 39,
    ]);
    // diffusers' unit test: the last timestep for 10, 25, 26, 50 steps.
    expect([10, 25, 26, 50].map((n) => ts(n).at(-1))).toEqual([99, 39, 39, 19]);
    expect(ts(4, { strength: 0.5 })).toEqual([499, 379, 259, 139]);
    expect(ts(8, { strength: 0.6 })).toEqual([599, 539, 459, 379, 299, 239, 159, 79]);
    expect(ts(4, { strength: 0.99 })).toEqual([979, 739, 499, 259]);
    // An explicit originalInferenceSteps: diffusers switches to the dense grid, the official code keeps the k-grid.
    expect(ts(4, { originalInferenceSteps: 25 })).toEqual([999, 749, 499, 249]);
    expect(ts(8, { originalInferenceSteps: 100 })).toEqual([999, 874, 749, 624, 499, 374, 249, 124]);
    const official = { explicitOriginalSteps: 'official' as const };
    expect(ts(4, { originalInferenceSteps: 50 }, official)).toEqual([999, 759, 499, 259]);
    expect(ts(4, { originalInferenceSteps: 25 }, official)).toEqual([999, 759, 519, 279]);
    expect(ts(8, { originalInferenceSteps: 100 }, official)).toEqual([999, 879, 749, 629, 499, 379, 249, 129]);
  });

  it('TCD: custom lists (off-grid warning; strength cuts the list but not numInferenceSteps)', () => {
    const warnings: string[] = [];
    const s = new TCDScheduler({ onWarning: (w) => warnings.push(w) });
    s.setTimesteps({ timesteps: [999, 700, 400, 100] });
    expect(s.timesteps).toEqual([999, 700, 400, 100]);
    expect(warnings.join('\n')).toMatch(/\[700, 400, 100\] are not on the distillation grid/);
    s.setTimesteps({ timesteps: [999, 700, 400, 100], strength: 0.5 });
    expect(s.timesteps).toEqual([400, 100]);
    expect(s.numInferenceSteps).toBe(4);
  });

  it('LCM: an explicit originalInferenceSteps keeps the k-grid', () => {
    const s = new LCMScheduler();
    s.setTimesteps(4, { originalInferenceSteps: 50 });
    expect(s.timesteps).toEqual([999, 759, 499, 259]);
  });

  it('DDIM (leading + offset 1), DPM-Solver++(2S) (linspace, rounded) and their order lists (tcd.md §4)', () => {
    const ddim = (n: number) => {
      const s = new DDIMScheduler();
      s.setTimesteps(n);
      return s.timesteps;
    };
    expect(ddim(4)).toEqual([751, 501, 251, 1]);
    expect(ddim(8)).toEqual([876, 751, 626, 501, 376, 251, 126, 1]);
    expect(ddim(25)).toEqual(Array.from({ length: 25 }, (_, i) => 961 - 40 * i));
    expect(ddim(50)).toEqual(Array.from({ length: 50 }, (_, i) => 981 - 20 * i));
    const dpm = (n: number) => {
      const s = new DPMSolverSinglestepScheduler();
      s.setTimesteps(n);
      return s;
    };
    expect(dpm(4).timesteps).toEqual([999, 749, 500, 250]);
    expect(dpm(8).timesteps).toEqual([999, 874, 749, 624, 500, 375, 250, 125]);
    expect(dpm(25).timesteps.slice(10, 14)).toEqual([599, 559, 519, 480]);
    expect(dpm(4).orderList).toEqual([1, 2, 1, 1]);
    expect(dpm(8).orderList).toEqual([1, 2, 1, 2, 1, 2, 1, 1]);
    expect(dpm(25).orderList).toEqual([...Array.from({ length: 12 }, () => [1, 2]).flat(), 1]);
    expect(orderList(4, 2, false, false)).toEqual([1, 2, 1, 2]);
    // The other spacings, from diffusers' formulas: trailing round(arange(T, 0, −T/n)) − 1, linspace(0, T − 1, n).
    const trailing = new DDIMScheduler({ timestepSpacing: 'trailing' });
    trailing.setTimesteps(4);
    expect(trailing.timesteps).toEqual([999, 749, 499, 249]);
    const linspace = new DDIMScheduler({ timestepSpacing: 'linspace' });
    linspace.setTimesteps(4);
    expect(linspace.timesteps).toEqual([999, 666, 333, 0]);
    const euler = new EulerDiscreteScheduler({ timestepSpacing: 'linspace' });
    euler.setTimesteps(4);
    expect(euler.timesteps).toEqual([999, 666, 333, 0]);
    // 'linspace' starts from σ(999) itself: initNoiseSigma is max σ, not sqrt(σ² + 1).
    expect(euler.initNoiseSigma).toBe(euler.trainSigmas[999]);
  });

  it("from a diffusers scheduler_config.json (from_config): the SDXL base config's settings; unsupported options named", () => {
    const cfg = fromDiffusersConfig(golden.base_config);
    expect(cfg).toMatchObject({ betaSchedule: 'scaled_linear', stepsOffset: 1, setAlphaToOne: false, timestepSpacing: 'leading' });
    expect(() => fromDiffusersConfig({ ...golden.base_config, clip_sample: true })).toThrow(/'clip_sample: true' is not supported/);
    expect(() => fromDiffusersConfig({ interpolation_type: 'log_linear' })).toThrow(/interpolation_type 'log_linear' is not supported/);
  });

  it('Euler with Karras sigmas (tcd.md §4.3)', () => {
    const s = new EulerDiscreteScheduler({ useKarrasSigmas: true });
    s.setTimesteps(4);
    const k = spec.euler_karras;
    expectClose(s.sigmas, k.sigmas_4, { atol: 1e-6, rtol: 0 }, 'sigmas, 4 steps');
    expectClose(s.timesteps, k.timesteps_4, { atol: 1e-3, rtol: 0 }, 'timesteps, 4 steps');
    expect(Math.abs(s.initNoiseSigma - k.init_noise_sigma_4)).toBeLessThan(1e-6);
    s.setTimesteps(8);
    expectClose(s.sigmas, k.sigmas_8, { atol: 1e-6, rtol: 0 }, 'sigmas, 8 steps');
  });
});

describe('tcd.md §9 vectors (x, eps, noise_k from integer formulas over a (1,2,2,2) tensor)', () => {
  const x = Float32Array.from({ length: 8 }, (_, j) => (((j * 13) % 29) - 14) / 7);
  const eps = Float32Array.from({ length: 8 }, (_, j) => (((j * 7 + 3) % 23) - 11) / 8);
  const noiseK = (k: number) => Float32Array.from({ length: 8 }, (_, j) => (((j * 37 + k * 11 + 5) % 97) - 48) / 24);
  // Printed with 9 significant digits: torch float32 values round-trip exactly, float64 ones to ~5e-9 relative.
  const F64_TOL = { atol: 1e-9, rtol: 1e-8 };

  it('TCD single steps, 4 steps γ = 0.3: float32 = torch exactly, float64 = the float64 reference', () => {
    for (const st of spec['tcd_eta0.3_n4'].steps as Record<string, number[] | number>[]) {
      const i = st.i as number;
      const run = (precision: Precision) => {
        const s = new TCDScheduler({ precision });
        s.setTimesteps(4);
        s.setBeginIndex(i);
        return s.stepHost(eps, s.timesteps[i], x, { eta: 0.3, noise: noiseK(0) });
      };
      const a = run('float32');
      const b = run('float64');
      if (st.prev_torch) expect(maxUlps(a.prevSample, st.prev_torch as number[]), `i=${i} prev vs torch`).toBe(0);
      if (st.pred_noised_torch) expect(maxUlps(a.denoised!, st.pred_noised_torch as number[]), `i=${i} x_s vs torch`).toBe(0);
      expectClose(b.prevSample, st.prev_f64 as number[], F64_TOL, `i=${i} prev vs float64`);
      if (st.pred_noised_f64) expectClose(b.denoised!, st.pred_noised_f64 as number[], F64_TOL, `i=${i} x_s vs float64`);
    }
    const s = new TCDScheduler({ precision: 'float64' });
    s.setTimesteps(4);
    expectClose(s.stepHost(eps, 999, x, { eta: 0 }).prevSample, spec.tcd_eta0_n4_i0_prev_f64, F64_TOL, 'γ = 0, i = 0');
    for (const precision of ['float32', 'float64'] as const) {
      const one = new TCDScheduler({ precision });
      one.setTimesteps(1);
      const out = one.stepHost(eps, 999, x, { eta: 0.3 });
      if (precision === 'float32') expect(maxUlps(out.prevSample, spec['tcd_n1_eta0.3'].prev_torch)).toBe(0);
      else expectClose(out.prevSample, spec['tcd_n1_eta0.3'].prev_f64, F64_TOL, '1 step');
    }
  });

  it('TCD loops (a) constant ε and (b) ε = x·t/(t+1): float32 = torch exactly', () => {
    const loop = (precision: Precision, n: number, eta: number, model: (x: HostArray, t: number) => HostArray) => {
      const s = new TCDScheduler({ precision });
      s.setTimesteps(n);
      let k = 0;
      let xx: HostArray = x;
      for (const t of s.timesteps) xx = s.stepHost(model(xx, t), t, xx, { eta, noise: () => noiseK(k++) }).prevSample;
      return { xx, draws: k };
    };
    const constEps = () => eps;
    const scaled = (p: Precision) => (v: HostArray, t: number) =>
      p === 'float32' ? Float32Array.from(v, (e) => f(f(e * t) / (t + 1))) : Float64Array.from(v, (e) => (e * t) / (t + 1));
    const a32 = loop('float32', 4, 0.3, constEps);
    expect(a32.draws).toBe(3);
    expect(maxUlps(a32.xx, spec.tcd_loop_a.final_torch)).toBe(0);
    expectClose(loop('float64', 4, 0.3, constEps).xx, spec.tcd_loop_a.final_f64, F64_TOL, 'loop (a) float64');
    const b32 = loop('float32', 8, 0.5, scaled('float32'));
    expect(b32.draws).toBe(7);
    expect(maxUlps(b32.xx, spec.tcd_loop_b.final_torch)).toBe(0);
    expectClose(loop('float64', 8, 0.5, scaled('float64')).xx, spec.tcd_loop_b.final_f64, F64_TOL, 'loop (b) float64');
  });

  it("diffusers' own TCD unit test (γ = 0, 1 and 10 steps): sum |x| as its asserts (< 1e-3)", () => {
    const u = spec.tcd_diffusers_unit_test;
    // arange(768).reshape(3, 8, 8, 4) / 768, permuted to (4, 3, 8, 8).
    const sample = new Float32Array(768);
    for (let a = 0; a < 4; a++)
      for (let b = 0; b < 3; b++) for (let c = 0; c < 64; c++) sample[(a * 3 + b) * 64 + c] = ((b * 64 + c) * 4 + a) / 768;
    for (const [n, torch, f64] of [
      [1, u.steps_1_sum_abs_torch, u.steps_1_sum_abs_f64],
      [10, u.steps_10_sum_abs_torch, u.steps_10_sum_abs_f64],
    ]) {
      for (const precision of ['float32', 'float64'] as const) {
        const s = new TCDScheduler({ precision });
        s.setTimesteps(n);
        let xx: HostArray = sample;
        for (const t of s.timesteps) {
          const m = xx.map((v) => (precision === 'float32' ? f(f(v * t) / (t + 1)) : (v * t) / (t + 1)));
          xx = s.stepHost(m, t, xx, { eta: 0 }).prevSample;
        }
        const sum = Array.from(xx).reduce((acc, v) => acc + Math.abs(v), 0);
        expect(Math.abs(sum - (precision === 'float32' ? torch : f64)), `${n} steps ${precision}: sum ${sum}`).toBeLessThan(
          precision === 'float32' ? 1e-3 : 1e-5,
        );
      }
    }
  });

  it('LCM (i = 0, 3) and DDIM 25 steps (t = 961 → 921, t = 1 → final ᾱ[0]) in float64', () => {
    for (const [i, want] of [
      [0, spec.lcm_n4.i0_prev_f64],
      [3, spec.lcm_n4.i3_prev_f64],
    ] as const) {
      const s = new LCMScheduler({ precision: 'float64' });
      s.setTimesteps(4);
      s.setBeginIndex(i);
      const out = s.stepHost(eps, s.timesteps[i], x, { noise: noiseK(i) });
      expectClose(out.prevSample, want, F64_TOL, `LCM i=${i}`);
      if (i === 3) expect(Array.from(out.prevSample)).toEqual(Array.from(out.denoised!));
    }
    // The boundary scalings (tcd.md §3): c_skip(0) = 1, c_out(0) = 0; ≈ 1e-8 and ≈ 1 at inference timesteps.
    const lcm = new LCMScheduler({ precision: 'float64' });
    expect(lcm.boundaryScalings(0)).toEqual({ cSkip: 1, cOut: 0 });
    expect(Math.abs(lcm.boundaryScalings(499).cSkip - 1.00401202e-8)).toBeLessThan(1e-16);
    for (const [i, want] of [
      [0, spec.ddim_n25.t961_prev_f64],
      [24, spec.ddim_n25.t1_prev_f64],
    ] as const) {
      const s = new DDIMScheduler({ precision: 'float64' });
      s.setTimesteps(25);
      s.setBeginIndex(i);
      expectClose(s.stepHost(eps, s.timesteps[i], x).prevSample, want, F64_TOL, `DDIM t=${s.timesteps[i]}`);
    }
  });

  it('DDIM with η = 1 re-noises: x̂0 and the direction term per tcd.md §4.1, plus σ·z', () => {
    const s = new DDIMScheduler({ precision: 'float64' });
    s.setTimesteps(4);
    const z = noiseK(0);
    const out = s.stepHost(eps, 751, x, { eta: 1, noise: z });
    const a = s.alphasCumprod;
    const [aT, aP] = [a[751], a[501]];
    const std = Math.sqrt(((1 - aP) / (1 - aT)) * (1 - aT / aP));
    const want = Array.from(x, (_, j) => {
      const x0 = (x[j] - Math.sqrt(1 - aT) * eps[j]) / Math.sqrt(aT);
      return Math.sqrt(aP) * x0 + Math.sqrt(1 - aP - std * std) * eps[j] + std * z[j];
    });
    expectClose(out.prevSample, Float64Array.from(want), { atol: 1e-12, rtol: 1e-12 }, 'DDIM η = 1');
    expect(() => s.stepHost(eps, 501, x, { eta: 1 })).toThrow(/re-noises and needs opts.noise/);
  });

  it('Euler-Karras and DPM++(2S) 4-step trajectories (torch values)', () => {
    const e = new EulerDiscreteScheduler({ useKarrasSigmas: true });
    e.setTimesteps(4);
    let xx: HostArray = Float32Array.from(x, (v) => v * e.initNoiseSigma);
    for (const t of e.timesteps) xx = e.stepHost(e.scaleModelInputHost(xx, t).map((v) => 0.5 * v), t, xx).prevSample;
    expectClose(xx, spec.euler_karras.loop_4_final, { atol: 2e-7, rtol: 1e-7 }, 'Euler-Karras');
    const d = new DPMSolverSinglestepScheduler();
    d.setTimesteps(4);
    xx = x;
    for (const t of d.timesteps) xx = d.stepHost(xx.map((v) => 0.5 * v), t, xx).prevSample;
    expectClose(xx, spec.dpmpp_2s.loop_4_final, { atol: 2e-7, rtol: 1e-7 }, 'DPM++(2S)');
  });
});

describe('TCD step rules', () => {
  it("float32 scalars are tcdStepScalars'; the float32 floor rule for s", () => {
    const s = new TCDScheduler();
    expect(s.scalars(999, 759, 0.3)).toEqual(tcdStepScalars(TORCH_ALPHAS, 999, 759, 0.3));
    expect(s.scalars(400, 350, 0.3).s).toBe(245);
    const s64 = new TCDScheduler({ precision: 'float64' });
    expect(s64.scalars(999, 759, 0.3).s).toBe(531);
  });

  it('noise is drawn once per non-final step only when γ > 0; a custom list cut by strength still draws on its end', () => {
    const run = (eta: number, setup: (s: TCDScheduler) => void) => {
      const s = new TCDScheduler({ onWarning: () => {} });
      setup(s);
      let draws = 0;
      let x: HostArray = new Float32Array(4).fill(0.5);
      let last: StepResult<HostArray> = { prevSample: x };
      for (const t of s.timesteps) {
        last = s.stepHost(new Float32Array(4).fill(0.1), t, x, { eta, noise: () => (draws++, new Float32Array(4).fill(1)) });
        x = last.prevSample;
      }
      return { draws, last };
    };
    expect(run(0.3, (s) => s.setTimesteps(4)).draws).toBe(3);
    expect(run(0, (s) => s.setTimesteps(4)).draws).toBe(0);
    // [400, 100] of 4 steps: diffusers draws on both (step index 1 ≠ 3), on the last with coefficient
    // sqrt(1 − ᾱ0/ᾱ0) = 0, so the output is x_s.
    const cut = run(0.3, (s) => s.setTimesteps({ timesteps: [999, 700, 400, 100], strength: 0.5 }));
    expect(cut.draws).toBe(2);
    expect(Array.from(cut.last.prevSample)).toEqual(Array.from(cut.last.denoised!));
  });

  it('step index: starts at the position of the first timestep, or at setBeginIndex', () => {
    const s = new TCDScheduler();
    s.setTimesteps({ timesteps: [999, 759, 499, 259] });
    s.stepHost([0], 499, [0], { eta: 0 });
    expect(s.stepIndex).toBe(3);
    s.setTimesteps(4);
    s.setBeginIndex(1);
    s.stepHost([0], 759, [0], { eta: 0 });
    expect(s.stepIndex).toBe(2);
  });

  it('errors name what was expected', () => {
    const s = new TCDScheduler({ onWarning: () => {} });
    // diffusers checks the grid size first: 60 steps cannot subsample the 50-point grid.
    expect(() => s.setTimesteps(60)).toThrow(/\(50 × 1: 50 grid timesteps\) is smaller than numInferenceSteps \(60\)/);
    expect(() => s.setTimesteps(30, { originalInferenceSteps: 25 })).toThrow(
      /numInferenceSteps \(30\) must be ≤ originalInferenceSteps \(25\)/,
    );
    expect(() => s.setTimesteps(4, { strength: 0 })).toThrow(/strength must be in \(0, 1\], got 0/);
    expect(() => s.setTimesteps(4, { strength: 1.5 })).toThrow(/strength must be in \(0, 1\], got 1.5/);
    expect(() => s.setTimesteps(30, { strength: 0.5 })).toThrow(/25 grid timesteps\) is smaller than numInferenceSteps \(30\)/);
    expect(() => s.setTimesteps(0)).toThrow(/positive integer, got 0/);
    expect(() => s.setTimesteps({})).toThrow(/exactly one of numInferenceSteps and timesteps/);
    expect(() => s.setTimesteps({ numInferenceSteps: 4, timesteps: [999] })).toThrow(/got both/);
    expect(() => s.setTimesteps({ timesteps: [999, 999] })).toThrow(/descending order, got 999 then 999/);
    expect(() => s.setTimesteps({ timesteps: [1000, 10] })).toThrow(/start below numTrainTimesteps \(1000\), got 1000/);
    expect(() => new TCDScheduler({ originalInferenceSteps: 2000 }).setTimesteps(4)).toThrow(SchedulerError);
    expect(() => new TCDScheduler({ originalInferenceSteps: 2000 }).setTimesteps(4)).toThrow(
      /originalInferenceSteps \(2000\) must be ≤ numTrainTimesteps \(1000\)/,
    );
    expect(() => s.stepHost([0], 999, [0])).toThrow(/call setTimesteps\(\) before step\(\)/);
    s.setTimesteps(4);
    expect(() => s.stepHost([0], 999, [0], { eta: 1.5 })).toThrow(/eta \(gamma\) must be in \[0, 1\], got 1.5/);
    expect(() => s.stepHost([0], 999, [0], { eta: -0.1 })).toThrow(/got -0.1/);
    expect(() => s.stepHost([0], 998, [0], { eta: 0 })).toThrow(/timestep 998 is not in the schedule \[999, 759, 499, 259\]/);
    expect(() => s.stepHost([0], 999, [0], { eta: 0.3 })).toThrow(/re-noises and needs opts.noise/);
    expect(() => s.stepHost([0, 1], 999, [0], { eta: 0 })).toThrow(ShapeError);
    expect(() => s.stepHost([0], 999, [0], { eta: 0.3, noise: [1, 2] as never })).toThrow(/noise has 2 elements, the sample 1/);
    expect(s.stepIndex, 'a failed step does not advance').toBe(0);
    for (const p of ['v_prediction', 'sample'])
      expect(() => new TCDScheduler({ predictionType: p as never })).toThrow(
        new RegExp(`predictionType '${p}' is not supported; only 'epsilon'`),
      );
    expect(() => new TCDScheduler({ predictionType: 'flow' as never })).toThrow(/unknown predictionType 'flow'/);
    expect(() => new TCDScheduler({ defaultEta: 2 })).toThrow(/eta \(gamma\) must be in \[0, 1\], got 2/);
    expect(() => new DPMSolverSinglestepScheduler({ solverOrder: 3 as never })).toThrow(/solverOrder 3 is not supported/);
    expect(() => new DDIMScheduler({ timestepSpacing: 'odd' as never }).setTimesteps(4)).toThrow(/unknown timestepSpacing 'odd'/);
    const done = new DDIMScheduler();
    done.setTimesteps(1);
    done.stepHost([0], 1, [0]);
    expect(() => done.stepHost([0], 1, [0])).toThrow(/all 1 steps are done/);
  });
});

describe('GPU steps (the golden loops on the GPU: golden scheduler suite)', () => {
  let gpu: Gpu;
  beforeAll(async () => {
    gpu = await testGpu();
  });
  afterAll(() => gpu?.destroy());

  it('TCD addNoise and DPM host/GPU mixing', async () => {
    const s = new TCDScheduler();
    const x0 = Tensor.fromArray(gpu, [1, -2, 3], [3]);
    const z = Tensor.fromArray(gpu, [0.5, 0.25, -1], [3]);
    const y = s.addNoise(x0, z, 499);
    expect(Array.from(await y.toArray())).toEqual(Array.from(s.addNoiseHost([1, -2, 3], [0.5, 0.25, -1], 499)));
    [x0, z, y].forEach((t) => t.release());
    const d = new DPMSolverSinglestepScheduler();
    d.setTimesteps(4);
    d.stepHost([0, 0], 999, [1, 1]);
    const a = Tensor.fromArray(gpu, [0, 0], [2]);
    expect(() => d.step(a, 749, a)).toThrow(/host and GPU steps cannot be mixed/);
    a.release();
  });
});
