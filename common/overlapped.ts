/**
 * Writes that may overlap, up to `limit` in flight, so that a reader decodes its next records
 * while the store applies the last ones (training/rows.ts replays the catalogue and the purchases
 * this way). Only for writes whose order does not matter, such as last-write-wins upserts, or that
 * keep it themselves (purchase batches, each waiting on the one before: processors/purchases.ts
 * `applyAfter`). The first failure is thrown by the next `add`, or by `drain`, which waits for every
 * write.
 */
export class OverlappedWrites {
  private readonly pending = new Set<Promise<void>>();
  private failure: { readonly err: unknown } | null = null;

  constructor(private readonly limit: number) {}

  async add(write: () => Promise<unknown>): Promise<void> {
    this.throwFailure();
    const done: Promise<void> = write().then(
      () => {
        this.pending.delete(done);
      },
      (err: unknown) => {
        this.pending.delete(done);
        this.failure ??= { err };
      },
    );
    this.pending.add(done);
    if (this.pending.size >= this.limit) await Promise.race(this.pending);
    this.throwFailure();
  }

  async drain(): Promise<void> {
    await Promise.all(this.pending);
    this.throwFailure();
  }

  private throwFailure(): void {
    if (this.failure !== null) throw this.failure.err;
  }
}

/** Tasks started ahead of their use. */
export interface Ahead<T> {
  /**
   * Task i's outcome, handed over once: it is not kept after (a backtest's cycles hold their gate
   * rows until judged, and no longer).
   */
  take(i: number): Promise<T>;
  /** Start no more tasks and wait for those running (a failure of the user, say). */
  stop(): Promise<void>;
}

/**
 * Tasks 0..count-1 started in order, at most `limit` running at once, each as soon as one before
 * it ends (a backtest's trainers, which take long and whose results are used in order). A task's
 * failure is its result's rejection, seen by whoever awaits it; none goes unhandled.
 */
export function startAhead<T>(
  count: number,
  limit: number,
  task: (i: number) => Promise<T>,
): Ahead<T> {
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`limit must be >= 1 (got ${limit})`);
  // each task's settling functions, until it starts (they hold its result once it has one)
  const settle: ({ resolve: (v: T) => void; reject: (err: unknown) => void } | undefined)[] = [];
  const results = new Map(
    Array.from({ length: count }, (_, i) => [
      i,
      new Promise<T>((resolve, reject) => {
        settle[i] = { resolve, reject };
      }),
    ]),
  );
  for (const r of results.values()) r.catch(() => undefined);
  const running = new Set<Promise<void>>();
  let next = 0;
  let stopped = false;
  const launch = (): void => {
    while (!stopped && running.size < limit && next < count) {
      const i = next++;
      const s = settle[i] as NonNullable<(typeof settle)[number]>;
      settle[i] = undefined;
      const run: Promise<void> = Promise.resolve()
        .then(() => task(i))
        .then(s.resolve, s.reject)
        .finally(() => {
          running.delete(run);
          launch();
        });
      running.add(run);
    }
  };
  launch();
  return {
    take(i) {
      const r = results.get(i);
      if (r === undefined) throw new Error(`task ${i}: no such task, or taken already`);
      results.delete(i);
      return r;
    },
    async stop() {
      stopped = true;
      while (running.size > 0) await Promise.allSettled([...running]);
    },
  };
}
