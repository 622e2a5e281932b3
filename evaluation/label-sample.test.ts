import { describe, expect, it } from 'vitest';
import { labelSample, smallestHashes } from './label-sample.ts';

const ids = Array.from({ length: 500 }, (_, i) => `customer-${i}`);

describe('labelSample', () => {
  it('keeps every buyer of a week up to the size, sorted', () => {
    expect(labelSample(['b', 'a', 'c'], 1000, 3)).toEqual(['a', 'b', 'c']);
    expect(labelSample(['b', 'a'], 1000, Infinity)).toEqual(['a', 'b']);
  });

  it('keeps `max` of them beyond it, the same whatever their order, another set at another cutoff', () => {
    const a = labelSample(ids, 1000, 50);
    expect(a).toHaveLength(50);
    expect(new Set(a).size).toBe(50);
    expect([...a].sort()).toEqual(a);
    expect(labelSample([...ids].reverse(), 1000, 50)).toEqual(a);
    const other = labelSample(ids, 1000 + 7 * 86_400_000, 50);
    expect(other).not.toEqual(a);
    // A larger sample holds the smaller one (the smallest hashes first).
    expect(labelSample(ids, 1000, 100)).toEqual(expect.arrayContaining(a));
  });

  it('is the smallest hashes of the cutoff and the id', () => {
    expect(labelSample(ids, 1000, 20)).toEqual(smallestHashes(ids, 20, 'labels:1000').sort());
  });

  it('refuses a size below 1', () => {
    expect(() => labelSample(ids, 1000, 0)).toThrow('at least 1 customer');
  });
});
