#!/usr/bin/env node
// `tcd` launcher for a checkout (not shipped: the package's bin is the compiled dist/src/cli/bin.js). With src/ and the
// tsx dev dependency present it runs src/cli/main.ts through tsx's ESM loader in a child Node process, so the
// TypeScript sources are always what runs; otherwise the compiled dist/src/cli/main.js (`npm run build`).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const args = process.argv.slice(2);
const source = join(root, 'src', 'cli', 'main.ts');
const built = join(root, 'dist', 'src', 'cli', 'main.js');

function tsxLoader() {
  try {
    return import.meta.resolve('tsx');
  } catch {
    return undefined;
  }
}

const loader = existsSync(source) ? tsxLoader() : undefined;
if (loader) {
  const child = spawn(process.execPath, ['--import', loader, source, ...args], { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exitCode = code ?? 1;
  });
} else if (existsSync(built)) {
  const { main } = await import(pathToFileURL(built).href);
  process.exitCode = await main(args);
} else {
  process.stderr.write(`tcd: neither ${source} with tsx nor ${built} found; run \`npm install\` (and \`npm run build\`)\n`);
  process.exitCode = 1;
}
