// LoRA files: every key style (peft with/without prefixes, old diffusers, kohya with diffusers and SGM names) parses
// to the same adapters; kohya names resolve against the real SDXL module list (788 LCM/TCD target modules);
// text-encoder keys are reported; fuse/unfuse math in float64 (Linear, Conv, several adapters); peft save round trip;
// errors that name the problem.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bytesSource } from '../src/io/byte_source.js';
import { moduleShapes } from '../src/io/checkpoint.js';
import {
  LORA_ADAPTER_METADATA_KEY,
  LoraFormatError,
  encodeLoraTensors,
  fuseLora,
  kohyaNameTable,
  loadLoraFile,
  loraDelta,
  loraTerm,
  parseLora,
  saveLora,
  termsByModule,
  unfuseLora,
  type LoraAdapter,
  type LoraSet,
  type LoraTerm,
} from '../src/io/lora_format.js';
import { SafetensorsError, encodeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { diffusersUnetToSgm } from '../src/io/sgm_keys.js';
import { seeded } from './helpers.js';

interface TinyFixture {
  weights: Record<string, number[]>;
  lora: Record<string, { dtype: string; shape: number[] }>;
  lora_metadata: Record<string, string>;
  lora_config: { r: number; lora_alpha: number; target_modules: string[]; adapted_modules: string[] };
}
const tiny: TinyFixture = JSON.parse(readFileSync(new URL('./fixtures/tiny_unet_lora_keys.json', import.meta.url), 'utf8'));
const tinyModules = moduleShapes(tiny.weights);
const sdxlUnet: Record<string, number[]> = JSON.parse(readFileSync(new URL('./fixtures/sdxl_keys/unet_state_dict_shapes.json', import.meta.url), 'utf8'));
const sdxlSgm: Record<string, number[]> = JSON.parse(readFileSync(new URL('./fixtures/sdxl_keys/sgm_unet_keys.json', import.meta.url), 'utf8'));

const numel = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);

/** The tiny golden LoRA's tensors (real names and shapes), with seeded values. */
function tinyLoraTensors(): Record<string, TensorToWrite> {
  const out: Record<string, TensorToWrite> = {};
  Object.entries(tiny.lora).forEach(([k, { shape }], i) => (out[k] = { dtype: 'F32', shape, data: seeded(numel(shape), 100 + i) }));
  return out;
}

/** Re-keys the golden peft tensors into another style; `alpha` adds kohya-style .alpha scalars. */
function rekey(style: (module: string, role: 'A' | 'B') => string, alpha?: (module: string) => string): Record<string, TensorToWrite> {
  const out: Record<string, TensorToWrite> = {};
  for (const [k, t] of Object.entries(tinyLoraTensors())) {
    const m = /^(.*)\.lora_(A|B)\.weight$/.exec(k)!;
    out[style(m[1], m[2] as 'A' | 'B')] = t;
    if (alpha && m[2] === 'A') out[alpha(m[1])] = { dtype: 'F32', shape: [], data: [2] };
  }
  return out;
}

function src(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>, name = 'lora.safetensors') {
  return bytesSource(encodeSafetensors(tensors, metadata), name);
}

