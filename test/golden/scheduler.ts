// scheduler.json: the schedulers against diffusers (torch float32 CPU): the float32 ᾱ table, the TCD / LCM timestep
// lists, and every golden loop (TCD at each γ and strength, LCM, DDIM, DPM-Solver++(2S), Euler; the golden's model
// 0.5·model_input + C·f32(t/1000) and its recorded noise): schedule (timesteps, sigmas, orders, initNoiseSigma) from
// the golden's base_config, every intermediate sample on the host in float32 (bit-exact) and float64, on the GPU, and
// the fused TCD step kernel on each TCD step's recorded inputs. Layouts: the shared scheduler.json, or test/fixtures'
// extract of it (scheduler/loops.json + tcd_scheduler.json, made by test/fixtures/scheduler/extract.py and
// test/fixtures/extract_golden.py).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../runtime/device.js';
import { binary, unary } from '../../src/kernels/elementwise.js';
import { tcdStep, tcdStepScalars } from '../../src/kernels/tcd_step.js';
import { tcdStepF32Ref, tcdStepRef } from '../../src/reference/tcd_step.js';
import {
  DDIMScheduler,
  DPMSolverSinglestepScheduler,
  EulerDiscreteScheduler,
  type HostArray,
  LCMScheduler,
  type Precision,
  type Scheduler,
  TCDScheduler,
  fromDiffusersConfig,
} from '../../src/schedulers/index.js';
import { Tensor } from '../../src/tensor.js';
import { goldenExists, joinPath, readJson } from '../golden_io.js';
import { expectClose, maxAbs, maxUlps } from '../helpers.js';
import { type ErrorRow, type GoldenSuite, goldenGpu, maxUlpsRows, summaryLine } from './suite.js';

const NAME = 'scheduler';
const f = Math.fround;
const KINDS = ['tcd', 'lcm', 'ddim', 'euler', 'dpmpp'] as const;
type Kind = (typeof KINDS)[number];
/** The step output each kind's golden records as its denoised-type output (the shared scheduler.json's field names). */
const DENOISED: Record<Kind, string | undefined> = { tcd: 'pred_noised_sample', lcm: 'denoised', ddim: 'pred_original_sample', euler: 'pred_original_sample', dpmpp: undefined };

interface LoopStep {
  timestep: number;
  prev: number[];
  denoised?: number[];
  noise?: number[];
  /** The step's input sample and model output (TCD loops: the fused-kernel check feeds them directly). */
  sample?: number[];
  modelOutput?: number[];
}
interface Loop {
  name: string;
  kind: Kind;
  steps: number;
  strength?: number;
  eta?: number;
  timesteps: number[];
  initNoiseSigma: number;
  sigmas?: number[];
  orderList?: number[];
  initial: number[];
  trajectory: LoopStep[];
}
interface SchedulerGolden {
  where: string;
  shape: number[];
  C: Float32Array;
  /** diffusers' float32 alphas_cumprod, index = timestep. */
  alphas: Float32Array;
  baseConfig: Record<string, unknown>;
  tcdTimesteps: Record<string, Record<string, number[]>>;
  lcmTimesteps: Record<string, number[]>;
  loops: Loop[];
}

type Json = Record<string, unknown>;
interface LoopJson extends Json {
  set_timesteps_kwargs: { num_inference_steps: number; strength?: number };
  step_kwargs: { eta?: number };
  timesteps: number[];
  init_noise_sigma: number;
  sigmas?: number[];
  order_list?: number[];
}

function kindOf(name: string, where: string): Kind {
  const k = name.split('_')[0] as Kind;
  if (!KINDS.includes(k)) throw new Error(`${where}: loop '${name}': unknown scheduler '${k}' (known: ${KINDS.join(', ')})`);
  return k;
}

function loopSettings(name: string, g: LoopJson, where: string): Omit<Loop, 'initial' | 'trajectory'> {
  return {
    name,
    kind: kindOf(name, where),
    steps: g.set_timesteps_kwargs.num_inference_steps,
    strength: g.set_timesteps_kwargs.strength,
    eta: g.step_kwargs.eta,
    timesteps: g.timesteps,
    initNoiseSigma: g.init_noise_sigma,
    sigmas: g.sigmas,
    orderList: g.order_list,
  };
}

