/**
 * Serialised, coalescing re-reads: `run()` starts `work` after the one running ends, and calls made
 * while one is already queued join that queued one, so a burst of announcements costs one more
 * re-read, never one per message. Used by the live model and the live experiment of an instance.
 */
export class SerialSync<T> {
  #chain: Promise<unknown> = Promise.resolve();
  #queued: Promise<T> | null = null;

  constructor(private readonly work: () => Promise<T>) {}

  run(): Promise<T> {
    if (this.#queued !== null) return this.#queued;
    const next = this.#chain.then(() => {
      this.#queued = null;
      return this.work();
    });
    this.#queued = next;
    this.#chain = next.catch(() => undefined);
    return next;
  }

  /** Resolves once every run started so far has ended (failed ones included). */
  async settled(): Promise<void> {
    await this.#chain;
  }
}
