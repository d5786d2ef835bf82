// Trainer data (issue 12): captioned image folders → decoded, resized, cropped / flipped SDXL training examples.
export { DatasetError, IMAGE_EXTENSIONS, listCaptionedImages, type CaptionedImage, type ListOptions } from './captioned_images.js';
export { ImageDecodeError, decodeImage, decodeImageRgba, readImageFile, sniffImageFormat, toRgb, type DecodeImageOptions, type ImageFormat } from './image_decode.js';
export { SeededRng, deriveSeed, nextFloat, nextInt, type Rng } from './rng.js';
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
