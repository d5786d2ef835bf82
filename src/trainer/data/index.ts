// Trainer data (issue 12): captioned image folders → SDXL training examples → a precomputed latent cache. Node only
// (file system); nothing here is in the browser bundle.
//
//   const items = await listCaptionedImages('data/');            // [{ id, imagePath, caption }] (x.png + x.txt, or metadata.jsonl)
//   const models = await loadPrecomputeModels(gpu, dirSource('sdxl-base/'));   // VAE encoder, tokenizers, text encoders, modelId
//   await precomputeDataset({ gpu, ...models, items, outDir: 'cache/', resolution: 1024, centerCrop: false,
//                             randomFlip: true, seed: 0, copiesPerImage: 1, batchSize: 1, shardSize: 64, onProgress });
//   models.dispose();
//   const cache = await LatentCache.open('cache/', { resolution: 1024, modelId: models.modelId });   // CacheMismatchError if not
//   cache.length;  const b = await cache.batch([3, 17]);
//   // b.latents {data, shape [B, 4, 128, 128]} (already ·scaling_factor: the UNet's input space, sampled from latent_dist)
//   // b.promptEmbeds [B, 77, 2048], b.pooledPromptEmbeds [B, 1280], b.timeIds [B, 6], b.info [{id, caption, cropTopLeft, …}]
//   await cache.close();
//   new LatentCacheSource(await LatentCache.open('cache/', expect))   // the distiller's ExampleSource
//
// Unconditional embeddings (zeros, as the LCM/TCD script) are the trainer's to make. Randomness comes from an Rng
// ({ nextU32() }); SeededRng's state is one u32 (save it in a checkpoint); shuffledIndices(n, rng) orders an epoch.
// Without a cache, prepareImage(readImageFile(path), { resolution, centerCrop, randomFlip }, rng) gives one example's
// pixels [3, res, res] in [-1, 1] and its time ids.
export { DatasetError, IMAGE_EXTENSIONS, listCaptionedImages, type CaptionedImage, type ListOptions } from './captioned_images.js';
export { ImageDecodeError, applyExifOrientation, decodeImage, decodeImageRgba, readImageFile, sniffImageFormat, toRgb, type DecodeImageOptions, type ImageFormat } from './image_decode.js';
export { decodeJpegRgba, parseJpegFrame, type JpegFrameInfo } from './jpeg_libjpeg.js';
export { SeededRng, deriveSeed, nextFloat, nextInt, shuffledIndices, type Rng } from './rng.js';
export {
  TransformError,
  cropImage,
  cropTopLeft,
  flipHorizontal,
  prepareImage,
  resizeBilinear,
  resizeShorterSide,
  resizedSize,
  sdxlTimeIds,
  type PreparedImage,
  type TransformOptions,
} from './transforms.js';
export {
  CACHE_FORMAT,
  CACHE_TENSORS,
  CacheMismatchError,
  LatentCache,
  LatentCacheError,
  LatentCacheSource,
  readCacheIndex,
  type CacheConfig,
  type CacheExpectation,
  type CacheIndex,
  type CachedBatch,
  type CachedExample,
  type CachedExampleInfo,
} from './latent_cache.js';
export {
  latentNoise,
  loadPrecomputeModels,
  modelFingerprint,
  precomputeDataset,
  type PrecomputeModels,
  type PrecomputeOptions,
  type PrecomputeProgress,
  type PrecomputeResult,
} from './precompute.js';
