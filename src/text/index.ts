// SDXL text side: the CLIP BPE tokenizer, the CLIP text encoders and prompt conditioning.
export { ClipTokenizer, TokenizerError, type ClipTokenizerFiles, type ClipTokenizerOptions, type EncodeOptions } from './clip_tokenizer.js';
export { ClipConfigError, eosPosition, parseClipTextConfig, type ClipTextConfig, type ClipTextConfigJson } from './clip_config.js';
export { ClipTextModel, type ClipForwardOptions, type ClipTextOutput } from './clip_text_model.js';
export { encodePrompt, type EncodedPrompt, type EncodePromptOptions } from './encode_prompt.js';
