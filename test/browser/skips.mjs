// Tests of the browser-run files that cannot run in a page, by file and full name (describe titles and the test
// title joined by ' > '), each with the reason. Reported as skipped, with the reason, in the results.
export const BROWSER_SKIPS = [
  {
    file: 'safetensors',
    test: 'safetensors > writes atomically: a failed write leaves the existing file untouched and no temporary behind',
    reason: 'file system (writeSafetensors / node:fs)',
  },
  {
    file: 'safetensors',
    test: 'safetensors > the file source reports a truncated file by byte position',
    reason: 'file system (fileSource / node:fs)',
  },
];

// Run only with --full (or TCD_BROWSER_FULL=1): minutes each on SwiftShader on 2 CPU cores (mostly shader
// compilation of every backward pipeline), and run in Node on every `npm test`. The golden forward stays in.
export const BROWSER_SLOW = [
  {
    file: 'golden',
    test: 'tiny_unet: UNet2DConditionModel vs golden > LoRA (unfused): output, loss and gradients w.r.t. sample, text inputs and every LoRA tensor',
    reason: 'slow on SwiftShader (about 4 min on 2 cores); run with --full',
  },
  {
    file: 'golden',
    test: 'tiny_unet: UNet2DConditionModel vs golden > gradient checkpointing (resnets + transformer blocks): same gradients, every activation freed',
    reason: 'needs the LoRA test above; slow on SwiftShader; run with --full',
  },
];