/** Bitwise equality of two f32 arrays (fast; vitest's deep equality walks element by element). */
function sameF32(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function expectSameAdapters(got: LoraSet, want: LoraSet, scale = 1): void {
  expect(got.adapters.map((a) => a.module)).toEqual(want.adapters.map((a) => a.module));
  got.adapters.forEach((a, i) => {
    const w = want.adapters[i];
    expect(a.A.shape).toEqual(w.A.shape);
    expect(a.B.shape).toEqual(w.B.shape);
    expect(sameF32(a.A.data, w.A.data), a.module).toBe(true);
    expect(sameF32(a.B.data, w.B.data), a.module).toBe(true);
    expect(a.scale).toBe(w.scale * scale);
  });
}

describe('parseLora key styles', () => {
  it('parses the golden tiny-UNet peft LoRA names: 177 adapters on the adapted modules, rank 4, scale 1', async () => {
    const lora = await parseLora(src(tinyLoraTensors(), tiny.lora_metadata), { modules: tinyModules, config: tiny.lora_config });
    expect(lora.formats).toEqual(['peft']);
    expect(lora.skipped).toEqual([]);
    expect(lora.adapters.map((a) => a.module)).toEqual([...tiny.lora_config.adapted_modules].sort());
    for (const a of lora.adapters) {
      expect(a.rank).toBe(4);
      expect(a.alpha).toBe(4);
      expect(a.scale).toBe(1);
      const w = tinyModules.get(a.module)!;
      expect(a.A.shape).toEqual(w.length === 4 ? [4, w[1], w[2], w[3]] : [4, w[1]]);
      expect(a.B.shape).toEqual(w.length === 4 ? [w[0], 4, 1, 1] : [w[0], 4]);
    }
    expect(lora.adapters.find((a) => a.module === 'down_blocks.0.downsamplers.0.conv')!.A.shape).toEqual([4, 32, 3, 3]);
  });

  it('gives the same adapters for peft with unet./base_model.model./adapter-name prefixes, old diffusers and kohya (diffusers and SGM names)', async () => {
    const ref = await parseLora(src(tinyLoraTensors()), { modules: tinyModules });
    const styles: [string, Record<string, TensorToWrite>, number][] = [
      ['unet.', rekey((m, r) => `unet.${m}.lora_${r}.weight`), 1],
      ['base_model.model.', rekey((m, r) => `base_model.model.${m}.lora_${r}.default.weight`), 1],
      [
        'old diffusers',
        rekey((m, r) => {
          const d = r === 'A' ? 'down' : 'up';
          const x = /^(.*\.attn[12])\.(to_q|to_k|to_v|to_out\.0)$/.exec(m);
          if (x) return `unet.${x[1]}.processor.${x[2] === 'to_out.0' ? 'to_out' : x[2]}_lora.${d}.weight`;
          return `unet.${m}.lora.${d}.weight`;
        }),
        1,
      ],
      [
        'kohya, diffusers names, alpha 2',
        rekey((m, r) => `lora_unet_${m.replaceAll('.', '_')}.lora_${r === 'A' ? 'down' : 'up'}.weight`, (m) => `lora_unet_${m.replaceAll('.', '_')}.alpha`),
        0.5,
      ],
    ];
    const upAttn = (b: number) => [...tinyModules.keys()].some((k) => k.startsWith(`up_blocks.${b}.attentions.`));
    const sgm = (m: string) => diffusersUnetToSgm(m, upAttn)!.replaceAll('.', '_');
    styles.push(['kohya, SGM names, alpha 2', rekey((m, r) => `lora_unet_${sgm(m)}.lora_${r === 'A' ? 'down' : 'up'}.weight`, (m) => `lora_unet_${sgm(m)}.alpha`), 0.5]);
    for (const [what, tensors, scale] of styles) {
      const got = await parseLora(src(tensors), { modules: tinyModules });
      expectSameAdapters(got, ref, scale);
      expect(got.formats, what).toEqual([what.startsWith('kohya') ? 'kohya' : what === 'old diffusers' ? 'diffusers-old' : 'peft']);
      if (scale !== 1) expect(got.adapters[0].alpha).toBe(2);
    }
  });

  it('resolves kohya names of all 788 LCM/TCD target modules of the real SDXL UNet, in SGM and diffusers naming', () => {
    const targets = ['to_q', 'to_k', 'to_v', 'to_out.0', 'proj_in', 'proj_out', 'ff.net.0.proj', 'ff.net.2', 'conv1', 'conv2', 'conv_shortcut', 'downsamplers.0.conv', 'upsamplers.0.conv', 'time_emb_proj'];
    const modules = moduleShapes(sdxlUnet);
    const targeted = [...modules.keys()].filter((m) => targets.some((t) => m === t || m.endsWith('.' + t)));
    expect(targeted.length).toBe(788);
    const table = kohyaNameTable(modules.keys());
    for (const m of targeted) expect(table.get(m.replaceAll('.', '_'))).toBe(m);
    // kohya SGM-style names, taken from the real SGM key list: every SGM module resolves, the 788 targets included.
    const P = 'model.diffusion_model.';
    const sgmModules = Object.keys(sdxlSgm)
      .filter((k) => k.endsWith('.weight'))
      .map((k) => k.slice(P.length, -'.weight'.length));
    let resolved = 0;
    for (const sgmModule of sgmModules) {
      const hit = table.get(sgmModule.replaceAll('.', '_'));
      expect(typeof hit, sgmModule).toBe('string');
      if (targeted.includes(hit as string)) resolved++;
    }
    expect(resolved).toBe(788);
    // Spot checks of kohya keys as they occur in the wild (spec sdxl.md §5.1).
    const spot: [string, string][] = [
      ['input_blocks_4_1_transformer_blocks_0_attn1_to_q', 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q'],
      ['input_blocks_1_0_in_layers_2', 'down_blocks.0.resnets.0.conv1'],
      ['input_blocks_3_0_op', 'down_blocks.0.downsamplers.0.conv'],
      ['output_blocks_2_2_conv', 'up_blocks.0.upsamplers.0.conv'],
      ['output_blocks_5_2_conv', 'up_blocks.1.upsamplers.0.conv'],
      ['output_blocks_0_0_skip_connection', 'up_blocks.0.resnets.0.conv_shortcut'],
      ['middle_block_1_proj_in', 'mid_block.attentions.0.proj_in'],
      ['middle_block_2_emb_layers_1', 'mid_block.resnets.1.time_emb_proj'],
      ['down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0', 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0'],
      ['down_blocks_0_resnets_0_conv1', 'down_blocks.0.resnets.0.conv1'],
    ];
    for (const [k, m] of spot) expect(table.get(k), k).toBe(m);
    // No two SDXL modules share an underscore name.
    expect([...table.values()].filter((v) => Array.isArray(v))).toEqual([]);
  });

  it('reads kohya alpha stored as a 0-d I64 tensor (as diffusers/peft → kohya exporters write it)', async () => {
    const hdr = {
      'lora_unet_down_blocks_1_attentions_0_proj_in.alpha': { dtype: 'I64', shape: [], data_offsets: [0, 8] },
      'lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight': { dtype: 'F32', shape: [4, 64], data_offsets: [8, 8 + 1024] },
      'lora_unet_down_blocks_1_attentions_0_proj_in.lora_up.weight': { dtype: 'F32', shape: [64, 4], data_offsets: [1032, 1032 + 1024] },
    };
    const json = new TextEncoder().encode(JSON.stringify(hdr));
    const bytes = new Uint8Array(8 + json.length + 2056);
    const v = new DataView(bytes.buffer);
    v.setUint32(0, json.length, true);
    bytes.set(json, 8);
    const d0 = 8 + json.length;
    v.setBigInt64(d0, 3n, true);
    const a = seeded(256, 1);
    const b = seeded(256, 2);
    for (let i = 0; i < 256; i++) v.setFloat32(d0 + 8 + 4 * i, a[i], true);
    for (let i = 0; i < 256; i++) v.setFloat32(d0 + 1032 + 4 * i, b[i], true);
    const lora = await parseLora(bytesSource(bytes, 'i64.safetensors'), { modules: tinyModules });
    expect(lora.adapters.length).toBe(1);
    expect(lora.adapters[0]).toMatchObject({ module: 'down_blocks.1.attentions.0.proj_in', rank: 4, alpha: 3, scale: 0.75 });
    expect(lora.adapters[0].keys.alpha).toBe('lora_unet_down_blocks_1_attentions_0_proj_in.alpha');
  });

  it('reports text-encoder keys by name (kohya lora_te1_/lora_te2_ and peft text_encoder.) and parses them on request', async () => {
    const t: Record<string, TensorToWrite> = {
      'lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight': { dtype: 'F32', shape: [2, 64], data: seeded(128, 1) },
      'lora_unet_down_blocks_1_attentions_0_proj_in.lora_up.weight': { dtype: 'F32', shape: [64, 2], data: seeded(128, 2) },
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': { dtype: 'F32', shape: [2, 32], data: seeded(64, 3) },
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': { dtype: 'F32', shape: [32, 2], data: seeded(64, 4) },
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha': { dtype: 'F32', shape: [], data: [1] },
      'lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight': { dtype: 'F32', shape: [2, 32], data: seeded(64, 5) },
      'lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight': { dtype: 'F32', shape: [128, 2], data: seeded(256, 6) },
    };
    const unet = await parseLora(src(t), { modules: tinyModules });
    expect(unet.adapters.map((a) => a.module)).toEqual(['down_blocks.1.attentions.0.proj_in']);
    expect(unet.skipped.map((s) => s.key).sort()).toEqual(Object.keys(t).filter((k) => k.startsWith('lora_te')).sort());
    expect(unet.skipped[0].reason).toMatch(/text_encoder(_2)? LoRA key; this parse applies unet adapters only/);

    const teModules = ['text_model.encoder.layers.0.self_attn.q_proj.weight', 'text_model.encoder.layers.0.mlp.fc1.weight'];
    const te1 = await parseLora(src(t), { component: 'text_encoder', modules: teModules });
    expect(te1.adapters.map((a) => [a.module, a.scale])).toEqual([['text_model.encoder.layers.0.self_attn.q_proj', 0.5]]);
    expect(te1.skipped.length).toBe(4);

    const peft = await parseLora(
      src({
        'unet.conv_in.lora_A.weight': { dtype: 'F32', shape: [1, 4, 3, 3], data: seeded(36, 7) },
        'unet.conv_in.lora_B.weight': { dtype: 'F32', shape: [32, 1, 1, 1], data: seeded(32, 8) },
        'text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_A.weight': { dtype: 'F32', shape: [1, 32], data: seeded(32, 9) },
        'text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_B.weight': { dtype: 'F32', shape: [32, 1], data: seeded(32, 10) },
        'text_encoder_2.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.down.weight': { dtype: 'F32', shape: [1, 32], data: seeded(32, 11) },
        'text_encoder_2.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.up.weight': { dtype: 'F32', shape: [32, 1], data: seeded(32, 12) },
      }),
      { modules: tinyModules },
    );
    expect(peft.adapters.map((a) => a.module)).toEqual(['conv_in']);
    expect(peft.skipped.map((s) => s.key)).toEqual([
      'text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_A.weight',
      'text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_B.weight',
      'text_encoder_2.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.down.weight',
      'text_encoder_2.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.up.weight',
    ]);
  });

  it('takes alpha from lora_adapter_metadata (unet.-prefixed, with alpha_pattern), from opts.config, else alpha = rank', async () => {
    const meta = { format: 'pt', [LORA_ADAPTER_METADATA_KEY]: JSON.stringify({ 'unet.r': 4, 'unet.lora_alpha': 8, 'unet.alpha_pattern': { 'attn1.to_q': 2 }, 'text_encoder.lora_alpha': 99 }) };
    const lora = await parseLora(src(tinyLoraTensors(), meta), { modules: tinyModules });
    for (const a of lora.adapters) expect(a.scale, a.module).toBe(a.module.endsWith('attn1.to_q') ? 0.5 : 2);
    const over = await parseLora(src(tinyLoraTensors(), meta), { config: { lora_alpha: 1, alpha_pattern: {} } });
    for (const a of over.adapters) expect(a.scale).toBe(0.25);
    const rs = await parseLora(src(tinyLoraTensors()), { config: { lora_alpha: 8, use_rslora: true } });
    expect(rs.adapters[0].scale).toBe(4);
    const bare = await parseLora(src(tinyLoraTensors()));
    for (const a of bare.adapters) expect(a.alpha).toBe(4);
  });

  it('defaults alpha like diffusers: the most common .alpha of a kohya file, else the most common rank', async () => {
    const mod = (name: string, r: number, seed: number): Record<string, TensorToWrite> => ({
      [`${name}.lora_down.weight`]: { dtype: 'F32', shape: [r, 64], data: seeded(64 * r, seed) },
      [`${name}.lora_up.weight`]: { dtype: 'F32', shape: [64, r], data: seeded(64 * r, seed + 1) },
    });
    const a = 'lora_unet_down_blocks_1_attentions_0_proj_in';
    const b = 'lora_unet_down_blocks_1_attentions_0_proj_out';
    const c = 'lora_unet_down_blocks_1_attentions_1_proj_in';
    const alpha = (n: string, v: number) => ({ [`${n}.alpha`]: { dtype: 'F32' as const, shape: [], data: [v] } });
    const kohya = await parseLora(src({ ...mod(a, 4, 1), ...mod(b, 4, 3), ...mod(c, 4, 5), ...alpha(a, 1), ...alpha(b, 1) }), { modules: tinyModules });
    expect(kohya.adapters.map((x) => x.alpha)).toEqual([1, 1, 1]);
    const peft = (name: string, r: number, seed: number): Record<string, TensorToWrite> => ({
      [`${name}.lora_A.weight`]: { dtype: 'F32', shape: [r, 64], data: seeded(64 * r, seed) },
      [`${name}.lora_B.weight`]: { dtype: 'F32', shape: [64, r], data: seeded(64 * r, seed + 1) },
    });
    const mixed = await parseLora(src({ ...peft('m.a', 4, 1), ...peft('m.b', 4, 3), ...peft('m.c', 8, 5) }));
    expect(mixed.adapters.map((x) => [x.module, x.alpha, x.scale])).toEqual([
      ['m.a', 4, 1],
      ['m.b', 4, 1],
      ['m.c', 4, 0.5],
    ]);
  });
});

describe('parseLora errors', () => {
  const pair = (base: string): Record<string, TensorToWrite> => ({
    [`${base}.lora_down.weight`]: { dtype: 'F32', shape: [2, 64], data: seeded(128, 1) },
    [`${base}.lora_up.weight`]: { dtype: 'F32', shape: [64, 2], data: seeded(128, 2) },
  });
  const cases: [string, () => Promise<unknown>, RegExp][] = [
    [
      'an unknown format, naming keys',
      () => parseLora(src({ 'foo.bar': { dtype: 'F32', shape: [1], data: [1] }, 'foo.baz': { dtype: 'F32', shape: [1], data: [1] } }, undefined, 'odd.safetensors')),
      /^odd\.safetensors: unknown LoRA format: keys like 'foo\.bar', 'foo\.baz'\. Expected peft/,
    ],
    ['kohya keys without a module list', () => parseLora(src(pair('lora_unet_mid_block_attentions_0_proj_in'))), /pass the model's module list \(opts\.modules\)/],
    [
      'a kohya key that matches no module, with the closest names',
      () => parseLora(src(pair('lora_unet_mid_block_attentions_0_proj_inn')), { modules: tinyModules }),
      /1 kohya LoRA module name\(s\) match no unet module \(tried diffusers and SGM names with '\.'→'_'\): 'lora_unet_mid_block_attentions_0_proj_inn'; closest: 'mid_block_attentions_0_proj_in'/,
    ],
    [
      'a peft module missing from the model',
      () => parseLora(src({ 'unet.mid_block.nope.lora_A.weight': { dtype: 'F32', shape: [1, 2], data: [1, 2] }, 'unet.mid_block.nope.lora_B.weight': { dtype: 'F32', shape: [2, 1], data: [1, 2] } }), { modules: tinyModules }),
      /1 LoRA module\(s\) not found in the unet model: 'mid_block\.nope'; closest: 'mid_block\./,
    ],
    ['lora_A without lora_B', () => parseLora(src({ 'x.lora_A.weight': { dtype: 'F32', shape: [1, 2], data: [1, 2] } })), /module 'x' has lora_A\/down \('x\.lora_A\.weight'\) but no lora_B\/up tensor/],
    [
      'a shape that does not fit the weight',
      () =>
        parseLora(
          src({
            'conv_in.lora_A.weight': { dtype: 'F32', shape: [1, 5, 3, 3], data: seeded(45) },
            'conv_in.lora_B.weight': { dtype: 'F32', shape: [32, 1, 1, 1], data: seeded(32) },
          }),
          { modules: tinyModules },
        ),
      /module 'conv_in': A has 5 inputs; the weight of 'conv_in' is \[32, 4, 3, 3\]/,
    ],
    ['A and B ranks that differ', () => parseLora(src({ 'x.lora_A.weight': { dtype: 'F32', shape: [2, 2], data: [1, 2, 3, 4] }, 'x.lora_B.weight': { dtype: 'F32', shape: [2, 1], data: [1, 2] } })), /B's second dimension 1 differs from the rank 2/],
    ['a DoRA file', () => parseLora(src({ ...pair('lora_unet_conv_in'), 'lora_unet_conv_in.dora_scale': { dtype: 'F32', shape: [1], data: [1] } })), /DoRA \(dora_scale\) LoRAs are not supported/],
    ['a LyCORIS file', () => parseLora(src({ 'lora_unet_conv_in.hada_w1_a': { dtype: 'F32', shape: [1], data: [1] } })), /unknown LoRA format.*'hada_w1_a' is not supported/],
    ['keys outside any format mixed in', () => parseLora(src({ ...pair('lora_unet_conv_in'), 'something.else': { dtype: 'F32', shape: [1], data: [1] } }), { modules: tinyModules }), /unrecognised keys in a LoRA file: 'something\.else'/],
    ['bad lora_adapter_metadata JSON', () => parseLora(src(tinyLoraTensors(), { [LORA_ADAPTER_METADATA_KEY]: '{"r": ' })), /lora_adapter_metadata is not valid JSON/],
  ];
  for (const [what, run, msg] of cases)
    it(`rejects ${what}`, async () => {
      const err = await run().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LoraFormatError);
      expect((err as Error).message).toMatch(msg);
    });

  it('rejects a truncated LoRA file with the safetensors error naming the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lora-'));
    const p = join(dir, 'cut.safetensors');
    const full = encodeSafetensors(tinyLoraTensors());
    writeFileSync(p, full.subarray(0, full.length - 100));
    const err = await loadLoraFile(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as Error).message).toMatch(/cut\.safetensors: malformed safetensors: .*file truncated/);
  });
});

