// diffusers' timestep_spacing for the teacher schedulers (DDIM, Euler): which of the T training timesteps n sampling
// steps visit, from the noisiest down.
import { SchedulerError } from './errors.js';
import { npLinspace, roundHalfEven } from './numeric.js';

export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';

/**
 * 'leading' (SDXL, with stepsOffset 1): arange(n)·(T // n) reversed, + offset → 4 steps: [751, 501, 251, 1].
 * 'trailing': round(arange(T, 0, −T/n)) − 1. 'linspace': linspace(0, T − 1, n) reversed (integer: rounded).
 */
export function spacedTimesteps(
  name: string,
  spacing: TimestepSpacing,
  T: number,
  n: number,
  stepsOffset: number,
  integer: boolean,
): number[] {
  switch (spacing) {
    case 'leading': {
      const ratio = Math.floor(T / n);
      return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + stepsOffset);
    }
    case 'trailing': {
      const ratio = T / n;
      const count = Math.ceil(T / ratio);
      return Array.from({ length: count }, (_, i) => roundHalfEven(T - i * ratio) - 1);
    }
    case 'linspace': {
      const lin = Array.from(npLinspace(0, T - 1, n)).reverse();
      return integer ? lin.map(roundHalfEven) : lin.map(Math.fround);
    }
    default:
      throw new SchedulerError(`${name}: unknown timestepSpacing '${spacing as string}'; expected 'leading', 'trailing' or 'linspace'`);
  }
}
