// Tiled VAE decoding / encoding with diffusers' semantics (AutoencoderKL.tiled_decode / tiled_encode): the input is
// cut into square tiles of `tileIn` starting every `stride` pixels (edge tiles are cut short), each tile is run on
// its own, then each output tile is blended with the tile above (blend_v) and to its left (blend_h) over `blend`
// rows / columns with linear ramps, cropped to `rowLimit` and the crops are concatenated. As in diffusers the blends
// modify the tiles in place, in row-major order, so a tile's upper neighbour has already been blended itself.
// Tiles live on the host (they are small: a few channels); the blend mimics PyTorch's float32 arithmetic.

/** A host-side NCHW float32 tensor. */
export interface HostTensor {
  data: Float32Array;
  shape: [number, number, number, number];
}

export interface TileGeometry {
  /** Input tile edge (latent pixels for decode, image pixels for encode). */
  tileIn: number;
  /** Input step between tile origins: ⌊tileIn · (1 − overlap)⌋. */
  stride: number;
  /** Output rows / columns blended with the neighbour: ⌊tileOut · overlap⌋. */
  blend: number;
  /** Output rows / columns each tile contributes: tileOut − blend. */
  rowLimit: number;
}

/** diffusers tiled_decode: tile_latent_min_size = ⌊sample / downscale⌋, blend and limit in image pixels. */
export function decodeTileGeometry(tileSampleSize: number, downscale: number, overlapFactor: number): TileGeometry {
  const tileLatent = Math.floor(tileSampleSize / downscale);
  return geometry(tileLatent, tileSampleSize, overlapFactor, 'decode');
}

/** diffusers tiled_encode: tiles of tile_sample_min_size image pixels, blend and limit in latent pixels. */
export function encodeTileGeometry(tileSampleSize: number, downscale: number, overlapFactor: number): TileGeometry {
  const tileLatent = Math.floor(tileSampleSize / downscale);
  return geometry(tileSampleSize, tileLatent, overlapFactor, 'encode');
}

function geometry(tileIn: number, tileOut: number, f: number, what: string): TileGeometry {
  if (!(f >= 0 && f < 1)) throw new RangeError(`tiled ${what}: tile overlap factor must be in [0, 1), got ${f}`);
  const stride = Math.floor(tileIn * (1 - f));
  const blend = Math.floor(tileOut * f);
  if (tileIn < 1 || stride < 1)
    throw new RangeError(`tiled ${what}: tile of ${tileIn} input pixels with overlap ${f} leaves a step of ${stride} (needs ≥ 1)`);
  return { tileIn, stride, blend, rowLimit: tileOut - blend };
}

/** Tile origins along an axis of `size` input pixels: 0, stride, 2·stride, … < size (Python's range). */
export function tileOrigins(size: number, stride: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < size; i += stride) out.push(i);
  return out;
}

/** x[:, :, y0 : y0 + h, x0 : x0 + w], clipped to the tensor (as Python slicing). */
export function crop(t: HostTensor, y0: number, x0: number, h: number, w: number): HostTensor {
  const [B, C, H, W] = t.shape;
  const hh = Math.max(0, Math.min(h, H - y0));
  const ww = Math.max(0, Math.min(w, W - x0));
  const out = new Float32Array(B * C * hh * ww);
  for (let p = 0; p < B * C; p++)
    for (let y = 0; y < hh; y++) {
      const src = (p * H + y0 + y) * W + x0;
      out.set(t.data.subarray(src, src + ww), (p * hh + y) * ww);
    }
  return { data: out, shape: [B, C, hh, ww] };
}

const f32 = Math.fround;