// ------------------------------------------------------------------------------------------------------------

/** Naive float64 reference: W + Σ scale·B·A with explicit sums over r. */
function naiveFused(W: Float32Array, shape: number[], terms: LoraTerm[]): Float32Array {
  const out = shape[0];
  const cols = W.length / out;
  const res = new Float32Array(W.length);
  for (let o = 0; o < out; o++)
    for (let j = 0; j < cols; j++) {
      let d = 0;
      for (const t of terms) {
        const r = t.A.shape[0];
        let s = 0;
        for (let k = 0; k < r; k++) s += t.B.data[o * r + k] * t.A.data[k * cols + j];
        d += t.scale * s;
      }
      res[o * cols + j] = W[o * cols + j] + d;
    }
  return res;
}

/** Direct 2-D cross-correlation, stride 1, zero padding p, float64: x [Cin, H, W], w [Cout, Cin, k, k]. */
function conv(x: Float64Array, cin: number, h: number, wd: number, w: ArrayLike<number>, cout: number, k: number, p: number): Float64Array {
  const y = new Float64Array(cout * h * wd);
  for (let o = 0; o < cout; o++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < wd; j++) {
        let s = 0;
        for (let c = 0; c < cin; c++)
          for (let u = 0; u < k; u++)
            for (let v = 0; v < k; v++) {
              const ii = i + u - p;
              const jj = j + v - p;
              if (ii >= 0 && ii < h && jj >= 0 && jj < wd) s += x[(c * h + ii) * wd + jj] * w[((o * cin + c) * k + u) * k + v];
            }
        y[(o * h + i) * wd + j] = s;
      }
  return y;
}

