/**
 * Progress reporting for long CLI steps: a cli-progress bar on a terminal; off a terminal (CI
 * logs, `npm run demo | tee`) a plain line every few seconds and one at the end —
 * `read articles.csv: 10,000 rows (41 %), 12,345 rows/s` (`progressLine`), the share only when
 * the total is known; nothing when disabled.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  /** Set the current count. */
  update(value: number): void;
  /** Finish with a final count. */
  stop(value?: number): void;
}

/** How often the plain lines are printed off a terminal (ms). */
export const PLAIN_PROGRESS_EVERY_MS = 3_000;

const count = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/**
 * One plain progress line: `<label>: <done> <unit> [(<share> %)], <rate> <unit>/s`, counts with
 * thousands separators; the share only when `total` > 0 (0 = unknown); the rate only after some
 * time has passed. With `done` true the line says so and gives the mean rate.
 */
export function progressLine(s: {
  readonly label: string;
  readonly value: number;
  readonly total: number;
  readonly elapsedMs: number;
  readonly unit?: string;
  readonly done?: boolean;
}): string {
  const unit = s.unit ?? 'rows';
  const share =
    s.total > 0 ? ` (${Math.min(100, Math.floor((100 * s.value) / s.total)).toString()} %)` : '';
  const of = s.total > 0 && s.done !== true ? ` of ${count.format(s.total)}` : '';
  const rate =
    s.elapsedMs >= 100 ? `, ${count.format((s.value * 1000) / s.elapsedMs)} ${unit}/s` : '';
  const time = s.done === true ? ` in ${(s.elapsedMs / 1000).toFixed(1)} s` : '';
  return `${s.label}: ${s.done === true ? 'done, ' : ''}${count.format(s.value)}${of} ${unit}${share}${rate}${time}`;
}

export function progress(label: string, total: number, enabled = true, unit = 'rows'): Progress {
  if (!enabled) return { update: () => undefined, stop: () => undefined };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label.padEnd(22)} [{bar}] {percentage}% | {value}/{total} | {eta_formatted} left`,
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(Math.max(total, 1), 0);
    return {
      update: (v) => {
        bar.update(v);
      },
      stop: (v) => {
        if (v !== undefined) bar.update(v);
        bar.stop();
      },
    };
  }
  const started = Date.now();
  let last = started;
  let current = 0;
  const line = (done: boolean) => {
    const elapsedMs = Date.now() - started;
    process.stderr.write(
      `${progressLine({ label, value: current, total, elapsedMs, unit, done })}\n`,
    );
  };
  return {
    update: (v) => {
      current = v;
      if (Date.now() - last >= PLAIN_PROGRESS_EVERY_MS) {
        last = Date.now();
        line(false);
      }
    },
    stop: (v) => {
      if (v !== undefined) current = v;
      line(true);
    },
  };
}
