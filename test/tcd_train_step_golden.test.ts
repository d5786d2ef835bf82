// Runs the TCD training-step golden (test/golden/tcd_train_step.ts) on test/fixtures, or on TCD_GOLDEN=<dir>.
import { tcdTrainStepSuite } from './golden/tcd_train_step.js';
import { goldenDir } from './golden_io.js';

tcdTrainStepSuite.define(goldenDir('test/fixtures'));