/** The shared layout: scheduler.json with every step's tensors. */
function fromShared(root: string): SchedulerGolden {
  const where = joinPath(root, 'scheduler.json');
  const s = readJson<Json>(root, 'scheduler.json')!;
  const loops = Object.entries(s.loops as Record<string, LoopJson & { initial_sample: number[]; steps: Json[] }>).map(([name, g]) => {
    const base = loopSettings(name, g, where);
    const field = DENOISED[base.kind];
    return {
      ...base,
      initial: g.initial_sample,
      trajectory: g.steps.map((st) => ({
        timestep: st.timestep as number,
        prev: st.prev_sample as number[],
        denoised: field ? (st[field] as number[]) : undefined,
        noise: st.noise as number[] | undefined,
        sample: st.sample as number[],
        modelOutput: st.model_output as number[],
      })),
    };
  });
  return {
    where,
    shape: s.shape as number[],
    C: Float32Array.from(s.C as number[]),
    alphas: Float32Array.from(s.alphas_cumprod_float32 as number[]),
    baseConfig: s.base_config as Json,
    tcdTimesteps: s.tcd_timesteps as SchedulerGolden['tcdTimesteps'],
    lcmTimesteps: s.lcm_timesteps_default as SchedulerGolden['lcmTimesteps'],
    loops,
  };
}

/** test/fixtures' extract: settings and non-TCD tensors in scheduler/loops.json, TCD tensors in tcd_scheduler.json. */
function fromExtract(root: string): SchedulerGolden {
  const where = `${joinPath(root, 'scheduler/loops.json')} + tcd_scheduler.json`;
  const g = readJson<Json>(joinPath(root, 'scheduler'), 'loops.json')!;
  const tcd = readJson<{ alphas_cumprod_float32: number[]; loops: Record<string, { steps: Json[] }> }>(root, 'tcd_scheduler.json')!;
  const loops = Object.entries(g.loops as Record<string, LoopJson & { initial_sample?: number[]; steps?: Json[] }>).map(([name, l]) => {
    const base = loopSettings(name, l, where);
    if (base.kind === 'tcd') {
      const steps = tcd.loops[name]?.steps;
      if (!steps) throw new Error(`${where}: TCD loop '${name}' has no tensors in tcd_scheduler.json`);
      return {
        ...base,
        initial: steps[0].sample as number[],
        trajectory: steps.map((st) => ({
          timestep: st.timestep as number,
          prev: st.prev_sample as number[],
          denoised: st.pred_noised_sample as number[],
          noise: st.noise as number[] | undefined,
          sample: st.sample as number[],
          modelOutput: st.model_output as number[],
        })),
      };
    }
    return {
      ...base,
      initial: l.initial_sample!,
      trajectory: l.steps!.map((st) => ({
        timestep: st.timestep as number,
        prev: st.prev_sample as number[],
        denoised: st.denoised as number[] | undefined,
        noise: st.noise as number[] | undefined,
      })),
    };
  });
  return {
    where,
    shape: g.shape as number[],
    C: Float32Array.from(g.C as number[]),
    alphas: Float32Array.from(tcd.alphas_cumprod_float32),
    baseConfig: g.base_config as Json,
    tcdTimesteps: g.tcd_timesteps as SchedulerGolden['tcdTimesteps'],
    lcmTimesteps: g.lcm_timesteps_default as SchedulerGolden['lcmTimesteps'],
    loops,
  };
}

const isShared = (root: string) => goldenExists(root, 'scheduler.json');
const isExtract = (root: string) => goldenExists(joinPath(root, 'scheduler'), 'loops.json') && goldenExists(root, 'tcd_scheduler.json');

export const schedulerSuite: GoldenSuite = {
  name: NAME,
  lookedFor: ['scheduler.json (or scheduler/loops.json + tcd_scheduler.json)'],
  present: (root) => isShared(root) || isExtract(root),
  define(root) {
    defineScheduler(isShared(root) ? fromShared(root) : fromExtract(root));
  },
};

const scaleOf = (a: ArrayLike<number>) => Math.max(1, ...Array.from(a, Math.abs));

