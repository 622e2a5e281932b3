import { describe, expect, it } from 'vitest';
import { logWeight } from './decay.ts';
import { featureVector } from './definitions.ts';
import type { CandidateEvidence, FeatureContext } from './feature.ts';
import {
  emptyArticleState,
  parseCustomerState,
  type ArticleStat,
  type CustomerState,
  type ItemStat,
} from './state.ts';

const DAY = 86_400_000;
const NOW = Date.UTC(2020, 5, 1);
const HL = 30 * DAY;

/**
 * A purchase stat of `n` events, the latest `daysAgo` days before NOW and the first `firstDaysAgo`
 * days before it, `lastUnits` units at the latest, as customer.lua keeps it.
 */
const stat = (n: number, daysAgo: number, firstDaysAgo = daysAgo, lastUnits = 1): ArticleStat => ({
  n,
  last: NOW - daysAgo * DAY,
  logCount: logWeight(NOW - daysAgo * DAY, HL, n),
  first: NOW - firstDaysAgo * DAY,
  lastUnits,
});

function customer(items: [string, ArticleStat][], products: [string, ItemStat][]): CustomerState {
  return {
    customerId: 'c1',
    n: items.reduce((s, [, i]) => s + i.n, 0),
    units: 0,
    spend: 0,
    priceSum: 0,
    first: null,
    last: null,
    channels: {},
    recent: [],
    bought: {},
    affinity: new Map(),
    affinityTotal: null,
    items: new Map(items),
    products: new Map(products),
    meta: {},
  };
}

const evidence = (share: number): CandidateEvidence => ({
  sources: ['copurchase'],
  copurchase: share === 0 ? null : { logScore: 0 },
  copurchaseShare: share,
  segment: null,
  ranks: {},
});

const NAMES = ['p_item_share', 'p_prod_share', 's_copurchase_share', 's_strong'];

function features(ctx: Partial<FeatureContext> & Pick<FeatureContext, 'customer'>) {
  const article = { ...emptyArticleState('a1'), meta: { product_code: '108775' } };
  return featureVector(NAMES, { article, now: NOW, ...ctx });
}

describe("the strong heuristic's scores as features", () => {
  // a1 bought twice 30 days ago (weight 1), a2 once today (weight 1): equal time-weighted counts;
  // a3 once 60 days ago (0.25). Product 108775 holds a1 and a3.
  const c = customer(
    [
      ['a1', stat(2, 30)],
      ['a2', stat(1, 0)],
      ['a3', stat(1, 60)],
    ],
    [
      ['108775', { n: 3, last: NOW - 30 * DAY, logCount: logWeight(NOW - 30 * DAY, HL, 2.5) }],
      ['999999', stat(1, 0)],
    ],
  );

  it('divide the time-weighted purchases by the customer’s most bought, independent of now', () => {
    const [item, prod, co, h] = features({ customer: c, candidate: evidence(0.25) });
    expect(item).toBeCloseTo(1, 12);
    expect(prod).toBeCloseTo(1, 12);
    expect(co).toBe(0.25);
    expect(h).toBeCloseTo(1.25, 12);
    const later = features({ customer: c, candidate: evidence(0.25), now: NOW + 45 * DAY });
    expect(later[0]).toBeCloseTo(1, 12);
  });

  it('give 0 for what the customer never bought and NaN for a customer without purchases', () => {
    const other = { ...emptyArticleState('zz'), meta: { product_code: '555555' } };
    const [item, prod, co, h] = featureVector(NAMES, {
      customer: c,
      article: other,
      now: NOW,
      candidate: evidence(0),
    });
    expect([item, prod, co, h]).toEqual([0, 0, 0, 0]);
    const [i2, p2, , h2] = features({ customer: customer([], []), candidate: evidence(0.5) });
    expect(i2).toBeNaN();
    expect(p2).toBeNaN();
    expect(h2).toBe(0.5);
    expect(features({ customer: c })[2]).toBeNaN();
  });
});