describe('fuse / unfuse', () => {
  const term = (shapeA: number[], shapeB: number[], scale: number, seed: number): LoraTerm => ({
    A: { shape: shapeA, data: seeded(numel(shapeA), seed) },
    B: { shape: shapeB, data: seeded(numel(shapeB), seed + 1) },
    scale,
  });

  it('Linear: W + scale·B·A of two adapters (TCD + style) equals the float64 reference, and unfuse restores W', () => {
    const shape = [24, 40];
    const W = seeded(24 * 40, 5);
    const terms = [term([8, 40], [24, 8], 0.125, 10), term([4, 40], [24, 4], 0.8, 20)];
    const fused = fuseLora(W.slice(), shape, terms);
    expect(Array.from(fused)).toEqual(Array.from(naiveFused(W, shape, terms)));
    const back = unfuseLora(fused, shape, terms);
    W.forEach((w, i) => expect(Math.abs(back[i] - w)).toBeLessThanOrEqual(2 ** -22));
  });

  it('Conv 3×3: the fused weight gives conv(x, W) + scale·conv1x1(conv_A(x), B)', () => {
    const [cin, cout, r, h, wd] = [3, 5, 2, 6, 7];
    const shape = [cout, cin, 3, 3];
    const W = seeded(numel(shape), 30);
    const t = term([r, cin, 3, 3], [cout, r, 1, 1], 0.7, 40);
    const fused = fuseLora(W.slice(), shape, t);
    expect(Array.from(fused)).toEqual(Array.from(naiveFused(W, shape, [t])));
    const x = Float64Array.from(seeded(cin * h * wd, 50));
    const y = conv(x, cin, h, wd, fused, cout, 3, 1);
    const base = conv(x, cin, h, wd, W, cout, 3, 1);
    const ax = conv(x, cin, h, wd, t.A.data, r, 3, 1);
    const lora = conv(ax, r, h, wd, t.B.data, cout, 1, 0);
    y.forEach((v, i) => expect(Math.abs(v - (base[i] + 0.7 * lora[i]))).toBeLessThan(1e-5));
  });

  it('termsByModule combines LoRA sets with user weights; loraDelta refuses terms that do not fit', async () => {
    const tcd = await parseLora(src(tinyLoraTensors()));
    const style = await parseLora(src(rekey((m, r) => `unet.${m}.lora_${r}.weight`)), { config: { lora_alpha: 2 } });
    const map = termsByModule([{ lora: tcd }, { lora: style, weight: 0.5 }]);
    expect(map.size).toBe(177);
    const terms = map.get('down_blocks.1.attentions.0.proj_in')!;
    expect(terms.map((t) => t.scale)).toEqual([1, 0.25]);
    const a = tcd.adapters.find((x) => x.module === 'down_blocks.1.attentions.0.proj_in')! as LoraAdapter;
    expect(loraTerm(a, 0.3).scale).toBeCloseTo(0.3, 15);
    expect(() => loraDelta([64, 65], terms)).toThrow(/does not fit a weight \[64, 65\]/);
    expect(() => fuseLora(new Float32Array(3), [64, 64], terms)).toThrow(/weight has 3 elements/);
  });
});

