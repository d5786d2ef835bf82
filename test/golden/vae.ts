// tiny_vae/: the SDXL VAE (AutoencoderKL) against diffusers: decoder output and every act.decoder.* probe from
// io.safetensors' latents, the encoder's mean / logvar / std and act.encoder.* probes from its image (metric
// max|got − want| / max|want|, tolerance 1e-4); both mid-block attention paths; a decoder-only model. Parts missing from
// io.safetensors are reported as skipped. (Tiling, plans and weight-name handling: test/vae.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../runtime/device.js';
import { Tensor } from '../../src/tensor.js';
import { AutoencoderKL, type TilingOptions } from '../../src/vae/autoencoder_kl.js';
import type { VaeConfigJson } from '../../src/vae/config.js';
import { type GoldenFile, goldenExists, joinPath, openGolden, readJson, relMaxErr } from '../golden_io.js';
import { seeded } from '../helpers.js';
import { type ErrorRow, type GoldenSuite, goldenGpu, reportRows, skipped } from './suite.js';

const NAME = 'tiny_vae';
/** Outputs and activations vs the float32 golden. */
const TOL = 1e-4;

function isVaeFolder(dir: string): boolean {
  if (!goldenExists(dir, 'config.json') || !goldenExists(dir, 'weights.safetensors')) return false;
  return readJson<{ _class_name?: string }>(dir, 'config.json')?._class_name === 'AutoencoderKL';
}

export const vaeSuite: GoldenSuite = {
  name: NAME,
  lookedFor: ['tiny_vae/config.json (AutoencoderKL)', 'tiny_vae/weights.safetensors'],
  present: (root) => isVaeFolder(joinPath(root, NAME)),
  define(root) {
    defineVae(joinPath(root, NAME));
  },
};