function defineScheduler(g: SchedulerGolden): void {
  const cfg = fromDiffusersConfig(g.baseConfig);

  /** The loop's scheduler as the golden made it: Cls.from_config(base_config) (DPM-Solver++(2S): solver_order 2). */
  function schedulerFor(kind: Kind, precision: Precision): Scheduler & { setTimesteps(n: number, o?: { strength?: number }): void } {
    const c = { ...cfg, precision };
    switch (kind) {
      case 'tcd':
        return new TCDScheduler(c);
      case 'lcm':
        return new LCMScheduler(c);
      case 'ddim':
        return new DDIMScheduler(c);
      case 'euler':
        return new EulerDiscreteScheduler(c);
      case 'dpmpp':
        return new DPMSolverSinglestepScheduler({ ...c, solverOrder: 2 });
    }
  }

  function setUp(loop: Loop, precision: Precision) {
    const s = schedulerFor(loop.kind, precision);
    if (loop.strength !== undefined) s.setTimesteps(loop.steps, { strength: loop.strength });
    else s.setTimesteps(loop.steps);
    return s;
  }

  /** The golden model: 0.5·model_input + C·f32(t/1000), as torch computes it (float32) or in float64. */
  function modelOutput(mi: HostArray, t: number, precision: Precision): HostArray {
    if (precision === 'float64') return Float64Array.from(mi, (v, j) => 0.5 * v + g.C[j] * (t / 1000));
    const ct = f(t / 1000);
    return Float32Array.from(mi, (v, j) => f(0.5 * v) + f(g.C[j] * ct));
  }

  /** Runs a loop on the host from its initial sample with the golden noise; returns every step's outputs. */
  function runHost(loop: Loop, precision: Precision) {
    const s = setUp(loop, precision);
    let x: HostArray = Float64Array.from(loop.initial);
    let draws = 0;
    const out: { prev: HostArray; denoised?: HostArray }[] = [];
    loop.trajectory.forEach((st, i) => {
      const t = s.timesteps[i];
      const mo = modelOutput(s.scaleModelInputHost(x, t), t, precision);
      const r = s.stepHost(mo, t, x, {
        eta: loop.eta,
        noise: () => {
          draws++;
          if (!st.noise) throw new Error(`${loop.name} step ${i}: the scheduler drew noise where diffusers did not`);
          return Float32Array.from(st.noise);
        },
      });
      out.push({ prev: r.prevSample, denoised: r.denoised });
      x = r.prevSample;
    });
    return { out, draws };
  }

  const tcdLoops = g.loops.filter((l) => l.kind === 'tcd');
  describe(`${NAME}: schedulers vs diffusers (${g.loops.length} loops: ${[...new Set(g.loops.map((l) => l.kind))].join(', ')})`, () => {
    let gpu: Gpu;
    beforeAll(async () => {
      gpu = await goldenGpu();
      console.log(`[golden ${NAME}] ${g.where}`);
    });
    const hostRows: ErrorRow[] = [];
    const gpuRows: ErrorRow[] = [];

    it(`float32 ᾱ: all ${g.alphas.length} entries are diffusers' bit for bit`, () => {
      const a = new TCDScheduler({ ...cfg, precision: 'float32' }).alphasCumprod;
      expect(a.length, 'table length').toBe(g.alphas.length);
      const rows = maxUlpsRows(a, g.alphas, (t) => `ᾱ[${t}]`);
      summaryLine(NAME, 'float32 ᾱ table', rows, '0 ulp', 'ulp');
      expect(rows.filter(([, u]) => u !== 0).map(([n]) => n), 'entries differing from torch').toEqual([]);
    });

    it('TCD and LCM timestep lists (default grid, explicit originalInferenceSteps → dense grid, strength)', () => {
      let n = 0;
      for (const [variant, lists] of Object.entries(g.tcdTimesteps)) {
        for (const [key, want] of Object.entries(lists)) {
          const m = /^(\d+)(?:_strength_([\d.]+))?$/.exec(key);
          if (!m) throw new Error(`${g.where}: tcd_timesteps.${variant}: unknown key '${key}' (expected '<n>' or '<n>_strength_<s>')`);
          const s = new TCDScheduler(cfg);
          s.setTimesteps(Number(m[1]), { strength: m[2] ? Number(m[2]) : 1, ...(variant.startsWith('explicit_original_steps_') ? { originalInferenceSteps: Number(variant.split('_').at(-1)) } : {}) });
          expect(s.timesteps, `TCD ${variant} ${key}`).toEqual(want);
          n++;
        }
      }
      for (const [steps, want] of Object.entries(g.lcmTimesteps)) {
        const s = new LCMScheduler(cfg);
        s.setTimesteps(Number(steps));
        expect(s.timesteps, `LCM ${steps}`).toEqual(want);
        n++;
      }
      console.log(`[golden ${NAME}] timesteps: ${n} lists identical (integers, tolerance 0)`);
    });

    it('every loop: timesteps, sigmas, order list and initNoiseSigma from the base config', () => {
      for (const loop of g.loops) {
        const s = setUp(loop, 'float32');
        expect(s.timesteps, loop.name).toEqual(loop.timesteps);
        expect(s.initNoiseSigma, `${loop.name} initNoiseSigma`).toBe(f(loop.initNoiseSigma));
        if (loop.sigmas) expect((s as EulerDiscreteScheduler).sigmas, `${loop.name} sigmas`).toEqual(loop.sigmas.map(f));
        if (loop.orderList) expect((s as DPMSolverSinglestepScheduler).orderList, `${loop.name} orders`).toEqual(loop.orderList);
      }
    });

    for (const loop of g.loops) {
      it(`${loop.name} (${loop.trajectory.length} steps${loop.eta !== undefined ? `, γ/η ${loop.eta}` : ''}) on the host: float32 bit for bit, float64 within 3e-6 of the scale`, () => {
        const f32 = runHost(loop, 'float32');
        expect(f32.draws, 'noise draws').toBe(loop.trajectory.filter((s) => s.noise).length);
        loop.trajectory.forEach((st, i) => {
          expect(maxUlps(f32.out[i].prev, st.prev), `step ${i} (t=${st.timestep}) prev_sample ulps`).toBe(0);
          if (st.denoised) expect(maxUlps(f32.out[i].denoised!, st.denoised), `step ${i} denoised ulps`).toBe(0);
        });
        const f64 = runHost(loop, 'float64');
        let worst = 0;
        loop.trajectory.forEach((st, i) => {
          expectClose(f64.out[i].prev, st.prev, { atol: 3e-6 * scaleOf(st.prev), rtol: 0 }, `float64 step ${i} prev_sample`);
          worst = Math.max(worst, maxAbs(f64.out[i].prev, st.prev) / scaleOf(st.prev));
        });
        hostRows.push([`${loop.name} (float64)`, worst]);
        console.log(`  ${loop.name}: float32 0 ulp on all ${loop.trajectory.length} steps; float64 max |Δ|/scale ${worst.toExponential(2)}`);
      });
    }

    // Composed steps divide by a scalar as a product with its float32 reciprocal (≤ 1 ulp per division); the fused TCD
    // kernel is bit-exact.
    for (const loop of g.loops) {
      it(`${loop.name} on the GPU: every intermediate sample`, async () => {
        const s = setUp(loop, 'float32');
        const Ct = Tensor.fromArray(gpu, g.C, g.shape, { label: 'C' });
        let x = Tensor.fromArray(gpu, loop.initial, g.shape, { label: 'sample' });
        let draws = 0;
        let worstUlp = 0;
        let worstRel = 0;
        for (let i = 0; i < loop.trajectory.length; i++) {
          const st = loop.trajectory[i];
          const t = s.timesteps[i];
          const mi = s.scaleModelInput(x, t);
          const [a, b] = [unary('scale', mi, { alpha: 0.5 }), unary('scale', Ct, { alpha: f(t / 1000) })];
          const mo = binary('add', a, b);
          [mi, a, b].forEach((v) => v.release());
          const out = s.step(mo, t, x, {
            eta: loop.eta,
            noise: () => (draws++, Tensor.fromArray(gpu, st.noise!, g.shape, { label: 'noise' })),
          });
          const prev = await out.prevSample.toArray();
          worstUlp = Math.max(worstUlp, maxUlps(prev, st.prev));
          worstRel = Math.max(worstRel, maxAbs(prev, st.prev) / scaleOf(st.prev));
          if (loop.kind === 'tcd') {
            expect(maxUlps(prev, st.prev), `step ${i} prev_sample ulps`).toBe(0);
            expect(maxUlps(await out.denoised!.toArray(), st.denoised!), `step ${i} pred_noised_sample ulps`).toBe(0);
          } else {
            expectClose(prev, st.prev, { atol: 2e-6 * scaleOf(st.prev), rtol: 0 }, `step ${i} (t=${t}) prev_sample`);
            if (st.denoised) expectClose(await out.denoised!.toArray(), st.denoised, { atol: 2e-6 * scaleOf(st.denoised), rtol: 0 }, `step ${i} denoised`);
          }
          [mo, x, out.denoised].forEach((v) => v?.release());
          x = out.prevSample;
        }
        expect(draws).toBe(loop.trajectory.filter((st) => st.noise).length);
        if (s instanceof DPMSolverSinglestepScheduler) s.clearState();
        [x, Ct].forEach((v) => v.release());
        gpuRows.push([loop.name, worstRel]);
        console.log(`  GPU ${loop.name}: max ${worstUlp} ulp, max |Δ|/scale ${worstRel.toExponential(2)}`);
      });
    }

    // GPU vs torch float32: the host scalars and op order are torch's, products are rounded even under fma contraction
    // and the division is correctly rounded, so the fused kernel claims bit-identical results (0 ulp).
    for (const loop of tcdLoops) {
      it(`${loop.name}: the fused TCD step kernel on each step's recorded inputs; its float32 emulation is bit-exact`, async () => {
        if (loop.trajectory.some((st) => !st.sample || !st.modelOutput)) throw new Error(`${g.where}: ${loop.name} lacks per-step sample / model_output`);
        const f32 = (a: readonly number[]) => Float32Array.from(a);
        const report: string[] = [];
        for (let i = 0; i < loop.trajectory.length; i++) {
          const st = loop.trajectory[i];
          const [sample, mo, prevWant, xsWant] = [f32(st.sample!), f32(st.modelOutput!), f32(st.prev), f32(st.denoised!)];
          const noise = st.noise && f32(st.noise);
          const prevT = loop.timesteps[i + 1] as number | undefined;
          const sc = tcdStepScalars(g.alphas, st.timestep, prevT, loop.eta ?? 0);
          expect(sc.addNoise, `step ${i}: noise drawn`).toBe(noise !== undefined);
          // The host scalars and op order are right iff the float32 emulation matches torch exactly.
          const emu = tcdStepF32Ref(sample, mo, noise, g.alphas, st.timestep, prevT, loop.eta ?? 0);
          expect(maxAbs(emu.prev, prevWant), `step ${i}: emulated prev_sample`).toBe(0);
          expect(maxAbs(emu.xs, xsWant), `step ${i}: emulated pred_noised_sample`).toBe(0);
          const x = Tensor.fromArray(gpu, sample, g.shape, { label: 'sample' });
          const eps = Tensor.fromArray(gpu, mo, g.shape, { label: 'model_output' });
          const z = noise ? Tensor.fromArray(gpu, noise, g.shape, { label: 'noise' }) : undefined;
          const out = tcdStep(x, eps, sc, z);
          const [prev, xs, x0] = await Promise.all([out.prevSample.toArray(), out.predNoisedSample.toArray(), out.predOriginalSample.toArray()]);
          const u = [maxUlps(prev, prevWant), maxUlps(xs, xsWant), maxUlps(x0, emu.x0)];
          report.push(`t=${st.timestep}: ${u.join('/')} ulp`);
          expect(Math.max(...u), `step ${i} (t=${st.timestep}): max ulps of prev / x_s / x0 = ${u}`).toBe(0);
          if (!sc.addNoise) expect(Array.from(prev)).toEqual(Array.from(xs));
          // Float64 reference: torch's float32 rounding amplified by 1/sqrt(ᾱ_t) (14.6 at t = 999) stays within 3e-6
          // relative to the sample scale (tcd.md §9.9 observes up to 2.7e-6 absolute on its t = 999 vectors).
          const ref = tcdStepRef(sample, mo, noise, g.alphas, st.timestep, prevT, loop.eta ?? 0);
          expectClose(prev, ref.prev, { atol: 3e-6 * scaleOf(ref.prev), rtol: 0 }, `step ${i} prev vs float64`);
          expectClose(x0, ref.x0, { atol: 3e-6 * scaleOf(ref.x0), rtol: 0 }, `step ${i} x0 vs float64`);
          [x, eps, z, out.prevSample, out.predNoisedSample, out.predOriginalSample].forEach((t) => t?.release());
        }
        console.log(`  tcdStep ${loop.name}: ${report.join('; ')}`);
      });
    }

    afterAll(() => {
      if (hostRows.length) summaryLine(NAME, 'host loops, float64 max |Δ|/scale', hostRows, '3e-6');
      if (gpuRows.length) summaryLine(NAME, 'GPU loops, max |Δ|/scale', gpuRows, '0 ulp (TCD), 2e-6 (others)');
    });
  });
}
