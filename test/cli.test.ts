// `tcd sample` end to end as a user runs it: bin/tcd.mjs (in the GPU bundle .gpu-dist/cli.mjs; or what TCD_CLI names)
// in a child process on a tiny SDXL-shaped folder (scripts/make_tiny_sdxl.ts), prompt → PNG files decoded back with
// pngjs; --help; and the errors a user meets first (missing model part, size not a multiple of 8, bad LoRA, bad flags)
// with their messages and exit codes.
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePng } from '../src/pipeline/png.js';
import { makeTinySdxl } from '../scripts/make_tiny_sdxl.js';

// bin/tcd.mjs runs the TypeScript through tsx; the GPU machine has no node_modules, only the bundles of
// scripts/bundle-gpu.mjs, where this file is .gpu-dist/tests/cli.test.mjs and the bundled CLI sits beside tests/.
const BUNDLED = import.meta.url.includes('/.gpu-dist/tests/');
const BIN = process.env.TCD_CLI ? resolve(process.env.TCD_CLI) : BUNDLED ? fileURLToPath(new URL('../cli.mjs', import.meta.url)) : resolve('bin/tcd.mjs');
const LORA = resolve('test/fixtures/tiny_unet/lora.safetensors');

let dir: string;
let model: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tcd-cli-'));
  model = join(dir, 'model');
  console.log(`  tcd: ${BIN}`);
  await makeTinySdxl(model);
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function tcd(args: string[], timeoutMs = 240_000): Promise<Run> {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`tcd ${args.join(' ')}: no exit after ${timeoutMs} ms\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

describe('tcd CLI', () => {
  it('--help: usage, every flag, an example; no arguments: usage on stderr, exit 2', async () => {
    const top = await tcd(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/usage: tcd <command>/);
    const help = await tcd(['sample', '--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--model', '--lora', '--prompt', '--negative-prompt', '--steps', '--eta, --gamma', '--guidance-scale', '--seed', '--width', '--height', '--batch', '--scheduler', '--out', '--variant fp16', '--dtype <f32|f16|auto>', 'example'])
      expect(help.stdout).toContain(flag);
    const none = await tcd([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/usage: tcd <command>/);
  });

  it('prompt → PNG files: batch of 2 with a LoRA, progress on stderr, timings on stdout, nothing half-written', async () => {
    const out = join(dir, 'out', 'fox.png');
    const r = await tcd(['sample', '--model', model, '--prompt', 'a red fox in the snow', '--width', '64', '--height', '48', '--batch', '2',
      '--seed', '11', '--lora', `${LORA}:0.8`, '--out', out, '--dtype', 'f32']);
    console.log(`  tcd sample: exit ${r.code} in ${r.ms.toFixed(0)} ms\n${r.stdout}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`wrote ${join(dir, 'out', 'fox-0.png')} (64×48, seed 11)`);
    expect(r.stdout).toContain(`wrote ${join(dir, 'out', 'fox-1.png')} (64×48, seed 12)`);
    expect(r.stdout).toMatch(/tcd, 4 steps \[999, 759, 499, 259\], eta 0\.3, guidance 0/);
    for (const stage of ['load', 'text encode', 'step 1 (t=999)', 'step 4 (t=259)', 'decode', 'generate total']) expect(r.stdout).toContain(stage);
    // Not a terminal: one progress line per event.
    for (const line of ['load 2/7 LoRA', 'text encode 1/1', 'denoise 4/4 t=259', 'decode 1/1']) expect(r.stderr).toContain(line);
    expect((await readdir(join(dir, 'out'))).sort()).toEqual(['fox-0.png', 'fox-1.png']);
    const images: Uint8Array[] = [];
    for (const f of ['fox-0.png', 'fox-1.png']) {
      const img = decodePng(await readFile(join(dir, 'out', f)));
      expect([img.width, img.height], f).toEqual([64, 48]);
      const rgb = img.data.filter((_, i) => i % 4 !== 3);
      expect(new Set(rgb).size, `${f}: distinct byte values`).toBeGreaterThan(20);
      images.push(rgb);
    }
    expect(images[0].some((v, i) => v !== images[1][i]), 'two seeds, two images').toBe(true);
  });

  it('--dtype f16: the f16 UNet (f32 text encoders and VAE) draws the f32 image within a few levels', async () => {
    const out = join(dir, 'out16', 'fox.png');
    const r = await tcd(['sample', '--model', model, '--prompt', 'a red fox in the snow', '--width', '64', '--height', '48',
      '--seed', '11', '--lora', `${LORA}:0.8`, '--out', out, '--dtype', 'f16']);
    console.log(`  tcd sample --dtype f16: exit ${r.code} in ${r.ms.toFixed(0)} ms`);
    expect(r.code, r.stderr).toBe(0);
    if (!r.stderr.includes('dtype: f16')) {
      // A device without working f16 says why and runs f32.
      expect(r.stderr).toMatch(/f16 requested but running in f32: /);
      return;
    }
    const rgb = (img: { data: Uint8Array }) => img.data.filter((_, i) => i % 4 !== 3);
    const a = rgb(decodePng(await readFile(out)));
    const b = rgb(decodePng(await readFile(join(dir, 'out', 'fox-0.png')))); // the f32 run above, same seed
    let far = 0;
    let worst = 0;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i] - b[i]);
      worst = Math.max(worst, d);
      if (d > 4) far++;
    }
    console.log(`  f16 vs f32 image: worst ${worst} levels, ${((100 * far) / a.length).toFixed(2)}% of values > 4 levels`);
    expect(new Set(a).size, 'distinct byte values').toBeGreaterThan(20);
    expect(far / a.length, 'share of values more than 4 levels from the f32 image').toBeLessThan(0.02);
  });

  it('errors: missing model part, size not a multiple of 8, bad LoRAs, bad flags — clear messages, non-zero exit', async () => {
    const broken = join(dir, 'broken');
    await cp(model, broken, { recursive: true });
    await rm(join(broken, 'vae'), { recursive: true });
    await rm(join(broken, 'tokenizer_2'), { recursive: true });
    const base = ['sample', '--model', model, '--prompt', 'x', '--width', '64', '--height', '64', '--out', join(dir, 'err.png')];

    const missing = await tcd(['sample', '--model', broken, '--prompt', 'x']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/tcd sample: error: .*broken is not a complete SDXL diffusers folder: missing /);
    for (const part of ['vae/config.json', 'tokenizer_2/vocab.json', 'tokenizer_2/merges.txt', 'vae/ weights']) expect(missing.stderr).toContain(part);

    const size = await tcd([...base, '--width', '100']);
    expect(size.code).toBe(2);
    expect(size.stderr).toContain('--width 100 is not a multiple of 8');

    const noLora = await tcd([...base, '--lora', join(dir, 'missing_lora.safetensors:0.5')]);
    expect(noLora.code).toBe(1);
    expect(noLora.stderr).toContain(`LoRA ${join(dir, 'missing_lora.safetensors')}: no such file`);

    const notLora = join(dir, 'notes.safetensors');
    await writeFile(notLora, 'this is not a safetensors file at all');
    const bad = await tcd([...base, '--lora', notLora]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`tcd sample: error: .*${notLora.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));

    const flag = await tcd([...base, '--stepz', '3']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/Unknown option '--stepz'/);
    const noPrompt = await tcd(['sample', '--model', model]);
    expect(noPrompt.code).toBe(2);
    expect(noPrompt.stderr).toContain('--prompt is required');
    const dtype = await tcd([...base, '--dtype', 'bf16']);
    expect(dtype.code).toBe(2);
    expect(dtype.stderr).toContain("--dtype must be one of f32, f16, auto; got 'bf16'");
    const gamma = await tcd([...base, '--gamma', '1.5']);
    expect(gamma.code).toBe(2);
    expect(gamma.stderr).toContain('--gamma: must be ≤ 1, got 1.5');
    await expect(readdir(dir)).resolves.not.toContain('err.png');
  });
});
