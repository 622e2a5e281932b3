/**
 * Bounded Redis state (issue 14), on the real Redis with the processors' code (no Kafka: records
 * are handed over as a consumer would, in offset order): two simulated years of a best-selling
 * article keep its co-purchase set and the trending sets within their caps, with the top partners
 * and articles of an uncapped run; a heavy customer's taste guard keeps about one horizon of event
 * ids while redeliveries and second publishes stay skipped, whatever their age; a set given
 * thousands of members by one script call ends as calls of 100 leave it.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../common/config.ts';
import { DAY_MS } from '../../features/decay.ts';
import { embeddingKeys } from '../../features/embedding-keys.ts';
import {
  GLOBAL_TRENDING_HALF_LIVES,
  SEGMENT_HALF_LIFE,
  ageBucket,
  keySpace,
  type KeySpace,
} from '../../features/keys.ts';
import { segmentValue } from '../../features/segments.ts';
import { deleteNamespace } from '../../features/state.ts';
import { encodeVector } from '../../embeddings/store.ts';
import { applyArticles, applyCustomers } from '../../processors/metadata.ts';
import { PurchaseProcessor } from '../../processors/purchases.ts';
import { defineScripts } from '../../processors/scripts.ts';
import { TasteProcessor } from '../../processors/taste.ts';
import type { Article, Customer, Purchase } from '../../schemas/events.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { articleId, customerId, makeArticles, makeCustomers } from '../fixtures/events.ts';
import { mulberry32 } from '../fixtures/generate.ts';

const T0 = Date.UTC(2019, 0, 1);
const DAYS = 730;

const record = <T>(value: T, key: string, offset: number, timestamp: number): DecodedRecord<T> => ({
  value,
  key,
  topic: 'purchases',
  partition: 0,
  offset: String(offset),
  timestamp,
});

const purchase = (id: string, customer: string, article: string, time: number): Purchase => ({
  event_id: id,
  customer_id: customer,
  article_id: article,
  price: 0.02,
  sales_channel_id: 1 + (Math.floor(time / 3_600_000) % 2), // by the hour: baskets alternate
  quantity: 1,
  event_time: time,
});

describe('bounded state over two years of events', () => {
  let redis: Redis;
  // Every namespace of the suite starts with `prefix`: one scan deletes them all.
  const prefix = `bounds-${randomUUID().slice(0, 8)}`;
  let made = 0;
  const ns = (): KeySpace => keySpace(`${prefix}-${made++}`);

  beforeAll(() => {
    redis = new Redis(loadConfig().redisUrl, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    await deleteNamespace(redis, { ...keySpace(prefix), pattern: `${prefix}-*` });
    redis.disconnect();
  });

  describe('co-purchase and trending caps', () => {
    const ARTICLES = 404;
    const CUSTOMERS = 200;
    const articles = makeArticles(ARTICLES, T0 - DAY_MS);
    const customers = makeCustomers(CUSTOMERS, T0 - DAY_MS);
    const BEST = articleId(0);
    // Bought with the best seller this often (per basket): its top partners.
    const COMPANIONS: [string, number][] = [
      [articleId(1), 0.5],
      [articleId(2), 0.35],
      [articleId(3), 0.2],
    ];
    const CAPS = { copurchaseCap: 10, trendingCap: 20 };

    /**
     * Batches of 10 days: each day three baskets of the best seller, some of its companions and
     * one or two of 400 other articles, in a random order within the basket.
     */
    function batches(): DecodedRecord<Purchase>[][] {
      const rnd = mulberry32(14);
      const out: DecodedRecord<Purchase>[][] = [];
      let offset = 0;
      for (let day = 0; day < DAYS; day += 10) {
        const batch: DecodedRecord<Purchase>[] = [];
        for (let d = day; d < Math.min(day + 10, DAYS); d++) {
          for (let b = 0; b < 3; b++) {
            const customer = customerId(Math.floor(rnd() * CUSTOMERS));
            const basket = [BEST];
            for (const [a, p] of COMPANIONS) if (rnd() < p) basket.push(a);
            const others = 1 + Math.floor(rnd() * 2);
            for (let i = 0; i < others; i++) basket.push(articleId(4 + Math.floor(rnd() * 400)));
            basket.sort(() => rnd() - 0.5);
            basket.forEach((a, i) => {
              const time = T0 + d * DAY_MS + b * 3_600_000 + i * 60_000;
              const e = purchase(`e${offset}`, customer, a, time);
              batch.push(record(e, customer, offset++, time));
            });
          }
        }
        out.push(batch);
      }
      return out;
    }

    /** Every trending sorted set the events can touch. */
    function trendingKeys(keys: KeySpace): string[] {
      const out = GLOBAL_TRENDING_HALF_LIVES.map((hl) => keys.trending.global(hl));
      for (const ch of ['1', '2']) {
        out.push(keys.trending.segment('channel', ch, SEGMENT_HALF_LIFE));
      }
      const values = new Set<string>();
      for (const c of customers) {
        for (const a of articles) {
          values.add(segmentValue('age_index', ageBucket(c.age), a.index_group_name));
        }
      }
      for (const v of values) out.push(keys.trending.segment('age_index', v, SEGMENT_HALF_LIFE));
      return out;
    }

    /** ZCARD of every key, one round trip. */
    async function sizes(keys: readonly string[]): Promise<number[]> {
      const pipe = redis.pipeline();
      for (const k of keys) pipe.zcard(k);
      const res = (await pipe.exec()) ?? [];
      return res.map(([err, v]) => {
        if (err) throw err;
        return v as number;
      });
    }

    async function withMetadata(keys: KeySpace): Promise<void> {
      const scripts = defineScripts(redis);
      await applyArticles(
        redis,
        keys,
        scripts,
        articles.map((a, i) => record<Article>(a, a.article_id, i, a.updated_at)),
      );
      await applyCustomers(
        redis,
        keys,
        scripts,
        customers.map((c, i) => record<Customer>(c, c.customer_id, i, c.updated_at)),
      );
    }

    it('keeps every co-purchase and trending set within 1.25 x its cap, with the top of an uncapped run', async () => {
      const all = batches();
      const events = all.reduce((s, b) => s + b.length, 0);
      expect(events).toBeGreaterThan(5_000);

      // Reference: the same events without caps (caps far above any set's size).
      const free = ns();
      await withMetadata(free);
      const uncapped = new PurchaseProcessor(redis, free, defineScripts(redis), {
        copurchaseCap: 1_000_000,
        trendingCap: 1_000_000,
      });
      for (const batch of all) await uncapped.apply(batch);

      const keys = ns();
      await withMetadata(keys);
      const capped = new PurchaseProcessor(redis, keys, defineScripts(redis), CAPS);
      const coKeys = articles.map((a) => keys.article(a.article_id).copurchase);
      const trKeys = trendingKeys(keys);
      const coMax = Math.ceil(CAPS.copurchaseCap * 1.25);
      const trMax = Math.ceil(CAPS.trendingCap * 1.25);
      let bestMax = 0;
      let trendingMax = 0;
      for (const batch of all) {
        expect((await capped.apply(batch)).applied).toBe(batch.length);
        const co = await sizes(coKeys);
        const tr = await sizes(trKeys);
        // Both sides write the sets: the article's own events (article.lua) and its partners'
        // (copurchase.lua).
        expect(Math.max(...co)).toBeLessThanOrEqual(coMax);
        expect(Math.max(...tr)).toBeLessThanOrEqual(trMax);
        bestMax = Math.max(bestMax, co[0] ?? 0);
        trendingMax = Math.max(trendingMax, ...tr);
      }
      // The sets did reach their caps (and the uncapped run's are far larger).
      expect(bestMax).toBeGreaterThanOrEqual(CAPS.copurchaseCap);
      expect(trendingMax).toBeGreaterThanOrEqual(CAPS.trendingCap);
      expect(await redis.zcard(free.article(BEST).copurchase)).toBeGreaterThan(300);
      expect(await redis.zcard(free.trending.global('7d'))).toBeGreaterThan(300);
      expect(await redis.zcard(keys.article(BEST).copurchase)).toBeGreaterThanOrEqual(
        CAPS.copurchaseCap,
      );

      // Trimming keeps the highest decayed scores: the top of each set is the uncapped run's,
      // with the same scores; every member kept scores at most its uncapped score (one trimmed
      // and seen again restarted from its new events).
      const top = async (key: string, n: number) => {
        const flat = await redis.zrevrange(key, 0, n - 1, 'WITHSCORES');
        const out: [string, number][] = [];
        for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, Number(flat[i + 1])]);
        return out;
      };
      const close = (x: number, y: number) => Math.abs(x - y) <= 1e-9 * Math.abs(y);
      const expectSameTop = async (cappedKey: string, freeKey: string, n: number) => {
        const got = await top(cappedKey, n);
        const want = await top(freeKey, n);
        expect(got.map(([m]) => m)).toEqual(want.map(([m]) => m));
        got.forEach(([, score], i) => {
          expect(close(score, want[i]![1])).toBe(true);
        });
        const kept = await top(cappedKey, -1);
        const scores = await redis.zmscore(freeKey, ...kept.map(([m]) => m));
        kept.forEach(([, score], i) => {
          const ref = Number(scores[i]);
          expect(score <= ref || close(score, ref)).toBe(true);
        });
        return got.map(([m]) => m);
      };
      const partners = await expectSameTop(
        keys.article(BEST).copurchase,
        free.article(BEST).copurchase,
        3,
      );
      expect(partners.sort()).toEqual(COMPANIONS.map(([a]) => a).sort());
      for (const [a] of COMPANIONS) {
        expect(
          await expectSameTop(keys.article(a).copurchase, free.article(a).copurchase, 1),
        ).toEqual([BEST]);
      }
      for (const hl of GLOBAL_TRENDING_HALF_LIVES) {
        const trending = await expectSameTop(keys.trending.global(hl), free.trending.global(hl), 4);
        expect(trending.sort()).toEqual([BEST, ...COMPANIONS.map(([a]) => a)].sort());
      }
      for (const ch of ['1', '2']) {
        await expectSameTop(
          keys.trending.segment('channel', ch, SEGMENT_HALF_LIFE),
          free.trending.segment('channel', ch, SEGMENT_HALF_LIFE),
          2,
        );
      }
    });
  });

  it('adds thousands of articles to a set in one script call as in many small ones', async () => {
    // zset_logadd (lua/include/zlogadd.lua) reads and writes a set 2,000 members at a time: 4,500
    // articles bought in one batch go through three chunks, and twice (the second time onto the
    // scores of the first); batches of 100 keep every call within one chunk.
    const COUNT = 4_500;
    const arts = makeArticles(COUNT, T0 - DAY_MS);
    const buyers = makeCustomers(1_500, T0 - DAY_MS);
    const events: DecodedRecord<Purchase>[] = [];
    for (let round = 0; round < 2; round++) {
      arts.forEach((a, i) => {
        const offset = events.length;
        const time = T0 + round * DAY_MS + i * 1_000;
        const customer = customerId(i % 1_500); // three articles each a round
        events.push(
          record(purchase(`e${offset}`, customer, a.article_id, time), customer, offset, time),
        );
      });
    }
    const run = async (batch: number): Promise<KeySpace> => {
      const keys = ns();
      const scripts = defineScripts(redis);
      await applyArticles(
        redis,
        keys,
        scripts,
        arts.map((a, i) => record(a, a.article_id, i, 0)),
      );
      await applyCustomers(
        redis,
        keys,
        scripts,
        buyers.map((c, i) => record(c, c.customer_id, i, 0)),
      );
      const proc = new PurchaseProcessor(redis, keys, scripts, { trendingCap: 1_000_000 });
      for (let i = 0; i < events.length; i += batch) {
        await proc.apply(events.slice(i, i + batch));
      }
      return keys;
    };
    const [whole, small] = [await run(COUNT), await run(100)];
    const scores = async (key: string) => {
      const flat = await redis.zrange(key, 0, -1, 'WITHSCORES');
      const out = new Map<string, number>();
      for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i]!, Number(flat[i + 1]));
      return out;
    };
    /** The members of `key` (one call) and of `ref` (calls of 100) with the same scores; how many. */
    const sameScores = async (key: string, ref: string): Promise<number> => {
      const [got, want] = [await scores(key), await scores(ref)];
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
      for (const [m, x] of got) {
        expect(Math.abs(x - want.get(m)!)).toBeLessThanOrEqual(1e-9 * Math.abs(x));
      }
      return got.size;
    };
    for (const hl of GLOBAL_TRENDING_HALF_LIVES) {
      expect(await sameScores(whole.trending.global(hl), small.trending.global(hl))).toBe(COUNT);
    }
    // The co-purchase sets, written by both sides (article.lua, copurchase.lua), agree too.
    for (const a of [arts[0]!, arts[2_000]!, arts[COUNT - 1]!]) {
      const k = (ks: KeySpace) => ks.article(a.article_id).copurchase;
      expect(await sameScores(k(whole), k(small))).toBeGreaterThan(0);
    }
  });

  describe('taste guard', () => {
    const DIM = 8;
    const HORIZON = 30 * DAY_MS;
    const ARTICLES = ['0900000001', '0900000002', '0900000003', '0900000004', '0900000005'];

    /** Vectors for the articles (the last one has none), in the namespace of `keys`. */
    async function seedVectors(keys: KeySpace): Promise<void> {
      const ekeys = embeddingKeys(keys.ns);
      const rnd = mulberry32(3);
      for (const a of ARTICLES.slice(0, -1)) {
        const v = Float32Array.from({ length: DIM }, () => rnd() - 0.5);
        await redis.hset(ekeys.article(a).vector, 'v', encodeVector(v));
      }
    }

    /** One customer's purchases about every 12 hours for two years, in offset order. */
    function history(customer: string, firstOffset = 0): DecodedRecord<Purchase>[] {
      const rnd = mulberry32(9);
      const out: DecodedRecord<Purchase>[] = [];
      for (let i = 0; i < DAYS * 2; i++) {
        const time = T0 + i * 43_200_000 + Math.floor(rnd() * 3_600_000);
        const a = ARTICLES[i % ARTICLES.length]!;
        const o = firstOffset + i;
        out.push(record(purchase(`${customer}-${i}`, customer, a, time), customer, o, time));
      }
      return out;
    }

    const chunks = <T>(xs: readonly T[], n: number): T[][] =>
      Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, (i + 1) * n));

    /**
     * The most events of `times` (ascending) within the guard's reach of one of them: the horizon
     * and the quarter-horizon step its cut is rounded down by.
     */
    const maxWindow = (times: readonly number[]): number => {
      let best = 0;
      let lo = 0;
      times.forEach((t, hi) => {
        while ((times[lo] ?? t) < t - 1.25 * HORIZON) lo++;
        best = Math.max(best, hi - lo + 1);
      });
      return best;
    };

    it('keeps about one horizon of event ids, and skips redeliveries and duplicates of any age', async () => {
      const keys = ns();
      await seedVectors(keys);
      const ekeys = embeddingKeys(keys.ns);
      const taste = new TasteProcessor(redis, keys, ekeys, { dim: DIM, dedupHorizonMs: HORIZON });
      const customer = 'heavy';
      const k = ekeys.customer(customer);
      const events = history(customer);
      const batches = chunks(events, 20);
      let applied = 0;
      for (const [i, batch] of batches.entries()) {
        const out = await taste.apply(batch);
        expect(out).toMatchObject({ applied: batch.length, skipped: 0 });
        applied += batch.length;
        const [entries, state] = await Promise.all([
          redis.hlen(k.tasteSeen),
          redis.hgetall(k.taste),
        ]);
        expect(Number(state.seen)).toBe(entries);
        expect(Number(state.n)).toBe(applied);
        const times = events.slice(0, applied).map((r) => r.value.event_time);
        expect(entries).toBeLessThanOrEqual(2 * maxWindow(times) + 32);
        // Every so often, an older batch comes again (a redelivery): skipped, nothing changes.
        if (i % 10 === 9) {
          const again = batches[i - 8]!;
          expect(await taste.apply(again)).toMatchObject({ applied: 0, skipped: again.length });
          expect(await redis.hgetall(k.taste)).toEqual(state);
        }
      }
      const entries = await redis.hlen(k.tasteSeen);
      expect(events.length).toBe(DAYS * 2);
      expect(entries).toBeLessThan(events.length / 5);
      const values = Object.values(await redis.hgetall(k.tasteSeen));
      expect(values.every((v) => /^0:\d+\|\d+$/.test(v))).toBe(true);

      const before = await redis.hgetall(k.taste);
      // Redelivered: the first batch (entries long forgotten) and the last (entries kept).
      for (const batch of [batches[0]!, batches.at(-1)!]) {
        expect(await taste.apply(batch)).toEqual({
          applied: 0,
          withoutVector: 0,
          skipped: batch.length,
          late: 0,
        });
      }
      // Published again at a new offset: a recent event is a duplicate.
      const last = events.at(-1)!;
      const dup = { ...last, offset: String(events.length + 10) };
      expect(await taste.apply([dup])).toMatchObject({ applied: 0, skipped: 1 });
      // Late: the first event published again (its entry long forgotten), and a new event as old.
      const first = { ...events[0]!, offset: String(events.length + 11) };
      const old = record(
        purchase('old-new', customer, ARTICLES[0]!, T0),
        customer,
        events.length + 12,
        T0,
      );
      expect(await taste.apply([first, old])).toMatchObject({ applied: 0, skipped: 2, late: 2 });
      expect(await redis.hgetall(k.taste)).toEqual(before);

      // An unknown event at an offset applied before, within the horizon: the topic was recreated.
      // Refused before any write, even of the new event before it in the call.
      const fresh = record(
        purchase('fresh', customer, ARTICLES[0]!, last.value.event_time + DAY_MS),
        customer,
        events.length + 20,
        last.value.event_time + DAY_MS,
      );
      const stale = record(
        purchase('stale', customer, ARTICLES[0]!, last.value.event_time),
        customer,
        5,
        last.value.event_time,
      );
      await expect(taste.apply([fresh, stale])).rejects.toThrow(/REC_OFFSET_REGRESSION/);
      expect(await redis.hgetall(k.taste)).toEqual(before);
      expect(await redis.hexists(k.tasteSeen, 'fresh')).toBe(0);
      expect(await taste.apply([fresh])).toMatchObject({ applied: 1 });
      // A rebuild (taste-rebuild.ts) replays from the start under a guard the live consumer may
      // have raised: it goes by the event ids alone.
      const rebuild = new TasteProcessor(redis, keys, ekeys, {
        dim: DIM,
        dedupHorizonMs: HORIZON,
        offsetGuard: false,
      });
      expect(await rebuild.apply([stale, fresh])).toMatchObject({ applied: 1, skipped: 1 });
      expect(await redis.hget(k.taste, 'o:0')).toBe(String(events.length + 20));
    });

    it('reaches the same state whatever the batches, and forgets legacy entries', async () => {
      const keys = ns();
      await seedVectors(keys);
      const ekeys = embeddingKeys(keys.ns);
      const taste = new TasteProcessor(redis, keys, ekeys, { dim: DIM, dedupHorizonMs: HORIZON });
      // The same customer's history in two namespaces' worth of batching: batches of 20 and 7.
      const other = ns();
      await seedVectors(other);
      const tasteOther = new TasteProcessor(redis, other, embeddingKeys(other.ns), {
        dim: DIM,
        dedupHorizonMs: HORIZON,
      });
      const events = history('c').slice(0, 400);
      for (const b of chunks(events, 20)) await taste.apply(b);
      for (const b of chunks(events, 7)) await tasteOther.apply(b);
      const a = ekeys.customer('c');
      const b = embeddingKeys(other.ns).customer('c');
      // The guard and the counts are equal; the vector too, up to its float32 rounding per call.
      const { v: vb, ...restB } = await redis.hgetall(b.taste);
      const { v: va, ...restA } = await redis.hgetall(a.taste);
      expect(restB).toEqual(restA);
      expect(await redis.hgetall(b.tasteSeen)).toEqual(await redis.hgetall(a.tasteSeen));
      expect(va && vb).toBeTruthy();
      const floats = async (key: string) => {
        const buf = (await redis.hgetBuffer(key, 'v')) ?? Buffer.alloc(0);
        return Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4));
      };
      const [fa, fb] = [await floats(a.taste), await floats(b.taste)];
      expect(fb).toHaveLength(DIM);
      fb.forEach((x, i) => {
        expect(Math.abs(x - fa[i]!)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(fa[i]!)));
      });
      expect(Number(await redis.hget(a.taste, 'seen_at_prune'))).toBeGreaterThan(0);

      // A guard written by an older build: the taste hash without the guard's fields, `tseen`
      // values without event times.
      const legacy = ekeys.customer('legacy');
      const old = history('legacy').slice(0, 3);
      await taste.apply(old);
      await redis.hdel(legacy.taste, 'seen', 'seen_at_prune', 'o:0');
      await redis.hset(
        legacy.tasteSeen,
        Object.fromEntries(old.map((r) => [r.value.event_id, `0:${r.offset}`])),
      );
      // Its events come again: recognised by position; at another position: duplicates.
      expect(await taste.apply(old)).toMatchObject({ applied: 0, skipped: 3 });
      expect(await taste.apply([{ ...old[0]!, offset: '1000' }])).toMatchObject({ skipped: 1 });
      // New events over 100 days: the legacy entries go once they are a horizon old.
      const next = history('legacy', 1001).slice(3, 200);
      expect(await taste.apply(next)).toMatchObject({ applied: next.length, skipped: 0 });
      const seen = await redis.hgetall(legacy.tasteSeen);
      expect(old.some((r) => r.value.event_id in seen)).toBe(false);
      expect(Object.keys(seen).length).toBeLessThan(next.length / 2);
      expect(Number(await redis.hget(legacy.taste, 'seen'))).toBe(Object.keys(seen).length);
      expect(Number(await redis.hget(legacy.taste, 'n'))).toBe(3 + next.length);
      // Redelivered after that (their offsets are below the guard): still skipped.
      expect(await taste.apply(old)).toMatchObject({ applied: 0, skipped: 3 });
    });

    it('refuses as late the same events as the customer script, whatever the batches', async () => {
      const keys = ns();
      await seedVectors(keys);
      const ekeys = embeddingKeys(keys.ns);
      const taste = new TasteProcessor(redis, keys, ekeys, { dim: DIM, dedupHorizonMs: HORIZON });
      const purchases = new PurchaseProcessor(redis, keys, defineScripts(redis), {
        dedupHorizonMs: HORIZON,
      });
      // A year of one customer's purchases, every fifth one held back 0 to 60 days; then a
      // second publish of every tenth (a producer re-sending an old stretch).
      const rnd = mulberry32(21);
      const original = history('mixed').slice(0, 730);
      const times = original.map(
        (r) => r.value.event_time + (rnd() < 0.2 ? rnd() * 60 * DAY_MS : 0),
      );
      const order = original.map((_, i) => i).sort((x, y) => times[x]! - times[y]! || x - y);
      const again = original.filter((_, i) => i % 10 === 0);
      const stream = [...order.map((i) => original[i]!), ...again].map((r, o) => ({
        ...r,
        offset: String(o),
      }));
      let late = 0;
      let duplicates = 0;
      let tasteLate = 0;
      for (const b of chunks(stream, 7)) {
        const out = await purchases.apply(b);
        late += out.late.length;
        duplicates += out.duplicates;
      }
      for (const b of chunks(stream, 20)) tasteLate += (await taste.apply(b)).late;
      // Held-back events and old second copies are late; recent second copies are duplicates.
      expect(late).toBeGreaterThan(again.length / 2);
      expect(duplicates).toBeGreaterThan(0);
      expect(tasteLate).toBe(late);
      const state = await redis.hgetall(keys.customer('mixed').state);
      const tasteState = await redis.hgetall(ekeys.customer('mixed').taste);
      expect(Number(state.n) + late + duplicates).toBe(stream.length);
      expect(Number(tasteState.n)).toBe(Number(state.n));
      expect(tasteState.t).toBe(state.last);
    });
  });
});
