// The trainable CLIP text encoder (src/text/clip_text_train.ts): forward against the transformers golden of
// test/fixtures/tiny_clip (both encoder kinds), and its gradients (one-hot token lookup, causal attention, EOS pooling,
// projection) against central finite differences of the GPU forward.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../runtime/device.js';
import { mul, sumAllOp } from '../src/autograd/ops.js';
import { Tape, Var, tidy } from '../src/autograd/tape.js';
import { TrainableClipTextModel, sdxlTextConditioning } from '../src/text/clip_text_train.js';
import type { ClipTextConfigJson } from '../src/text/clip_config.js';
import { Tensor } from '../src/tensor.js';
import { type GoldenFile, openGolden, readJson, relMaxErr } from './golden_io.js';
import { finiteDiff, seeded, testGpu } from './helpers.js';

const DIR = 'test/fixtures/tiny_clip';
let gpu: Gpu;
const files: GoldenFile[] = [];

beforeAll(async () => {
  gpu = await testGpu();
});
afterAll(async () => {
  for (const f of files) await f.close();
  await gpu?.destroy();
});

async function load(component: 'text_encoder' | 'text_encoder_2') {
  const config = readJson<ClipTextConfigJson>(join(DIR, component), 'config.json')!;
  const weights = (await openGolden(join(DIR, component), 'weights.safetensors'))!;
  const io = (await openGolden(join(DIR, component), 'io.safetensors'))!;
  files.push(weights, io);
  const model = new TrainableClipTextModel(gpu, config, { withProjection: component === 'text_encoder_2' });
  await model.loadWeights(weights.src);
  const [B, T] = io.shape('input_ids');
  const flat = Array.from(await io.read('input_ids'));
  const ids = Array.from({ length: B }, (_, b) => flat.slice(b * T, (b + 1) * T));
  return { model, io, ids };
}

describe('trainable CLIP text model', () => {
  for (const component of ['text_encoder', 'text_encoder_2'] as const) {
    it(`${component}: hidden_states[−2], ${component === 'text_encoder_2' ? 'text_embeds' : 'pooled output'} match transformers (rel 1e-4)`, async () => {
      const { model, io, ids } = await load(component);
      const out = tidy(() => model.forward(ids, -2));
      const errs: Record<string, number> = {
        hidden_states_m2: relMaxErr(await out.hidden.value.toArray(), await io.read('hidden_states_m2')),
      };
      // CLIPTextModelWithProjection's golden has text_embeds (its pooled output projected) instead of pooler_output.
      if (io.keys().includes('pooler_output')) errs.pooler_output = relMaxErr(await out.pooled.value.toArray(), await io.read('pooler_output'));
      if (out.textEmbeds) errs.text_embeds = relMaxErr(await out.textEmbeds.value.toArray(), await io.read('text_embeds'));
      const last = tidy(() => model.forward(ids, 2));
      errs['hidden_states.2'] = relMaxErr(await last.hidden.value.toArray(), await io.read('hidden_states.2'));
      console.log(`  ${component}: ${Object.entries(errs).map(([k, e]) => `${k} ${e.toExponential(2)}`).join(', ')}`);
      for (const [k, e] of Object.entries(errs)) expect(e, k).toBeLessThan(1e-4);
      expect(component === 'text_encoder_2' ? !!out.textEmbeds : !out.textEmbeds).toBe(true);
      model.dispose();
    });
  }

  it('gradients of token / position embeddings, a layer weight and the projection match finite differences', async () => {
    const { model, ids: goldIds } = await load('text_encoder_2');
    const te1 = (await load('text_encoder')).model;
    const ids = goldIds.map((r) => r.slice(0, 12)); // shorter rows: also exercises the position-row selection
    ids[1][11] = 999; // an EOS inside row 1
    const B = ids.length;
    const wHidden = seeded(B * 12 * 64, 11);
    const wPooled = seeded(B * 32, 12);
    const names = ['text_model.embeddings.token_embedding.weight', 'text_model.embeddings.position_embedding.weight', 'text_model.encoder.layers.0.self_attn.q_proj.weight', 'text_projection.weight'];
    // loss = Σ context·R + Σ text_embeds·R' over the SDXL conditioning of the two encoders
    const lossVar = () => {
      const c = sdxlTextConditioning(te1.forward(ids), model.forward(ids));
      const r = new Var(Tensor.fromArray(gpu, wHidden, [B, 12, 64], { label: 'R' }));
      const r2 = new Var(Tensor.fromArray(gpu, wPooled, [B, 32], { label: "R'" }));
      return { add: sumAllOp(mul(c.context, r)), pooled: sumAllOp(mul(c.pooled, r2)) };
    };
    const tape = new Tape();
    const l = tape.record(() => tidy(() => lossVar()));
    const one = Tensor.fromArray(gpu, [1], [1]);
    tape.backward(l.add, one);
    const tape2 = new Tape();
    const l2 = tape2.record(() => tidy(() => lossVar()));
    tape2.backward(l2.pooled, one);
    // Both losses accumulate into the same .grad; FD of the sum.
    const scalar = async () => {
      const r = tidy(() => lossVar());
      return (await r.add.value.toArray())[0] + (await r.pooled.value.toArray())[0];
    };
    const probe: Record<string, number[]> = {
      'text_model.embeddings.token_embedding.weight': [ids[0][3] * 32 + 5, ids[1][0] * 32 + 1, 999 * 32 + 7],
      'text_model.embeddings.position_embedding.weight': [2 * 32 + 3, 11 * 32 + 30],
      'text_model.encoder.layers.0.self_attn.q_proj.weight': [0, 5 * 32 + 17],
      'text_projection.weight': [7, 31 * 32 + 31],
    };
    let worst = 0;
    for (const name of names) {
      const p = model.parameters.get(name)!;
      const grad = await p.v.grad!.toArray();
      const base = await p.v.value.toArray();
      const fd = await finiteDiff(
        async ([w]) => {
          const old = p.var!;
          p.var = new Var(Tensor.fromArray(gpu, w, p.shape, { label: name }), true, name);
          try {
            return await scalar();
          } finally {
            p.var.dispose();
            p.var = old;
          }
        },
        [base],
        0,
        probe[name],
        1e-2,
      );
      probe[name].forEach((i, k) => {
        const err = Math.abs(grad[i] - fd[k]) / Math.max(1e-2, Math.abs(fd[k]));
        worst = Math.max(worst, err);
        expect(err, `${name}[${i}]: autograd ${grad[i]}, finite difference ${fd[k]}`).toBeLessThan(2e-2);
      });
      expect(Array.from(grad).some((g) => g !== 0), `${name} gradient not all zero`).toBe(true);
    }
    console.log(`  worst relative gradient error ${worst.toExponential(2)}`);
    // A token absent from the batch gets exactly zero gradient.
    const g = await model.tokenEmbedding.v.grad!.toArray();
    const absent = [...Array(1000).keys()].find((t) => !ids.flat().includes(t))!;
    expect(Array.from(g.slice(absent * 32, absent * 32 + 32)).every((v) => v === 0)).toBe(true);
    one.release();
    model.dispose();
    te1.dispose();
  });
});
