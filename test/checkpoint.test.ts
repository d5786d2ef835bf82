// Weight sources: SGM → diffusers key mapping checked against the real SDXL key lists (every key, every shape),
// diffusers folders (plain, fp16 variant, sharded index), legacy VAE names, OpenCLIP q/k/v split and projection
// transpose, and the errors for bad folders, missing shards and truncated files.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ByteSource } from '../src/io/byte_source.js';
import { bytesSource } from '../src/io/byte_source.js';
import { CheckpointError, moduleShapes, openCheckpoint, openSafetensorsCheckpoint } from '../src/io/checkpoint.js';
import { SafetensorsError, encodeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { diffusersUnetToSgm, sgmUnetToDiffusers, sgmVaeToDiffusers } from '../src/io/sgm_keys.js';
import { seeded } from './helpers.js';

type Shapes = Record<string, number[]>;
const fixture = (name: string): Shapes => JSON.parse(readFileSync(new URL(`./fixtures/sdxl_keys/${name}`, import.meta.url), 'utf8'));
const sgmUnet = fixture('sgm_unet_keys.json');
const diffUnet = fixture('unet_state_dict_shapes.json');
const sgmVae = fixture('sgm_vae_keys.json');
const diffVae = fixture('vae_state_dict_shapes.json');

/**
 * A safetensors source whose data section is virtual: a real header for any shapes (a 10 GB UNet included) and
 * F32 element i of the t-th tensor (file order) reading as t·1000 + (i mod 1000).
 */
function virtualSafetensors(shapes: Shapes, name: string): ByteSource {
  const header: Record<string, unknown> = {};
  const spans: { begin: number; end: number; t: number }[] = [];
  let pos = 0;
  Object.entries(shapes).forEach(([k, shape], t) => {
    const bytes = shape.reduce((p, d) => p * d, 1) * 4;
    header[k] = { dtype: 'F32', shape, data_offsets: [pos, pos + bytes] };
    spans.push({ begin: pos, end: pos + bytes, t });
    pos += bytes;
  });
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20);
  new DataView(head.buffer).setUint32(0, padded, true);
  new DataView(head.buffer).setUint32(4, 0, true);
  head.set(json, 8);
  json = new Uint8Array(0);
  const dataStart = 8 + padded;
  return {
    name,
    size: dataStart + pos,
    async read(offset, length) {
      const out = new Uint8Array(length);
      const v = new DataView(out.buffer);
      for (let i = 0; i < length; i++) {
        const p = offset + i;
        if (p < dataStart) out[i] = head[p];
      }
      // Fill whole f32 elements of the data section that fall inside the request.
      const lo = Math.max(offset, dataStart);
      let s = spans[0];
      for (let p = lo + ((4 - ((lo - dataStart) % 4)) % 4); p + 4 <= offset + length; p += 4) {
        const d = p - dataStart;
        if (!(d >= s.begin && d < s.end)) s = spans.find((x) => d >= x.begin && d < x.end)!;
        v.setFloat32(p - offset, s.t * 1000 + (((d - s.begin) / 4) % 1000), true);
      }
      return out;
    },
    async close() {},
  };
}

