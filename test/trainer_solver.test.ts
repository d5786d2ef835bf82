// The trainer's host-side math (no GPU): the DDIM grid, TCF(1) against the DDIM form it equals (tcd.md §9.5) in
// float64, its ε-gradient against finite differences, the float64 DDIM step, the lr schedules' shapes, and the errors.
// The whole step against diffusers is test/golden/tcd_train_step.ts.
import { describe, expect, it } from 'vitest';
import { SDXL_NOISE_SCHEDULE, alphasCumprod } from '../src/schedulers/noise_schedule.js';
import { DdimSolver, DdimSolverError } from '../src/trainer/ddim_solver.js';
import { learningRate } from '../src/trainer/lr_schedule.js';
import { expectClose, seeded } from './helpers.js';

const ac = alphasCumprod(SDXL_NOISE_SCHEDULE, 'float32');
const solver = new DdimSolver(ac, 50);

describe('DdimSolver', () => {
  it('grid: k = T // N, timesteps (i + 1)·k − 1, ᾱ_prev shifted by one with ᾱ[0] first; t_n and t_m clamp at 0', () => {
    expect(solver.k).toBe(20);
    expect(solver.timesteps[0]).toBe(19);
    expect(solver.timesteps[49]).toBe(999);
    expect(solver.alphaCumprodsPrev[0]).toBe(ac[0]);
    for (let i = 1; i < 50; i++) expect(solver.alphaCumprodsPrev[i]).toBe(ac[solver.timesteps[i - 1]]);
    expect(solver.teacherTimestep(0)).toBe(0);
    expect(solver.teacherTimestep(25)).toBe(499);
    expect(solver.endTimestep(0, 25)).toBe(0);
    expect(solver.endTimestep(12, 25)).toBe(239);
    const odd = new DdimSolver(ac, 30); // 1000 // 30 = 33
    expect([odd.k, odd.timesteps[0], odd.timesteps[29]]).toEqual([33, 32, 989]);
  });

  it('TCF(1) equals the DDIM form sqrt(ᾱ_s)·x0 + sqrt(1 − ᾱ_s)·ε (float64 reference), and is the identity for s = t', () => {
    const n = 256;
    const x = seeded(n, 1, -3, 3);
    const eps = seeded(n, 2, -2, 2);
    for (const [t, s] of [[999, 0], [959, 399], [519, 239], [259, 259], [19, 0]]) {
      const got = new Float32Array(n);
      solver.tcf1(x, eps, t, s, got);
      const want = Float64Array.from(x, (xi, i) => {
        const x0 = (xi - Math.sqrt(1 - ac[t]) * eps[i]) / Math.sqrt(ac[t]);
        return Math.sqrt(ac[s]) * x0 + Math.sqrt(1 - ac[s]) * eps[i];
      });
      const scale = Math.max(...want.map(Math.abs));
      expectClose(got, want, { atol: 2e-6 * scale, rtol: 0 }, `TCF(1) ${t} → ${s}`);
    }
  });

  it('the ε-gradient of TCF(1) matches central finite differences in float64', () => {
    for (const [t, s] of [[959, 399], [519, 0], [99, 59]]) {
      const { sigmaS, sigmaT, alphaT, c } = solver.tcf1Coefficients(t, s);
      const f = (x: number, e: number) => (sigmaS * x) / sigmaT - c * ((x - sigmaT * e) / alphaT);
      const g = seeded(16, 3, -1, 1);
      const x = seeded(16, 4, -2, 2);
      const e = seeded(16, 5, -2, 2);
      const got = new Float32Array(16);
      solver.tcf1EpsGrad(g, t, s, got);
      const h = 1e-4;
      const want = Array.from(g, (gi, i) => (gi * (f(x[i], e[i] + h) - f(x[i], e[i] - h))) / (2 * h));
      expectClose(got, want, { atol: 1e-6, rtol: 1e-5 }, `d TCF(1) / d eps, ${t} → ${s}`);
    }
  });

  it('DDIM step: float64 arithmetic on the float64 ᾱ_prev table, one rounding', () => {
    const n = 64;
    const px0 = seeded(n, 6, -4, 4);
    const pn = seeded(n, 7, -2, 2);
    const out = new Float32Array(n);
    const wide = solver.ddimStep(px0, pn, 30, out);
    const a = solver.alphaCumprodsPrev[30];
    for (let i = 0; i < n; i++) {
      expect(wide[i]).toBe(Math.sqrt(a) * px0[i] + Math.sqrt(1 - a) * pn[i]);
      expect(out[i]).toBe(Math.fround(wide[i]));
    }
  });

  it('bad indices and timesteps are named', () => {
    expect(() => solver.startTimestep(50)).toThrow(DdimSolverError);
    expect(() => solver.startTimestep(50)).toThrow(/index must be an integer in \[0, 49\], got 50/);
    expect(() => solver.endTimestep(30, 20)).toThrow(/endIndex 30 must not exceed index 20/);
    expect(() => solver.tcf1([0], [0], 1000, 0, new Float32Array(1))).toThrow(/timestep must be an integer in \[0, 999\], got 1000/);
    expect(() => new DdimSolver(ac, 0)).toThrow(/numDdimTimesteps must be an integer in \[1, 1000\]/);
  });
});

describe('learning-rate schedules (diffusers get_scheduler semantics)', () => {
  const lr = 1e-4;
  it('constant ignores warm-up; constant_with_warmup ramps from 0 at update 0', () => {
    expect(learningRate({ name: 'constant', lr, warmupSteps: 10 }, 0)).toBe(lr);
    expect([0, 5, 10, 50].map((s) => learningRate({ name: 'constant_with_warmup', lr, warmupSteps: 10 }, s))).toEqual([0, lr / 2, lr, lr]);
  });
  it('linear and cosine decay to 0 at totalSteps; cosine is lr/2 half-way through the decay', () => {
    const o = { lr, warmupSteps: 10, totalSteps: 110 };
    expect(learningRate({ name: 'linear', ...o }, 10)).toBe(lr);
    expect(learningRate({ name: 'linear', ...o }, 60)).toBeCloseTo(lr / 2, 15);
    expect(learningRate({ name: 'linear', ...o }, 110)).toBe(0);
    expect(learningRate({ name: 'cosine', ...o }, 60)).toBeCloseTo(lr / 2, 15);
    expect(learningRate({ name: 'cosine', ...o }, 110)).toBeCloseTo(0, 15);
    expect(learningRate({ name: 'cosine', ...o }, 5)).toBe(lr / 2);
  });
  it('errors name the setting', () => {
    expect(() => learningRate({ name: 'linear', lr }, 0)).toThrow(/needs totalSteps > 0/);
    expect(() => learningRate({ name: 'step' as 'linear', lr, totalSteps: 5 }, 0)).toThrow(/unknown lr schedule 'step'/);
  });
});
