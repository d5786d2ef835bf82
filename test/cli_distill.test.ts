// `tcd precompute` and `tcd distill` through the CLI entry (main(), in process, output captured): --help, usage
// errors (exit 2) and missing folders (exit 1) with their messages, a precomputed cache of generated captioned images,
// a 2-update distillation from it with per-update progress lines, checkpoints, --max-checkpoints, the JSONL log and
// the final LoRA, then --resume latest continuing to a higher --max-steps; and a run killed (SIGKILL, in a child
// process) after its first checkpoint, resumed, ends with the same LoRA file as the run that never stopped.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, main } from '../src/cli/main.js';
import { encodePng } from '../src/pipeline/png.js';
import { makeTinySdxl } from '../scripts/make_tiny_sdxl.js';
import { seeded } from './helpers.js';

// As test/cli.test.ts: the TypeScript CLI through tsx, or the bundled one on the GPU machine (.gpu-dist/cli.mjs).
const BUNDLED = import.meta.url.includes('/.gpu-dist/tests/');
const CLI_ARGS = BUNDLED ? [fileURLToPath(new URL('../cli.mjs', import.meta.url))] : ['--import', 'tsx', resolve('src/cli/main.ts')];

let dir: string;
let model: string;
let data: string;

function capture(): CliIo & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const stream = (add: (s: string) => void) => ({ isTTY: false, write: (s: string) => (add(s), true) }) as unknown as NodeJS.WriteStream;
  return { stdout: stream((s) => (out += s)), stderr: stream((s) => (err += s)), out: () => out, err: () => err };
}

