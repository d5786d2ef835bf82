// Parameters and forward multiply-add FLOPs (2 per MAC) of the emoji teacher's parts, per image, from the configs in
// src/datasets/emoji/configs.ts: each conv / linear weight costs 2 · weight elements · output positions, the output
// positions read off its state-dict name (which level, which resolution); attention adds 4 · N · M · C per block
// (scores and weighted sum). Norms, activations and the one-hot token lookup are left out (under 2 %).
//   npx tsx scripts/emoji/model_stats.ts [--json]
import { Gpu } from '../../runtime/device.js';
import { dryRunHost } from '../../bench/dry_run_host.js';
import {
  EMOJI_IMAGE_SIZE,
  EMOJI_LATENT_SIZE,
  EMOJI_TEXT_ENCODER_2_CONFIG,
  EMOJI_TEXT_ENCODER_CONFIG,
  EMOJI_UNET_CONFIG,
  EMOJI_VAE_CONFIG,
} from '../../src/datasets/emoji/configs.js';
import type { Param } from '../../src/nn/module.js';
import { TrainableClipTextModel } from '../../src/text/clip_text_train.js';
import { UNet2DConditionModel } from '../../src/unet/unet.js';
import { AutoencoderKL } from '../../src/vae/autoencoder_kl.js';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log('usage: npx tsx scripts/emoji/model_stats.ts [--json]\nPrints parameters and forward FLOPs per image of the emoji teacher (VAE encoder / decoder, text encoders, UNet).');
  process.exit(0);
}
// Constructors only register parameter shapes; a GPU-less host gives them the device limits they plan with.
const NO_GPU = await Gpu.create({ host: dryRunHost() });
const TOKENS = 77;
const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

interface Cost {
  params: number;
  flops: number;
}

/** 2 · weight · positions for every rank ≥ 2 weight, positions from `positions(name)`; + attention terms. */
function cost(params: ReadonlyMap<string, Param>, positions: (name: string) => number, attention: (name: string) => number): Cost {
  let p = 0;
  let f = 0;
  for (const [name, par] of params) {
    p += numel(par.shape);
    if (par.shape.length >= 2 && name.endsWith('.weight') && !/embedding\.weight$/.test(name)) f += 2 * numel(par.shape) * positions(name);
    f += attention(name);
  }
  return { params: p, flops: f };
}

function unetCost(): Cost {
  const unet = new UNet2DConditionModel(NO_GPU, EMOJI_UNET_CONFIG);
  const n = EMOJI_UNET_CONFIG.block_out_channels.length;
  const res = (level: number) => EMOJI_LATENT_SIZE / 2 ** level;
  const levelOf = (name: string): number => {
    let m = /^down_blocks\.(\d+)/.exec(name);
    if (m) return Number(m[1]);
    if (name.startsWith('mid_block')) return n - 1;
    m = /^up_blocks\.(\d+)/.exec(name);
    if (m) return n - 1 - Number(m[1]);
    return 0;
  };
  const positions = (name: string) => {
    if (/time_embedding|add_embedding|time_emb_proj/.test(name)) return 1;
    if (/attn2\.to_[kv]/.test(name)) return TOKENS;
    const l = levelOf(name);
    if (/downsamplers/.test(name)) return res(l + 1) ** 2;
    if (/upsamplers/.test(name)) return res(l - 1) ** 2;
    return res(l) ** 2;
  };
  const attention = (name: string) => {
    const m = /(attn[12])\.to_q\.weight$/.exec(name);
    if (!m) return 0;
    const C = unet.parameters.get(name)!.shape[0];
    const N = res(levelOf(name)) ** 2;
    return 4 * N * (m[1] === 'attn1' ? N : TOKENS) * C;
  };
  return cost(unet.parameters, positions, attention);
}

function vaeCost(part: 'encoder' | 'decoder'): Cost {
  const vae = new AutoencoderKL(NO_GPU, EMOJI_VAE_CONFIG);
  const n = EMOJI_VAE_CONFIG.block_out_channels!.length;
  const lat = EMOJI_IMAGE_SIZE / 2 ** (n - 1);
  const mine = new Map([...vae.parameters].filter(([k]) => (part === 'encoder' ? /^(encoder|quant_conv)/ : /^(decoder|post_quant_conv)/).test(k)));
  const positions = (name: string) => {
    let m = /^encoder\.down_blocks\.(\d+)/.exec(name);
    if (m) return (EMOJI_IMAGE_SIZE / 2 ** (Number(m[1]) + (/downsamplers/.test(name) ? 1 : 0))) ** 2;
    m = /^decoder\.up_blocks\.(\d+)/.exec(name);
    if (m) return (lat * 2 ** (Number(m[1]) + (/upsamplers/.test(name) ? 1 : 0))) ** 2;
    if (/^encoder\.conv_in|^decoder\.conv_out/.test(name)) return EMOJI_IMAGE_SIZE ** 2;
    if (/^encoder\.conv_out/.test(name)) return lat ** 2;
    return lat ** 2; // mid blocks, decoder.conv_in, (post_)quant_conv
  };
  return cost(mine, positions, () => 0);
}

function clipCost(cfg: typeof EMOJI_TEXT_ENCODER_CONFIG, withProjection: boolean): Cost {
  const m = new TrainableClipTextModel(NO_GPU, cfg, { withProjection });
  const attention = (name: string) => (/q_proj\.weight$/.test(name) ? 4 * TOKENS * TOKENS * cfg.hidden_size : 0);
  return cost(m.parameters, (name) => (name === 'text_projection.weight' ? 1 : TOKENS), attention);
}

const rows: [string, Cost][] = [
  ['VAE encoder (64²×3 → 16²×4)', vaeCost('encoder')],
  ['VAE decoder (16²×4 → 64²×3)', vaeCost('decoder')],
  ['text_encoder (hidden 64, 3 layers)', clipCost(EMOJI_TEXT_ENCODER_CONFIG, false)],
  ['text_encoder_2 (hidden 96, 3 layers)', clipCost(EMOJI_TEXT_ENCODER_2_CONFIG, true)],
  ['UNet (16² latent, 32/64/128 ch, 1 resnet per level)', unetCost()],
];
if (process.argv.includes('--json')) {
  console.log(JSON.stringify(Object.fromEntries(rows), null, 2));
} else {
  console.log('| part | parameters | forward GFLOP / image |\n|---|---|---|');
  for (const [name, c] of rows) console.log(`| ${name} | ${(c.params / 1e6).toFixed(2)} M | ${(c.flops / 1e9).toFixed(3)} |`);
  const total = rows.reduce((s, [, c]) => s + c.params, 0);
  console.log(`| total | ${(total / 1e6).toFixed(2)} M (${((total * 2) / 2 ** 20).toFixed(1)} MiB in f16) | |`);
}
