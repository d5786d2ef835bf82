// A training set on disk: images with captions, in one of two layouts (Node only).
//   pairs:    x.png | x.jpg | x.jpeg next to x.txt (the caption), in the folder or any subfolder;
//   manifest: metadata.jsonl (or the folder's only *.jsonl) with one {"file_name": "x.png", "text": "…"} per line,
//             as the Hugging Face `imagefolder` loader reads it (diffusers' train_data_dir); "caption" is accepted
//             for "text". file_name is relative to the manifest's folder.
// Every problem is named with its path and what was expected; nothing is skipped silently.

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

export interface CaptionedImage {
  /** Path of the image relative to the dataset folder, without extension, '/'-separated ('sub/x'). */
  id: string;
  imagePath: string;
  caption: string;
}

export interface ListOptions {
  /** A manifest to use instead of looking for one in the folder (a path, relative to the folder or absolute). */
  manifest?: string;
}

/** Extensions decodeImage reads (lower case). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'] as const;
/** Image formats recognised but not decoded: named in an error instead of being ignored. */
const UNSUPPORTED_IMAGE_EXTENSIONS = ['.webp', '.gif', '.bmp', '.tif', '.tiff', '.avif', '.heic', '.jxl'];
const LAYOUT = 'x.png / x.jpg / x.jpeg with a caption file x.txt beside it, or a metadata.jsonl manifest of {"file_name": …, "text": …} lines';

function extOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot > 0 && dot > name.lastIndexOf('/') ? name.slice(dot).toLowerCase() : '';
}

function checkImageExtension(path: string, where: string): void {
  const ext = extOf(path);
  if (!(IMAGE_EXTENSIONS as readonly string[]).includes(ext))
    throw new DatasetError(`${where}: ${path} has an unsupported extension '${ext || '(none)'}'; expected ${IMAGE_EXTENSIONS.join(', ')}`);
}

/** Lists the dataset in `dir`, sorted by id. Throws DatasetError on a missing caption or image, or an empty folder. */
export async function listCaptionedImages(dir: string, opts: ListOptions = {}): Promise<CaptionedImage[]> {
  const { readdir, stat } = await import('node:fs/promises');
  const { join, isAbsolute } = await import('node:path');
  const st = await stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw new DatasetError(`dataset ${dir}: no such folder (expected a folder of ${LAYOUT})`);
  if (opts.manifest !== undefined) return readManifest(isAbsolute(opts.manifest) ? opts.manifest : join(dir, opts.manifest), dir);

  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files: string[] = [];
  for (const e of entries) {
    if (!e.isFile()) continue;
    const rel = join(e.parentPath, e.name).slice(dir.length).replace(/\\/g, '/').replace(/^\/+/, '');
    if (rel.split('/').some((p) => p.startsWith('.'))) continue; // hidden files and folders (.DS_Store, .cache/)
    files.push(rel);
  }
  if (files.includes('metadata.jsonl')) return readManifest(join(dir, 'metadata.jsonl'), dir);
  const manifests = files.filter((f) => !f.includes('/') && extOf(f) === '.jsonl');
  if (manifests.length === 1) return readManifest(join(dir, manifests[0]), dir);
  if (manifests.length > 1)
    throw new DatasetError(`dataset ${dir}: several manifests (${manifests.join(', ')}) and no metadata.jsonl; name the one to use (manifest option)`);

  const byStem = new Map<string, string[]>();
  for (const f of files) {
    const ext = extOf(f);
    const stem = ext ? f.slice(0, -ext.length) : f;
    byStem.set(stem, [...(byStem.get(stem) ?? []), f]);
  }
  const items: CaptionedImage[] = [];
  const missing: string[] = [];
  for (const [stem, group] of byStem) {
    const images = group.filter((f) => (IMAGE_EXTENSIONS as readonly string[]).includes(extOf(f)));
    const unsupported = group.filter((f) => UNSUPPORTED_IMAGE_EXTENSIONS.includes(extOf(f)));
    const caption = group.find((f) => extOf(f) === '.txt' && f === `${stem}.txt`);
    if (unsupported.length)
      throw new DatasetError(`dataset ${dir}: ${join(dir, unsupported[0])} has an unsupported extension '${extOf(unsupported[0])}'; expected ${IMAGE_EXTENSIONS.join(', ')} (convert it, or remove it)`);
    if (images.length > 1)
      throw new DatasetError(`dataset ${dir}: ${images.map((f) => join(dir, f)).join(' and ')} share the caption ${join(dir, `${stem}.txt`)}; expected one image per caption`);
    if (images.length === 0) continue; // a .txt or other file without an image (README.txt, notes): not a sample
    if (!caption) {
      missing.push(join(dir, `${stem}.txt`));
      continue;
    }
    items.push({ id: stem, imagePath: join(dir, images[0]), caption: await readCaption(join(dir, caption)) });
  }
  if (missing.length)
    throw new DatasetError(
      `dataset ${dir}: ${missing.length} image(s) without a caption file: expected ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`,
    );
  if (!items.length) throw new DatasetError(`dataset ${dir}: no images found; expected ${LAYOUT}`);
  return items.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

async function readCaption(path: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  // One caption per file; surrounding whitespace (the final newline editors add) is not part of it.
  return (await readFile(path, 'utf8')).trim();
}

async function readManifest(path: string, dir: string): Promise<CaptionedImage[]> {
  const { readFile, stat } = await import('node:fs/promises');
  const { dirname, join, relative } = await import('node:path');
  const text = await readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new DatasetError(e.code === 'ENOENT' ? `manifest ${path}: no such file` : `manifest ${path}: ${e.message}`);
  });
  const base = dirname(path);
  const items: CaptionedImage[] = [];
  const seen = new Set<string>();
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].trim();
    if (!line) continue;
    const where = `manifest ${path} line ${n + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new DatasetError(`${where}: not valid JSON (${(e as Error).message}); expected {"file_name": "x.png", "text": "a caption"}`);
    }
    if (!row || typeof row !== 'object' || Array.isArray(row)) throw new DatasetError(`${where}: expected a JSON object {"file_name": …, "text": …}, got ${line.slice(0, 80)}`);
    const r = row as Record<string, unknown>;
    if (typeof r.file_name !== 'string' || !r.file_name) throw new DatasetError(`${where}: expected a string "file_name", got ${JSON.stringify(r.file_name)}`);
    const caption = r.text ?? r.caption;
    if (typeof caption !== 'string') throw new DatasetError(`${where}: expected a string "text" (or "caption"), got ${JSON.stringify(caption)}`);
    const imagePath = join(base, r.file_name);
    checkImageExtension(imagePath, where);
    if (!(await stat(imagePath).catch(() => null))?.isFile()) throw new DatasetError(`${where}: image ${imagePath} (file_name "${r.file_name}") does not exist`);
    const rel = relative(dir, imagePath).replace(/\\/g, '/');
    const id = rel.slice(0, rel.length - extOf(rel).length);
    if (seen.has(id)) throw new DatasetError(`${where}: ${imagePath} is listed twice (or shares its name with another image); expected one line per image`);
    seen.add(id);
    items.push({ id, imagePath, caption });
  }
  if (!items.length) throw new DatasetError(`manifest ${path}: no entries; expected one {"file_name": …, "text": …} object per line`);
  return items;
}
