/**
 * Bounded customer state, against the real Redis and the real scripts: two simulated years of a
 * heavy customer (three purchases a day over 400 articles), applied batch by batch through the
 * purchases processor. After every batch the event-id guard holds only the events of its horizon,
 * the items of the `state` hash, `recent` and the co-purchase window stay within their caps; duplicates within
 * the horizon and redeliveries of any age are still recognised; and the items kept are the ones an
 * uncapped run weighs most.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAY_MS } from '../../features/decay.ts';
import { keySpace, type KeySpace } from '../../features/keys.ts';
import {
  STORE_LAYOUT,
  StoreLayoutError,
  claimStoreLayout,
  deleteNamespace,
} from '../../features/state.ts';
import { PurchaseProcessor, type PurchaseProcessorOptions } from '../../processors/purchases.ts';
import { defineScripts } from '../../processors/scripts.ts';
import type { Purchase } from '../../schemas/events.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { loadConfig } from '../../common/config.ts';

const T0 = Date.UTC(2019, 0, 1);
const DAYS = 730;
const PER_DAY = 3;
const ARTICLES = 400;
const BATCH = 60;
const CUSTOMER = 'heavy-1';
const CAPS: Partial<PurchaseProcessorOptions> = {
  recentCap: 10,
  itemsCap: 20,
  dedupHorizonMs: 30 * DAY_MS,
  copurchaseWindowMs: 14 * DAY_MS,
};
/** The guard keeps events from the horizon before the quarter-horizon step of the newest. */
const STEP = Math.floor((30 * DAY_MS) / 4);
const cut = (newest: number) => Math.floor(newest / STEP) * STEP - 30 * DAY_MS;

/** Purchases of one customer: PER_DAY a day, articles skewed (a few bought again and again). */
function purchases(): Purchase[] {
  const out: Purchase[] = [];
  let seed = 7;
  const rnd = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (let d = 0; d < DAYS; d++) {
    for (let k = 0; k < PER_DAY; k++) {
      const a = Math.floor(ARTICLES * rnd() ** 3); // low ids far more often
      out.push({
        event_id: `e-${d}-${k}`,
        customer_id: CUSTOMER,
        article_id: `art${String(a).padStart(4, '0')}`,
        event_time: T0 + d * DAY_MS + k * 3_600_000,
        price: 0.01 + a / 10_000,
        quantity: 1,
        sales_channel_id: 1 + (k % 2),
      });
    }
  }
  return out;
}

const record = (value: Purchase, offset: number): DecodedRecord<Purchase> => ({
  value,
  key: value.customer_id,
  topic: 'purchases',
  partition: 0,
  offset: String(offset),
  timestamp: value.event_time,
});

