// The golden suites, in the order they run (test/golden.test.ts). A new component: a module under test/golden/
// exporting a GoldenSuite (test/golden/suite.ts), added here.
import { clipSuite } from './clip.js';
import { schedulerSuite } from './scheduler.js';
import type { GoldenSuite } from './suite.js';
import { tcdLoopSuite } from './tcd_loop.js';
import { tcdTrainStepSuite } from './tcd_train_step.js';
import { tcdVectorsSuite } from './tcd_vectors.js';
import { tokenizerSuite } from './tokenizer.js';
import { unetSuite } from './unet.js';
import { vaeSuite } from './vae.js';

export const GOLDEN_SUITES: GoldenSuite[] = [unetSuite, tcdLoopSuite, schedulerSuite, tcdVectorsSuite, vaeSuite, clipSuite, tokenizerSuite, tcdTrainStepSuite];