describe('SGM → diffusers key rules on the real SDXL key lists', () => {
  it('maps every SGM UNet key to a distinct diffusers key with the same shape (1680/1680), and back', () => {
    const P = 'model.diffusion_model.';
    const s = Object.keys(sgmUnet);
    const d = Object.keys(diffUnet);
    expect(s.length).toBe(1680);
    expect(d.length).toBe(1680);
    const mapped = new Set<string>();
    for (const k of s) {
      expect(k.startsWith(P)).toBe(true);
      const name = sgmUnetToDiffusers(k.slice(P.length));
      expect(name, k).not.toBeNull();
      expect(diffUnet[name!], `${k} → ${name}`).toEqual(sgmUnet[k]);
      mapped.add(name!);
    }
    expect([...mapped].sort()).toEqual([...d].sort());
    const upAttn = (b: number) => d.some((k) => k.startsWith(`up_blocks.${b}.attentions.`));
    for (const k of d) {
      const back = diffusersUnetToSgm(k, upAttn);
      expect(sgmUnet[P + back!], `${k} → ${back}`).toEqual(diffUnet[k]);
      expect(sgmUnetToDiffusers(back!)).toBe(k);
    }
  });

  it('maps every SGM VAE key to a distinct diffusers key (248/248), 1×1-conv attention weights squeezed to Linear', () => {
    const s = Object.keys(sgmVae);
    expect(s.length).toBe(248);
    let squeezed = 0;
    const mapped = new Set<string>();
    for (const k of s) {
      const m = sgmVaeToDiffusers(k.slice('first_stage_model.'.length), 4);
      expect(m, k).not.toBeNull();
      const shape = m!.squeeze ? sgmVae[k].slice(0, 2) : sgmVae[k];
      if (m!.squeeze) squeezed++;
      expect(diffVae[m!.name], `${k} → ${m!.name}`).toEqual(shape);
      mapped.add(m!.name);
    }
    expect([...mapped].sort()).toEqual(Object.keys(diffVae).sort());
    expect(squeezed).toBe(8); // q, k, v, proj_out of the encoder and decoder mid attention
  });

  it('opens a full-size SGM single file (virtual data) as UNet and VAE: exactly the diffusers names and shapes', async () => {
    const file = { ...sgmUnet, ...sgmVae, 'conditioner.embedders.1.model.logit_scale': [] as number[], 'model_ema.decay': [] as number[] };
    const src = virtualSafetensors(file, 'sd_xl_base_1.0.safetensors');
    expect(src.size).toBeGreaterThan(10e9);
    const unet = await openSafetensorsCheckpoint(src, { component: 'unet' });
    expect(unet.format).toBe('sgm');
    expect(unet.names).toEqual(Object.keys(diffUnet).sort());
    for (const [k, shape] of Object.entries(diffUnet)) expect(unet.info(k).shape, k).toEqual(shape);
    expect(unet.ignored.length).toBe(248 + 2);
    // Reads go to the right source tensor: conv_in.bias is SGM tensor #1 (input_blocks.0.0.bias).
    const order = Object.keys(file);
    const t = order.indexOf('model.diffusion_model.input_blocks.0.0.bias');
    expect(Array.from(await unet.read('conv_in.bias'))).toEqual(Array.from({ length: 320 }, (_, i) => t * 1000 + i));
    const upT = order.indexOf('model.diffusion_model.output_blocks.2.2.conv.bias');
    expect((await unet.read('up_blocks.0.upsamplers.0.conv.bias'))[5]).toBe(upT * 1000 + 5);

    const vae = await openSafetensorsCheckpoint(src, { component: 'vae' });
    expect(vae.names).toEqual(Object.keys(diffVae).sort());
    for (const [k, shape] of Object.entries(diffVae)) expect(vae.info(k).shape, k).toEqual(shape);
    const qT = order.indexOf('first_stage_model.decoder.mid.attn_1.q.weight');
    const q = await vae.read('decoder.mid_block.attentions.0.to_q.weight');
    expect(q.length).toBe(512 * 512);
    expect(q[1234]).toBe(qT * 1000 + 234);
    expect(vae.info('decoder.mid_block.attentions.0.to_q.weight').source).toMatch(/squeezed/);
  });

  it('maps the SGM text encoders: CLIP-L by prefix, OpenCLIP with q/k/v rows split and text_projection transposed', async () => {
    const W = 8;
    const P = 6;
    const t: Record<string, TensorToWrite> = {};
    const put = (k: string, shape: number[], seed: number) => (t[k] = { dtype: 'F32', shape, data: seeded(shape.reduce((p, d) => p * d, 1), seed) });
    const oc = 'conditioner.embedders.1.model.';
    let seed = 1;
    put(`${oc}token_embedding.weight`, [10, W], seed++);
    put(`${oc}positional_embedding`, [7, W], seed++);
    put(`${oc}text_projection`, [W, P], seed++);
    put(`${oc}ln_final.weight`, [W], seed++);
    put(`${oc}ln_final.bias`, [W], seed++);
    put(`${oc}logit_scale`, [], seed++);
    for (let l = 0; l < 2; l++) {
      const r = `${oc}transformer.resblocks.${l}.`;
      for (const n of ['ln_1', 'ln_2']) {
        put(`${r}${n}.weight`, [W], seed++);
        put(`${r}${n}.bias`, [W], seed++);
      }
      put(`${r}attn.in_proj_weight`, [3 * W, W], seed++);
      put(`${r}attn.in_proj_bias`, [3 * W], seed++);
      put(`${r}attn.out_proj.weight`, [W, W], seed++);
      put(`${r}attn.out_proj.bias`, [W], seed++);
      put(`${r}mlp.c_fc.weight`, [4 * W, W], seed++);
      put(`${r}mlp.c_fc.bias`, [4 * W], seed++);
      put(`${r}mlp.c_proj.weight`, [W, 4 * W], seed++);
      put(`${r}mlp.c_proj.bias`, [W], seed++);
    }
    put('conditioner.embedders.0.transformer.text_model.final_layer_norm.weight', [W], seed++);
    put('conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight', [W, W], seed++);
    put('model.diffusion_model.input_blocks.0.0.bias', [4], seed++);
    const src = bytesSource(encodeSafetensors(t), 'sgm.safetensors');

    const te2 = await openSafetensorsCheckpoint(src, { component: 'text_encoder_2' });
    const L = 'text_model.encoder.layers.';
    const want = [
      'text_model.embeddings.token_embedding.weight',
      'text_model.embeddings.position_embedding.weight',
      'text_model.final_layer_norm.weight',
      'text_model.final_layer_norm.bias',
      'text_projection.weight',
    ];
    for (let l = 0; l < 2; l++)
      for (const n of ['layer_norm1', 'layer_norm2', 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'mlp.fc1', 'mlp.fc2'])
        want.push(`${L}${l}.${n}.weight`, `${L}${l}.${n}.bias`);
    expect(te2.names).toEqual([...want].sort());
    expect(te2.ignored).toContain(`${oc}logit_scale`);
    const packed = t[`${oc}transformer.resblocks.1.attn.in_proj_weight`].data as Float32Array;
    const parts = ['q', 'k', 'v'];
    for (let i = 0; i < 3; i++) {
      const name = `${L}1.self_attn.${parts[i]}_proj.weight`;
      expect(te2.info(name).shape).toEqual([W, W]);
      expect(Array.from(await te2.read(name))).toEqual(Array.from(packed.subarray(i * W * W, (i + 1) * W * W)));
    }
    const pb = t[`${oc}transformer.resblocks.0.attn.in_proj_bias`].data as Float32Array;
    expect(Array.from(await te2.read(`${L}0.self_attn.v_proj.bias`))).toEqual(Array.from(pb.subarray(2 * W)));
    const proj = t[`${oc}text_projection`].data as Float32Array;
    expect(te2.info('text_projection.weight').shape).toEqual([P, W]);
    const pt = await te2.read('text_projection.weight');
    for (let i = 0; i < W; i++) for (let j = 0; j < P; j++) expect(pt[j * W + i]).toBe(proj[i * P + j]);

    const te1 = await openSafetensorsCheckpoint(src, { component: 'text_encoder' });
    expect(te1.names).toEqual(['text_model.encoder.layers.0.self_attn.q_proj.weight', 'text_model.final_layer_norm.weight']);

    await expect(openSafetensorsCheckpoint(src, { component: 'vae' })).rejects.toThrow(/SGM checkpoint has no vae tensors \(expected keys under 'first_stage_model\.'/);
  });
});

// ------------------------------------------------------------------------------------------------------------
// diffusers folders.

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'ckpt-'));
}

