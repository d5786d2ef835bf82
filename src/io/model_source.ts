// A model folder as a host-agnostic source of files, so a pipeline loads the same way from a Node folder, a web server
// (fetch) or the files a user picked in a browser (<input type=file webkitdirectory>). Paths are relative to the
// folder root with '/' separators ('unet/config.json'). Only what a loader needs: does a file exist, its text, and a
// random-access ByteSource for weights.
import { type ByteSource, blobSource, fileSource } from './byte_source.js';
import { type Checkpoint, CheckpointError, type Component, type OpenOptions, openSafetensorsCheckpoint, openShardedCheckpoint, parseShardIndex, weightFileCandidates } from './checkpoint.js';

export interface ModelSource {
  /** For messages: the folder path, URL or picked folder's name. */
  readonly name: string;
  exists(path: string): Promise<boolean>;
  /** The file's text; throws naming the file when it is absent. */
  readText(path: string): Promise<string>;
  open(path: string): Promise<ByteSource>;
}

export class ModelSourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelSourceError';
  }
}

/** A file of a source as one would write its location: 'models/sdxl/unet/config.json', 'http://…/unet/config.json'. */
export function sourcePath(source: { name: string }, path: string): string {
  return source.name.endsWith('/') ? source.name + path : `${source.name}/${path}`;
}

function checkRelative(path: string): string {
  if (path.startsWith('/') || path.split('/').some((p) => p === '..' || p === '')) throw new ModelSourceError(`'${path}' is not a relative path inside the model folder`);
  return path;
}

/** Node: a folder on disk. */
export function dirSource(root: string): ModelSource {
  const full = async (path: string) => (await import('node:path')).join(root, checkRelative(path));
  return {
    name: root,
    async exists(path) {
      const { stat } = await import('node:fs/promises');
      return (await stat(await full(path)).catch(() => null))?.isFile() ?? false;
    },
    async readText(path) {
      const { readFile } = await import('node:fs/promises');
      const p = await full(path);
      return readFile(p, 'utf8').catch((e: NodeJS.ErrnoException) => {
        throw e.code === 'ENOENT' ? new ModelSourceError(`${p}: no such file`) : e;
      });
    },
    async open(path) {
      return fileSource(await full(path));
    },
  };
}

/**
 * Files picked in a browser: a FileList from <input type=file webkitdirectory> (each File's webkitRelativePath is
 * 'picked-folder/unet/config.json'), or Files with explicit relative paths. The model root is the folder that holds
 * unet/config.json, so picking the model folder or its parent both work.
 */
export function fileListSource(files: FileList | readonly File[] | ReadonlyMap<string, File>, name?: string): ModelSource {
  const byPath = new Map<string, File>();
  if (files instanceof Map) for (const [p, f] of files) byPath.set(p, f);
  else for (const f of files as Iterable<File>) byPath.set(f.webkitRelativePath || f.name, f);
  const marker = [...byPath.keys()].filter((p) => p === 'unet/config.json' || p.endsWith('/unet/config.json')).sort((a, b) => a.length - b.length)[0];
  if (marker === undefined) {
    const flat = [...byPath.keys()].every((p) => !p.includes('/'));
    throw new ModelSourceError(
      `the picked files hold no unet/config.json${flat ? ' (the files came without their folders: pick the model folder itself, not files inside it)' : ''}; ` +
        `got ${byPath.size} files${byPath.size ? `, e.g. ${[...byPath.keys()].slice(0, 5).join(', ')}` : ''}`,
    );
  }
  const prefix = marker.slice(0, marker.length - 'unet/config.json'.length);
  const rooted = new Map<string, File>();
  for (const [p, f] of byPath) if (p.startsWith(prefix)) rooted.set(p.slice(prefix.length), f);
  const label = name ?? (prefix ? prefix.replace(/\/$/, '') : 'picked folder');
  const get = (path: string) => {
    const f = rooted.get(checkRelative(path));
    if (!f) throw new ModelSourceError(`${label}/${path}: not among the picked files`);
    return f;
  };
  return {
    name: label,
    exists: async (path) => rooted.has(checkRelative(path)),
    readText: async (path) => get(path).text(),
    open: async (path) => blobSource(get(path), `${label}/${path}`),
  };
}

export interface UrlSourceOptions {
  /** Files up to this size are fetched whole (one request) on first read; larger ones by HTTP Range. Default 64 MiB. */
  wholeBelow?: number;
  fetch?: typeof fetch;
}

/**
 * A file over HTTP, read by ranges (`Range: bytes=a-b`, 206) so multi-GB checkpoints are never held whole; small files
 * (and servers that ignore Range) are fetched once into a Blob.
 */
