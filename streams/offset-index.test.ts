import { describe, expect, it } from 'vitest';
import { OffsetIndex } from './offset-index.ts';
import type { PartitionRange } from './replay.ts';

/** The pass read partitions 0 and 1 to offset 100 and 50, and partition 2 not at all. */
const READ: PartitionRange[] = [
  { partition: 0, start: '0', end: '100' },
  { partition: 1, start: '0', end: '50' },
  { partition: 2, start: '7', end: '7' },
];

describe('OffsetIndex', () => {
  it("gives each interval's span of offsets per partition, a late record's included", () => {
    const index = new OffsetIndex([10, 20, 30, 40]);
    // Partition 0: offset o stamped o, but offset 90 is a late record stamped 15.
    for (let o = 0; o < 100; o++) index.observe(0, String(o), o === 90 ? 15 : o);
    // Partition 1: records stamped 20..29 only, at offsets 5..14.
    for (let o = 5; o < 15; o++) index.observe(1, String(o), o + 15);

    expect(index.ranges(10, 20, READ)).toEqual([
      { partition: 0, start: '10', end: '91' },
      { partition: 1, start: '50', end: '50' },
      { partition: 2, start: '7', end: '7' },
    ]);
    expect(index.ranges(20, 30, READ)).toEqual([
      { partition: 0, start: '20', end: '30' },
      { partition: 1, start: '5', end: '15' },
      { partition: 2, start: '7', end: '7' },
    ]);
    // Several intervals: the union of their spans.
    expect(index.ranges(20, 40, READ)?.[0]).toEqual({ partition: 0, start: '20', end: '40' });
    expect(index.ranges(10, 40, READ)?.[1]).toEqual({ partition: 1, start: '5', end: '15' });
  });

  it('gives nothing for instants that are not boundaries or offsets past 2^53', () => {
    const index = new OffsetIndex([10, 20, 30]);
    index.observe(0, '3', 12);
    expect(index.ranges(5, 20, READ)).toBeNull();
    expect(index.ranges(10, 25, READ)).toBeNull();
    expect(index.ranges(20, 10, READ)).toBeNull();
    expect(index.ranges(10, 20, READ)).not.toBeNull();
    index.observe(0, '9007199254740993', 25);
    expect(index.ranges(10, 20, READ)).toBeNull();
  });

  it('leaves out records stamped before the first boundary or at the last, and refuses boundaries out of order', () => {
    const index = new OffsetIndex([10, 20]);
    index.observe(0, '1', 9);
    index.observe(0, '2', 20);
    expect(index.ranges(10, 20, READ)?.[0]).toEqual({ partition: 0, start: '100', end: '100' });
    expect(() => new OffsetIndex([10, 10])).toThrow(/ascend/);
  });
});
