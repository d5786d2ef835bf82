// Public API of the SDXL VAE (AutoencoderKL): model, config, latent distribution, image conversions, tiling helpers.
export { AutoencoderKL, type AutoencoderKLOptions, type TilingOptions, type VaePlan } from './autoencoder_kl.js';
export { resolveVaeConfig, VaeConfigError, type VaeConfigJson, type ResolvedVaeConfig } from './config.js';
export { DiagonalGaussian } from './distribution.js';
export { toImage, fromImage, imageToBytes, bytesToImage, toByte, type RgbImage } from './image.js';
export { type HostTensor, type TileGeometry, decodeTileGeometry, encodeTileGeometry, tiledApply, blendV, blendH } from './tiling.js';
export { type VaeAttentionImpl, matmulAttention } from './blocks.js';
export type { VaeParts } from './weights.js';
