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
 * With a `period` (e.g. a day), a chunk also ends before the first record of a later period than
 * every record before it, and the count starts again there: a period's records are cut into chunks
 * of `chunk` from the period's start. A replay that stops at a period boundary (a cutoff at
 * midnight) then cuts the records on both sides of it exactly as one that runs through it, so state
 * applied chunk by chunk is the same at that boundary whichever other boundaries a replay stopped
 * at. A late record (of an earlier period than one already released) joins the current chunk.
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
  /** Chunks complete and not yet emitted. */
  private closed: R[][] = [];
  /** The chunk being filled. */
  private out: R[] = [];
  /** The latest period of a released record (with `period`). */
  private lastPeriod = -Infinity;

  constructor(
    partitions: Iterable<number>,
    private readonly chunk: number,
    private readonly emit: (records: readonly R[]) => Promise<void> | void,
    /** Also end a chunk where a later period (of this many ms, from the epoch) starts. */
    private readonly period?: number,
  ) {
    if (!Number.isInteger(chunk) || chunk < 1) {
      throw new Error(`chunk must be a positive integer (got ${chunk})`);
    }
    if (period !== undefined && !(Number.isInteger(period) && period > 0)) {
      throw new Error(`period must be a positive integer of ms (got ${period})`);
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
    if (this.out.length > 0) this.close();
    await this.emitFull();
  }

  /** Records buffered and not yet emitted. */
  get buffered(): number {
    let n = this.out.length;
    for (const c of this.closed) n += c.length;
    for (const b of this.buffers.values()) n += b.records.length - b.head;
    return n;
  }

  /** Move records to the chunks while no open partition's buffer is empty. */
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
      this.place(best.record);
      b.head++;
      if (b.head === b.records.length) this.buffers.delete(best.partition);
      else if (b.head > 4096 && b.head * 2 > b.records.length) {
        b.records = b.records.slice(b.head);
        b.head = 0;
      }
    }
  }

  /** Add a released record to the chunk being filled, ending chunks at the size and the periods. */
  private place(record: R): void {
    if (this.period !== undefined) {
      const p = Math.floor(record.timestamp / this.period);
      if (p > this.lastPeriod) {
        if (this.out.length > 0) this.close();
        this.lastPeriod = p;
      }
    }
    this.out.push(record);
    if (this.out.length === this.chunk) this.close();
  }

  private close(): void {
    this.closed.push(this.out);
    this.out = [];
  }

  /** Emit every complete chunk; the one being filled stays. */
  private async emitFull(): Promise<void> {
    while (this.closed.length > 0) {
      const ready = this.closed;
      this.closed = [];
      for (const c of ready) await this.emit(c);
    }
  }
}
