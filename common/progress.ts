/**
 * Progress reporting for long CLI steps: a cli-progress bar on a terminal, a plain line every few
 * seconds otherwise (CI logs), nothing when disabled.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  /** Set the current count. */
  update(value: number): void;
  /** Finish with a final count. */
  stop(value?: number): void;
}

export function progress(label: string, total: number, enabled = true): Progress {
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
  let last = 0;
  let current = 0;
  const line = () => {
    process.stderr.write(`${label}: ${current}/${total}\n`);
  };
  return {
    update: (v) => {
      current = v;
      if (Date.now() - last > 3_000) {
        last = Date.now();
        line();
      }
    },
    stop: (v) => {
      if (v !== undefined) current = v;
      line();
    },
  };
}
