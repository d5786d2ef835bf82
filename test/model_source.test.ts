// Model folders as sources (src/io/model_source.ts) — a Node folder, the demo server over fetch (with its listing, with
// HEAD probing, by HTTP Range) and picked browser Files — all give the same checked layout (src/pipeline/model_folder.ts
// checkLayout) and the same weights; a folder missing parts names them all in one error; and a pipeline built from the
// server (TcdSdxlPipeline.fromSources) draws the image fromPretrained draws.
import { readFile, readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../src/io/checkpoint.js';
import { type ModelSource, ModelSourceError, dirSource, fetchSource, fileListSource, openSourceCheckpoint, urlSource } from '../src/io/model_source.js';
import { PipelineLayoutError, checkLayout, readTokenizerFiles } from '../src/pipeline/model_folder.js';
import { TcdSdxlPipeline } from '../src/pipeline/tcd_sdxl_pipeline.js';
import { ClipTokenizer } from '../src/text/clip_tokenizer.js';
import { makeTinySdxl } from '../scripts/make_tiny_sdxl.js';
import { TINY_SDXL_URL, ensureTinySdxl, startServer } from '../web/server.mjs';
import { testGpu } from './helpers.js';

let dir: string;
let server: { url: string; close(): Promise<void> };
let files: string[];

beforeAll(async () => {
  // In-process generation: the bundled GPU-machine run has no tsx to spawn the script with.
  dir = await ensureTinySdxl({ make: makeTinySdxl });
  server = await startServer();
  files = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile() && !e.name.startsWith('.'))
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'));
});

afterAll(async () => {
  await server?.close();
});

/** The files of the folder as a browser's webkitdirectory FileList would name them. */
async function pickedFiles(except: string[] = []): Promise<File[]> {
  const out: File[] = [];
  for (const f of files.filter((p) => !except.includes(p))) {
    const file = new File([await readFile(join(dir, f))], f.split('/').pop()!);
    Object.defineProperty(file, 'webkitRelativePath', { value: `tiny-sdxl/${f}` });
    out.push(file);
  }
  return out;
}

async function sources(): Promise<Record<string, ModelSource>> {
  return {
    dir: dirSource(dir),
    fetchListed: await fetchSource(server.url + TINY_SDXL_URL),
    // A static host without the ?list answer: existence by HEAD requests.
    fetchProbed: await fetchSource(server.url + TINY_SDXL_URL, { fetch: (i, init) => (String(i).endsWith('?list') ? Promise.resolve(new Response('', { status: 404 })) : fetch(i, init)) }),
    picked: fileListSource(await pickedFiles()),
  };
}