async function tcd(...argv: string[]) {
  const io = capture();
  const code = await main(argv, io);
  return { code, stdout: io.out(), stderr: io.err() };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tcd-cli-distill-'));
  model = join(dir, 'model');
  await makeTinySdxl(model);
  data = join(dir, 'images');
  await mkdir(data);
  for (let i = 0; i < 3; i++) {
    const px = seeded(40 * 32 * 3, 70 + i, 0, 255);
    await writeFile(join(data, `p${i}.png`), encodePng({ data: Uint8Array.from(px, Math.round), width: 40, height: 32, channels: 3 }));
    await writeFile(join(data, `p${i}.txt`), `picture number ${i}`);
  }
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('tcd distill / tcd precompute', () => {
  it('--help lists the flags; bad usage exits 2 naming the problem', async () => {
    const h = await tcd('distill', '--help');
    expect(h.code).toBe(0);
    for (const flag of ['--model', '--data', '--cache', '--max-steps', '--rank', '--w-min', '--loss', '--lr-scheduler', '--grad-accum', '--resume', '--max-checkpoints', '--ema-decay', '--sample-every', '--dtype'])
      expect(h.stdout, flag).toContain(flag);
    expect((await tcd('precompute', '--help')).stdout).toContain('--copies');
    expect((await tcd('--help')).stdout).toContain('distill');
    const cases: [string[], RegExp][] = [
      [['distill', '--model', model, '--output', 'o', '--max-steps', '1'], /give --data .* or --cache/],
      [['distill', '--model', model, '--data', data, '--output', 'o'], /--max-steps is required/],
      [['distill', '--model', model, '--data', data, '--output', 'o', '--max-steps', '1', '--resolution', '30'], /not a multiple of 8/],
      [['distill', '--model', model, '--data', data, '--output', 'o', '--max-steps', '1', '--loss', 'l1'], /--loss: expected l2 or huber/],
      [['distill', '--model', model, '--data', data, '--output', 'o', '--max-steps', '1', '--w-min', '9', '--w-max', '3'], /--w-min 9 is above --w-max 3/],
      [['distill', '--model', model, '--cache', 'c', '--data', data, '--output', 'o', '--max-steps', '1'], /exclude each other/],
      [['distill', '--model', model, '--data', data, '--output', 'o', '--max-steps', '1', '--dtype', 'f8'], /--dtype must be one of f32, f16, auto; got 'f8'/],
      [['distill', '--bogus'], /bogus/],
    ];
    for (const [argv, msg] of cases) {
      const r = await tcd(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    const missing = await tcd('distill', '--model', join(dir, 'nope'), '--data', data, '--output', join(dir, 'o'), '--max-steps', '1');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope: no such file or folder/);
    // An output below a regular file: refused before the GPU opens (no 'device:' line), naming the folder.
    await writeFile(join(dir, 'plain-file'), 'x');
    const unwritable = await tcd('distill', '--model', model, '--data', data, '--output', join(dir, 'plain-file', 'run'), '--max-steps', '1');
    expect(unwritable.code).toBe(1);
    expect(unwritable.stderr).toContain(`--output ${join(dir, 'plain-file', 'run')} is not writable: expected a folder this run can create files in, got ENOTDIR`);
    expect(unwritable.stderr).not.toMatch(/device:/);
  });

  it('precompute a cache, distill 2 updates from it, then resume to 3', async () => {
    const cache = join(dir, 'cache');
    const p = await tcd('precompute', '--model', model, '--data', data, '--out', cache, '--resolution', '32', '--random-flip', '--seed', '4');
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/wrote 3 examples/);
    const out = join(dir, 'run');
    const common = ['--model', model, '--cache', cache, '--output', out, '--rank', '4', '--batch-size', '2', '--lr', '1e-3', '--checkpoint-every', '1', '--max-checkpoints', '1', '--no-gradient-checkpointing'];
    const t0 = performance.now();
    const r = await tcd('distill', ...common, '--max-steps', '2', '--resume', 'latest');
    console.log(`  2 updates via the CLI: ${(performance.now() - t0).toFixed(0)} ms\n${r.stderr}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/no checkpoint in .* yet: starting from update 0/);
    expect(r.stderr).toMatch(/distill 1\/2 loss \S+ lr 1\.00e-3/);
    expect(r.stderr).toMatch(/distill 2\/2 loss/);
    expect(r.stdout).toMatch(/pytorch_lora_weights\.safetensors after 2 updates/);
    expect((await readdir(out)).filter((f) => f.startsWith('checkpoint-'))).toEqual(['checkpoint-2']);
    const resumed = await tcd('distill', ...common, '--max-steps', '3', '--resume', 'latest');
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resumed at update 2 \(4 samples seen\)/);
    expect(resumed.stdout).toMatch(/after 3 updates \(1 in this run\)/);
    const log = (await readFile(join(out, 'train_log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number; gpuBytes: number });
    expect(log.map((l) => l.step)).toEqual([1, 2, 3]);
    expect(log.every((l) => Number.isFinite(l.loss) && l.gpuBytes > 0)).toBe(true);
    expect((await readdir(out)).filter((f) => f.startsWith('checkpoint-'))).toEqual(['checkpoint-3']);

    // --dtype f16: the UNet loads in f16 and the backward is loss-scaled (a device without shader-f16 runs f32 and
    // says so).
    const half = join(dir, 'run-f16');
    const h = await tcd('distill', ...common.map((a) => (a === out ? half : a)), '--max-steps', '1', '--dtype', 'f16');
    expect(h.code, h.stderr).toBe(0);
    console.log(`  --dtype f16: ${h.stderr.split('\n').filter((l) => /dtype|distill 1/.test(l)).join(' | ')}`);
    if (/f16 requested but running in f32/.test(h.stderr)) return;
    expect(h.stderr).toMatch(/UNet dtype: f16 \(LoRA, gradients and AdamW in f32; loss scale 65536\)/);
    expect(h.stderr).toMatch(/distill 1\/1 loss \S+ lr \S+ \|g\| \S+ scale 65536 /);
    const state = JSON.parse(await readFile(join(half, 'checkpoint-1', 'training_state.json'), 'utf8')) as { dtype: string; lossScaler: { scale: number } };
    expect([state.dtype, state.lossScaler.scale]).toEqual(['f16', 65536]);
  });

  it('a run killed after its first checkpoint and resumed ends with the LoRA of the run that never stopped', async () => {
    // Same cache and settings as the previous test's run (3 updates in all): its final LoRA is the reference.
    const cache = join(dir, 'cache');
    const out = join(dir, 'killed');
    const common = ['--model', model, '--cache', cache, '--output', out, '--rank', '4', '--batch-size', '2', '--lr', '1e-3', '--checkpoint-every', '1', '--no-gradient-checkpointing'];
    const child = spawn(process.execPath, [...CLI_ARGS, 'distill', ...common, '--max-steps', '3'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const exited = new Promise<NodeJS.Signals | number | null>((done) => child.on('close', (code, signal) => done(signal ?? code)));
    await new Promise<void>((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`no checkpoint after 240 s:\n${stderr}`)), 240_000);
      child.stderr.on('data', (d) => {
        stderr += d;
        if (/checkpoint \S*checkpoint-1\n/.test(stderr)) {
          clearTimeout(timer);
          child.kill('SIGKILL');
          done();
        }
      });
      child.on('close', () => fail(new Error(`exited before its first checkpoint:\n${stderr}`)));
    });
    expect(await exited).toBe('SIGKILL');
    const kept = (await readdir(out)).filter((f) => f.startsWith('checkpoint-'));
    console.log(`  killed after: ${kept.join(', ')}`);
    expect(kept).toContain('checkpoint-1');
    expect(kept.every((f) => /^checkpoint-\d+(\.tmp-\d+)?$/.test(f))).toBe(true);
    const r = await tcd('distill', ...common, '--max-steps', '3', '--resume', 'latest');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/resumed at update [12] /);
    const want = await readFile(join(dir, 'run', 'pytorch_lora_weights.safetensors'));
    const got = await readFile(join(out, 'pytorch_lora_weights.safetensors'));
    expect(Buffer.compare(got, want), 'LoRA of the killed + resumed run vs the uninterrupted one').toBe(0);
  });
});
