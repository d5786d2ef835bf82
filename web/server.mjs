// Static server for the demo page and the browser tests, on 127.0.0.1 only (a secure context for WebGPU without
// https). Serves the repository's web/, dist/{browser,web,browser-test}/, test/browser/, test/fixtures/,
// out/browser-test/ and the tiny SDXL folder out/tiny-sdxl/ (generated on start when absent); nothing else, nothing
// from the internet. Files answer single HTTP Range requests (206), so large weights are read tensor by tensor;
// `GET <folder>/?list` answers {"files": [relative paths]} (a model folder's listing for fetchSource).
//   node web/server.mjs [--port 8080]        (npm run serve builds first)
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The demo's model: a tiny SDXL-shaped diffusers folder (scripts/make_tiny_sdxl.ts), served at /out/tiny-sdxl/. */
export const TINY_SDXL_DIR = join(root, 'out/tiny-sdxl');
export const TINY_SDXL_URL = '/out/tiny-sdxl/';

const SERVED = ['web/', 'dist/browser/', 'dist/web/', 'dist/browser-test/', 'test/browser/', 'test/fixtures/', 'out/browser-test/', 'out/tiny-sdxl/'];

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.css': 'text/css',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
  '.wgsl': 'text/plain; charset=utf-8',
};

/** Every file under `dir`, as '/'-separated paths relative to it. */
async function listFiles(dir) {
  const out = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) out.push(relative(dir, join(e.parentPath ?? e.path, e.name)).split(sep).join('/'));
  // Dotfiles (the tiny folder's .stamp) are bookkeeping, not model files.
  return out.filter((p) => !p.split('/').some((s) => s.startsWith('.'))).sort();
}

/** A single `bytes=` range of a file of `size` bytes → [start, end] inclusive; null when unsatisfiable or not one range. */
function parseRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start, end;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start <= end && start < size ? [start, end] : null;
}

/** Starts the server; port 0 picks a free one. Resolves to its base URL and a close(). */
export async function startServer({ port = 0, host = '127.0.0.1', log = false } = {}) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    let path = decodeURIComponent(url.pathname);
    if (path === '/' || path === '/index.html') {
      res.writeHead(302, { location: '/web/index.html' });
      res.end();
      return;
    }
    if (path.endsWith('/') && url.searchParams.has('list')) {
      const rel = normalize(path.slice(1));
      const allowed = !rel.startsWith('..') && SERVED.some((p) => `${rel}/`.startsWith(p));
      const files = allowed ? await listFiles(join(root, rel)).catch(() => null) : null;
      if (log) console.log(`${req.method} ${path}?list ${files ? 200 : 404}`);
      res.writeHead(files ? 200 : 404, { 'content-type': files ? 'application/json' : 'text/plain', 'cache-control': 'no-store' });
      res.end(files ? JSON.stringify({ files }) : `not found: ${path}\n`);
      return;
    }
    if (path.endsWith('/')) path += 'index.html';
    const rel = normalize(path.slice(1));
    const allowed = !rel.startsWith('..') && SERVED.some((p) => rel.startsWith(p));
    const file = join(root, rel);
    let size = -1;
    if (allowed && (req.method === 'GET' || req.method === 'HEAD')) {
      try {
        const s = await stat(file);
        if (s.isFile()) size = s.size;
      } catch {}
    }
    if (log) console.log(`${req.method} ${path} ${size >= 0 ? 200 : 404}`);
    if (size < 0) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end(`not found: ${path}\n`);
      return;
    }
    const type = TYPES[extname(file)] ?? 'application/octet-stream';
    const range = req.headers.range === undefined ? undefined : parseRange(req.headers.range, size);
    if (range === null) {
      res.writeHead(416, { 'content-range': `bytes */${size}`, 'accept-ranges': 'bytes' });
      res.end();
      return;
    }
    const [start, end] = range ?? [0, size - 1];
    res.writeHead(range ? 206 : 200, {
      'content-type': type,
      'content-length': size === 0 ? 0 : end - start + 1,
      'accept-ranges': 'bytes',
      ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
      'cache-control': 'no-store',
    });
    if (req.method === 'HEAD' || size === 0) res.end();
    else createReadStream(file, { start, end }).pipe(res);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  return { url: `http://${host}:${addr.port}`, server, close: () => new Promise((r) => server.close(() => r())) };
}

/** Files whose content decides the tiny folder's weights: a change regenerates it. */
const TINY_INPUTS = ['scripts/make_tiny_sdxl.ts', 'src/nn/init.ts', 'test/fixtures/tiny_unet/config.json'];

/**
 * Writes out/tiny-sdxl with scripts/make_tiny_sdxl.ts (through tsx) unless it is there and was made from the current
 * generator (a stamp holds a hash of TINY_INPUTS). Written into a temporary folder and renamed, so a reader never
 * sees half a folder. Resolves to the folder. `make(dir)`: generate in-process instead (bundled tests, where tsx is
 * not installed, pass make_tiny_sdxl's makeTinySdxl).
 */
export async function ensureTinySdxl({ log = () => {}, make = undefined } = {}) {
  const hash = createHash('sha256');
  for (const f of TINY_INPUTS) hash.update(await readFile(join(root, f)));
  const want = hash.digest('hex').slice(0, 16);
  const stampFile = join(TINY_SDXL_DIR, '.stamp');
  if ((await readFile(stampFile, 'utf8').catch(() => '')).trim() === want) return TINY_SDXL_DIR;
  let tsx;
  if (!make) {
    try {
      tsx = import.meta.resolve('tsx');
    } catch {
      throw new Error('out/tiny-sdxl is missing and tsx (a dev dependency) is not installed to generate it: run npm install');
    }
  }
  const tmp = `${TINY_SDXL_DIR}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(dirname(tmp), { recursive: true });
  log(`generating ${relative(process.cwd(), TINY_SDXL_DIR)} (scripts/make_tiny_sdxl.ts) …`);
  if (make) await make(tmp);
  else await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', tsx, join(root, 'scripts/make_tiny_sdxl.ts'), tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`make_tiny_sdxl.ts exited with ${code}: ${err.trim()}`))));
  });
  await writeFile(join(tmp, '.stamp'), `${want}\n`);
  await rm(TINY_SDXL_DIR, { recursive: true, force: true });
  await rename(tmp, TINY_SDXL_DIR).catch(async (e) => {
    // Another process won the race with the same inputs: keep its folder.
    await rm(tmp, { recursive: true, force: true });
    if ((await readFile(stampFile, 'utf8').catch(() => '')).trim() !== want) throw e;
  });
  return TINY_SDXL_DIR;
}

// Run as a script (not when bundled into another entry file, whose import.meta.url is argv[1] too).
if (process.argv[1]?.endsWith("server.mjs") && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log('usage: node web/server.mjs [--port N] [--quiet]\n  serves the demo (http://127.0.0.1:N/) and the browser tests; N defaults to $PORT or 8080');
    process.exit(0);
  }
  const i = args.indexOf('--port');
  const port = Number(i >= 0 ? args[i + 1] : (process.env.PORT ?? 8080));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port must be an integer in [0, 65535], got ${i >= 0 ? args[i + 1] : process.env.PORT}`);
    process.exit(2);
  }
  await ensureTinySdxl({ log: console.log });
  const { url } = await startServer({ port, log: !args.includes('--quiet') });
  console.log(`serving ${url}/  (demo: ${url}/web/index.html; needs a WebGPU browser — chromium: --enable-unsafe-webgpu)`);
}
