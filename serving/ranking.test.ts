/**
 * The heuristic and the ranker plumbing, without Redis: hand-made candidates and states.
 */
import { describe, expect, it } from 'vitest';
import { DAY_MS, logWeight } from '../features/decay.ts';
import { featureNames, featureVector } from '../features/definitions.ts';
import { HALF_LIVES } from '../features/keys.ts';
import type { ArticleState, CustomerState } from '../features/state.ts';
import type { Candidate } from './candidates/index.ts';
import {
  HEURISTIC_VERSION,
  HEURISTIC_WEIGHTS,
  heuristicScore,
  heuristicSignals,
  rankCandidates,
  reasonsFor,
  type Ranker,
} from './ranking.ts';

/** The features this build computes with embeddings off (the default). */
const FEATURE_NAMES = featureNames(false);

const NOW = Date.UTC(2020, 6, 1);

const customer: CustomerState = {
  customerId: 'c1',
  n: 2,
  units: 2,
  spend: 0.05,
  priceSum: 0.05,
  first: NOW - 10 * DAY_MS,
  last: NOW - 2 * DAY_MS,
  channels: { '2': 2 },
  recent: [],
  bought: { b1: 2 },
  affinity: new Map([['pg', new Map([['Shoes', logWeight(NOW - 2 * DAY_MS, HALF_LIVES['30d'])]])]]),
  affinityTotal: logWeight(NOW - 2 * DAY_MS, HALF_LIVES['30d']),
  items: new Map([
    [
      'b1',
      {
        n: 2,
        last: NOW - 2 * DAY_MS,
        logCount: logWeight(NOW - 2 * DAY_MS, HALF_LIVES['30d'], 2),
        first: NOW - 10 * DAY_MS,
        lastUnits: 1,
      },
    ],
  ]),
  products: new Map([
    [
      'b1',
      { n: 2, last: NOW - 2 * DAY_MS, logCount: logWeight(NOW - 2 * DAY_MS, HALF_LIVES['30d'], 2) },
    ],
  ]),
  meta: { age: '31' },
};

function article(id: string, sales: number, group: string): ArticleState {
  const t = NOW - DAY_MS;
  return {
    articleId: id,
    n: sales,
    units: sales,
    revenue: sales * 0.02,
    priceSum: sales * 0.02,
    first: sales > 0 ? t : null,
    last: sales > 0 ? t : null,
    popularity:
      sales > 0
        ? {
            '1d': logWeight(t, HALF_LIVES['1d'], sales),
            '7d': logWeight(t, HALF_LIVES['7d'], sales),
            '30d': logWeight(t, HALF_LIVES['30d'], sales),
          }
        : {},
    buyers: sales,
    meta: { product_group_name: group, prod_name: `Name ${id}` },
    coBuyers: null,
  };
}

const cand = (articleId: string, c: Partial<Candidate> = {}): Candidate => ({
  articleId,
  sources: ['trending_global'],
  repurchase: null,
  copurchase: null,
  copurchaseShare: 0,
  segment: null,
  global: null,
  sibling: null,
  ranks: {},
  ...c,
});

describe('heuristic-v2', () => {
  it('computes each signal as documented', () => {
    const candidates = [
      cand('a', {
        sources: ['copurchase', 'trending_global'],
        copurchase: { logScore: 5, seed: 'b1' },
      }),
      cand('b', {
        sources: ['copurchase', 'trending_segment'],
        copurchase: { logScore: 5 - Math.LN2, seed: 'b1' },
        segment: { score: 0.5, segment: 'channel:2' },
      }),
      cand('b1', {
        sources: ['repurchase'],
        repurchase: { lastBought: NOW - 2 * DAY_MS },
      }),
    ];
    const arts = [
      article('a', 4, 'Shoes'),
      article('b', 2, 'Accessories'),
      article('b1', 0, 'Shoes'),
    ];
    const rows = arts.map((a) => featureVector(FEATURE_NAMES, { customer, article: a, now: NOW }));
    const s = heuristicSignals(candidates, FEATURE_NAMES, rows);
    expect(s[0]?.copurchase).toBeCloseTo(1, 12);
    expect(s[1]?.copurchase).toBeCloseTo(0.5, 12);
    expect(s[2]?.copurchase).toBe(0);
    expect(s[1]?.segment).toBe(0.5);
    expect(s[0]?.popularity).toBeCloseTo(1, 12);
    expect(s[1]?.popularity).toBeCloseTo(0.5, 12);
    expect(s[2]?.popularity).toBe(0);
    // Only b1 was bought (twice, 2 days ago): it has the largest time-weighted count.
    expect(s.map((x) => x.repurchase)).toEqual([0, 0, 1]);
    expect(s.map((x) => x.product)).toEqual([0, 0, 1]);
    const total = Object.values(HEURISTIC_WEIGHTS).reduce((x, w) => x + w, 0);
    expect(heuristicScore(s[2]!)).toBeCloseTo(
      (HEURISTIC_WEIGHTS.repurchase + HEURISTIC_WEIGHTS.product) / total,
      12,
    );
    expect(heuristicScore(s[0]!)).toBeCloseTo(
      (HEURISTIC_WEIGHTS.copurchase + HEURISTIC_WEIGHTS.popularity) / total,
      12,
    );
    // Scores stay in [0, 1]: every signal at 1 gives 1.
    expect(
      heuristicScore({ repurchase: 1, product: 1, copurchase: 1, popularity: 1, segment: 1 }),
    ).toBeCloseTo(1, 12);
  });

  it('ranks with the heuristic when there is no ranker', async () => {
    const candidates = [cand('low'), cand('high')];
    const articles = new Map([
      ['low', article('low', 1, 'Accessories')],
      ['high', article('high', 9, 'Accessories')],
    ]);
    const out = await rankCandidates(
      { candidates, customer, articles, now: NOW, explain: false },
      null,
      { timeoutMs: 100, features: FEATURE_NAMES },
    );
    expect(out.modelVersion).toBe(HEURISTIC_VERSION);
    expect(out.fallback).toBeNull();
    expect(out.items.map((i) => i.candidate.articleId)).toEqual(['high', 'low']);
  });
});

