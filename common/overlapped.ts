/**
 * Writes that may overlap, up to `limit` in flight, so that a reader decodes its next records
 * while the store applies the last ones (training/rows.ts replays the catalogue this way). Only for
 * writes whose order does not matter, such as last-write-wins upserts. The first failure is thrown
 * by the next `add`, or by `drain`, which waits for every write.
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