function defineVae(dir: string): void {
  let gpu: Gpu;
  let config: VaeConfigJson;
  let weights: GoldenFile;
  let io: GoldenFile | undefined;
  let vae: AutoencoderKL | undefined;

  async function goldenTensor(name: string): Promise<Tensor> {
    return Tensor.fromArray(gpu, await io!.f32(name), io!.shape(name), { label: name });
  }

  async function read(t: Tensor): Promise<Float32Array> {
    const a = await t.toArray();
    t.release();
    return a;
  }

  /** Runs fn with probes on every act.<name> of io.safetensors under `prefixes`; returns the rows (name, error). */
  async function probed(prefixes: string[], fn: (probe: NonNullable<TilingOptions['probe']>) => Promise<void>): Promise<ErrorRow[]> {
    const acts = new Map<string, Tensor>();
    await fn({ wants: (n) => io!.has(`act.${n}`), capture: (n, t) => acts.set(`act.${n}`, t) });
    const wanted = io!.keys().filter((k) => prefixes.some((p) => k.startsWith(`act.${p}`)));
    expect(wanted.filter((k) => !acts.has(k)), 'act.* keys the model never emitted').toEqual([]);
    const rows: ErrorRow[] = [];
    for (const k of wanted) {
      const t = acts.get(k)!;
      expect(t.shape, `${k} shape`).toEqual(io!.shape(k));
      rows.push([k, relMaxErr(await read(t), await io!.read(k))]);
    }
    for (const t of acts.values()) t.release();
    return rows;
  }

  const ready = (what: string, keys: string[]) => {
    if (!io) return skipped(NAME, `${what} (no io.safetensors in ${dir})`), false;
    const absent = keys.filter((k) => !io!.has(k));
    if (absent.length) return skipped(NAME, `${what} (io.safetensors lacks ${absent.join(', ')})`), false;
    return true;
  };

  describe(`${NAME}: AutoencoderKL vs golden`, () => {
    beforeAll(async () => {
      gpu = await goldenGpu();
      config = readJson<VaeConfigJson>(dir, 'config.json')!;
      weights = (await openGolden(dir, 'weights.safetensors'))!;
      io = await openGolden(dir, 'io.safetensors');
      console.log(`[golden ${NAME}] ${dir}`);
      vae = new AutoencoderKL(gpu, config);
      await vae.loadWeights(weights.src);
    });

    afterAll(async () => {
      vae?.dispose();
      for (const f of [weights, io]) await f?.close();
    });

    it('decoder: output and every act.decoder.* / act.post_quant_conv activation', async () => {
      if (!ready('decoder', ['latents', 'decoded'])) return;
      const z = await goldenTensor('latents');
      // Warm up: kernels cache small helper buffers on first use.
      (await vae!.decode(z, { tiling: false })).release();
      const before = gpu.pool.report().currentBytes;
      let out: Float32Array | undefined;
      const rows = await probed(['decoder.', 'post_quant_conv'], async (probe) => {
        out = await read(await vae!.decode(z, { tiling: false, probe }));
      });
      rows.unshift(['decoded', relMaxErr(out!, await io!.read('decoded'))]);
      if (io!.has('decoded_f64')) console.log(`  decoded vs decoded_f64: ${relMaxErr(out!, await io!.read('decoded_f64')).toExponential(2)}`);
      expect(gpu.pool.report().currentBytes, 'pool bytes after decode (everything released)').toBe(before);
      reportRows(NAME, 'decoder output + act.*', rows, TOL);
      z.release();
    });

    it('decodeLatents: (latents · scaling_factor) / scaling_factor → the same image', async () => {
      if (!ready('decodeLatents', ['latents', 'decoded'])) return;
      const z = await goldenTensor('latents');
      const scaled = vae!.scaleLatents(z);
      const sf = vae!.config.scalingFactor;
      const zs = await z.toArray();
      expect(relMaxErr(await scaled.toArray(), Array.from(zs, (v) => Math.fround(v * Math.fround(sf)))), 'scaleLatents = z · scaling_factor').toBe(0);
      const out = await read(await vae!.decodeLatents(scaled, { tiling: false }));
      reportRows(NAME, 'decodeLatents', [['decodeLatents', relMaxErr(out, await io!.read('decoded'))]], TOL);
      for (const t of [z, scaled]) t.release();
    });

    it('mid-block attention: fused (flash) and chunked matmul paths both match', async () => {
      if (!ready('attention paths', ['latents', 'decoded'])) return;
      const z = await goldenTensor('latents');
      const rows: [string, number][] = [];
      const saved = { ...vae!.attention };
      try {
        for (const [impl, chunkBytes] of [['flash', 0], ['matmul', 1 << 28], ['matmul', 1000]] as const) {
          vae!.attention.impl = impl;
          vae!.attention.chunkBytes = chunkBytes || saved.chunkBytes;
          const out = await read(await vae!.decode(z, { tiling: false }));
          rows.push([`decoded (${impl}${impl === 'matmul' ? `, chunks of ${chunkBytes} bytes` : ''})`, relMaxErr(out, await io!.read('decoded'))]);
        }
      } finally {
        Object.assign(vae!.attention, saved);
      }
      reportRows(NAME, 'decoder attention paths', rows, TOL);
      z.release();
    });

    it('encoder: moments, mean, logvar, std and every act.encoder.* / act.quant_conv activation', async () => {
      if (!ready('encoder', ['image', 'enc_mean', 'enc_logvar', 'enc_std'])) return;
      const image = await goldenTensor('image');
      // Warm up: the downsamplers' padded 4×4 kernels are built and cached on first use.
      (await vae!.encode(image, { tiling: false })).dispose();
      const before = gpu.pool.report().currentBytes;
      let dist: Awaited<ReturnType<AutoencoderKL['encode']>> | undefined;
      const rows = await probed(['encoder.', 'quant_conv'], async (probe) => {
        dist = await vae!.encode(image, { tiling: false, probe });
      });
      rows.unshift(
        ['enc_mean', relMaxErr(await dist!.mean.toArray(), await io!.read('enc_mean'))],
        ['enc_logvar', relMaxErr(await dist!.logvar.toArray(), await io!.read('enc_logvar'))],
        ['enc_std', relMaxErr(await dist!.std.toArray(), await io!.read('enc_std'))],
      );
      if (io!.has('enc_mean_f64')) console.log(`  enc_mean vs enc_mean_f64: ${relMaxErr(await dist!.mean.toArray(), await io!.read('enc_mean_f64')).toExponential(2)}`);
      reportRows(NAME, 'encoder moments + act.*', rows, TOL);

      // mode = mean; sample = mean + std·ε with the noise injected.
      const eps = seeded(dist!.mean.size, 7);
      const mean = await dist!.mean.toArray();
      const std = await dist!.std.toArray();
      const z = await read(dist!.sample(eps));
      expect(relMaxErr(z, Array.from(mean, (m, i) => m + std[i] * eps[i])), 'sample = mean + std·ε').toBeLessThan(1e-6);
      expect(await read(dist!.mode())).toEqual(mean);
      dist!.dispose();
      expect(gpu.pool.report().currentBytes, 'pool bytes after encode + dispose').toBe(before);
      image.release();
    });

    it('parts: a decoder-only model loads the full file (encoder keys ignored) and refuses to encode', async () => {
      if (!ready('parts', ['latents', 'decoded'])) return;
      const dec = new AutoencoderKL(gpu, config!, { parts: 'decoder' });
      expect([...dec.parameters.keys()].some((k) => k.startsWith('encoder.') || k.startsWith('quant_conv.'))).toBe(false);
      await dec.loadWeights(weights!.src);
      const z = await goldenTensor('latents');
      reportRows(NAME, 'decoder-only model', [['decoded (decoder-only model)', relMaxErr(await read(await dec.decode(z, { tiling: false })), await io!.read('decoded'))]], TOL);
      await expect(dec.encode(z)).rejects.toThrow(/no encoder/);
      z.release();
      dec.dispose();
    });
  });
}
