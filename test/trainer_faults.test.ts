// TcdDistiller under faults (issue 12): an unwritable output folder (a path below a file; a folder refusing writes,
// EACCES injected) and a missing caption fail before any model loads or update runs, naming the path; a truncated and a corrupt image found mid-run stop the run with an error
// naming the file, the update and the last checkpoint, which stays byte-identical; a full disk (ENOSPC injected into
// the checkpoint writer) while a checkpoint is written names the file and its size, leaves no temporary folder,
// leaves the previous checkpoint byte-identical, and a resume continues from that checkpoint.
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { encodePng } from '../src/pipeline/png.js';
import { checkpointIo, listCheckpoints } from '../src/trainer/checkpoint.js';
import { type DistillModels, type TcdDistillerOptions, TcdDistiller, loadDistillModels } from '../src/trainer/distiller.js';
import { makeTinySdxl } from '../scripts/make_tiny_sdxl.js';
import { seeded, testGpu } from './helpers.js';

let gpu: Gpu;
let dir: string;
let model: string;
let models: DistillModels;

beforeAll(async () => {
  gpu = await testGpu();
  dir = await mkdtemp(join(tmpdir(), 'tcd-faults-'));
  model = join(dir, 'model');
  await makeTinySdxl(model);
  models = await loadDistillModels(gpu, model, { vae: 'encoder' });
});

