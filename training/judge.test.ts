import { describe, expect, it } from 'vitest';
import { DAY_MS } from '../features/decay.ts';
import { PurchaseLog } from '../evaluation/purchase-log.ts';
import { labelSample } from '../evaluation/label-sample.ts';
import { labelWeek, pooledAp } from './judge.ts';

const T0 = Date.UTC(2020, 5, 1);
const EVENTS = [
  { customer: 'a', article: 'x', time: T0 },
  { customer: 'a', article: 'y', time: T0 + DAY_MS },
  { customer: 'b', article: 'x', time: T0 + 2 * DAY_MS },
  // the label week from T0 + 14 d
  { customer: 'a', article: 'x', time: T0 + 15 * DAY_MS },
  { customer: 'c', article: 'z', time: T0 + 16 * DAY_MS },
];
const log = new PurchaseLog(EVENTS);
const CUTOFF = T0 + 14 * DAY_MS;

describe('label weeks', () => {
  it('judges at most `maxCustomers` buyers: the sample the rows keep, the same whatever the seed', () => {
    const events = Array.from({ length: 40 }, (_, i) => ({
      customer: `c${String(i).padStart(2, '0')}`,
      article: `x${i % 5}`,
      time: CUTOFF + (i % 7) * DAY_MS,
    }));
    const big = new PurchaseLog([...EVENTS, ...events]);
    const all = labelWeek(big, CUTOFF, 12, Infinity);
    expect(all.customers).toHaveLength(42);
    const w = labelWeek(big, CUTOFF, 12, 10);
    expect(w.customers).toEqual(labelSample(all.customers, CUTOFF, 10));
    expect(w.customers).toHaveLength(10);
    expect([...w.customers].sort()).toEqual(w.customers);
    // Each customer keeps their own relevant set and lists.
    for (const [i, c] of w.customers.entries()) {
      expect(w.relevant[i]).toEqual(all.relevant[all.customers.indexOf(c)]);
      expect(w.lists.get('strong_heuristic')?.[i]).toEqual(
        all.lists.get('strong_heuristic')?.[all.customers.indexOf(c)],
      );
    }
    expect(w.lists.get('popular')).toHaveLength(10);
  });

  it('judges everyone who bought in the week, cold customers included, against their whole week', () => {
    const w = labelWeek(log, CUTOFF, 12, Infinity);
    expect(w.customers).toEqual(['a', 'c']);
    expect(w.cold).toBe(1);
    expect(w.relevant.map((r) => [...r])).toEqual([['x'], ['z']]);
    // a's repurchase list starts with the latest distinct purchase (y), then x: AP = 1/2.
    expect(w.lists.get('repurchase_popular')?.[0]?.slice(0, 2)).toEqual(['y', 'x']);
    expect(pooledAp([w], 'repurchase_popular', 12)[0]).toBeCloseTo(0.5, 12);
  });

  it('computes the baselines once and gives every caller its own lists to add to', () => {
    const a = labelWeek(log, CUTOFF, 12, Infinity);
    a.lists.set('ranker', [['x'], ['z']]);
    const b = labelWeek(log, CUTOFF, 12, Infinity);
    expect(b.lists.has('ranker')).toBe(false);
    expect(b.lists.get('strong_heuristic')).toBe(a.lists.get('strong_heuristic'));
    expect(pooledAp([a], 'ranker', 12)).toEqual([1, 1]);
  });
});