const unetTensors = (): Record<string, TensorToWrite> => ({
  'conv_in.weight': { dtype: 'F32', shape: [4, 2, 3, 3], data: seeded(72, 11) },
  'conv_in.bias': { dtype: 'F32', shape: [4], data: seeded(4, 12) },
  'down_blocks.0.attentions.0.proj_in.weight': { dtype: 'F32', shape: [3, 5], data: seeded(15, 13) },
});

function write(path: string, tensors: Record<string, TensorToWrite>, dtype?: 'F16'): void {
  const t = dtype ? Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, { ...v, dtype }])) : tensors;
  writeFileSync(path, encodeSafetensors(t, { format: 'pt' }));
}

describe('openCheckpoint on diffusers folders', () => {
  it('opens <root>/unet/diffusion_pytorch_model.safetensors from a pipeline folder, tensor by tensor', async () => {
    const root = tmp();
    writeFileSync(join(root, 'model_index.json'), '{}');
    mkdirSync(join(root, 'unet'));
    const t = unetTensors();
    write(join(root, 'unet', 'diffusion_pytorch_model.safetensors'), t);
    write(join(root, 'unet', 'diffusion_pytorch_model.fp16.safetensors'), t, 'F16');
    const ck = await openCheckpoint(root);
    expect(ck.format).toBe('diffusers');
    expect(ck.component).toBe('unet');
    expect(ck.files).toEqual([join(root, 'unet', 'diffusion_pytorch_model.safetensors')]);
    expect(ck.names).toEqual(Object.keys(t).sort());
    expect(ck.info('conv_in.weight')).toMatchObject({ shape: [4, 2, 3, 3], dtype: 'F32' });
    expect(Array.from(await ck.read('conv_in.weight'))).toEqual(Array.from(t['conv_in.weight'].data));
    expect(ck.metadata).toEqual({ format: 'pt' });
    expect(moduleShapes(ck.tensors).get('down_blocks.0.attentions.0.proj_in')).toEqual([3, 5]);
    await expect(ck.read('conv_out.weight')).rejects.toThrow(/no tensor 'conv_out\.weight' \(3 tensors; closest: 'conv_in\.bias'/);
    await ck.close();

    const half = await openCheckpoint(join(root, 'unet'), { variant: 'fp16' });
    expect(half.files[0]).toMatch(/diffusion_pytorch_model\.fp16\.safetensors$/);
    expect(half.info('conv_in.bias').dtype).toBe('F16');
    const got = await half.read('conv_in.bias');
    const want = t['conv_in.bias'].data as Float32Array;
    want.forEach((v, i) => expect(Math.abs(got[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11));
    await half.close();
  });

  it('takes the fp16 variant when it is the only file, and refuses a variant that is absent, listing the folder', async () => {
    const dir = join(tmp(), 'unet');
    mkdirSync(dir);
    write(join(dir, 'diffusion_pytorch_model.fp16.safetensors'), unetTensors(), 'F16');
    writeFileSync(join(dir, 'config.json'), '{}');
    const ck = await openCheckpoint(dir);
    expect(ck.files[0]).toMatch(/\.fp16\.safetensors$/);
    await ck.close();
    await expect(openCheckpoint(dir, { variant: 'default' })).rejects.toThrow(
      /no unet weights in .*unet: looked for diffusion_pytorch_model\.safetensors, diffusion_pytorch_model\.safetensors\.index\.json; found: config\.json, diffusion_pytorch_model\.fp16\.safetensors/,
    );
  });

  it('reads a sharded index (weight_map → shard files)', async () => {
    const dir = join(tmp(), 'unet');
    mkdirSync(dir);
    const t = unetTensors();
    const names = Object.keys(t);
    write(join(dir, 'diffusion_pytorch_model-00001-of-00002.safetensors'), { [names[0]]: t[names[0]] });
    write(join(dir, 'diffusion_pytorch_model-00002-of-00002.safetensors'), { [names[1]]: t[names[1]], [names[2]]: t[names[2]] });
    const index = {
      metadata: { total_size: 364 },
      weight_map: {
        [names[0]]: 'diffusion_pytorch_model-00001-of-00002.safetensors',
        [names[1]]: 'diffusion_pytorch_model-00002-of-00002.safetensors',
        [names[2]]: 'diffusion_pytorch_model-00002-of-00002.safetensors',
      },
    };
    writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify(index));
    const ck = await openCheckpoint(dir);
    expect(ck.format).toBe('diffusers-sharded');
    expect(ck.files.length).toBe(2);
    expect(ck.names).toEqual([...names].sort());
    for (const n of names) expect(Array.from(await ck.read(n))).toEqual(Array.from(t[n].data));
    await ck.close();

    // A weight_map entry that the shard lacks.
    const bad = { weight_map: { ...index.weight_map, 'conv_out.bias': 'diffusion_pytorch_model-00001-of-00002.safetensors' } };
    writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify(bad));
    await expect(openCheckpoint(dir)).rejects.toThrow(/weight_map puts 'conv_out\.bias' in 'diffusion_pytorch_model-00001-of-00002\.safetensors', but that shard has no such tensor/);

    // A shard file that is missing.
    const missing = { weight_map: { ...index.weight_map, 'conv_out.bias': 'diffusion_pytorch_model-00003-of-00003.safetensors' } };
    writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify(missing));
    await expect(openCheckpoint(dir)).rejects.toThrow(/missing shard file 'diffusion_pytorch_model-00003-of-00003\.safetensors' referenced by the index/);

    writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), '{"weight_map": {"a": "../x.safetensors"}}');
    await expect(openCheckpoint(dir)).rejects.toThrow(/is not a shard file name/);
    writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), '{"weight_map": ');
    await expect(openCheckpoint(dir)).rejects.toThrow(/sharded index is not valid JSON/);
    writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), '{"metadata": {}}');
    await expect(openCheckpoint(dir)).rejects.toThrow(/has no "weight_map" object/);
  });

  it('text encoders use model.safetensors; a VAE folder maps legacy query/key/value/proj_attn names', async () => {
    const root = tmp();
    writeFileSync(join(root, 'model_index.json'), '{}');
    mkdirSync(join(root, 'text_encoder_2'));
    write(join(root, 'text_encoder_2', 'model.safetensors'), { 'text_projection.weight': { dtype: 'F32', shape: [2, 2], data: [1, 2, 3, 4] } });
    const te = await openCheckpoint(root, { component: 'text_encoder_2' });
    expect(te.names).toEqual(['text_projection.weight']);
    await te.close();

    mkdirSync(join(root, 'vae'));
    write(join(root, 'vae', 'diffusion_pytorch_model.safetensors'), {
      'decoder.mid_block.attentions.0.query.weight': { dtype: 'F32', shape: [2, 2, 1, 1], data: [1, 2, 3, 4] },
      'decoder.mid_block.attentions.0.proj_attn.bias': { dtype: 'F32', shape: [2], data: [5, 6] },
      'decoder.conv_in.bias': { dtype: 'F32', shape: [2], data: [7, 8] },
    });
    // Opened directly, the folder name says it holds the VAE.
    const vae = await openCheckpoint(join(root, 'vae'));
    expect(vae.component).toBe('vae');
    expect(vae.names).toEqual(['decoder.conv_in.bias', 'decoder.mid_block.attentions.0.to_out.0.bias', 'decoder.mid_block.attentions.0.to_q.weight']);
    expect(vae.info('decoder.mid_block.attentions.0.to_q.weight').shape).toEqual([2, 2]);
    expect(Array.from(await vae.read('decoder.mid_block.attentions.0.to_q.weight'))).toEqual([1, 2, 3, 4]);
    await vae.close();
  });

  it('reports bad folders, missing components, missing paths and truncated files clearly', async () => {
    const root = tmp();
    await expect(openCheckpoint(join(root, 'nope'))).rejects.toThrow(/nope: no such file or folder/);
    mkdirSync(join(root, 'unet'));
    writeFileSync(join(root, 'unet', 'config.json'), '{}');
    writeFileSync(join(root, 'unet', 'diffusion_pytorch_model.bin'), 'x');
    const err = await openCheckpoint(root).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toMatch(/^no unet weights in .* \(unet\/\): looked for diffusion_pytorch_model\.safetensors, .*; found: config\.json, diffusion_pytorch_model\.bin$/);

    writeFileSync(join(root, 'model_index.json'), '{}');
    await expect(openCheckpoint(root, { component: 'vae' })).rejects.toThrow(/pipeline folder has no vae\/ subfolder; found: model_index\.json, unet/);

    const full = encodeSafetensors(unetTensors());
    const cut = join(root, 'unet', 'diffusion_pytorch_model.safetensors');
    writeFileSync(cut, full.subarray(0, full.length - 10));
    const e2 = await openCheckpoint(root).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(SafetensorsError);
    expect((e2 as Error).message).toMatch(/diffusion_pytorch_model\.safetensors: malformed safetensors: .*\(file truncated\?\)/);
  });

  it('opens a single .safetensors file by path: SGM mapped, diffusers naming as is', async () => {
    const dir = tmp();
    const p = join(dir, 'sd_xl_tiny.safetensors');
    write(p, {
      'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight': { dtype: 'F32', shape: [2, 2], data: [1, 2, 3, 4] },
      'model.diffusion_model.output_blocks.5.2.conv.bias': { dtype: 'F32', shape: [1], data: [9] },
      'first_stage_model.decoder.up.0.block.1.nin_shortcut.bias': { dtype: 'F32', shape: [1], data: [3] },
      'first_stage_model.decoder.up.3.upsample.conv.bias': { dtype: 'F32', shape: [1], data: [4] },
    });
    const ck = await openCheckpoint(p);
    expect(ck.format).toBe('sgm');
    expect(ck.names).toEqual(['down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight', 'up_blocks.1.upsamplers.0.conv.bias']);
    await ck.close();
    const vae = await openCheckpoint(p, { component: 'vae' });
    expect(vae.names).toEqual(['decoder.up_blocks.0.upsamplers.0.conv.bias', 'decoder.up_blocks.3.resnets.1.conv_shortcut.bias']);
    await vae.close();
    const plain = join(dir, 'plain.safetensors');
    write(plain, unetTensors());
    const pk = await openCheckpoint(plain);
    expect(pk.format).toBe('safetensors');
    expect(pk.names).toEqual(Object.keys(unetTensors()).sort());
    await pk.close();
  });
});
