// Command lines of the whole-model benchmarks (bench/sdxl_*.ts) and `npm run bench`: a declarative flag table →
// typed options and the generated "Options:" part of --help, the flags they share, the main() wrapper (usage
// error → message + usage, exit 2; --help → usage, exit 0) and the bench's device (real, or the --dry-run recorder). The `tcd` CLIs parse with node:util (src/cli/args.ts);
// the benches keep their own grammar (`--flag value` only, the next word taken as it is, "needs … >= min" messages),
// so a flag table lives here, with the UsageError of src/cli/args.ts.
import { readFileSync } from 'node:fs';
import { Gpu } from '../runtime/device.js';
import { BENCH_DISABLE_TOGGLES } from '../runtime/host.js';
import { UsageError } from '../src/cli/args.js';
import type { DType } from '../src/dtype.js';
import type { UNetConfigJson } from '../src/unet/config.js';
import sdxlConfig from '../test/fixtures/sdxl_config/unet_config.json' with { type: 'json' };
import { type DryRunHost, dryRunHost } from './dry_run_host.js';

export { UsageError };

/** One flag: its name, how its value reads, the option's value when the flag is not given, and its help. */
export interface Flag<T> {
  name: string;
  /** Placeholder of the value in the help ('<px>'); absent: a switch (no value; parse gets undefined). */
  arg?: string;
  /** Help text; '\n' starts a continuation line (indented under the first). */
  help: string;
  initial: T;
  parse: (value: string | undefined, flag: string) => T;
}

export type FlagTable = Record<string, Flag<unknown>>;
export type OptionsOf<F extends FlagTable> = { [K in keyof F]: F[K] extends Flag<infer T> ? T : never } & { help: boolean };

/** A switch: `value` when given (true, or false for a --no-x flag). */
export function switchFlag(name: string, help: string, value = true): Flag<boolean> {
  return { name, help, initial: !value, parse: () => value };
}

/** An integer >= min; message as the benches always said: "--steps needs an integer >= 1, got x". */
export function intFlag<I extends number | undefined>(name: string, arg: string, min: number, initial: I, help: string): Flag<number | I> {
  return {
    name,
    arg,
    help,
    initial,
    parse: (v, flag) => {
      const n = Number(v);
      if (v === undefined || !Number.isInteger(n) || n < min) throw new UsageError(`${flag} needs an integer >= ${min}, got ${v ?? 'nothing'}`);
      return n;
    },
  };
}

/** A non-empty string; `what` names the value in the error ("--json needs a file"). */
export function stringFlag(name: string, arg: string, help: string, what = 'a value'): Flag<string | undefined> {
  return {
    name,
    arg,
    help,
    initial: undefined,
    parse: (v, flag) => {
      if (!v) throw new UsageError(`${flag} needs ${what}`);
      return v;
    },
  };
}

/** Image edge in pixels: an integer >= 8 and a multiple of 8 (the latent is size/8). */
export function sizeFlag<I extends number | undefined>(initial: I, help: string): Flag<number | I> {
  const int = intFlag('--size', '<px>', 8, initial, help);
  return {
    ...int,
    parse: (v, flag) => {
      const n = int.parse(v, flag) as number;
      if (n % 8) throw new UsageError(`--size must be a multiple of 8 (the VAE factor), got ${n}`);
      return n;
    },
  };
}

/** One storage type, f32 or f16. */
export function dtypeFlag<I extends DType | undefined>(initial: I, help: string): Flag<DType | I> {
  return {
    name: '--dtype',
    arg: '<f32|f16>',
    help,
    initial,
    parse: (v) => {
      if (v !== 'f32' && v !== 'f16') throw new UsageError(`--dtype must be f32 or f16, got ${v ?? 'nothing'}`);
      return v;
    },
  };
}

/** `--mode a,b | all`: a subset of `modes`, in their order whatever the order given. */
export function modeFlag<M extends string>(modes: readonly M[], help: string): Flag<M[]> {
  return {
    name: '--mode',
    arg: '<m>',
    help,
    initial: [...modes],
    parse: (v) => {
      const value = v ?? '';
      const list = value === 'all' ? [...modes] : value.split(',');
      for (const m of list) if (!(modes as readonly string[]).includes(m)) throw new UsageError(`--mode: '${m}' is not one of ${modes.join(', ')}, all`);
      return modes.filter((m) => list.includes(m));
    },
  };
}

const HELP_FLAG: Flag<boolean> = { ...switchFlag('--help', 'this text'), arg: undefined };

/** Parses `--flag value` / `--switch` words against the table (the next word is the value, whatever it is). */
export function parseFlags<F extends FlagTable>(argv: readonly string[], flags: F): OptionsOf<F> {
  const byName = new Map<string, [string, Flag<unknown>]>(Object.entries(flags).map(([k, f]) => [f.name, [k, f]]));
  const o: Record<string, unknown> = Object.fromEntries(Object.entries(flags).map(([k, f]) => [k, f.initial]));
  o.help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      o.help = true;
      continue;
    }
    const entry = byName.get(a);
    if (!entry) throw new UsageError(`unknown option '${a}'`);
    const [key, flag] = entry;
    o[key] = flag.parse(flag.arg === undefined ? undefined : argv[++i], a);
  }
  return o as OptionsOf<F>;
}

