// `npm run bench`: times every case of the bench files listed in bench/all.ts (warm-up, median of N runs, GPU
// timestamp queries), adds host-overhead rows (benchmark.js) and, with --peers, TF.js / gpu.js on the matmul shapes.
// Prints the adapter and a table; --json writes the same rows with the adapter summary and the date.
// Bundle-able by esbuild (scripts/bundle-gpu.mjs → .gpu-dist/bench.mjs): the cases come from a static import list,
// the peers from dynamic imports of packages kept external (a bundle without them says the peers are unavailable).
// bench/bundle_peers.mjs → .gpu-dist/bench-peers.mjs bundles TF.js and gpu.js in, for the GPU machine.
// gpu.js's WebGL mode needs headless-gl (npm `gl`, optional native build: libxi-dev + libxext-dev + pkg-config, then a
// display: `xvfb-run -a npm run bench -- --peers`); without it gpu.js runs in its cpu mode, and the row says so.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Gpu } from '../runtime/device.js';
import { BENCH_DISABLE_TOGGLES, NVIDIA_F16_TOGGLES } from '../runtime/host.js';
import { SUITES, type BenchSuite } from './all.js';
import type { BenchCase } from './case.js';
import { HOST_CASES, hostOverheadRow } from './host_overhead.js';
import { measure, median } from './measure.js';
import { UsageError, runMain } from './options.js';
import { setBenchDType } from './inputs.js';
import type { DType } from '../src/dtype.js';
import { writeFileAtomic } from '../src/io/safetensors.js';
import { PEERS, type PeerName, peerShapes, runPeers, shutdownPeers } from './peers/index.js';
import { type Report, type Row, formatPeerComparison, formatTable, ratioOf, throughputOf, toJson } from './report.js';

const UNSAFE_TOGGLES = ['disable_robustness', 'skip_validation'];

const USAGE = `Usage: npm run bench -- [options]

Times the kernels of every bench/*.bench.ts listed in bench/all.ts on the default WebGPU adapter
(Dawn toggles always disabled: ${BENCH_DISABLE_TOGGLES.join(', ')}).

Options:
  --quick            only the cases marked quick, fewer runs (the whole set runs in < 1 minute on lavapipe)
  --filter <regex>   only kernels matching <regex> (tested on "kernel" and "kernel shape", case-insensitive)
  --json [file]      write the JSON report to <file>; without a file, print it on stdout (the table goes to stderr)
  --peers[=list]     also run the peers on the matmul shapes: tfjs (TF.js WebGPU backend on the same adapter) and
                     gpujs (gpu.js: headless-gl, else cpu; and its webgpu mode). Default list: ${PEERS.join(',')}
  --unsafe           also enable ${UNSAFE_TOGGLES.join(', ')} (faster, no bounds checks)
  --nvidia-f16       also enable ${NVIDIA_F16_TOGGLES.join(', ')} ('shader-f16' on NVIDIA Vulkan)
  --dtype <f32|f16>  element type of the inputs (default f32). f16: the cases of kernels with f16 variants (matmul,
                     LoRA matmul, conv2d, attention, norms, elementwise, softmax, GEGLU, resample) on f16 tensors,
                     and the subgroup-matrix GEMM where the device offers it; GB/s counts 2 bytes per element (math
                     and statistics stay f32 inside the kernels). Needs 'shader-f16' (NVIDIA: --nvidia-f16)
  --runs <n>         timed runs per case (default 20, --quick 5); the median is reported
  --warmup <n>       warm-up runs per case (default 5, --quick 3; at least 1)
  --budget <s>       seconds one case's (or peer shape's) timed runs may take before N is cut or the peer
                     shape is skipped (default 30, --quick 5)
  --wall             time with the wall clock around gpu.sync() even where timestamps are offered
  --no-host          skip the host-overhead rows (benchmark.js)
  --list             list the selected cases and exit
  --help             this text

Timing: GPU timestamp queries per dispatch, summed per run ('gpu-timestamps'), or the wall clock around
gpu.sync() where the device lacks 'timestamp-query' ('wall'). Ratio = throughput / reference, shown only when
the reference's adapter pattern matches this adapter.
Peers on the GPU machine: node bench/bundle_peers.mjs, then node .gpu-dist/bench-peers.mjs --peers.
Env: TCD_ADAPTER (adapter name substring), TCD_BACKEND (e.g. vulkan), TCD_ENABLE_TOGGLES / TCD_DISABLE_TOGGLES
(comma-separated Dawn toggles added to the above).`;

