/**
 * Where a topic's records of each interval lie, per partition. An incremental replay over
 * ascending cutoffs c_0 < c_1 < ... (training's rows) replays [c_{i-1}, c_i) once per cutoff; read
 * from the interval's first offset to the topic's end, every replay re-reads the tail after it,
 * which costs the cutoffs times the topic. An index fed every record of one pass over the topic
 * (`replay`'s `onRead`) keeps, per interval and partition, the lowest and highest offset of a
 * record stamped within it, so a later replay of an interval reads only that span (`replay`'s
 * `ranges`). Exact whatever the order of the timestamps: a record published late (after
 * later-stamped ones) lies within its interval's span, which then also covers records of other
 * intervals, filtered out by timestamp as before. The spans are those of the records the indexed
 * pass read: records appended after it began are left out, so every interval reads the topic as it
 * stood then.
 */
import type { PartitionRange } from './replay.ts';

export class OffsetIndex {
  /** Per partition, [lowest, highest] offset of each interval's records (NaN: none yet). */
  private readonly spans = new Map<number, Float64Array>();
  /** An offset past 2^53 was read: the spans cannot hold it exactly, so none are given. */
  private unusable = false;

  /**
   * @param boundaries ascending instants (ms): interval i is [boundaries[i], boundaries[i + 1]);
   *   records stamped before the first or at or after the last are not indexed.
   */
  constructor(private readonly boundaries: readonly number[]) {
    for (let i = 1; i < boundaries.length; i++) {
      if (!((boundaries[i] as number) > (boundaries[i - 1] as number))) {
        throw new Error(`offset index boundaries must ascend (got ${boundaries.join(', ')})`);
      }
    }
  }

  /** One record read by the indexed pass. */
  observe(partition: number, offset: string, timestamp: number): void {
    const i = this.interval(timestamp);
    if (i < 0) return;
    const o = Number(offset);
    if (!Number.isSafeInteger(o)) {
      this.unusable = true;
      return;
    }
    let s = this.spans.get(partition);
    if (s === undefined) {
      s = new Float64Array(2 * (this.boundaries.length - 1)).fill(NaN);
      this.spans.set(partition, s);
    }
    const lo = s[2 * i] as number;
    const hi = s[2 * i + 1] as number;
    if (!(o >= lo)) s[2 * i] = o;
    if (!(o <= hi)) s[2 * i + 1] = o;
  }

  /**
   * The offsets to read for the records stamped in [from, to), per partition of `read` (the ranges
   * the indexed pass read): the span of the intervals between those two boundaries, empty where
   * the partition has none. Null when `from` and `to` are not boundaries, or offsets were too
   * large: then the caller reads as without an index.
   */
  ranges(from: number, to: number, read: readonly PartitionRange[]): PartitionRange[] | null {
    const first = this.boundaries.indexOf(from);
    const end = this.boundaries.indexOf(to);
    if (this.unusable || first < 0 || end <= first) return null;
    return read.map(({ partition, end: readEnd }) => {
      const s = this.spans.get(partition);
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = first; s !== undefined && i < end; i++) {
        const l = s[2 * i] as number;
        if (Number.isNaN(l)) continue;
        lo = Math.min(lo, l);
        hi = Math.max(hi, s[2 * i + 1] as number);
      }
      return lo === Infinity
        ? { partition, start: readEnd, end: readEnd }
        : { partition, start: String(lo), end: String(hi + 1) };
    });
  }

  /** The interval holding `t`, -1 outside them all. */
  private interval(t: number): number {
    const b = this.boundaries;
    if (b.length < 2 || t < (b[0] as number) || t >= (b[b.length - 1] as number)) return -1;
    let lo = 0;
    let hi = b.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((b[mid] as number) <= t) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
