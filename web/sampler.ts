// The demo's sampler: the real SDXL TCD pipeline (src/pipeline/tcd_sdxl_pipeline.ts: both CLIP tokenizers and text
// encoders, the UNet with the TCD scheduler, the VAE decode) built from a model folder on this server (fetchSource:
// the folder's listing, weights by HTTP Range or whole) or picked by the user (fileListSource), and the decoded RGB
// image drawn on a canvas.
import { type GenerateResult, type Gpu, type ModelSource, type ProgressFn, type RgbImage, TcdSdxlPipeline, fetchSource, fileListSource } from '../src/index.js';

export interface LoadedModel {
  pipe: TcdSdxlPipeline;
  /** Where it came from (URL or picked folder). */
  name: string;
  /** Parameters of the four models. */
  params: number;
}

export interface SampleOptions {
  prompt: string;
  steps: number;
  /** TCD γ (diffusers `eta`) in [0, 1]. */
  eta: number;
  seed: number;
  /** Image width = height, pixels (multiple of 8). */
  size: number;
}

function countParams(pipe: TcdSdxlPipeline): number {
  const size = (shape: readonly number[]) => shape.reduce((a, d) => a * d, 1);
  let n = 0;
  for (const p of pipe.unet.parameters.values()) n += size(p.shape);
  for (const p of pipe.vae.parameters.values()) n += size(p.shape);
  for (const enc of pipe.textEncoders) for (const shape of enc.paramShapes.values()) n += size(shape);
  return n;
}

export async function loadFromSource(gpu: Gpu, source: ModelSource, onProgress?: ProgressFn): Promise<LoadedModel> {
  const pipe = await TcdSdxlPipeline.fromSources(gpu, source, { scheduler: 'tcd', onProgress });
  return { pipe, name: source.name, params: countParams(pipe) };
}

/** A diffusers SDXL folder served over HTTP (the demo server serves the tiny one at /out/tiny-sdxl/). */
export async function loadFromServer(gpu: Gpu, folderUrl: string, onProgress?: ProgressFn): Promise<LoadedModel> {
  return loadFromSource(gpu, await fetchSource(new URL(folderUrl, location.href).href), onProgress);
}

/** A folder picked with <input type=file webkitdirectory>. */
export async function loadFromFiles(gpu: Gpu, files: FileList | File[], onProgress?: ProgressFn): Promise<LoadedModel> {
  return loadFromSource(gpu, fileListSource(files), onProgress);
}

/** One prompt → one image, TCD without guidance (as the CLI's `tcd sample`). */
export function sample(model: LoadedModel, o: SampleOptions, onProgress?: ProgressFn): Promise<GenerateResult> {
  return model.pipe.generate({ prompt: o.prompt, steps: o.steps, eta: o.eta, seed: o.seed, width: o.size, height: o.size, onProgress });
}

/**
 * Draws 8-bit RGB(A) pixels at their own size (canvas.width/height = the image's): the canvas holds exactly the PNG's
 * pixels, and CSS (image-rendering: pixelated) scales it up for viewing.
 */
export function drawImage(canvas: HTMLCanvasElement, img: RgbImage): void {
  const { width, height, channels, data } = img;
  const rgba = new ImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) rgba.data[4 * i + c] = data[channels * i + c];
    rgba.data[4 * i + 3] = channels === 4 ? data[4 * i + 3] : 255;
  }
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d')!.putImageData(rgba, 0, 0);
}
