/**
 * Event-time merge of a topic's partitions. A replay receives each partition's records in offset
 * order, batch by batch, but the order of batches across partitions and where batches end depend
 * on fetch timing; state built from them (trimmed co-purchase and trending sets, float sums) then
 * differs from run to run. `EventTimeMerge` turns them into one sequence that depends only on the
 * records: a k-way merge on (timestamp, partition) of the partitions' records in offset order, cut
 * into chunks of exactly `chunk` records (the last one shorter). A record stamped before records
 * ahead of it in its partition (published late) keeps its place in the partition, so per-partition
 * offset order (what the processors' offset guards rely on) always holds.
 *
 * A record is released only when every partition still being read has a buffered record or has
 * ended: the sequence is the one a merge of the complete partitions gives, whatever the order in
 * which batches arrive. Memory: what is buffered ahead of the slowest partition (kafkajs fetches
 * every partition in each request, so about a fetch per partition).
 */

export interface Stamped {
  readonly partition: number;
  readonly timestamp: number;
}

export class EventTimeMerge<R extends Stamped> {
  /** Per partition: buffered records and the index of the first one not yet released. */
  private readonly buffers = new Map<number, { records: R[]; head: number }>();
  /** Partitions that may still deliver records. */
  private readonly open: Set<number>;
  private out: R[] = [];

  constructor(
    partitions: Iterable<number>,
    private readonly chunk: number,
    private readonly emit: (records: readonly R[]) => Promise<void> | void,
  ) {
    if (!Number.isInteger(chunk) || chunk < 1) {
      throw new Error(`chunk must be a positive integer (got ${chunk})`);
    }
    this.open = new Set(partitions);
  }

  /**
   * A partition's next records (in offset order); `ended`: it has nothing more. Releases what
   * became releasable and emits every full chunk.
   */
  async add(partition: number, records: readonly R[], ended: boolean): Promise<void> {
    if (!this.open.has(partition)) {
      throw new Error(`partition ${partition} is not being merged (unknown or already ended)`);
    }
    if (records.length > 0) {
      const b = this.buffers.get(partition);
      // A loop, not push(...records): spreading a batch of 150k+ records overflows the stack.
      if (b) for (const r of records) b.records.push(r);
      else this.buffers.set(partition, { records: [...records], head: 0 });
    }
    if (ended) this.open.delete(partition);
    this.release();
    await this.emitFull();
  }

  /** Every partition ended: emit the rest (an error if one is still open). */
  async end(): Promise<void> {
    if (this.open.size > 0) {
      throw new Error(`partitions ${[...this.open].join(',')} have not ended`);
    }
    this.release();
    await this.emitFull();
    if (this.out.length > 0) {
      const rest = this.out;
      this.out = [];
      await this.emit(rest);
    }
  }

  /** Records buffered and not yet emitted. */
  get buffered(): number {
    let n = this.out.length;
    for (const b of this.buffers.values()) n += b.records.length - b.head;
    return n;
  }

  /** Move records to `out` while no open partition's buffer is empty. */
  private release(): void {
    for (;;) {
      for (const p of this.open) {
        const b = this.buffers.get(p);
        if (!b || b.head >= b.records.length) return; // an open partition might still go first
      }
      let best: { partition: number; record: R; buffer: { records: R[]; head: number } } | null =
        null;
      for (const [partition, buffer] of this.buffers) {
        const record = buffer.records[buffer.head];
        if (record === undefined) continue;
        if (
          best === null ||
          record.timestamp < best.record.timestamp ||
          (record.timestamp === best.record.timestamp && partition < best.partition)
        ) {
          best = { partition, record, buffer };
        }
      }
      if (best === null) return;
      const b = best.buffer;
      this.out.push(best.record);
      b.head++;
      if (b.head === b.records.length) this.buffers.delete(best.partition);
      else if (b.head > 4096 && b.head * 2 > b.records.length) {
        b.records = b.records.slice(b.head);
        b.head = 0;
      }
    }
  }

  /** Emit every full chunk of `out`; the rest (shorter than a chunk) stays. */
  private async emitFull(): Promise<void> {
    if (this.out.length < this.chunk) return;
    const ready = this.out;
    const full = ready.length - (ready.length % this.chunk);
    this.out = ready.slice(full);
    for (let i = 0; i < full; i += this.chunk) await this.emit(ready.slice(i, i + this.chunk));
  }
}
