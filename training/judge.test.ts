import { describe, expect, it } from 'vitest';
import { DAY_MS } from '../features/decay.ts';
import { PurchaseLog } from '../evaluation/baselines.ts';
import { labelWeek, pooledAp } from './judge.ts';

const T0 = Date.UTC(2020, 5, 1);
const log = new PurchaseLog([
  { customer: 'a', article: 'x', time: T0 },
  { customer: 'a', article: 'y', time: T0 + DAY_MS },
  { customer: 'b', article: 'x', time: T0 + 2 * DAY_MS },
  // the label week from T0 + 14 d
  { customer: 'a', article: 'x', time: T0 + 15 * DAY_MS },
  { customer: 'c', article: 'z', time: T0 + 16 * DAY_MS },
]);
const CUTOFF = T0 + 14 * DAY_MS;

describe('label weeks', () => {
  it('judges everyone who bought in the week, cold customers included, against their whole week', () => {
    const w = labelWeek(log, CUTOFF, 12);
    expect(w.customers).toEqual(['a', 'c']);
    expect(w.cold).toBe(1);
    expect(w.relevant.map((r) => [...r])).toEqual([['x'], ['z']]);
    // a's repurchase list starts with the latest distinct purchase (y), then x: AP = 1/2.
    expect(w.lists.get('repurchase_popular')?.[0]?.slice(0, 2)).toEqual(['y', 'x']);
    expect(pooledAp([w], 'repurchase_popular', 12)[0]).toBeCloseTo(0.5, 12);
  });

  it('computes the baselines once and gives every caller its own lists to add to', () => {
    const a = labelWeek(log, CUTOFF, 12);
    a.lists.set('ranker', [['x'], ['z']]);
    const b = labelWeek(log, CUTOFF, 12);
    expect(b.lists.has('ranker')).toBe(false);
    expect(b.lists.get('strong_heuristic')).toBe(a.lists.get('strong_heuristic'));
    expect(pooledAp([a], 'ranker', 12)).toEqual([1, 1]);
  });
});