describe('bounded customer state', () => {
  let redis: Redis;
  const spaces: KeySpace[] = [];
  const space = () => {
    const k = keySpace(`bounds${randomUUID().slice(0, 8)}`);
    spaces.push(k);
    return k;
  };

  beforeAll(() => {
    redis = new Redis(loadConfig().redisUrl, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    for (const k of spaces) await deleteNamespace(redis, k);
    redis.disconnect();
  });

  it('stays within its caps over two years of a heavy customer, still catching duplicates', async () => {
    const keys = space();
    const k = keys.customer(CUSTOMER);
    const proc = new PurchaseProcessor(redis, keys, defineScripts(redis), CAPS);
    const events = purchases();
    const records = events.map((e, i) => record(e, i));
    let maxSeen = 0;
    for (let i = 0; i < records.length; i += BATCH) {
      const batch = records.slice(i, i + BATCH);
      const outcome = await proc.apply(batch);
      expect(outcome.applied).toBe(batch.length);
      const newest = Math.max(...records.slice(0, i + BATCH).map((r) => r.value.event_time));
      const [seen, fields, recent, win] = await Promise.all([
        redis.hkeys(k.seen),
        redis.hkeys(k.state),
        redis.zcard(k.recent),
        redis.zrange(k.window, 0, 0, 'WITHSCORES'),
      ]);
      const articles = fields.filter((f) => f.startsWith('a:'));
      const products = fields.filter((f) => f.startsWith('p:'));
      // The guard: exactly the events applied at or after the cut.
      const expected = records
        .slice(0, i + BATCH)
        .filter((r) => r.value.event_time >= cut(newest))
        .map((r) => r.value.event_id);
      expect(new Set(seen)).toEqual(new Set(expected));
      maxSeen = Math.max(maxSeen, seen.length);
      expect(articles.length + products.length).toBeLessThanOrEqual(Math.ceil(2.5 * 20));
      expect(Number(await redis.hget(k.state, 'in'))).toBe(articles.length + products.length);
      expect(recent).toBeLessThanOrEqual(10);
      // The co-purchase window keeps two windows behind the newest event.
      expect(Number(win[1])).toBeGreaterThanOrEqual(newest - 2 * 14 * DAY_MS);
    }
    // Bounded by the horizon (~37.5 days of 3 a day), not by the 2,190 events applied.
    expect(maxSeen).toBeLessThanOrEqual(PER_DAY * (30 + 8) + BATCH);
    const stats = await redis.hgetall(k.state);
    expect(Number(stats.n)).toBe(events.length);
    // Capping the items keeps the stats (`price_sum` is not a `p:` product).
    const priceSum = events.reduce((sum, e) => sum + e.price, 0);
    expect(Number(stats.price_sum)).toBeCloseTo(priceSum, 9);
    expect(Number(stats.spend)).toBeCloseTo(priceSum, 9);

    // A second publish (another offset) of an event 10 days old: a duplicate, not counted.
    const last = events.at(-1) as Purchase;
    const recentOne = events.find((e) => e.event_time >= last.event_time - 10 * DAY_MS) as Purchase;
    let offset = records.length;
    expect(await proc.apply([record(recentOne, offset++)])).toEqual({
      applied: 0,
      duplicates: 1,
      late: [],
    });
    // A redelivery (same offset) of the very first event, forgotten by the guard long ago: not
    // counted either (recognised by position).
    expect(await proc.apply([records[0] as DecodedRecord<Purchase>])).toEqual({
      applied: 0,
      duplicates: 0,
      late: [],
    });
    // A second publish of an event a year old, whose id the guard forgot, and a new event as old:
    // both refused as late (dated before the cut), counted nowhere; a redelivery of the batch
    // refuses them again.
    const old = events[DAYS * PER_DAY - 365 * PER_DAY] as Purchase;
    const lateOnes = [
      record(old, offset++),
      record({ ...old, event_id: 'late-new' }, offset++),
      record(recentOne, offset++), // within the horizon: still a duplicate
    ];
    const lateCut = { cut: cut(last.event_time) };
    const refused = [
      { record: lateOnes[0], ...lateCut },
      { record: lateOnes[1], ...lateCut },
    ];
    const articleStats = await redis.hgetall(keys.article(old.article_id).stats);
    expect(await proc.apply(lateOnes)).toEqual({ applied: 0, duplicates: 1, late: refused });
    expect(await proc.apply(lateOnes)).toEqual({ applied: 0, duplicates: 1, late: refused });
    expect(Number(await redis.hget(k.state, 'n'))).toBe(events.length);
    expect(await redis.hgetall(keys.article(old.article_id).stats)).toEqual(articleStats);
  });

  it('keeps the items an uncapped run weighs most', async () => {
    const capped = space();
    const uncapped = space();
    const events = purchases().map((e, i) => record(e, i));
    const scripts = defineScripts(redis);
    const a = new PurchaseProcessor(redis, capped, scripts, CAPS);
    const b = new PurchaseProcessor(redis, uncapped, scripts, { ...CAPS, itemsCap: 100_000 });
    for (let i = 0; i < events.length; i += BATCH) {
      await a.apply(events.slice(i, i + BATCH));
      await b.apply(events.slice(i, i + BATCH));
    }
    const top = async (keys: KeySpace, n: number) => {
      const h = await redis.hgetall(keys.customer(CUSTOMER).state);
      return Object.entries(h)
        .filter(([f]) => f.startsWith('a:'))
        .map(([f, v]) => [f, Number(v.split('|')[2])] as const)
        .sort((x, y) => y[1] - x[1])
        .slice(0, n)
        .map(([f]) => f);
    };
    const kept = await top(capped, 1_000);
    expect(kept.length).toBeLessThanOrEqual(Math.ceil(2.5 * 20));
    expect(kept.length).toBeGreaterThanOrEqual(20);
    // The uncapped run's heaviest articles are kept: its top 5 all, and 8 of its top 10 (an
    // article dropped in a lull of its purchases and bought again restarts from its new events).
    const heaviest = await top(uncapped, 10);
    for (const f of heaviest.slice(0, 5)) expect(kept).toContain(f);
    expect(heaviest.filter((f) => kept.includes(f)).length).toBeGreaterThanOrEqual(8);
    const all = await redis.hkeys(uncapped.customer(CUSTOMER).state);
    expect(all.filter((f) => f.startsWith('a:')).length).toBeGreaterThan(2.5 * 20);
  });

  it('records its key layout in a new namespace and refuses one written in another', async () => {
    const fresh = space();
    await claimStoreLayout(redis, fresh);
    expect(await redis.get(fresh.layout)).toBe(STORE_LAYOUT);
    await claimStoreLayout(redis, fresh); // its own: accepted again

    // Purchases applied before layouts were recorded (trending offsets, no layout key).
    const old = space();
    await redis.hset(old.trending.offsets, '0', '41');
    await expect(claimStoreLayout(redis, old)).rejects.toThrow(StoreLayoutError);
    await expect(claimStoreLayout(redis, old)).rejects.toThrow(/REDIS_NAMESPACE/);
    const other = space();
    await redis.set(other.layout, '99');
    await expect(claimStoreLayout(redis, other)).rejects.toThrow(/layout 99/);
  });
});
