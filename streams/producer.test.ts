import { Partitioners } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { partitionOf } from './producer.ts';

describe('partitionOf', () => {
  it("picks kafkajs's default partition for each key, whatever partition counts came before", () => {
    const kafkajs = Partitioners.DefaultPartitioner();
    const meta = (count: number) =>
      Array.from({ length: count }, (_, i) => ({
        partitionId: i,
        leader: 0,
        replicas: [],
        isr: [],
        partitionErrorCode: 0,
      }));
    const seen = new Set<number>();
    for (const count of [1, 6, 3, 6, 12]) {
      for (let i = 0; i < 200; i++) {
        const key = `cust${i}`;
        const p = partitionOf('purchases', key, count);
        const expected = kafkajs({
          topic: 'purchases',
          partitionMetadata: meta(count),
          message: { key, value: null },
        });
        expect(p).toBe(expected);
        if (count === 12) seen.add(p);
      }
    }
    expect(seen.size).toBe(12);
  });
});