describe('model sources', () => {
  it('every source gives the same checked layout, tokenizers and weights', async () => {
    const all = await sources();
    const ref = await checkLayout(all.dir);
    expect(ref.weightFiles).toEqual({
      unet: 'unet/diffusion_pytorch_model.safetensors',
      vae: 'vae/diffusion_pytorch_model.safetensors',
      text_encoder: 'text_encoder/model.safetensors',
      text_encoder_2: 'text_encoder_2/model.safetensors',
    });
    const onDisk = await openCheckpoint(dir, { component: 'vae' });
    const want = await onDisk.read('decoder.conv_in.weight');
    await onDisk.close();
    const tokRef = new ClipTokenizer(await readTokenizerFiles(all.dir, 'tokenizer_2')).encode('a red fox');
    for (const [name, src] of Object.entries(all)) {
      const layout = await checkLayout(src);
      expect(layout, name).toEqual(ref);
      expect(new ClipTokenizer(await readTokenizerFiles(src, 'tokenizer_2')).encode('a red fox'), name).toEqual(tokRef);
      const ckpt = await openSourceCheckpoint(src, 'vae', { component: 'vae' });
      expect(ckpt.names.length, name).toBe(onDisk.names.length);
      const got = await ckpt.read('decoder.conv_in.weight');
      await ckpt.close();
      expect(got.length, name).toBeGreaterThan(0);
      expect(got, name).toEqual(want);
    }
  });

  it('a folder missing parts names every one, whatever the source', async () => {
    const gone = ['vae/config.json', 'tokenizer_2/merges.txt', 'text_encoder/model.safetensors'];
    const kept = files.filter((f) => !gone.includes(f));
    const broken: Record<string, ModelSource> = {
      fetch: await fetchSource(server.url + TINY_SDXL_URL, { files: kept }),
      picked: fileListSource(await pickedFiles(gone)),
    };
    for (const [name, src] of Object.entries(broken)) {
      const err = await checkLayout(src).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(PipelineLayoutError);
      const msg = (err as Error).message;
      expect(msg, name).toMatch(/is not a complete SDXL diffusers folder: missing /);
      for (const part of ['vae/config.json', 'tokenizer_2/merges.txt', 'text_encoder/ weights']) expect(msg, name).toContain(part);
    }
    // fp16 asked for, none there: the variant's file names are in the message.
    await expect(checkLayout(dirSource(dir), { variant: 'fp16' })).rejects.toThrow(/unet\/ weights \(diffusion_pytorch_model\.fp16\.safetensors/);
  });

  it('picked files: the model folder is found below the picked one; loose files and bad paths are refused', async () => {
    const nested = (await pickedFiles()).map((f) => {
      const g = new File([f], f.name);
      Object.defineProperty(g, 'webkitRelativePath', { value: `models/${f.webkitRelativePath}` });
      return g;
    });
    const src = fileListSource(nested);
    expect(src.name).toBe('models/tiny-sdxl');
    expect(await src.exists('unet/config.json')).toBe(true);
    const loose = files.map((f) => new File(['{}'], f.split('/').pop()!));
    expect(() => fileListSource(loose)).toThrow(/files came without their folders: pick the model folder itself/);
    await expect(src.exists('../secret')).rejects.toThrow(ModelSourceError);
    await expect(src.readText('unet/nothing.json')).rejects.toThrow(/models\/tiny-sdxl\/unet\/nothing\.json: not among the picked files/);
  });

  it('urlSource reads by HTTP Range above wholeBelow, whole below it; same bytes either way', async () => {
    const rel = 'unet/diffusion_pytorch_model.safetensors';
    const bytes = new Uint8Array(await readFile(join(dir, rel)));
    let requests: string[] = [];
    const spy: typeof fetch = (input, init) => {
      requests.push(`${init?.method ?? 'GET'}${new Headers(init?.headers).get('range') ? ' range' : ''}`);
      return fetch(input, init);
    };
    const url = `${server.url}${TINY_SDXL_URL}${rel}`;
    const ranged = await urlSource(url, { wholeBelow: 0, fetch: spy });
    expect(ranged.size).toBe(bytes.length);
    for (const [off, len] of [[0, 8], [1000, 4096], [bytes.length - 3, 3]]) expect(await ranged.read(off, len)).toEqual(bytes.subarray(off, off + len));
    expect(requests).toEqual(['HEAD', 'GET range', 'GET range', 'GET range']);
    await expect(ranged.read(bytes.length - 2, 3)).rejects.toThrow(/outside the file/);
    requests = [];
    const whole = await urlSource(url, { fetch: spy });
    expect(await whole.read(1000, 4096)).toEqual(bytes.subarray(1000, 5096));
    expect(await whole.read(5, 7)).toEqual(bytes.subarray(5, 12));
    expect(requests).toEqual(['HEAD', 'GET']);
    await expect(urlSource(`${server.url}${TINY_SDXL_URL}unet/none.bin`)).rejects.toThrow(/none\.bin: HTTP 404/);
  });
});

describe('TcdSdxlPipeline.fromSources', () => {
  it('the tiny folder over HTTP gives fromPretrained\'s image, byte for byte (same device)', async () => {
    const gpu = await testGpu();
    const opts = { prompt: 'a red fox', width: 32, height: 32, steps: 1, seed: 2 };
    const stages: string[] = [];
    let a, b;
    try {
      const viaHttp = await TcdSdxlPipeline.fromSources(gpu, await fetchSource(server.url + TINY_SDXL_URL), { onProgress: (e) => stages.push(`${e.stage} ${e.detail ?? ''}`) });
      a = (await viaHttp.generate(opts)).images[0];
      viaHttp.dispose();
      const onDisk = await TcdSdxlPipeline.fromPretrained(gpu, dir);
      b = (await onDisk.generate(opts)).images[0];
      onDisk.dispose();
    } finally {
      await gpu.destroy();
    }
    expect(stages.slice(0, 6)).toEqual(['load tokenizers', 'load text_encoder', 'load text_encoder_2', 'load unet', 'load vae', 'load ready']);
    expect(new Set(a.data).size).toBeGreaterThan(16);
    expect(a.data).toEqual(b.data);
  });
});
