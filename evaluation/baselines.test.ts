import { describe, expect, it } from 'vitest';
import { DAY_MS } from '../features/decay.ts';
import {
  HeuristicState,
  fillTo,
  heuristicStateAt,
  popularBetween,
  recentDistinct,
  repurchasePopular,
  tuneWeights,
} from './baselines.ts';
import { PurchaseLog, type PurchaseEvent } from './purchase-log.ts';
import { chooseCutoffs } from './backtest/backtest.ts';
import { sampleSd as spread } from './stats.ts';

const T0 = Date.parse('2020-09-01T00:00:00Z');
const ev = (customer: string, article: string, day: number): PurchaseEvent => ({
  customer,
  article,
  time: T0 + day * DAY_MS + 3_600_000,
});

describe('baselines', () => {
  const log = new PurchaseLog([
    ev('c1', 'a', 0),
    ev('c1', 'b', 2),
    ev('c1', 'a', 5),
    ev('c2', 'b', 6),
    ev('c2', 'c', 6),
    ev('c3', 'c', 6),
    ev('c3', 'b', 4),
    ev('c4', 'd', 9),
    ev('c1', 'e', 10),
  ]);
  const cutoff = T0 + 7 * DAY_MS;

  it('popular counts purchases in the window, ties by article id', () => {
    // b: 3 (c1 d2, c2 d6, c3 d4), a: 2, c: 2 -> b, a, c
    expect(popularBetween(log, T0, cutoff, 12)).toEqual(['b', 'a', 'c']);
    expect(popularBetween(log, T0, cutoff, 2)).toEqual(['b', 'a']);
    expect(popularBetween(log, cutoff, cutoff + 7 * DAY_MS, 12)).toEqual(['d', 'e']);
  });

  it('repurchase lists distinct own purchases newest first, then fills with popular', () => {
    const h = log.historyBefore('c1', cutoff);
    expect(h.map((e) => e.article)).toEqual(['a', 'b', 'a']);
    expect(recentDistinct(h)).toEqual(['a', 'b']);
    expect(repurchasePopular(h, ['b', 'x', 'y'], 3)).toEqual(['a', 'b', 'x']);
    expect(repurchasePopular([], ['b', 'x'], 12)).toEqual(['b', 'x']);
    expect(fillTo(['a', 'b', 'c'], ['d'], 2)).toEqual(['a', 'b']);
  });

  it('labels are distinct articles per customer in [from, to)', () => {
    const labels = log.labels(cutoff, cutoff + 7 * DAY_MS);
    expect([...labels.keys()].sort()).toEqual(['c1', 'c4']);
    expect([...(labels.get('c1') ?? [])]).toEqual(['e']);
  });

  it('the strong heuristic ranks own purchases, co-purchases and popularity by weight', () => {
    const s = new HeuristicState(log, cutoff);
    // c2 bought b and c on day 6; c3 bought b (day 4) and c: b and c are co-purchased; a with b.
    const onlyRepurchase = s.recommend('c1', { repurchase: 1, copurchase: 0, popularity: 0 }, 3);
    expect(onlyRepurchase.slice(0, 2)).toEqual(['a', 'b']);
    const onlyCo = s.recommend('c2', { repurchase: 0, copurchase: 1, popularity: 0 }, 1);
    expect(['a', 'b', 'c']).toContain(onlyCo[0]);
    const onlyPop = s.recommend('nobody', { repurchase: 1, copurchase: 1, popularity: 1 }, 3);
    expect(onlyPop).toEqual(s.decayedPopular(3));
  });

  it("the heuristic's state at a cutoff is built once for consecutive uses, and is the same state", () => {
    const a = heuristicStateAt(log, cutoff);
    expect(heuristicStateAt(log, cutoff)).toBe(a);
    const b = heuristicStateAt(log, cutoff - DAY_MS);
    expect(b).not.toBe(a);
    expect(b.cutoff).toBe(cutoff - DAY_MS);
    const w = { repurchase: 1, copurchase: 1, popularity: 1 };
    const fresh = new HeuristicState(log, cutoff);
    for (const c of ['c1', 'c2', 'nobody']) {
      expect(heuristicStateAt(log, cutoff).recommend(c, w, 5)).toEqual(fresh.recommend(c, w, 5));
    }
  });

  it('weights are tuned on the given week only', () => {
    const tuned = tuneWeights(log, cutoff, 12);
    expect(tuned.map).toBeGreaterThanOrEqual(0);
    expect(tuned.weights.repurchase).toBe(1);
  });
});

describe('backtest helpers', () => {
  it('spread is the sample standard deviation', () => {
    expect(spread([1])).toBe(0);
    expect(spread([1, 3])).toBeCloseTo(Math.SQRT2, 12);
  });

  it('chooses the last weekly cutoffs that have a week of purchases after them', () => {
    const events: PurchaseEvent[] = [];
    for (let d = 0; d < 60; d++) if (d < 30 || d >= 40) events.push(ev('c', `a${d}`, d));
    const log = new PurchaseLog(events);
    const cutoffs = chooseCutoffs(log, 3);
    // Last day with data is day 59 -> the last cutoff is day 53; then 46, 39 (days 39..45 have
    // purchases from day 40 on).
    expect(cutoffs.map((c) => (c - T0) / DAY_MS)).toEqual([39, 46, 53]);
    expect(() => chooseCutoffs(log, 1, [T0 + 31 * DAY_MS])).toThrow(/no purchases in the week/);
    expect(() => chooseCutoffs(new PurchaseLog([]), 3)).toThrow(/empty/);
  });
});
