/**
 * The co-buyer build against the real Redis and the real purchase scripts: purchases applied by
 * the purchases processor, the lists built from the customers' state, read back with the articles
 * (the summary field serving reads), and a later build removing a list no longer earned.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../common/config.ts';
import { DAY_MS } from '../../features/decay.ts';
import { featureVector } from '../../features/definitions.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace, readArticles, readCustomers } from '../../features/state.ts';
import { buildCoBuyers } from '../../processors/co-buyers.ts';
import { PurchaseProcessor } from '../../processors/purchases.ts';
import { defineScripts } from '../../processors/scripts.ts';
import type { Purchase } from '../../schemas/events.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';

const T0 = Date.UTC(2020, 0, 1);

describe('co-buyer lists in the store', () => {
  let redis: Redis;
  const keys = keySpace(`cobuy${randomUUID().slice(0, 8)}`);

  beforeAll(() => {
    redis = new Redis(loadConfig().redisUrl, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    await deleteNamespace(redis, keys);
    redis.disconnect();
  });

  it('builds, serves and renews the lists from the customers purchases', async () => {
    // c1 buys A and B on day 0, c2 A, B and C on day 1, c3 A and D on day 200.
    const bought: [string, string, number][] = [
      ['c1', 'A', 0],
      ['c1', 'B', 0],
      ['c2', 'A', 1],
      ['c2', 'B', 1],
      ['c2', 'C', 1],
      ['c3', 'A', 200],
      ['c3', 'D', 200],
    ];
    const records = bought.map(([customer, article, day], i): DecodedRecord<Purchase> => {
      const value: Purchase = {
        event_id: `e${i}`,
        customer_id: customer,
        article_id: article,
        event_time: T0 + day * DAY_MS + i * 1000,
        price: 0.02,
        quantity: 1,
        sales_channel_id: 2,
      };
      return {
        value,
        key: customer,
        topic: 'purchases',
        partition: 0,
        offset: String(i),
        timestamp: value.event_time,
      };
    });
    const proc = new PurchaseProcessor(redis, keys, defineScripts(redis));
    expect((await proc.apply(records)).applied).toBe(records.length);

    const first = await buildCoBuyers(redis, keys, { now: T0 + 300 * DAY_MS });
    expect(first).toMatchObject({ customers: 3, articles: 4, written: 4, removed: 0 });
    const [a, c] = await readArticles(redis, keys, ['A', 'C']);
    expect([...(a?.coBuyers ?? [])]).toEqual([
      ['B', Number((2 / Math.sqrt(6)).toPrecision(5))],
      ['C', Number((1 / Math.sqrt(3)).toPrecision(5))],
      ['D', Number((1 / Math.sqrt(3)).toPrecision(5))],
    ]);
    expect(c?.coBuyers?.get('B')).toBeCloseTo(1 / Math.sqrt(2), 4);

    // c1's view of C: similar to A and B, bought 300 days before "now".
    const [c1] = await readCustomers(redis, keys, ['c1']);
    const now = T0 + 300 * DAY_MS;
    const [mean] = featureVector(['p_cobuy_mean'], {
      customer: c1!,
      article: c!,
      now,
    });
    expect(mean).toBeGreaterThan(0);

    // 100 days later c1's and c2's purchases fall out of the window: only A-D is left.
    const second = await buildCoBuyers(redis, keys, { now: T0 + 400 * DAY_MS });
    expect(second).toMatchObject({ customers: 1, written: 2, removed: 2 });
    const [a2, b2, c2, d2] = await readArticles(redis, keys, ['A', 'B', 'C', 'D']);
    expect([...(a2?.coBuyers ?? [])]).toEqual([['D', 1]]);
    expect(d2?.coBuyers?.get('A')).toBe(1);
    expect(b2?.coBuyers).toBeNull();
    expect(c2?.coBuyers).toBeNull();
    expect((await redis.smembers(keys.coBuyers.ids)).sort()).toEqual(['A', 'D']);
    expect(await redis.hget(keys.coBuyers.meta, 'written')).toBe('2');
  });
});
