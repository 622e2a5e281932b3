import { describe, expect, it } from 'vitest';
import { EventTimeMerge } from './merge.ts';

interface Rec {
  partition: number;
  offset: number;
  timestamp: number;
}

/** Partition p's records in offset order, timestamps rising with ties across partitions. */
function partitions(counts: readonly number[], late: Rec[] = []): Rec[][] {
  const out = counts.map((n, p) =>
    Array.from({ length: n }, (_, i) => ({ partition: p, offset: i, timestamp: 10 * i + (p % 2) })),
  );
  for (const r of late) (out[r.partition] as Rec[]).push(r);
  return out;
}

/** A seeded generator (mulberry32), so a failing interleaving can be replayed. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Feed the partitions to a merge in random batches and random partition order; the chunks. */
async function mergeShuffled(
  parts: readonly Rec[][],
  chunk: number,
  seed: number,
  period?: number,
) {
  const random = rng(seed);
  const chunks: Rec[][] = [];
  const merge = new EventTimeMerge<Rec>(
    parts.map((_, p) => p),
    chunk,
    (rs) => {
      chunks.push([...rs]);
    },
    period,
  );
  const next = parts.map(() => 0);
  const open = new Set(parts.map((_, p) => p));
  while (open.size > 0) {
    const list = [...open];
    const p = list[Math.floor(random() * list.length)] as number;
    const recs = parts[p] as Rec[];
    const start = next[p] as number;
    const n = Math.floor(random() * 40);
    const end = Math.min(recs.length, start + n);
    next[p] = end;
    const ended = end === recs.length;
    if (ended) open.delete(p);
    await merge.add(p, recs.slice(start, end), ended);
  }
  await merge.end();
  expect(merge.buffered).toBe(0);
  return chunks;
}

