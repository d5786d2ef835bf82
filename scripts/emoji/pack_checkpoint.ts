// Packs a teacher checkpoint for the next GPU session (F16 shards ≤ 15 MiB + state.json, no optimizer moments:
// src/teacher/transport.ts) or unpacks one into a run folder. See --help.
import {
  EMOJI_TEXT_ENCODER_2_CONFIG,
  EMOJI_TEXT_ENCODER_CONFIG,
  EMOJI_UNET_CONFIG,
  EMOJI_VAE_CONFIG,
} from '../../src/datasets/emoji/configs.js';
import { packCheckpoint, unpackCheckpoint } from '../../src/teacher/transport.js';

const HELP = `usage: npx tsx scripts/emoji/pack_checkpoint.ts pack <run>/checkpoint <out dir>
       npx tsx scripts/emoji/pack_checkpoint.ts unpack <packed dir> <run dir>

pack    weights as F16 in shards of at most 15 MiB plus state.json (≤ 8 files: what a device run brings back)
unpack  rebuilds <run dir>/checkpoint (configs from src/datasets/emoji/configs.ts, the packed scaling_factor);
        scripts/emoji/train_teacher.ts --run <run dir> then resumes with fresh AdamW moments and a new warm-up`;
const [cmd, a, b] = process.argv.slice(2);
if (!cmd || cmd === '--help' || cmd === '-h' || !a || !b || !['pack', 'unpack'].includes(cmd)) {
  console.log(HELP);
  process.exit(cmd === '--help' || cmd === '-h' ? 0 : 2);
}
if (cmd === 'pack') {
  const files = await packCheckpoint(a, b);
  console.log(`${b}: ${files.join(', ')}`);
} else {
  const state = await unpackCheckpoint(a, b, { vae: EMOJI_VAE_CONFIG, unet: EMOJI_UNET_CONFIG, text_encoder: EMOJI_TEXT_ENCODER_CONFIG, text_encoder_2: EMOJI_TEXT_ENCODER_2_CONFIG });
  console.log(`${b}/checkpoint: stage '${state.stage}', step ${state.step}`);
}