describe('rankCandidates with a ranker', () => {
  const candidates = [cand('x'), cand('y'), cand('z')];
  const articles = new Map(
    ['x', 'y', 'z'].map((id, i) => [id, article(id, i + 1, 'Shoes')] as const),
  );
  const input = { candidates, customer, articles, now: NOW, explain: true };

  it('orders by the returned scores and reports the version that scored', async () => {
    const ranker: Ranker = {
      version: 'm1',
      features: ['a_purchases'],
      score: (f, rows) =>
        Promise.resolve({ scores: f.map((v) => -v).subarray(0, rows), version: 'm1-swapped' }),
    };
    const out = await rankCandidates(input, ranker, { timeoutMs: 100, features: FEATURE_NAMES });
    expect(out.items.map((i) => i.candidate.articleId)).toEqual(['x', 'y', 'z']);
    expect(out.items.map((i) => i.score)).toEqual([-1, -2, -3]);
    expect(out.modelVersion).toBe('m1-swapped');
    expect(out.items[0]?.features).toEqual({ a_purchases: 1 });
  });

  it('hands the model one float32 matrix of featureVector rows, and explains with the doubles', async () => {
    const bought = (t: number, articleId: string, eventId: string) => ({
      eventId,
      articleId,
      time: NOW - t * DAY_MS,
      price: 0.02,
      channel: 2,
      quantity: 1,
    });
    // Recent purchases (newest first) exercise the per-customer index of p_recent_*.
    const withRecent: CustomerState = {
      ...customer,
      recent: [bought(1, 'y', 'e3'), bought(2, 'x', 'e2'), bought(3, 'y', 'e1')],
    };
    const many = { ...input, customer: withRecent };
    let seen: Float32Array | null = null;
    const ranker: Ranker = {
      version: 'm1',
      features: FEATURE_NAMES,
      score: (f, rows) => {
        seen = f.slice();
        return Promise.resolve({ scores: new Float32Array(rows), version: 'm1' });
      },
    };
    const out = await rankCandidates(many, ranker, { timeoutMs: 100, features: FEATURE_NAMES });
    const rows = candidates.map((c) =>
      featureVector(FEATURE_NAMES, {
        customer: withRecent,
        article: articles.get(c.articleId)!,
        now: NOW,
        candidate: c,
      }),
    );
    expect(seen).toEqual(Float32Array.from(rows.flat()));
    for (const item of out.items) {
      const row = rows[candidates.indexOf(item.candidate)]!;
      expect(item.features).toEqual(Object.fromEntries(FEATURE_NAMES.map((n, j) => [n, row[j]])));
    }
    expect(out.items.find((i) => i.candidate.articleId === 'y')?.features).toMatchObject({
      p_recent_rank: 0,
      p_recent_count: 2,
      p_days_since_bought: 1,
    });
  });

  it.each([
    ['wrong count', () => Promise.resolve({ scores: new Float32Array(1), version: 'm' })],
    ['NaN score', () => Promise.resolve({ scores: new Float32Array([1, NaN, 2]), version: 'm' })],
    ['rejection', () => Promise.reject(new Error('boom'))],
  ])('falls back to the heuristic on a %s', async (_name, score) => {
    const ranker: Ranker = { version: 'm', features: ['a_purchases'], score };
    const out = await rankCandidates(input, ranker, { timeoutMs: 100, features: FEATURE_NAMES });
    expect(out.fallback?.reason).toBe('ranker_error');
    expect(out.modelVersion).toBe(HEURISTIC_VERSION);
    expect(out.items).toHaveLength(3);
    expect(Object.keys(out.items[0]?.features ?? {})).toEqual([...FEATURE_NAMES]);
  });
});

describe('reasons', () => {
  it('explains a sibling by its product and a repurchase by the article itself', () => {
    const sib = cand('b2', {
      sources: ['siblings'],
      sibling: { logCount: 0, product: 'b1' },
    });
    const rep = cand('b1', {
      sources: ['repurchase', 'siblings'],
      repurchase: { lastBought: NOW - 2 * DAY_MS },
      sibling: { logCount: 0, product: 'b1' },
    });
    const reasons = (c: Candidate) =>
      reasonsFor(
        { candidate: c, article: article(c.articleId, 1, 'Shoes'), score: 0 },
        customer,
        new Map(),
        NOW,
      );
    expect(reasons(sib)).toContain(
      'another version of product b1, which you bought 2 time(s) (other colour or size)',
    );
    expect(reasons(rep)[0]).toBe('you bought it before (2 unit(s), last 2 day(s) ago)');
    expect(reasons(rep).join(' ')).not.toContain('another version');
  });
});