describe('EventTimeMerge', () => {
  it('gives the same chunks whatever the batches and their order across partitions', async () => {
    const parts = partitions([120, 95, 0, 133]);
    const first = await mergeShuffled(parts, 50, 1);
    for (let seed = 2; seed <= 40; seed++) {
      expect(await mergeShuffled(parts, 50, seed)).toEqual(first);
    }
    // Exact chunk sizes, the rest last; every record once.
    expect(first.map((c) => c.length)).toEqual([50, 50, 50, 50, 50, 50, 48]);
    const all = first.flat();
    expect(all).toHaveLength(348);
    // Merged on (timestamp, partition).
    for (let i = 1; i < all.length; i++) {
      const a = all[i - 1] as Rec;
      const b = all[i] as Rec;
      expect(
        a.timestamp < b.timestamp || (a.timestamp === b.timestamp && a.partition < b.partition),
      ).toBe(true);
    }
  });

  it('keeps a late record in its place in its partition', async () => {
    // Partition 1's last record is stamped before everything after its first few records.
    const parts = partitions([30, 30], [{ partition: 1, offset: 30, timestamp: 25 }]);
    const chunks = await mergeShuffled(parts, 7, 3);
    const all = chunks.flat();
    const offsets = all.filter((r) => r.partition === 1).map((r) => r.offset);
    expect(offsets).toEqual(Array.from({ length: 31 }, (_, i) => i));
    expect(await mergeShuffled(parts, 7, 4)).toEqual(chunks);
  });

  it('with a period, cuts each period from its start, wherever the replay stops', async () => {
    // Timestamps 0..1329 over 4 partitions; periods of 200 hold about 80 records.
    const parts = partitions([133, 120, 95, 133]);
    const chunk = 30;
    const whole = await mergeShuffled(parts, chunk, 1, 200);
    // Each chunk lies in one period; each period is cut into chunks of 30 from its start.
    const period = (r: Rec) => Math.floor(r.timestamp / 200);
    for (const c of whole) expect(new Set(c.map(period)).size).toBe(1);
    const sizes = new Map<number, number[]>();
    for (const c of whole) {
      const p = period(c[0] as Rec);
      sizes.set(p, [...(sizes.get(p) ?? []), c.length]);
    }
    for (const s of sizes.values()) {
      expect(s.slice(0, -1).every((n) => n === chunk)).toBe(true);
      expect(s.at(-1)).toBeLessThanOrEqual(chunk);
    }
    // Replays that stop at period boundaries (two sets of stops) give the same chunks as one
    // running through; without the period they do not.
    const stopped = async (stops: number[], withPeriod: boolean, seed: number) => {
      const bounds = [0, ...stops, Infinity];
      const out: Rec[][] = [];
      for (let i = 1; i < bounds.length; i++) {
        const [from, to] = [bounds[i - 1] as number, bounds[i] as number];
        const part = parts.map((rs) => rs.filter((r) => r.timestamp >= from && r.timestamp < to));
        out.push(...(await mergeShuffled(part, chunk, seed, withPeriod ? 200 : undefined)));
      }
      return out;
    };
    expect(await stopped([400, 1000], true, 2)).toEqual(whole);
    expect(await stopped([200, 600, 1200], true, 3)).toEqual(whole);
    expect(await stopped([400, 1000], false, 2)).not.toEqual(await stopped([200, 600], false, 2));
    expect(() => new EventTimeMerge<Rec>([0], 5, () => undefined, 0)).toThrow(/period/);
  });

  it('with a period, keeps a late record in the chunk being filled', async () => {
    const parts = partitions([30, 30], [{ partition: 1, offset: 30, timestamp: 25 }]);
    const chunks = await mergeShuffled(parts, 100, 5, 100);
    // Periods [0, 100), [100, 200), [200, 300); the late record (25) goes with the last period.
    expect(chunks.map((c) => c.length)).toEqual([20, 20, 21]);
    expect(chunks[2]?.at(-1)).toEqual({ partition: 1, offset: 30, timestamp: 25 });
  });

  it('holds records back while a partition still being read has nothing buffered', async () => {
    const emitted: Rec[] = [];
    const merge = new EventTimeMerge<Rec>([0, 1], 1, (rs) => {
      emitted.push(...rs);
    });
    await merge.add(0, [{ partition: 0, offset: 0, timestamp: 100 }], false);
    expect(emitted).toEqual([]);
    await merge.add(1, [{ partition: 1, offset: 0, timestamp: 50 }], false);
    // Partition 1's record goes first; partition 0's waits for partition 1's next one.
    expect(emitted.map((r) => r.timestamp)).toEqual([50]);
    await merge.add(1, [], true);
    expect(emitted.map((r) => r.timestamp)).toEqual([50, 100]);
    await merge.add(0, [], true);
    await merge.end();
    expect(merge.buffered).toBe(0);
  });

  it('buffers a batch of 300,000 records behind records already waiting', async () => {
    let emitted = 0;
    let last = -1;
    let ordered = true;
    const merge = new EventTimeMerge<Rec>([0, 1], 50_000, (rs) => {
      for (const r of rs) {
        ordered &&= r.offset === last + 1;
        last = r.offset;
      }
      emitted += rs.length;
    });
    const [big] = partitions([300_001]) as [Rec[]];
    // Partition 1 has nothing yet, so the first record waits and the batch joins its buffer.
    await merge.add(0, big.slice(0, 1), false);
    await merge.add(0, big.slice(1), true);
    expect(merge.buffered).toBe(300_001);
    await merge.add(1, [], true);
    await merge.end();
    expect({ emitted, ordered, buffered: merge.buffered }).toEqual({
      emitted: 300_001,
      ordered: true,
      buffered: 0,
    });
  });

  it('refuses records of a partition that ended, and an end before every partition ended', async () => {
    const merge = new EventTimeMerge<Rec>([0, 1], 10, () => undefined);
    await merge.add(0, [], true);
    await expect(merge.add(0, [{ partition: 0, offset: 1, timestamp: 1 }], false)).rejects.toThrow(
      /partition 0 is not being merged/,
    );
    await expect(merge.end()).rejects.toThrow(/partitions 1 have not ended/);
    expect(() => new EventTimeMerge<Rec>([0], 0, () => undefined)).toThrow(/chunk/);
  });
});