interface Options {
  quick: boolean;
  filter?: RegExp;
  json?: string | true;
  peers: PeerName[];
  unsafe: boolean;
  nvidiaF16: boolean;
  wall: boolean;
  runs: number;
  warmup: number;
  budgetS: number;
  host: boolean;
  list: boolean;
  dtype: DType;
  help: boolean;
}

function parseArgs(argv: string[]): Options {
  const quick = argv.includes('--quick');
  const o: Options = {
    quick,
    peers: [],
    unsafe: false,
    nvidiaF16: false,
    wall: false,
    runs: quick ? 5 : 20,
    warmup: quick ? 3 : 5,
    budgetS: quick ? 5 : 30,
    host: true,
    list: false,
    dtype: 'f32',
    help: false,
  };
  const value = (i: number, name: string): string => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new UsageError(`${name} needs a value`);
    return v;
  };
  const count = (v: string, name: string, min: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new UsageError(`${name} must be a number >= ${min}, got '${v}'`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    switch (flag) {
      case '--quick':
        break;
      case '--help':
      case '-h':
        o.help = true;
        break;
      case '--filter': {
        const v = inline ?? value(i++, flag);
        try {
          o.filter = new RegExp(v, 'i');
        } catch (e) {
          throw new UsageError(`--filter: ${(e as Error).message}`);
        }
        break;
      }
      case '--json': {
        const next = argv[i + 1];
        if (inline !== undefined) o.json = inline;
        else if (next !== undefined && !next.startsWith('--')) o.json = argv[++i];
        else o.json = true;
        break;
      }
      case '--peers': {
        const list = inline ? inline.split(',').map((s) => s.trim()) : [...PEERS];
        for (const p of list) if (!(PEERS as readonly string[]).includes(p)) throw new UsageError(`--peers: unknown peer '${p}' (known: ${PEERS.join(', ')})`);
        o.peers = list as PeerName[];
        break;
      }
      case '--unsafe':
        o.unsafe = true;
        break;
      case '--wall':
        o.wall = true;
        break;
      case '--nvidia-f16':
        o.nvidiaF16 = true;
        break;
      case '--runs':
        o.runs = Math.floor(count(inline ?? value(i++, flag), flag, 1));
        break;
      case '--warmup':
        o.warmup = Math.floor(count(inline ?? value(i++, flag), flag, 1));
        break;
      case '--budget':
        o.budgetS = count(inline ?? value(i++, flag), flag, 0.1);
        break;
      case '--dtype': {
        const v = inline ?? value(i++, flag);
        if (v !== 'f32' && v !== 'f16') throw new UsageError(`--dtype must be f32 or f16, got '${v}'`);
        o.dtype = v;
        break;
      }
      case '--no-host':
        o.host = false;
        break;
      case '--list':
        o.list = true;
        break;
      default:
        throw new UsageError(`unknown option '${a}'`);
    }
  }
  if (o.dtype === 'f16' && o.peers.length) throw new UsageError('--peers: the peers run f32 GEMMs only; leave out --dtype f16');
  return o;
}

