// Random-access byte sources, so large checkpoints are read tensor by tensor instead of whole:
// Node files (FileHandle.read at an offset) and browser Blobs/Files (Blob.slice).

export interface ByteSource {
  readonly name: string;
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

export function bytesSource(bytes: Uint8Array, name = 'memory'): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    async read(offset, length) {
      return bytes.subarray(offset, offset + length);
    },
    async close() {},
  };
}

export function blobSource(blob: Blob, name = (blob as File).name ?? 'blob'): ByteSource {
  return {
    name,
    size: blob.size,
    async read(offset, length) {
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
    async close() {},
  };
}

/** Node only: a file read by ranges. */
export async function fileSource(path: string): Promise<ByteSource> {
  const { open } = await import('node:fs/promises');
  const fh = await open(path, 'r');
  const { size } = await fh.stat();
  return {
    name: path,
    size,
    async read(offset, length) {
      const buf = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at byte ${offset + done} (file is ${size} bytes)`);
        done += bytesRead;
      }
      return buf;
    },
    close: () => fh.close(),
  };
}