/** The "Options:" lines of a usage text: flag and placeholder, then the help in a column (--help last). */
export function flagHelp(flags: FlagTable): string {
  const all = [...Object.values(flags), HELP_FLAG];
  const left = all.map((f) => `  ${f.name}${f.arg ? ` ${f.arg}` : ''}`);
  const col = Math.max(21, ...left.map((s) => s.length + 2));
  return all
    .map((f, i) =>
      f.help
        .split('\n')
        .map((line, j) => (j === 0 ? left[i].padEnd(col) : ' '.repeat(col)) + line)
        .join('\n'),
    )
    .join('\n');
}

/**
 * A bench's entry point: parse(argv) (a UsageError prints "<name>: message" and the usage on stderr, exit 2),
 * --help prints the usage (exit 0), else main(options)'s exit code; an uncaught error prints and exits 1.
 */
export function runMain<O extends { help: boolean }>(name: string, usage: string, parse: (argv: string[]) => O, main: (o: O) => Promise<number>): void {
  const run = async (): Promise<number> => {
    let o: O;
    try {
      o = parse(process.argv.slice(2));
    } catch (e) {
      if (e instanceof UsageError) {
        console.error(`${name}: ${e.message}\n\n${usage}`);
        return 2;
      }
      throw e;
    }
    if (o.help) {
      console.log(usage);
      return 0;
    }
    return main(o);
  };
  run().then(
    (code) => process.exit(code),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}

/**
 * Runs body on the bench's device: with dryRun the recording device with H100 limits (and shader-f16 when f16 is
 * asked for), else the adapter with BENCH_DISABLE_TOGGLES and enableToggles. An error prints "<name>: stack", exit 1;
 * the device is destroyed either way.
 */
export async function withBenchGpu(
  name: string,
  o: { dryRun: boolean; f16: boolean; enableToggles?: string[] },
  body: (gpu: Gpu, dry: DryRunHost | undefined) => Promise<number>,
): Promise<number> {
  const dry = o.dryRun ? dryRunHost(o.f16 ? { features: ['subgroups', 'shader-f16'] } : {}) : undefined;
  const gpu = await Gpu.create(dry ? { host: dry } : { enableToggles: o.enableToggles ?? [], disableToggles: BENCH_DISABLE_TOGGLES });
  try {
    return await body(gpu, dry);
  } catch (e) {
    console.error(`${name}: ${(e as Error).stack ?? e}`);
    return 1;
  } finally {
    await gpu.destroy();
  }
}

// --- the flags of the UNet benches (sdxl_unet, sdxl_distill) --------------------------------------------------------

const SDXL_CONFIG_NAME = 'SDXL base 1.0 (test/fixtures/sdxl_config/unet_config.json)';

/**
 * --config, --size, --mode, --rank, --steps, --warmup, --seed, --json, --unsafe, --no-profile of a bench that
 * builds a UNet from a config with random weights and times `modes`; `run` names one timed unit ('run', 'step').
 */
export function unetBenchFlags<M extends string>(o: { modes: readonly M[]; modesHelp?: string; steps: number; warmup: number; run: string; unsafeToggles: readonly string[]; unsafeHelp?: string }) {
  return {
    config: stringFlag('--config', '<path>', 'UNet config.json (default: SDXL base 1.0, test/fixtures/sdxl_config/unet_config.json)', 'a path'),
    size: sizeFlag(1024, 'image size; the latent is size/8 square (default 1024)'),
    modes: modeFlag(o.modes, o.modesHelp ?? `${o.modes.join(' | ')} | all, or a comma list (default all)`),
    rank: intFlag('--rank', '<r>', 1, 64, 'LoRA rank (default 64)'),
    steps: intFlag('--steps', '<n>', 1, o.steps, `timed ${o.run}s per mode after the warm-up (default ${o.steps})`),
    warmup: intFlag('--warmup', '<n>', 0, o.warmup, `warm-up ${o.run}s per mode (default ${o.warmup})`),
    seed: intFlag('--seed', '<n>', 0, 0, 'weight / input seed (default 0)'),
    json: stringFlag('--json', '<file>', 'also write the results as JSON (atomically)', 'a file'),
    unsafe: switchFlag('--unsafe', `enable Dawn ${o.unsafeToggles.join(', ')}${o.unsafeHelp ?? ''}`),
    profile: switchFlag('--no-profile', 'skip the per-op-type breakdown', false),
  };
}

/** The UNet config of --config (a diffusers config.json), or SDXL base 1.0's, and a name for the report. */
export function unetConfigOf(path: string | undefined): { cfg: UNetConfigJson; name: string } {
  return path ? { cfg: JSON.parse(readFileSync(path, 'utf8')) as UNetConfigJson, name: path } : { cfg: sdxlConfig as UNetConfigJson, name: SDXL_CONFIG_NAME };
}