/** Under tsx (sources beside this file), bench files missing from bench/all.ts are loaded too, with a warning. */
async function unlistedSuites(listed: Set<string>, log: (s: string) => void): Promise<Record<string, BenchSuite>> {
  const out: Record<string, BenchSuite> = {};
  let here: string;
  try {
    here = dirname(fileURLToPath(import.meta.url));
  } catch {
    return out;
  }
  if (!existsSync(join(here, 'case.ts')) || !existsSync(join(here, 'all.ts'))) return out; // bundled
  for (const f of readdirSync(here).sort()) {
    const stem = f.replace(/\.bench\.ts$/, '');
    if (stem === f || listed.has(stem)) continue;
    log(`note: bench/${f} is not listed in bench/all.ts (the GPU-machine bundle will miss it); loading it anyway`);
    try {
      out[stem] = (await import(pathToFileURL(join(here, f)).href)) as BenchSuite;
    } catch (e) {
      log(`warning: bench/${f} failed to load: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return out;
}

function selected(o: Options, kernel: string, shape: string): boolean {
  return !o.filter || o.filter.test(kernel) || o.filter.test(`${kernel} ${shape}`);
}

async function main(o: Options): Promise<number> {
  // With --json on stdout, everything human goes to stderr.
  const say = o.json === true ? (s: string) => console.error(s) : (s: string) => console.log(s);
  const progress = (s: string) => console.error(s);

  const suites: Record<string, BenchSuite> = { ...SUITES, ...(await unlistedSuites(new Set(Object.keys(SUITES)), progress)) };
  const all: BenchCase[] = [];
  for (const [stem, suite] of Object.entries(suites)) {
    if (!Array.isArray(suite.cases)) {
      progress(`warning: bench/${stem}.bench.ts exports no 'cases' array; skipped`);
      continue;
    }
    for (const c of suite.cases) {
      if (!(c.dtypes ?? suite.dtypes ?? ['f32']).includes(o.dtype)) continue;
      // f16 rows: named so, inputs halve the bytes moved; the fp32 references do not apply.
      all.push(o.dtype === 'f32' ? c : { ...c, kernel: `${c.kernel} f16`, bytes: c.bytes === undefined ? undefined : c.bytes / 2, reference: undefined });
    }
  }
  setBenchDType(o.dtype);
  const cases = all.filter((c) => (!o.quick || c.quick) && selected(o, c.kernel, c.shape));
  const hostCases = o.host ? HOST_CASES.filter((c) => (!o.quick || c.quick) && selected(o, c.kernel, c.shape)) : [];
  const peersWanted = o.peers.length > 0 && (!o.filter || o.filter.test('matmul'));
  if (o.peers.length && !peersWanted) progress('note: --filter excludes matmul, so the peers do not run');

  if (o.list) {
    for (const c of cases) say(`${c.kernel}\t${c.shape}${c.quick ? '\t(quick)' : ''}`);
    for (const c of hostCases) say(`${c.kernel}\t${c.shape}\t(host)`);
    return 0;
  }

  const fromEnv = (v: string | undefined) => (v ? v.split(',').filter(Boolean) : []);
  const enableToggles = [...(o.unsafe ? UNSAFE_TOGGLES : []), ...(o.nvidiaF16 ? NVIDIA_F16_TOGGLES : [])];
  const disableToggles = BENCH_DISABLE_TOGGLES;
  // As the Node host adds them (runtime/host_node.ts); listed here so the report names every toggle.
  const allEnabled = [...new Set([...enableToggles, ...fromEnv(process.env.TCD_ENABLE_TOGGLES)])];
  const allDisabled = [...new Set([...disableToggles, ...fromEnv(process.env.TCD_DISABLE_TOGGLES)])];
  const gpu = await Gpu.create({ enableToggles, disableToggles });
  let code = 0;
  try {
    const adapter = gpu.describe();
    say(`adapter: ${adapter}`);
    say(`toggles: enabled [${allEnabled.join(', ')}], disabled [${allDisabled.join(', ')}]`);
    say(
      `timing: ${gpu.hasTimestamps && !o.wall ? 'GPU timestamp queries (one timed pass per dispatch, summed per run)' : `wall clock around gpu.sync() (${o.wall ? '--wall' : "no 'timestamp-query' on this device"})`}; ` +
        `median of ${o.runs} runs after ${o.warmup} warm-up runs and ${o.quick ? 50 : 300} ms of back-to-back runs${o.quick ? ' (quick)' : ''}`,
    );
    const rows: Row[] = [];
    const t0 = performance.now();
    let i = 0;
    if (o.dtype === 'f16' && !gpu.hasF16) {
      progress(`--dtype f16: this device does not offer 'shader-f16'${o.nvidiaF16 ? '' : ' (NVIDIA: --nvidia-f16)'}`);
      return 1;
    }
    for (const c of cases) {
      i++;
      const why = c.unavailable?.(gpu);
      if (why) {
        progress(`[${i}/${cases.length}] ${c.kernel} ${c.shape}: left out (${why})`);
        continue;
      }
      const row = await runCase(gpu, c, o, adapter);
      rows.push(row);
      progress(`[${i}/${cases.length}] ${c.kernel} ${c.shape}: ${row.error ? `FAILED (${row.error})` : `${row.median_ms?.toFixed(4)} ms`}`);
    }
    for (const c of hostCases) {
      const row = await hostOverheadRow(gpu, c, o.quick ? 0.25 : 1);
      rows.push(row);
      progress(`[host] ${c.kernel}: ${row.error ? `FAILED (${row.error})` : `${((row.median_ms ?? 0) * 1000).toFixed(2)} µs/call`}`);
    }
    let unavailable: string[] = [];
    if (peersWanted) {
      const matmuls = all.filter((c) => c.kernel === 'matmul' && selected(o, c.kernel, c.shape));
      const { shapes, from } = peerShapes(matmuls, o.quick);
      say(`peers: ${o.peers.join(', ')} on ${shapes.map((s) => s.label).join(', ')} (${from})`);
      const peerOpts = { warmup: o.quick ? 2 : 3, runs: o.quick ? 5 : Math.max(10, Math.min(o.runs, 20)), budgetS: o.budgetS, log: say };
      const res = await runPeers(gpu, shapes, o.peers, peerOpts);
      rows.push(...res.rows);
      unavailable = res.unavailable;
    }
    const elapsed = (performance.now() - t0) / 1000;
    say('');
    say(formatTable(rows));
    const cmp = formatPeerComparison(rows);
    if (cmp) say(`\n${cmp}`);
    for (const u of unavailable) say(`peer unavailable: ${u}`);
    say(`\n${rows.length} rows in ${elapsed.toFixed(1)} s`);
    if (rows.some((r) => r.error && !r.peer)) code = 1; // peers are optional

    if (o.json) {
      const report: Report = {
        date: new Date().toISOString(),
        adapter,
        summary: gpu.summary(),
        toggles: { enabled: allEnabled, disabled: allDisabled },
        options: { quick: o.quick, filter: o.filter?.source ?? null, runs: o.runs, warmup: o.warmup, budget_s: o.budgetS, peers: o.peers, unsafe: o.unsafe, nvidia_f16: o.nvidiaF16, wall: o.wall },
        rows,
        peers_unavailable: unavailable,
      };
      if (o.json === true) console.log(toJson(report));
      else {
        await writeFileAtomic(o.json, new TextEncoder().encode(toJson(report) + '\n'));
        say(`wrote ${o.json}`);
      }
    }
  } finally {
    shutdownPeers();
    await gpu.destroy();
  }
  return code;
}

async function runCase(gpu: Gpu, c: BenchCase, o: Options, adapter: string): Promise<Row> {
  const base: Row = { kernel: c.kernel, shape: c.shape, median_ms: null, throughput: null, unit: throughputOf(null, c).unit, reference: c.reference, ratio: null, timing: '-' };
  let inst: { run(): void; dispose(): void } | undefined;
  try {
    inst = await c.setup(gpu);
    const m = await measure(gpu, inst.run, { warmup: o.warmup, runs: o.runs, budgetS: o.budgetS, wall: o.wall, warmMs: o.quick ? 50 : 300 });
    const med = median(m.ms);
    const tp = throughputOf(med, c);
    return {
      ...base,
      median_ms: med,
      min_ms: Math.min(...m.ms),
      runs: m.ms.length,
      throughput: tp.value,
      unit: tp.unit,
      ratio: ratioOf(tp.value, c.reference, adapter),
      timing: m.timing,
      wall_ms: m.wallMs,
      dispatches: m.dispatches,
      note: m.note,
    };
  } catch (e) {
    return { ...base, error: (e as Error).message.split('\n')[0] };
  } finally {
    try {
      inst?.dispose();
      await gpu.sync();
    } catch {
      // the error is in the row already
    }
    gpu.pool.trim();
  }
}

runMain('bench', USAGE, parseArgs, main);
