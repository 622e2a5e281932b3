/**
 * The online read-out's arithmetic without Kafka: the purchase window's bounds, AP and hit on
 * the first k in rank order, one list per request id, variant labels, and the read-out of two
 * engineered variants: exact point values, intervals that contain them and are as wide as a
 * bootstrap over customers (not over lists) makes them, the difference's sign, the fallback
 * slice, coverage and its rarefied form, open windows, and the baseline.
 */
import { describe, expect, it } from 'vitest';
import type { Served } from '../../schemas/events.ts';
import {
  distinctRequests,
  readout,
  scoreLists,
  toServedList,
  variantLabeller,
  type Bought,
  type ServedList,
} from './readout.ts';

const DAY = 86_400_000;
const T = Date.UTC(2024, 2, 1);
const W = 7 * DAY;

function list(over: Partial<ServedList> & { customerId: string; articles: string[] }): ServedList {
  return {
    requestId: `${over.customerId}-${over.time ?? T}-${over.variant ?? 'control'}`,
    time: T,
    experiment: 'exp',
    variant: 'control',
    rankedBy: 'model',
    degraded: false,
    coldStart: false,
    ...over,
  };
}

const buy = (customerId: string, articleId: string, time: number): Bought => ({
  customerId,
  articleId,
  time,
});

describe('scoreLists', () => {
  it('counts purchases in (t, t + window]: not at t, not before, at t + window, not after', () => {
    const l = list({ customerId: 'c', articles: ['a', 'b', 'c', 'd', 'e'] });
    const [o] = scoreLists(
      [l],
      [
        buy('c', 'a', T), // at t: out
        buy('c', 'b', T - 1), // before: out
        buy('c', 'c', T + W), // at the window's end: in
        buy('c', 'd', T + W + 1), // after: out
        buy('other', 'e', T + 1), // someone else: out
      ],
      { windowMs: W, k: 12 },
    );
    expect(o?.relevant).toBe(1);
    expect(o?.hit).toBe(true);
    expect(o?.ap).toBeCloseTo(1 / 3, 12); // the hit at rank 3
  });

  it('scores the first k articles in rank order, distinct purchases, AP over min(|bought|, k)', () => {
    const served: Served = {
      request_id: 'r1',
      customer_id: 'c',
      served_at: T,
      features_now: T - 30 * DAY,
      model_version: 'm1',
      ranked_by: 'model',
      experiment: null,
      variant: 'default',
      degraded: false,
      cold_start: false,
      // Out of order on purpose: rank decides.
      items: [
        { article_id: 'x', rank: 2, score: 0.5, sources: [] },
        { article_id: 'y', rank: 3, score: 0.4, sources: [] },
        { article_id: 'w', rank: 1, score: 0.9, sources: ['repurchase'] },
      ],
    };
    const l = toServedList(served, 'served');
    expect(l.articles).toEqual(['w', 'x', 'y']);
    expect(toServedList(served, 'features').time).toBe(T - 30 * DAY);
    const bought = [buy('c', 'x', T + DAY), buy('c', 'x', T + 2 * DAY), buy('c', 'y', T + DAY)];
    const [o] = scoreLists([l], bought, { windowMs: W, k: 12 });
    expect(o?.relevant).toBe(2);
    expect(o?.ap).toBeCloseTo((1 / 2 + 2 / 3) / 2, 12);
    expect(o?.apAtEachK?.[0]).toBe(0);
    // With k = 1 only 'w' is shown: no hit although two articles were bought.
    const [o1] = scoreLists([l], bought, { windowMs: W, k: 1 });
    expect([o1?.hit, o1?.ap]).toEqual([false, 0]);
  });
});

