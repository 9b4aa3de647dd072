import { formatBytes } from '../core/courier.js';

/** A one-line progress display (bytes, rate, ETA when the total is known), on a terminal only. */
export class ProgressMeter {
  private bytes = 0;
  private readonly started = Date.now();
  private lastDraw = 0;
  private drawn = false;
  private total?: number;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  /** More bytes are about to move (the total grows: ETA). */
  readonly plan = (bytes: number): void => {
    this.total = (this.total ?? 0) + bytes;
  };

  readonly add = (bytes: number): void => {
    this.bytes += bytes;
    const now = Date.now();
    if (!this.stream.isTTY || now - this.lastDraw < 250) return;
    this.lastDraw = now;
    const seconds = Math.max(0.001, (now - this.started) / 1000);
    const rate = this.bytes / seconds;
    const eta = this.total && rate > 0 ? `, ETA ${Math.ceil((this.total - this.bytes) / rate)}s` : '';
    this.stream.write(`\r\x1b[2K${this.label}: ${formatBytes(this.bytes)} at ${formatBytes(rate)}/s${eta}`);
    this.drawn = true;
  };

  done(): void {
    if (this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }
}
