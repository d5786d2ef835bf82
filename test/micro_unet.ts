// A very small SDXL-shaped UNet config shared by the UNet tests (same block types as SDXL, text_time add
// embedding, linear projections), small enough to build and run in a second on a CPU adapter.
import type { UNetConfigJson } from '../src/unet/index.js';

export function microUNetConfig(transformerLayers: [number, number] = [1, 1]): UNetConfigJson {
  return {
    block_out_channels: [8, 16],
    down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D'],
    up_block_types: ['CrossAttnUpBlock2D', 'UpBlock2D'],
    layers_per_block: 1,
    transformer_layers_per_block: transformerLayers,
    attention_head_dim: [2, 4],
    cross_attention_dim: 8,
    norm_num_groups: 4,
    use_linear_projection: true,
    addition_embed_type: 'text_time',
    addition_time_embed_dim: 4,
    projection_class_embeddings_input_dim: 8 + 6 * 4,
  };
}
