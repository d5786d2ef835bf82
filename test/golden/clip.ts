// tiny_clip/: the CLIP text encoders against transformers: for each of text_encoder (CLIPTextModel) and
// text_encoder_2 (CLIPTextModelWithProjection) present, the model is built from its config.json and weights
// (weights.safetensors, else model.safetensors / model.fp16.safetensors) and run on io.safetensors' input_ids; every
// output there (hidden_states.N, hidden_states_m2, last_hidden_state, pooler_output, text_embeds) is compared with
// max|got − want| / max|want|. An encoder missing from the folder is reported as skipped, by name. (Weight loading
// and encodePrompt on the tiny encoders: test/clip.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../runtime/device.js';
import type { ClipTextConfigJson } from '../../src/text/clip_config.js';
import { ClipTextModel, type ClipTextOutput } from '../../src/text/clip_text_model.js';
import { type GoldenFile, goldenExists, joinPath, openGolden, readJson, relMaxErr } from '../golden_io.js';
import { type ErrorRow, type GoldenSuite, goldenGpu, reportRows, skipped } from './suite.js';

const NAME = 'tiny_clip';
const TOL = 1e-4;
const ENCODERS = ['text_encoder', 'text_encoder_2'] as const;
const WEIGHT_FILES = ['weights.safetensors', 'model.safetensors', 'model.fp16.safetensors'];

function isEncoderFolder(dir: string): boolean {
  return goldenExists(dir, 'config.json') && goldenExists(dir, 'io.safetensors') && WEIGHT_FILES.some((f) => goldenExists(dir, f));
}

export const clipSuite: GoldenSuite = {
  name: NAME,
  lookedFor: ENCODERS.map((e) => `tiny_clip/${e}/{config.json, io.safetensors, weights.safetensors}`),
  present: (root) => ENCODERS.some((e) => isEncoderFolder(joinPath(joinPath(root, NAME), e))),
  define(root) {
    defineClip(joinPath(root, NAME));
  },
};

async function idsOf(io: GoldenFile): Promise<number[][]> {
  const [B, T] = io.shape('input_ids');
  const flat = Array.from(await io.read('input_ids'));
  return Array.from({ length: B }, (_, b) => flat.slice(b * T, (b + 1) * T));
}

/** The model output an io.safetensors key names, or undefined for a key this suite does not know. */
function outputFor(out: ClipTextOutput, key: string) {
  const m = /^hidden_states\.(\d+)$/.exec(key);
  if (m) return out.hidden(Number(m[1]));
  if (key === 'hidden_states_m2') return out.hidden(-2);
  if (key === 'last_hidden_state') return out.lastHiddenState;
  if (key === 'pooler_output') return out.pooled;
  if (key === 'text_embeds') return out.textEmbeds;
  return undefined;
}

function defineClip(dir: string): void {
  let gpu: Gpu;
  const opened: GoldenFile[] = [];
  const open = async (d: string, file: string) => {
    const f = await openGolden(d, file);
    if (f) opened.push(f);
    return f;
  };

  describe(`${NAME}: CLIP text encoders vs golden`, () => {
    beforeAll(async () => {
      gpu = await goldenGpu();
      console.log(`[golden ${NAME}] ${dir}`);
    });
    afterAll(async () => {
      for (const f of opened) await f.close();
    });

    for (const encoder of ENCODERS) {
      it(`${encoder}: every hidden state, last_hidden_state and pooled output / text_embeds`, async () => {
        const d = joinPath(dir, encoder);
        if (!isEncoderFolder(d)) return skipped(NAME, `${encoder} (no config.json / io.safetensors / weights in ${d})`);
        const config = readJson<ClipTextConfigJson>(d, 'config.json')!;
        let weights: GoldenFile | undefined;
        for (const f of WEIGHT_FILES) if (!weights) weights = await open(d, f);
        const io = (await open(d, 'io.safetensors'))!;
        const model = await ClipTextModel.load(gpu, config, weights!.src);
        console.log(`  ${encoder}: ${model.config.layers} layers, hidden ${model.config.hiddenSize}, ${model.config.activation}, projection ${model.config.withProjection}`);
        const ids = await idsOf(io);
        const t0 = performance.now();
        const out = model.forward(ids, { hiddenStates: 'all' });
        const rows: ErrorRow[] = [];
        const unknown: string[] = [];
        for (const key of io.keys()) {
          if (key === 'input_ids') continue;
          const t = outputFor(out, key);
          if (!t) {
            unknown.push(key);
            continue;
          }
          expect(t.shape, `${key} shape`).toEqual(io.shape(key));
          rows.push([key, relMaxErr(await t.toArray(), await io.read(key))]);
        }
        console.log(`  forward ${(performance.now() - t0).toFixed(0)} ms (with readback; first run includes pipeline compilation); EOS at ${out.eosPositions.join(', ')}`);
        out.release();
        model.dispose();
        expect(unknown, 'io.safetensors outputs this suite cannot map to the model').toEqual([]);
        reportRows(NAME, `${encoder} outputs`, rows, TOL);
      });
    }
  });
}