describe('lists and labels', () => {
  it('keeps the first record of a request id', () => {
    const a = list({ customerId: 'c', articles: ['a'], requestId: 'r' });
    const b = list({ customerId: 'c', articles: ['b'], requestId: 'r' });
    const { lists, copies } = distinctRequests([a, b]);
    expect(lists).toEqual([a]);
    expect(copies).toBe(1);
  });

  it('names lists by variant, by experiment/variant when two experiments share a name', () => {
    const a = list({ customerId: 'c', articles: [], variant: 'control', experiment: 'e1' });
    const b = list({ customerId: 'c', articles: [], variant: 'default', experiment: null });
    expect([a, b].map(variantLabeller([a, b]))).toEqual(['control', 'default']);
    const c = list({ customerId: 'c', articles: [], variant: 'control', experiment: 'e2' });
    expect([a, b, c].map(variantLabeller([a, b, c]))).toEqual([
      'e1/control',
      '-/default',
      'e2/control',
    ]);
  });
});

describe('readout', () => {
  // control: 100 customers x 4 lists; customers 0..49 bought their rank-1 article after all four
  // (AP 1), 50..99 bought nothing. treatment: 60 customers x 2 lists; 0..14 bought their rank-2
  // article (AP 1/2), the rest an article not shown; customer 59's second list is from the
  // trending cache (degraded). Catalogue: 400 articles.
  const lists: ServedList[] = [];
  const bought: Bought[] = [];
  for (let i = 0; i < 100; i++) {
    const articles = Array.from({ length: 12 }, (_, j) => `a${(i + j) % 100}`);
    for (let n = 0; n < 4; n++) {
      lists.push(list({ customerId: `c${i}`, articles, time: T + n * 3_600_000 }));
    }
    if (i < 50) bought.push(buy(`c${i}`, `a${i % 100}`, T + DAY));
  }
  for (let i = 0; i < 60; i++) {
    const articles = Array.from({ length: 12 }, (_, j) => `a${100 + ((i + j) % 30)}`);
    lists.push(list({ customerId: `t${i}`, variant: 'treatment', articles }));
    lists.push(
      i === 59
        ? list({
            customerId: `t${i}`,
            variant: 'treatment',
            articles: ['a300', 'a301'],
            rankedBy: 'trending_cache',
            degraded: true,
            time: T + 1,
          })
        : list({ customerId: `t${i}`, variant: 'treatment', articles, time: T + 1 }),
    );
    bought.push(buy(`t${i}`, i < 15 ? `a${100 + ((i + 1) % 30)}` : 'a399', T + 2 * DAY));
  }
  const catalogue = new Set(Array.from({ length: 400 }, (_, i) => `a${i}`));
  const r = readout(lists, bought, { k: 12, windowMs: W, catalogue, horizon: T + 30 * DAY });
  const control = r.variants.find((v) => v.variant === 'control');
  const treatment = r.variants.find((v) => v.variant === 'treatment');

  it('gives each variant its exact lists, customers, hit rate, MAP and coverage', () => {
    expect(r.variants.map((v) => v.variant)).toEqual(['control', 'treatment']);
    expect(control).toMatchObject({ lists: 400, customers: 100, listsWithPurchase: 200 });
    expect(control?.hitRate.value).toBe(0.5);
    expect(control?.map.value).toBe(0.5);
    expect(control?.mapBuyers.value).toBe(1);
    expect(control?.coverage?.value).toBe(100 / 400);
    expect(treatment).toMatchObject({ lists: 120, customers: 60, listsWithPurchase: 120 });
    expect(treatment?.hitRate.value).toBeCloseTo(30 / 120, 12);
    expect(treatment?.map.value).toBeCloseTo((30 * 0.5) / 120, 12);
    // 30 articles from the model's lists and 2 from the trending cache.
    expect(treatment?.coverage?.value).toBe(32 / 400);
    expect(treatment?.rankedBy).toEqual({ model: 119, trending_cache: 1 });
    expect(treatment?.degraded).toBe(1);
    expect(r).toMatchObject({ lists: 520, customers: 160, catalogueSize: 400, openWindows: 0 });
  });

  it('reports the fallback lists under their variant and on their own', () => {
    expect(treatment?.fallback).toMatchObject({ lists: 1, customers: 1 });
    expect(treatment?.fallback?.hitRate.value).toBe(0);
    expect(treatment?.asRanked).toMatchObject({ lists: 119, customers: 60 });
    expect(control?.fallback).toBeNull();
  });

  it('gives intervals around the values, as wide as resampling customers makes them', () => {
    for (const v of r.variants) {
      for (const e of [v.hitRate, v.map, v.coverage]) {
        expect(e?.low).toBeLessThanOrEqual(e?.value ?? NaN);
        expect(e?.high).toBeGreaterThanOrEqual(e?.value ?? NaN);
      }
    }
    // Control's hit rate is a Bernoulli(0.5) per customer: s.e. 0.05 over 100 customers, so
    // the 95 % interval spans about 0.2; resampling its 400 lists would give about 0.1.
    const width = (control?.hitRate.high ?? 0) - (control?.hitRate.low ?? 0);
    expect(width).toBeGreaterThan(0.16);
    expect(width).toBeLessThan(0.24);
  });

  it('compares each variant with the baseline, control, by an unpaired bootstrap', () => {
    expect(r.baseline).toBe('control');
    expect(r.differences).toHaveLength(1);
    const d = r.differences[0];
    expect(d?.variant).toBe('treatment');
    expect(d?.hitRate.value).toBeCloseTo(0.25 - 0.5, 12);
    expect(d?.hitRate.high).toBeLessThan(0);
    expect(d?.hitRate.low).toBeLessThan(d?.hitRate.value ?? NaN);
    expect(d?.hitRate.above).toBeLessThan(0.01);
    expect(d?.map.value).toBeCloseTo(0.125 - 0.5, 12);
    expect(d?.map.high).toBeLessThan(0);
    expect(d?.coverage?.value).toBeCloseTo(32 / 400 - 100 / 400, 12);
    expect(d?.coverage?.high).toBeLessThan(0);
  });

  it('rarefies coverage to the smallest variant’s customers', () => {
    expect(r.matchedCustomers).toBe(60);
    // Treatment has 60 customers: rarefied to 60, its coverage is its own.
    expect(treatment?.coverageMatched).toBeCloseTo(32 / 400, 12);
    // 60 of control's 100 customers (each showing a12 consecutive articles of 100) cover at
    // most 100 articles and at least 60 + 11.
    expect(control?.coverageMatched).toBeGreaterThan(71 / 400);
    expect(control?.coverageMatched).toBeLessThanOrEqual(100 / 400);
  });

  it('counts open windows, honours an asked baseline and refuses an unknown one', () => {
    const late = readout(lists, bought, {
      k: 12,
      windowMs: W,
      catalogue,
      horizon: T + W,
      baseline: 'treatment',
      iterations: 200,
    });
    // Control's lists at T + 1 h, 2 h, 3 h and treatment's at T + 1 end after the horizon T + W.
    expect(late.openWindows).toBe(300 + 60);
    expect(late.baseline).toBe('treatment');
    expect(late.differences[0]?.variant).toBe('control');
    expect(late.differences[0]?.hitRate.value).toBeCloseTo(0.25, 12);
    expect(() =>
      readout(lists, bought, { k: 12, windowMs: W, catalogue, horizon: T, baseline: 'nope' }),
    ).toThrow(/baseline "nope" is not a variant/);
  });

  it('reports no coverage without a catalogue, and nothing for no lists', () => {
    const noCat = readout(lists, bought, {
      k: 12,
      windowMs: W,
      catalogue: new Set(),
      horizon: T + 30 * DAY,
      iterations: 100,
    });
    expect(noCat.variants[0]?.coverage).toBeNull();
    expect(noCat.variants[0]?.coverageMatched).toBeNull();
    expect(noCat.differences[0]?.coverage).toBeNull();
    const empty = readout([], bought, { k: 12, windowMs: W, catalogue, horizon: T });
    expect(empty).toMatchObject({ lists: 0, customers: 0, variants: [], differences: [] });
    expect(empty.baseline).toBeNull();
  });
});
