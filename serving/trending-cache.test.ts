/**
 * The trending cache's merge and read logic, without Redis (its refresh is covered by the
 * integration suite, test/integration/serving-app.test.ts).
 */
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { DAY_MS, decayedValue, logWeight } from '../features/decay.ts';
import { HALF_LIVES, keySpace } from '../features/keys.ts';
import type { ArticleSummary } from './candidates/index.ts';
import { TrendingCache } from './trending-cache.ts';

const NOW = Date.UTC(2020, 6, 1);
const H7 = HALF_LIVES['7d'];
const never = new Redis({ lazyConnect: true, enableOfflineQueue: false });

const summary = (articleId: string, indexGroup: string, last: number): ArticleSummary => ({
  articleId,
  name: `Name ${articleId}`,
  indexGroup,
  section: null,
  productGroup: null,
  last,
});

describe('TrendingCache', () => {
  afterAll(() => {
    never.disconnect();
  });

  it('merges offers by the larger log score, keeps capacity, and reads at any now', () => {
    const cache = new TrendingCache({ redis: never, keys: keySpace('t'), capacity: 3 });
    expect(cache.size).toBe(0);
    expect(cache.latestEventTime()).toBeNull();
    const L = (days: number, w = 1) => logWeight(NOW - days * DAY_MS, H7, w);
    cache.offer(
      [
        { articleId: 'a', logScore: L(1, 3) },
        { articleId: 'b', logScore: L(1, 2) },
      ],
      new Map([
        ['a', summary('a', 'Sport', NOW - DAY_MS)],
        ['b', summary('b', 'Menswear', NOW - 2 * DAY_MS)],
      ]),
    );
    // A later read: b grew past a; c and d are new; capacity 3 drops the smallest.
    cache.offer([
      { articleId: 'b', logScore: L(0, 5) },
      { articleId: 'c', logScore: L(1, 1) },
      { articleId: 'd', logScore: L(1, 0.5) },
      { articleId: 'a', logScore: L(5, 1) }, // an older, smaller value never lowers a score
    ]);
    expect(cache.size).toBe(3);
    const top = cache.top(10, NOW);
    expect(top.map((t) => t.articleId)).toEqual(['b', 'a', 'c']);
    expect(top[0]?.score).toBeCloseTo(decayedValue(L(0, 5), NOW, H7), 12);
    expect(top[1]?.score).toBeCloseTo(3 * 2 ** (-1 / 7), 12);
    expect(top[2]?.name).toBeNull(); // offered without a summary
    expect(cache.top(10, NOW, { indexGroup: 'sport' }).map((t) => t.articleId)).toEqual(['a']);
    expect(cache.latestEventTime()).toBe(NOW - DAY_MS);
  });

  it('tells a read equal to the last one offered (nothing new) from a changed one', () => {
    const cache = new TrendingCache({ redis: never, keys: keySpace('t') });
    const read = [
      { articleId: 'a', logScore: 2 },
      { articleId: 'b', logScore: 1 },
    ];
    expect(cache.isNewOffer(read)).toBe(true);
    cache.offer(read);
    expect(cache.isNewOffer(read.map((e) => ({ ...e })))).toBe(false);
    expect(cache.isNewOffer([read[0]!, { articleId: 'b', logScore: 1.5 }])).toBe(true);
    expect(cache.isNewOffer([read[0]!])).toBe(true);
  });

  it('does not reject when a refresh fails, and keeps what it had', async () => {
    const cache = new TrendingCache({ redis: never, keys: keySpace('t') });
    cache.offer([{ articleId: 'a', logScore: 1 }]);
    expect(await cache.refresh()).toBe(false);
    expect(cache.size).toBe(1);
    expect(cache.lastRefresh).toBeNull();
  });
});
