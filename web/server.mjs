// Static server for the demo page and the browser tests, on 127.0.0.1 only (a secure context for WebGPU without
// https). Serves the repository's web/, dist/{browser,web,browser-test}/, test/browser/, test/fixtures/ and
// out/browser-test/; nothing else, nothing from the internet.
//   node web/server.mjs [--port 8080]        (npm run serve builds first)
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const SERVED = ['web/', 'dist/browser/', 'dist/web/', 'dist/browser-test/', 'test/browser/', 'test/fixtures/', 'out/browser-test/'];

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
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': size,
      'cache-control': 'no-store',
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  return { url: `http://${host}:${addr.port}`, server, close: () => new Promise((r) => server.close(() => r())) };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
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
  const { url } = await startServer({ port, log: !args.includes('--quiet') });
  console.log(`serving ${url}/  (demo: ${url}/web/index.html; needs a WebGPU browser — chromium: --enable-unsafe-webgpu)`);
}