describe('co-buyer features', () => {
  const NAMES_CB = ['p_cobuy_mean', 'p_cobuy_max'];
  // a1 bought today (weight 1), a2 90 days ago (0.5), a3 400 days ago (outside the window).
  const c = customer(
    [
      ['a1', stat(1, 0)],
      ['a2', stat(2, 90)],
      ['a3', stat(1, 400)],
    ],
    [],
  );
  const cand = (coBuyers: Map<string, number> | null) => ({
    ...emptyArticleState('x'),
    coBuyers,
  });
  const cb = (coBuyers: Map<string, number> | null, who = c) =>
    featureVector(NAMES_CB, { customer: who, article: cand(coBuyers), now: NOW });

  it('weighs the similarity to each purchase within the window by its age', () => {
    // mean = (1 * 0.4 + 0.5 * 0.6) / (1 + 0.5); max = max(0.4, 0.3); a3 and a9 count for nothing.
    const [mean, max] = cb(
      new Map([
        ['a1', 0.4],
        ['a2', 0.6],
        ['a3', 0.9],
        ['a9', 0.8],
      ]),
    );
    expect(mean).toBeCloseTo(0.7 / 1.5, 12);
    expect(max).toBeCloseTo(0.4, 12);
  });

  it('reads the same whichever side is smaller, neighbours or purchases', () => {
    // One neighbour against two purchases within the window: the neighbours are walked.
    const [mean, max] = cb(new Map([['a2', 0.6]]));
    expect(mean).toBeCloseTo((0.5 * 0.6) / 1.5, 12);
    expect(max).toBeCloseTo(0.3, 12);
    // Many purchases, few neighbours, and the reverse, give the features of the same pairs.
    const many = customer(
      Array.from({ length: 30 }, (_, i) => [`b${i}`, stat(1, i)] as const),
      [],
    );
    const few = new Map([
      ['b0', 0.2],
      ['b7', 0.5],
    ]);
    const wide = new Map([
      ...few,
      ...Array.from({ length: 40 }, (_, i) => [`z${i}`, 0.9] as const),
    ]);
    const [m1, x1] = cb(few, many);
    const [m2, x2] = cb(wide, many);
    expect(m1).toBeCloseTo(m2 as number, 12);
    expect(x1).toBeCloseTo(x2 as number, 12);
    expect(x1).toBeGreaterThan(0);
  });

  it('is 0 without a common neighbour, NaN without neighbours or purchases in the window', () => {
    expect(cb(new Map([['a9', 0.8]]))).toEqual([0, 0]);
    expect(cb(null).every(Number.isNaN)).toBe(true);
    const old = customer([['a3', stat(1, 400)]], []);
    expect(cb(new Map([['a3', 0.9]]), old).every(Number.isNaN)).toBe(true);
  });
});

describe('values derived once per customer state', () => {
  const NAMES_MEMO = ['p_cobuy_mean', 'p_cobuy_max', 'p_aff_pg', 'p_aff_sec'];
  const article = {
    ...emptyArticleState('x'),
    meta: { product_group_name: 'Garment Upper body', section_no: 'a:b' },
    coBuyers: new Map([
      ['a1', 0.4],
      ['a2', 0.6],
    ]),
  };
  /** A customer whose purchases and affinities are written at `daysAgo` (one purchase each). */
  function shopper(id: string, items: [string, number][], aff: [string, number][]) {
    const c = customer(
      items.map(([a, daysAgo]) => [a, stat(1, daysAgo)]),
      [],
    );
    const total = aff.reduce((s, [, w]) => s + w, 0);
    c.customerId = id;
    // As the state's parse files `f:<kind>:<value>` fields (a value may hold colons).
    const state = parseCustomerState({
      'f:_total': String(logWeight(NOW, HL, total)),
      ...Object.fromEntries(aff.map(([k, w]) => [`f:${k}`, String(logWeight(NOW, HL, w))])),
    });
    c.affinity = state.affinity;
    c.affinityTotal = state.affinityTotal;
    return c;
  }
  const alice = shopper(
    'alice',
    [
      ['a1', 0],
      ['a2', 90],
    ],
    [
      ['pg:Garment Upper body', 3],
      ['sec:a:b', 1],
    ],
  );
  const bob = shopper(
    'bob',
    [['a2', 0]],
    [
      ['pg:Garment Upper body', 1],
      ['pg:Shoes', 3],
    ],
  );
  const row = (who: CustomerState, now = NOW) =>
    featureVector(NAMES_MEMO, { customer: who, article, now });

  it('read each customer’s own values when customers and "now" alternate over one article', () => {
    const a = row(alice);
    const b = row(bob);
    // alice: (1 * 0.4 + 0.5 * 0.6) / 1.5, max 0.4; 3 of her 4 purchases' weight in the group;
    // the section value holds a colon and is read whole.
    expect(a[0]).toBeCloseTo(0.7 / 1.5, 12);
    expect(a[1]).toBeCloseTo(0.4, 12);
    expect(a[2]).toBeCloseTo(3 / 4, 12);
    expect(a[3]).toBeCloseTo(1 / 4, 12);
    // bob: a2 alone, today; 1 of 4 in the group, nothing in the section.
    expect(b[0]).toBeCloseTo(0.6, 12);
    expect(b[1]).toBeCloseTo(0.6, 12);
    expect(b[2]).toBeCloseTo(1 / 4, 12);
    expect(b[3]).toBe(0);
    expect(row(alice)).toEqual(a);
    // 90 days on, alice's purchases weigh 0.5 and 0.25: the same mean, half the max; the shares
    // decay alike and stay.
    const later = row(alice, NOW + 90 * DAY);
    expect(later[0]).toBeCloseTo(0.7 / 1.5, 12);
    expect(later[1]).toBeCloseTo(0.2, 12);
    expect(later[2]).toBeCloseTo(3 / 4, 12);
    expect(row(bob)).toEqual(b);
    expect(row(alice)).toEqual(a);
  });
});

