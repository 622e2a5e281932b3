/**
 * The retraining schedule of `npm run trainer`: a cycle at start, then one every `everyMs` (from
 * the start of the previous cycle), and one on demand (`trigger()`, SIGUSR1 in training/train-cli.ts).
 *
 *  - Cycles never overlap: a trigger or a due tick during a cycle runs right after it; several
 *    triggers (or missed ticks) while a cycle runs collapse into one.
 *  - A failed cycle goes to `onError` and the schedule continues.
 *  - Aborting `signal` stops the schedule between cycles: a running cycle is finished first,
 *    then `done` resolves.
 */

export type CycleReason = 'start' | 'interval' | 'trigger';

export interface ScheduleOptions {
  /** Interval between cycle starts (ms, > 0). */
  readonly everyMs: number;
  /** One training cycle. */
  readonly cycle: (run: { readonly n: number; readonly reason: CycleReason }) => Promise<unknown>;
  /** Stops the schedule (between cycles). */
  readonly signal?: AbortSignal;
  /** Run a cycle at start (default true); otherwise the first one is due after `everyMs`. */
  readonly runAtStart?: boolean;
  /** A cycle failed (default: ignored); the schedule goes on. */
  readonly onError?: (
    err: unknown,
    run: { readonly n: number; readonly reason: CycleReason },
  ) => void;
}

export interface Schedule {
  /** Run a cycle now, or right after the running one. */
  trigger(): void;
  /** Whether a cycle is running. */
  readonly running: boolean;
  /** Resolves when the schedule stopped (after `signal` aborted and the running cycle ended). */
  readonly done: Promise<void>;
}

/** setTimeout's longest delay; longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function runSchedule(opts: ScheduleOptions): Schedule {
  if (!(opts.everyMs > 0)) throw new Error(`the interval must be > 0 ms (got ${opts.everyMs})`);
  const { signal } = opts;
  let requested = false;
  let running = false;
  let wake: (() => void) | null = null;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const end = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', end);
        wake = null;
        resolve();
      };
      const timer = setTimeout(end, Math.min(ms, MAX_TIMER_MS));
      wake = end;
      signal?.addEventListener('abort', end, { once: true });
    });

  const loop = async () => {
    const atStart = opts.runAtStart !== false;
    let n = 0;
    let due = atStart ? Date.now() : Date.now() + opts.everyMs;
    while (signal?.aborted !== true) {
      if (!requested) {
        const wait = due - Date.now();
        if (wait > 0) {
          await sleep(wait);
          continue; // woken by the timer, a trigger or the abort: look again
        }
      }
      const reason: CycleReason = requested ? 'trigger' : n === 0 && atStart ? 'start' : 'interval';
      requested = false;
      running = true;
      due = Date.now() + opts.everyMs;
      const run = { n: ++n, reason };
      try {
        await opts.cycle(run);
      } catch (err) {
        opts.onError?.(err, run);
      } finally {
        running = false;
      }
    }
  };

  return {
    trigger() {
      requested = true;
      wake?.();
    },
    get running() {
      return running;
    },
    done: loop(),
  };
}