describe('saveLora (peft/diffusers format)', () => {
  it('round-trips: save → parse gives the same adapters, keys unet.<module>.lora_A/B.weight, LoraConfig metadata', async () => {
    const lora = await parseLora(src(tinyLoraTensors()), { config: { lora_alpha: 8 } });
    // One module with its own rank and alpha, to exercise rank_pattern/alpha_pattern.
    const adapters = lora.adapters.map((a) => ({ ...a }));
    adapters[3] = { ...adapters[3], alpha: 2 };
    const dir = mkdtempSync(join(tmpdir(), 'lora-'));
    const path = join(dir, 'pytorch_lora_weights.safetensors');
    await saveLora(path, adapters);
    const back = await loadLoraFile(path, { modules: tinyModules });
    expect(back.formats).toEqual(['peft']);
    expect(back.adapters.map((a) => a.module)).toEqual(adapters.map((a) => a.module));
    back.adapters.forEach((a, i) => {
      expect(a.A.shape).toEqual(adapters[i].A.shape);
      expect(a.B.shape).toEqual(adapters[i].B.shape);
      expect(sameF32(a.A.data, adapters[i].A.data) && sameF32(a.B.data, adapters[i].B.data), a.module).toBe(true);
      expect(a.alpha).toBe(adapters[i].alpha);
      expect(a.scale).toBe(adapters[i].alpha / 4);
    });
    expect(back.metadata.format).toBe('pt');
    const cfg = JSON.parse(back.metadata[LORA_ADAPTER_METADATA_KEY]);
    expect(cfg['unet.r']).toBe(4);
    expect(cfg['unet.lora_alpha']).toBe(8);
    expect(cfg['unet.alpha_pattern']).toEqual({ [adapters[3].module]: 2 });
    expect(cfg['unet.rank_pattern']).toEqual({});
    expect(cfg['unet.target_modules']).toEqual(adapters.map((a) => a.module).sort());
    // diffusers' load_lora_weights refuses keys without "lora"; every key is unet.-prefixed.
    const { tensors } = encodeLoraTensors(adapters);
    for (const k of Object.keys(tensors)) expect(k).toMatch(/^unet\..*\.lora_[AB]\.weight$/);
    expect(Object.keys(tensors).length).toBe(354);
  });

  it('records per-module ranks in rank_pattern and saves in F16 on request', () => {
    const mk = (module: string, r: number) => ({ module, A: { shape: [r, 3], data: seeded(3 * r, r) }, B: { shape: [2, r], data: seeded(2 * r, r + 9) } });
    const { tensors, metadata } = encodeLoraTensors([mk('a.to_q', 4), mk('a.to_k', 4), mk('a.to_v', 8)], { dtype: 'F16' });
    const cfg = JSON.parse(metadata[LORA_ADAPTER_METADATA_KEY]);
    expect(cfg['unet.r']).toBe(4);
    expect(cfg['unet.rank_pattern']).toEqual({ 'a.to_v': 8 });
    expect(cfg['unet.alpha_pattern']).toEqual({ 'a.to_v': 8 });
    expect(tensors['unet.a.to_v.lora_A.weight'].dtype).toBe('F16');
    expect(() => encodeLoraTensors([mk('a', 2), mk('a', 2)])).toThrow(/appears twice/);
  });
});