afterAll(async () => {
  models?.dispose();
  await gpu?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function imageFolder(name: string, n: number): Promise<string> {
  const data = join(dir, name);
  await mkdir(data);
  for (let i = 0; i < n; i++) {
    const px = seeded(40 * 32 * 3, 90 + i, 0, 255);
    await writeFile(join(data, `img${i}.png`), encodePng({ data: Uint8Array.from(px, Math.round), width: 40, height: 32, channels: 3 }));
    await writeFile(join(data, `img${i}.txt`), `picture ${i}`);
  }
  return data;
}

const opts = (data: string, output: string, extra: Partial<TcdDistillerOptions> = {}): TcdDistillerOptions => ({
  model,
  data,
  output,
  maxSteps: 4,
  resolution: 32,
  rank: 4,
  batchSize: 1,
  lr: 1e-3,
  seed: 3,
  checkpointEvery: 1,
  gradientCheckpointing: false,
  ...extra,
});

/** Every file of every checkpoint folder: name → bytes. */
async function snapshot(output: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const c of await listCheckpoints(output)) for (const f of await readdir(c.path)) out.set(join(c.path, f), await readFile(join(c.path, f)));
  return out;
}

function expectIntact(before: Map<string, Buffer>, after: Map<string, Buffer>) {
  expect(before.size).toBeGreaterThan(0);
  for (const [f, bytes] of before) {
    expect(after.has(f), `${f} still there`).toBe(true);
    expect(Buffer.compare(after.get(f)!, bytes), `${f} byte-identical`).toBe(0);
  }
}

describe('TcdDistiller faults', () => {
  it('an unwritable output folder and a missing caption fail before models load, naming the path', async () => {
    const data = await imageFolder('ok', 2);
    const file = join(dir, 'a-file');
    await writeFile(file, 'not a folder');
    // No models given and a model folder that does not exist: the output check must come first.
    for (const output of [file, join(file, 'run')])
      await expect(TcdDistiller.create(gpu, opts(data, output, { model: join(dir, 'no-model') }))).rejects.toThrow(
        new RegExp(`output folder ${output.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is not writable: expected a folder this run can create files in, got (EEXIST|ENOTDIR)`),
      );
    await rm(join(data, 'img1.txt'));
    await expect(TcdDistiller.create(gpu, opts(data, join(dir, 'nocap')), models)).rejects.toThrow(/img1\.txt/);
  });

  it('a truncated, then a corrupt image met mid-run: error naming the file; earlier checkpoints byte-identical', async () => {
    const data = await imageFolder('mid', 2);
    const out = join(dir, 'mid-run');
    const a = await TcdDistiller.create(gpu, opts(data, out), models);
    await a.train({ stopAfter: 2 });
    a.dispose();
    const before = await snapshot(out);
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([1, 2]);
    // With seed 3, epoch 1 draws img0 first: update 3 meets it.
    const good = await readFile(join(data, 'img0.png'));
    const cases: [string, Uint8Array, RegExp][] = [
      ['truncated', good.subarray(0, Math.floor(good.length / 2)), /img0\.png: corrupt or unsupported PNG \(.*\): expected a complete PNG file, got \d+ bytes that do not decode/],
      ['corrupt', Uint8Array.from(seeded(300, 5, 0, 255), Math.round), /img0\.png: not a PNG or JPEG file \(first bytes [0-9a-f ]+; expected 89 50 4e 47/],
    ];
    for (const [what, bytes, message] of cases) {
      await writeFile(join(data, 'img0.png'), bytes);
      const d = await TcdDistiller.create(gpu, opts(data, out, { resume: join(out, 'checkpoint-2') }), models);
      const err = await d.train().then(
        () => undefined,
        (e: Error) => e,
      );
      d.dispose();
      console.log(`  ${what}: ${err?.message.replace(dir, '<tmp>').replace(/\n/g, ' | ')}`);
      expect(err?.message, what).toMatch(message);
      expect(err?.message).toMatch(/^update 3, dataset item 0: /);
      expect(err?.message).toMatch(/the last checkpoint \S+checkpoint-2 \(update 2\) is intact/);
      expectIntact(before, await snapshot(out));
    }
  });

  it('a full disk while writing a checkpoint: error names the file; no temporary folder; the previous checkpoint intact; resume continues', async () => {
    const data = await imageFolder('disk', 2);
    const out = join(dir, 'full-disk');
    const a = await TcdDistiller.create(gpu, opts(data, out, { maxSteps: 2 }), models);
    await a.train({ stopAfter: 1 });
    a.dispose();
    const before = await snapshot(out);
    const real = checkpointIo.writeFile;
    let attempted = '';
    checkpointIo.writeFile = async (path, bytes) => {
      if (path.endsWith('optimizer.safetensors')) {
        attempted = path;
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      }
      return real(path, bytes);
    };
    let err: Error | undefined;
    try {
      const b = await TcdDistiller.create(gpu, opts(data, out, { maxSteps: 2, resume: out }), models);
      err = await b.train().then(
        () => undefined,
        (e: Error) => e,
      );
      b.dispose();
    } finally {
      checkpointIo.writeFile = real;
    }
    console.log(`  ${err?.message.replaceAll(dir, '<tmp>')}`);
    expect(attempted).toMatch(/checkpoint-2\.tmp-\d+\/optimizer\.safetensors$/);
    expect(err?.message).toContain(`writing ${attempted} (`);
    expect(err?.message).toMatch(/\(\d+ bytes\) failed: ENOSPC: no space left on device/);
    expect((await readdir(out)).filter((f) => f.startsWith('checkpoint-')), 'no temporary folder left behind').toEqual(['checkpoint-1']);
    expectIntact(before, await snapshot(out));
    // The same folder turned read-only (EACCES injected: this suite may run as root, where chmod does not bite):
    // refused before any update, naming the folder; its checkpoint untouched.
    checkpointIo.writeFile = async (path) => {
      throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES' });
    };
    try {
      await expect(TcdDistiller.create(gpu, opts(data, out, { maxSteps: 2, resume: out }), models)).rejects.toThrow(
        `output folder ${out} is not writable: expected a folder this run can create files in, got EACCES`,
      );
    } finally {
      checkpointIo.writeFile = real;
    }
    expectIntact(before, await snapshot(out));
    const c = await TcdDistiller.create(gpu, opts(data, out, { maxSteps: 2, resume: out }), models);
    expect(c.step, 'resumed from the previous checkpoint').toBe(1);
    const res = await c.train();
    c.dispose();
    expect(res.steps).toBe(1);
    expect((await listCheckpoints(out)).map((x) => x.step)).toEqual([1, 2]);
  });
});
