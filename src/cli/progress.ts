// Progress of a sampling run on stderr: a cli-progress bar per stage on a terminal, one plain line per event
// otherwise (logs, CI, tests), nothing with --quiet.
import cliProgress from 'cli-progress';
import type { ProgressEvent, Stage } from '../pipeline/tcd_sdxl_pipeline.js';

const LABEL: Record<Stage, string> = { load: 'load', text: 'text encode', denoise: 'denoise', decode: 'decode' };

export class StageProgress {
  private bar?: cliProgress.SingleBar;
  private stage?: Stage;
  private readonly started = performance.now();

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
  ) {}

  get isTty(): boolean {
    return !!this.stream.isTTY;
  }

  readonly onEvent = (e: ProgressEvent): void => {
    if (!this.enabled) return;
    if (!this.isTty) {
      const at = ((performance.now() - this.started) / 1000).toFixed(1).padStart(6);
      this.stream.write(`[${at} s] ${LABEL[e.stage]} ${e.done}/${e.total}${e.detail ? ` ${e.detail}` : ''}\n`);
      return;
    }
    if (this.stage !== e.stage) {
      this.bar?.stop();
      this.stage = e.stage;
      this.bar = new cliProgress.SingleBar(
        { stream: this.stream, format: `${LABEL[e.stage].padEnd(11)} [{bar}] {value}/{total} {detail}`, hideCursor: true, barsize: 30 },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(e.total, e.done, { detail: e.detail ?? '' });
    }
    this.bar!.setTotal(e.total);
    this.bar!.update(e.done, { detail: e.detail ?? '' });
  };

  /** Ends the current bar (before printing anything else). */
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
    this.stage = undefined;
  }
}

/** One counted task (training updates, precompute examples): a bar with live fields on a terminal, else one line per update. */
export class CountProgress {
  private bar?: cliProgress.SingleBar;
  private readonly started = performance.now();

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
  ) {}

  /** done of total, with a short detail ('loss 0.0123 lr 1e-6 …'). */
  update(done: number, total: number, detail = ''): void {
    if (!this.enabled) return;
    if (!this.stream.isTTY) {
      const at = ((performance.now() - this.started) / 1000).toFixed(1).padStart(6);
      this.stream.write(`[${at} s] ${this.label} ${done}/${total}${detail ? ` ${detail}` : ''}\n`);
      return;
    }
    if (!this.bar) {
      this.bar = new cliProgress.SingleBar(
        { stream: this.stream, format: `${this.label.padEnd(11)} [{bar}] {value}/{total} {eta_formatted} {detail}`, hideCursor: true, barsize: 30 },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, done, { detail });
    }
    this.bar.setTotal(total);
    this.bar.update(done, { detail });
  }

  /** A line above the bar (checkpoints, sample grids). */
  note(line: string): void {
    if (!this.enabled) return;
    if (this.bar) {
      this.bar.stop();
      this.bar = undefined;
    }
    this.stream.write(`${line}\n`);
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