/** b[:, :, y, :] = a[:, :, −e + y, :]·(1 − y/e) + b[:, :, y, :]·(y/e) for y < e = min(a.H, b.H, extent); in place. */
export function blendV(a: HostTensor, b: HostTensor, extent: number): void {
  const [B, C, Ha, Wa] = a.shape;
  const [, , Hb, Wb] = b.shape;
  const e = Math.min(Ha, Hb, extent);
  if (Wa !== Wb) throw new Error(`blend_v: tiles of widths ${Wa} and ${Wb}`);
  for (let y = 0; y < e; y++) {
    const wa = f32(1 - y / e);
    const wb = f32(y / e);
    for (let p = 0; p < B * C; p++) {
      const ra = (p * Ha + Ha - e + y) * Wa;
      const rb = (p * Hb + y) * Wb;
      for (let x = 0; x < Wb; x++) b.data[rb + x] = f32(f32(a.data[ra + x] * wa) + f32(b.data[rb + x] * wb));
    }
  }
}

/** b[:, :, :, x] = a[:, :, :, −e + x]·(1 − x/e) + b[:, :, :, x]·(x/e) for x < e = min(a.W, b.W, extent); in place. */
export function blendH(a: HostTensor, b: HostTensor, extent: number): void {
  const [B, C, Ha, Wa] = a.shape;
  const [, , Hb, Wb] = b.shape;
  const e = Math.min(Wa, Wb, extent);
  if (Ha !== Hb) throw new Error(`blend_h: tiles of heights ${Ha} and ${Hb}`);
  for (let x = 0; x < e; x++) {
    const wa = f32(1 - x / e);
    const wb = f32(x / e);
    for (let p = 0; p < B * C; p++)
      for (let y = 0; y < Hb; y++) {
        const ia = (p * Ha + y) * Wa + Wa - e + x;
        const ib = (p * Hb + y) * Wb + x;
        b.data[ib] = f32(f32(a.data[ia] * wa) + f32(b.data[ib] * wb));
      }
  }
}

/** Concatenates a grid of tiles (rows of equal heights, columns of equal widths) into one tensor. */
export function assemble(grid: HostTensor[][]): HostTensor {
  const [B, C] = grid[0][0].shape;
  const heights = grid.map((row) => row[0].shape[2]);
  const widths = grid[0].map((t) => t.shape[3]);
  const H = heights.reduce((a, b) => a + b, 0);
  const W = widths.reduce((a, b) => a + b, 0);
  const out = new Float32Array(B * C * H * W);
  let y0 = 0;
  grid.forEach((row, i) => {
    let x0 = 0;
    row.forEach((t, j) => {
      const [, , h, w] = t.shape;
      if (h !== heights[i] || w !== widths[j]) throw new Error(`assemble: tile (${i}, ${j}) is ${h}×${w}, expected ${heights[i]}×${widths[j]}`);
      for (let p = 0; p < B * C; p++)
        for (let y = 0; y < h; y++) out.set(t.data.subarray((p * h + y) * w, (p * h + y + 1) * w), (p * H + y0 + y) * W + x0);
      x0 += w;
    });
    y0 += heights[i];
  });
  return { data: out, shape: [B, C, H, W] };
}

/**
 * Runs `run` on every tile of `input` (row-major; `run` returns the tile's output on the host) and blends the
 * outputs as diffusers does. `onTile(done, total)` reports progress.
 */
export async function tiledApply(
  input: HostTensor,
  g: TileGeometry,
  run: (tile: HostTensor) => Promise<HostTensor>,
  onTile?: (done: number, total: number) => void,
): Promise<HostTensor> {
  const [, , H, W] = input.shape;
  const ys = tileOrigins(H, g.stride);
  const xs = tileOrigins(W, g.stride);
  const total = ys.length * xs.length;
  const rows: HostTensor[][] = [];
  let done = 0;
  for (const y of ys) {
    const row: HostTensor[] = [];
    for (const x of xs) {
      row.push(await run(crop(input, y, x, g.tileIn, g.tileIn)));
      onTile?.(++done, total);
    }
    rows.push(row);
  }
  const result: HostTensor[][] = rows.map((row, i) =>
    row.map((tile, j) => {
      if (i > 0) blendV(rows[i - 1][j], tile, g.blend);
      if (j > 0) blendH(row[j - 1], tile, g.blend);
      return crop(tile, 0, 0, g.rowLimit, g.rowLimit);
    }),
  );
  return assemble(result);
}
