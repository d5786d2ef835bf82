#!/usr/bin/env node
// Downloads the emoji image set on demand (it is 74 MB packed, too large to be a dependency every install pulls):
// `npm pack emoji-datasource-google@16.0.0` into .cache/emoji/ (git-ignored), then extracts emoji.json, the licence,
// the README and img/google/64/ (3,786 64×64 PNGs) into .cache/emoji/package/. Needs `npm` and `tar` on PATH.
// Package MIT (emoji-data, Cal Henderson); the Noto images are Apache-2.0 (Google).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';

const SPEC = 'emoji-datasource-google@16.0.0';
const TARBALL = 'emoji-datasource-google-16.0.0.tgz';
const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(`usage: node scripts/emoji/fetch.mjs [--dir <cache dir>] [--force]

Downloads ${SPEC} with 'npm pack' and extracts emoji.json and img/google/64 into <cache dir>/package
(default .cache/emoji). Skips the download when the tarball is already there; --force extracts again.
Then: npx tsx scripts/emoji/export.ts   (writes the captioned train / held-out folders)`);
  process.exit(0);
}
const at = args.indexOf('--dir');
const dir = resolve(at >= 0 ? args[at + 1] : '.cache/emoji');
const pkgDir = `${dir}/package`;
mkdirSync(dir, { recursive: true });
if (!existsSync(`${dir}/${TARBALL}`)) {
  console.log(`npm pack ${SPEC} → ${dir}`);
  execFileSync('npm', ['pack', SPEC, '--pack-destination', dir, '--silent'], { stdio: 'inherit' });
}
if (args.includes('--force') || !existsSync(`${pkgDir}/emoji.json`)) {
  const tmp = `${dir}/extract-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  execFileSync('tar', ['xzf', `${dir}/${TARBALL}`, '-C', tmp, 'package/emoji.json', 'package/LICENSE', 'package/README.md', 'package/img/google/64'], {
    stdio: 'inherit',
  });
  rmSync(pkgDir, { recursive: true, force: true });
  renameSync(`${tmp}/package`, pkgDir); // whole folder at once: a half extraction never looks complete
  rmSync(tmp, { recursive: true, force: true });
}
const n = readdirSync(`${pkgDir}/img/google/64`).filter((f) => f.endsWith('.png')).length;
console.log(`${pkgDir}: emoji.json and ${n} PNGs`);
if (n !== 3786) console.warn(`warning: expected 3786 PNGs in ${SPEC}, found ${n}`);
