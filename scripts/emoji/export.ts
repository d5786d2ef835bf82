// Exports the emoji dataset (captioned 64×64 RGB PNGs, train / held-out folders; layout in src/datasets/emoji/files.ts).
//   node scripts/emoji/fetch.mjs && npx tsx scripts/emoji/export.ts [--out out/emoji] [--background 255,255,255]
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { exportEmojiDataset, packEmojiSplit } from '../../src/datasets/emoji/files.js';

const HELP = `usage: npx tsx scripts/emoji/export.ts [options]

Writes <out>/train/ and <out>/heldout/ (<id>.png + <id>.txt + metadata.jsonl), <out>/dataset.json and the image
licence attribution, from the package extracted by 'node scripts/emoji/fetch.mjs'.

  --package <dir>        extracted emoji-datasource-google (default .cache/emoji/package)
  --out <dir>            output folder (default out/emoji)
  --background r,g,b     colour under the transparent pixels (default 255,255,255)
  --heldout <fraction>   base emoji held out per category (default 0.1)
  --seed <n>             split seed (default 0)
  --pack <dir>           also write the compact form for the GPU machine: <dir>/{train,heldout}/metadata.jsonl +
                         images.u8 (raw bytes), then xz them (images.u8.xz; there: xz -d <dir>/*/images.u8.xz)
  -h, --help             this help`;

const { values } = parseArgs({
  options: {
    package: { type: 'string', default: '.cache/emoji/package' },
    out: { type: 'string', default: 'out/emoji' },
    background: { type: 'string', default: '255,255,255' },
    heldout: { type: 'string', default: '0.1' },
    seed: { type: 'string', default: '0' },
    pack: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const bg = values.background!.split(',').map(Number);
if (bg.length !== 3 || bg.some((v) => !Number.isInteger(v) || v < 0 || v > 255)) {
  console.error(`--background: expected three integers 0…255 like 255,255,255, got '${values.background}'`);
  process.exit(2);
}
const t0 = Date.now();
const s = await exportEmojiDataset(values.package!, values.out!, {
  background: bg as [number, number, number],
  heldoutFraction: Number(values.heldout),
  seed: Number(values.seed),
  onProgress: (d, n) => {
    if (d % 500 === 0 || d === n) process.stderr.write(`exported ${d}/${n}\n`);
  },
});
console.log(`${values.out}: ${s.train} train, ${s.heldout} held-out images in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
for (const [c, n] of Object.entries(s.categories)) console.log(`  ${c.padEnd(18)} train ${String(n.train).padStart(4)}  held-out ${String(n.heldout).padStart(3)}`);
if (values.pack) {
  for (const split of ['train', 'heldout']) {
    const n = await packEmojiSplit(`${values.out}/${split}`, `${values.pack}/${split}`);
    execFileSync('xz', ['-9e', '-T2', '-f', `${values.pack}/${split}/images.u8`], { stdio: 'inherit' });
    console.log(`${values.pack}/${split}: ${n} images → images.u8.xz`);
  }
}
