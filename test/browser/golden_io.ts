// Browser twin of test/golden_io.ts (the browser test bundle maps './golden_io.js' here): the same API, reading a
// golden folder over HTTP from the test server instead of the file system. Paths are URL paths under the server
// root ('test/fixtures/tiny_unet' → '/test/fixtures/tiny_unet/…'); a 404 means "not in the folder", as a missing
// file does in Node.
import { blobSource } from '../../src/io/byte_source.js';
import { type GoldenFile, goldenFromSource } from '../golden_io.js';

export type { GoldenFile, LoraConfigJson } from '../golden_io.js';
// The metric, paths and the LoRA scale are the Node file's own (its node:fs / node:path imports become stubs in this
// bundle; these functions use neither).
export { documentedLoraScale, joinPath, relMaxErr } from '../golden_io.js';

const env = (): Record<string, string | undefined> => (globalThis as { process?: { env?: Record<string, string> } }).process?.env ?? {};

export function goldenDir(fallback: string): string {
  const dir = env().TCD_GOLDEN ?? fallback;
  return new URL(dir.replace(/\/?$/, '/'), location.origin + '/').pathname.replace(/\/$/, '');
}

/**
 * Whether dir/file exists on the test server (synchronous, as the Node version is): a HEAD for a file, the server's
 * folder listing (`<dir>/?list`) for the folder itself.
 */
export function goldenExists(dir: string, file = ''): boolean {
  const xhr = new XMLHttpRequest();
  xhr.open(file ? 'HEAD' : 'GET', file ? `${dir}/${file}` : `${dir}/?list`, false);
  xhr.send();
  return xhr.status === 200;
}

/** One component's folder as a root: not offered in the browser (the page runs test/fixtures). */
export function asComponentRoot(_dir: string, _name: string): string | undefined {
  return undefined;
}

export async function openGolden(dir: string, file: string): Promise<GoldenFile | undefined> {
  const url = `${dir}/${file}`;
  const res = await fetch(url);
  if (res.status === 404) return undefined;
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  const src = blobSource(await res.blob(), url);
  return goldenFromSource(src, url);
}

/** Synchronous like the Node version (callers use it synchronously): a synchronous XHR to the local test server. */
export function readJson<T>(dir: string, file: string): T | undefined {
  const xhr = new XMLHttpRequest();
  xhr.open('GET', `${dir}/${file}`, false);
  xhr.send();
  if (xhr.status === 404) return undefined;
  if (xhr.status !== 200) throw new Error(`${dir}/${file}: HTTP ${xhr.status}`);
  return JSON.parse(xhr.responseText) as T;
}