export async function urlSource(url: string, opts: UrlSourceOptions = {}): Promise<ByteSource> {
  const get = opts.fetch ?? fetch;
  const head = await get(url, { method: 'HEAD' });
  if (!head.ok) throw new ModelSourceError(`${url}: HTTP ${head.status} ${head.statusText}`);
  const size = Number(head.headers.get('content-length'));
  if (!Number.isFinite(size) || size < 0 || head.headers.get('content-length') === null)
    throw new ModelSourceError(`${url}: the server sent no Content-Length (needed to read the file by ranges)`);
  const ranged = head.headers.get('accept-ranges') === 'bytes' && size > (opts.wholeBelow ?? 64 * 2 ** 20);
  let whole: Promise<ByteSource> | undefined;
  const wholeSource = () =>
    (whole ??= get(url).then(async (res) => {
      if (!res.ok) throw new ModelSourceError(`${url}: HTTP ${res.status} ${res.statusText}`);
      return blobSource(await res.blob(), url);
    }));
  return {
    name: url,
    size,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > size)
        throw new ModelSourceError(`${url}: read of bytes [${offset}, ${offset + length}) is outside the file (${size} bytes)`);
      if (!ranged || length === 0) return (await wholeSource()).read(offset, length);
      const res = await get(url, { headers: { range: `bytes=${offset}-${offset + length - 1}` } });
      if (res.status === 200) {
        // The server ignored Range after all: keep the whole body for the remaining reads.
        whole ??= res.blob().then((b) => blobSource(b, url));
        return (await whole).read(offset, length);
      }
      if (res.status !== 206) throw new ModelSourceError(`${url}: HTTP ${res.status} ${res.statusText} for bytes ${offset}-${offset + length - 1}`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (bytes.byteLength !== length) throw new ModelSourceError(`${url}: asked for ${length} bytes at ${offset}, got ${bytes.byteLength}`);
      return bytes;
    },
    async close() {},
  };
}

export interface FetchSourceOptions extends UrlSourceOptions {
  /**
   * The folder's files (relative paths). Default: asked of the server as `<base>?list` (web/server.mjs answers with
   * {"files": [...]}); when that fails, existence is probed with HEAD requests.
   */
  files?: readonly string[];
}

/** A model folder on a web server: `base` is the folder's URL (a trailing '/' is added). */
export async function fetchSource(base: string, opts: FetchSourceOptions = {}): Promise<ModelSource> {
  const get = opts.fetch ?? fetch;
  const root = base.endsWith('/') ? base : `${base}/`;
  let files = opts.files ? new Set(opts.files) : undefined;
  if (!files) {
    const res = await get(`${root}?list`).catch(() => undefined);
    if (res?.ok && /json/.test(res.headers.get('content-type') ?? '')) {
      const body = (await res.json()) as { files?: unknown };
      if (Array.isArray(body.files) && body.files.every((f) => typeof f === 'string')) files = new Set(body.files as string[]);
    }
  }
  const url = (path: string) => root + checkRelative(path).split('/').map(encodeURIComponent).join('/');
  return {
    name: root,
    async exists(path) {
      if (files) return files.has(checkRelative(path));
      const res = await get(url(path), { method: 'HEAD' });
      return res.ok;
    },
    async readText(path) {
      if (files && !files.has(checkRelative(path))) throw new ModelSourceError(`${url(path)}: no such file in the folder listing`);
      const res = await get(url(path));
      if (!res.ok) throw new ModelSourceError(`${url(path)}: HTTP ${res.status} ${res.statusText}`);
      return res.text();
    },
    open: (path) => urlSource(url(path), opts),
  };
}

/**
 * The weights of one model folder of a source (`dir`: 'unet', 'text_encoder', …), chosen as openCheckpoint chooses
 * them on disk: plain file, fp16 variant or sharded index, per `opts.variant`.
 */
export async function openSourceCheckpoint(source: ModelSource, dir: string, opts: OpenOptions & { component: Component }): Promise<Checkpoint> {
  const file = await findWeightFile(source, dir, opts.variant);
  if (!file) {
    const want = weightFileCandidates(opts.variant).map((c) => c.file).join(', ');
    throw new CheckpointError(`no ${opts.component} weights in ${sourcePath(source, dir)}/: looked for ${want}`);
  }
  const path = `${dir}/${file.file}`;
  if (file.kind === 'index') {
    const name = sourcePath(source, path);
    return openShardedCheckpoint(parseShardIndex(await source.readText(path), name), name, (shard) => source.open(`${dir}/${shard}`), opts);
  }
  const src = await source.open(path);
  try {
    return await openSafetensorsCheckpoint(src, opts);
  } catch (e) {
    await src.close();
    throw e;
  }
}

/** The first weight file of `dir` that exists, in openCheckpoint's order of preference. */
export async function findWeightFile(source: ModelSource, dir: string, variant: OpenOptions['variant']): Promise<{ kind: 'single' | 'index'; file: string } | undefined> {
  for (const c of weightFileCandidates(variant)) if (await source.exists(`${dir}/${c.file}`)) return c;
  return undefined;
}