describe("the customer's stock of the article", () => {
  const NAMES_S = ['p_item_stock_used', 'p_item_last_units_rel', 'p_item_units_share'];
  // a1: 5 purchase events, the first 70 days ago, the latest 10 days ago of 12 units; 48 units
  // before it, so 48 / 60 = 0.8 a day, and 10 days at that rate use 8 of the 12.
  // a2: twice, both 5 days ago (6 units at once); a3 once, 40 days ago, 2 units.
  const c: CustomerState = {
    ...customer(
      [
        ['a1', stat(5, 10, 70, 12)],
        ['a2', stat(2, 5, 5, 6)],
        ['a3', stat(1, 40, 40, 2)],
      ],
      [],
    ),
    n: 8,
    units: 68,
    bought: { a1: 60, a2: 6, a3: 2 },
  };
  const stock = (articleId: string, customerState = c) =>
    featureVector(NAMES_S, {
      customer: customerState,
      article: emptyArticleState(articleId),
      now: NOW,
    });

  it("gives the share of the latest purchase used up at the customer's rate, its size, the share of units", () => {
    const [used, rel, share] = stock('a1');
    expect(used).toBeCloseTo(8 / 12, 12);
    expect(rel).toBeCloseTo(12 / (68 / 8), 12);
    expect(share).toBeCloseTo(60 / 68, 12);
  });

  it('has no rate without a purchase a day ahead of the latest, no size for an article never bought', () => {
    const [used2, rel2, share2] = stock('a2');
    expect(used2).toBeNaN();
    expect(rel2).toBeCloseTo(6 / (68 / 8), 12);
    expect(share2).toBeCloseTo(6 / 68, 12);
    expect(stock('a3')[0]).toBeNaN();
    const [used, rel, share] = stock('zz');
    expect([used, rel].every(Number.isNaN)).toBe(true);
    expect(share).toBe(0);
    expect(stock('zz', customer([], [])).every(Number.isNaN)).toBe(true);
  });

  it("reads customer.lua's packed article n|last|L|units|first|lu, and a product's n|last|L", () => {
    const last = NOW - 10 * DAY;
    const state = parseCustomerState({
      n: '8',
      units: '68',
      'a:a1': `5|${last}|${logWeight(last, HL, 5)}|60|${NOW - 70 * DAY}|12`,
      'p:p1': `5|${last}|${logWeight(last, HL, 5)}`,
    });
    const parsed = { ...c, ...state, bought: state.bought, items: state.items };
    expect(state.items.get('a1')).toMatchObject({
      n: 5,
      last,
      first: NOW - 70 * DAY,
      lastUnits: 12,
    });
    expect(state.products.get('p1')).toEqual({ n: 5, last, logCount: logWeight(last, HL, 5) });
    expect(stock('a1', parsed)).toEqual(stock('a1'));
  });
});
