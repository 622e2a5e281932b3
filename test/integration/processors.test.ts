/**
 * Processors against the real Kafka, registry and Redis: hand-computed features after a known
 * sequence, order independence (shuffled and late events), redelivery after a crash between the
 * Redis write and the commit, and DLQ accounting (with `EMBEDDINGS=on`, the taste group included).
 * (kill -9 of a process: processors-kill.test.ts.)
 */
import { loadConfig } from '../../common/config.ts';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Producer } from 'kafkajs';
import { bootstrap, type Codecs } from '../../streams/bootstrap.ts';
import { endOffsetTotal } from '../../streams/admin.ts';
import { readDeadLetters } from '../../streams/dlq.ts';
import { DAY_MS, directDecayedSum } from '../../features/decay.ts';
import { featureVector, featureNames } from '../../features/definitions.ts';
import { embeddingKeys } from '../../features/embedding-keys.ts';
import { keySpace, HALF_LIVES, type KeySpace } from '../../features/keys.ts';
import {
  type ArticleState,
  type CustomerState,
  copurchaseTop,
  readArticles,
  readCustomers,
  trendingTop,
} from '../../features/state.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { createProcessorMetrics } from '../../processors/metrics.ts';
import type { PurchaseProcessorOptions } from '../../processors/purchases.ts';
import { startProcessors } from '../../processors/start.ts';
import type { Article, Customer, Purchase } from '../../schemas/events.ts';
import { makeArticles, makeCustomers, makePurchases, shuffled } from '../fixtures/events.ts';
import { stackContext, type StackContext } from '../helpers.ts';
import { dumpNamespace, expectSameState } from '../redis-helpers.ts';

/** The features this build computes with embeddings off (the default). */
const FEATURE_NAMES = featureNames(false);

const T0 = Date.UTC(2020, 5, 1);

interface World {
  ctx: StackContext;
  codecs: Codecs;
  producer: Producer;
  send(events: {
    purchases?: Purchase[];
    articles?: Article[];
    customers?: Customer[];
  }): Promise<void>;
}

async function world(name: string, producer: Producer): Promise<World> {
  const ctx = stackContext(name);
  const { codecs } = await bootstrap(ctx);
  return {
    ctx,
    codecs,
    producer,
    async send(e) {
      if (e.articles)
        await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(e.articles);
      if (e.customers)
        await new EventProducer(producer, ctx.topics.customers, codecs.customers).send(e.customers);
      if (e.purchases)
        await new EventProducer(producer, ctx.topics.purchases, codecs.purchases).send(e.purchases);
    },
  };
}

/** Run the processors over everything in `w`'s topics into namespace `ns`, then stop. */
async function processAll(
  w: World,
  redis: Redis,
  ns: string,
  options: Partial<PurchaseProcessorOptions> = {},
) {
  const group = `g-${randomUUID().slice(0, 8)}`;
  const metrics = createProcessorMetrics(false);
  const running = await startProcessors({
    kafka: w.ctx.kafka,
    redis,
    codecs: w.codecs,
    topics: w.ctx.topics,
    keys: keySpace(ns),
    logger: w.ctx.logger,
    metrics,
    dlqProducer: w.producer,
    groupPrefix: group,
    options,
  });
  await running.caughtUp(60_000);
  await running.stop();
  return metrics;
}

describe('processors on the real stack', () => {
  let redis: Redis;
  let producer: Producer;
  const worlds: World[] = [];

  beforeAll(async () => {
    const ctx = stackContext('proc-setup');
    redis = new Redis(ctx.config.redisUrl, { maxRetriesPerRequest: 3 });
    producer = createIdempotentProducer(ctx.kafka);
    await producer.connect();
  });

  afterAll(async () => {
    await producer.disconnect();
    for (const w of worlds) await w.ctx.cleanup();
    redis.disconnect();
  });

  it('computes every feature of a known sequence exactly as computed by hand', async () => {
    const w = await world('known', producer);
    worlds.push(w);
    const ns = `t${randomUUID().slice(0, 8)}`;
    // a1: Upper body / Ladieswear, a2: Lower body / Menswear, a3: never sold
    const [a1, a2, a3] = makeArticles(3, T0);
    if (!a1 || !a2 || !a3) throw new Error('fixture');
    const A1 = a1.article_id;
    const A2 = a2.article_id;
    const c1: Customer = { ...makeCustomers(1, T0)[0]!, customer_id: 'alice', age: 30 };
    const p = (
      id: string,
      customer: string,
      article: string,
      days: number,
      price: number,
      channel: number,
    ): Purchase => ({
      event_id: id,
      customer_id: customer,
      article_id: article,
      price,
      sales_channel_id: channel,
      quantity: 1,
      event_time: T0 + days * DAY_MS,
    });
    const events = [
      p('e1', 'alice', A1, 0, 0.02, 2),
      p('e2', 'alice', A2, 1, 0.03, 1),
      p('e3', 'bob', A1, 2, 0.02, 2),
      p('e4', 'alice', A1, 20, 0.025, 2), // more than 14 days after e1/e2: no co-purchase pair
    ];
    await w.send({ articles: [a1, a2, a3], customers: [c1], purchases: events });
    await processAll(w, redis, ns);
    const keys = keySpace(ns);
    const now = T0 + 25 * DAY_MS;
    const t = (d: number) => T0 + d * DAY_MS;

    const [alice, bob] = await readCustomers(redis, keys, ['alice', 'bob']);
    expect(alice).toMatchObject({
      n: 3,
      units: 3,
      first: t(0),
      last: t(20),
      channels: { '1': 1, '2': 2 },
      bought: { [A1]: 2, [A2]: 1 },
    });
    expect(alice?.spend).toBeCloseTo(0.075, 12);
    expect(alice?.recent.map((r) => r.eventId)).toEqual(['e4', 'e2', 'e1']);
    expect(alice?.recent[0]).toMatchObject({
      articleId: A1,
      time: t(20),
      price: 0.025,
      channel: 2,
      quantity: 1,
    });
    expect(bob).toMatchObject({ n: 1, first: t(2), last: t(2) });

    const [s1, s2] = await readArticles(redis, keys, [A1, A2]);
    expect(s1).toMatchObject({ n: 3, units: 3, buyers: 2, first: t(0), last: t(20) });
    expect(s1?.meta.prod_name).toBe('Article 0');
    expect(s2).toMatchObject({ n: 1, buyers: 1, first: t(1), last: t(1) });

    // The article summaries (one read per article) equal the hashes they summarise: the same
    // states once they are gone (read from the hashes, as a namespace written before them).
    const ids = [A1, A2, a3.article_id, 'never-seen'];
    const fromSummaries = await readArticles(redis, keys, ids);
    const summaryKeys = ids.map((id) => keys.article(id).summary);
    expect(await Promise.all(summaryKeys.map((k) => redis.hlen(k)))).toEqual([2, 2, 2, 0]);
    expect(fromSummaries[2]).toMatchObject({ n: 0, buyers: 0, first: null, popularity: {} });
    expect(fromSummaries[2]?.meta.prod_name).toBe('Article 2');
    await redis.del(...summaryKeys);
    expect(await readArticles(redis, keys, ids)).toEqual(fromSummaries);

    // Feature values through the shared definitions, against direct sums.
    const f = (customer: CustomerState | undefined, article: ArticleState | undefined) => {
      if (!customer || !article) throw new Error('state missing');
      const v = featureVector(FEATURE_NAMES, { customer, article, now });
      return Object.fromEntries(FEATURE_NAMES.map((name, i) => [name, v[i] as number]));
    };
    const fa1 = f(alice, s1);
    const H30 = HALF_LIVES['30d'];
    const a1Times = [{ t: t(0) }, { t: t(2) }, { t: t(20) }];
    expect(fa1.c_purchases).toBe(3);
    expect(fa1.c_avg_price).toBeCloseTo(0.075 / 3, 12);
    expect(fa1.c_days_since_first).toBeCloseTo(25, 9);
    expect(fa1.c_days_since_last).toBeCloseTo(5, 9);
    expect(fa1.c_channel2_share).toBeCloseTo(2 / 3, 12);
    expect(fa1.c_age).toBe(30);
    expect(fa1.a_purchases).toBe(3);
    expect(fa1.a_buyers).toBe(2);
    expect(fa1.a_avg_price).toBeCloseTo(0.065 / 3, 12);
    expect(fa1.a_days_since_last_sold).toBeCloseTo(5, 9);
    expect(fa1.a_pop_1d).toBeCloseTo(directDecayedSum(a1Times, now, HALF_LIVES['1d']), 12);
    expect(fa1.a_pop_7d).toBeCloseTo(directDecayedSum(a1Times, now, HALF_LIVES['7d']), 12);
    expect(fa1.a_pop_30d).toBeCloseTo(directDecayedSum(a1Times, now, H30), 12);
    expect(fa1.p_units_bought).toBe(2);
    // Alice bought a1 at t(0) and t(20), a2 at t(1): a1 is her most recent distinct purchase.
    expect(fa1.p_days_since_bought).toBeCloseTo(5, 9);
    expect(fa1.p_recent_rank).toBe(0);
    expect(fa1.p_recent_count).toBe(2);
    expect(f(alice, s2).p_recent_rank).toBe(1);
    expect(f(alice, s2).p_days_since_bought).toBeCloseTo(24, 9);
    // Her stock of a1: one unit before the latest over 20 days, 5 days since: a quarter used up.
    expect(fa1.p_item_stock_used).toBeCloseTo(0.25, 12);
    expect(fa1.p_item_last_units_rel).toBe(1);
    expect(fa1.p_item_units_share).toBeCloseTo(2 / 3, 12);
    expect(f(alice, s2).p_item_stock_used).toBeNaN();
    // Candidate-evidence features need the candidate: missing without it.
    expect(fa1.s_sources).toBeNaN();
    expect(fa1.p_price_ratio).toBeCloseTo(0.065 / 3 / (0.075 / 3), 12);
    // Affinity: e1, e4 are Upper body (a1), e2 Lower body (a2); share of decayed counts.
    const aliceAll = [{ t: t(0) }, { t: t(1) }, { t: t(20) }];
    const upper = [{ t: t(0) }, { t: t(20) }];
    expect(fa1.p_aff_pg).toBeCloseTo(
      directDecayedSum(upper, now, H30) / directDecayedSum(aliceAll, now, H30),
      12,
    );
    expect(f(alice, s2).p_aff_pg).toBeCloseTo(
      directDecayedSum([{ t: t(1) }], now, H30) / directDecayedSum(aliceAll, now, H30),
      12,
    );
    // Bob has no metadata and no affinity to a2's group.
    expect(f(bob, s2).p_aff_pg).toBe(0);
    expect(Number.isNaN(f(bob, s1).c_age)).toBe(true);

    // Co-purchase: only e1-e2 (1 day apart), both directions, weighted at the later time.
    const pair = directDecayedSum([{ t: t(1) }], now, H30);
    expect(await copurchaseTop(redis, keys, A1, 5, now)).toEqual([
      { articleId: A2, score: expect.closeTo(pair, 12) as number },
    ]);
    expect(await copurchaseTop(redis, keys, A2, 5, now)).toEqual([
      { articleId: A1, score: expect.closeTo(pair, 12) as number },
    ]);

    // Trending at "now": global, channel segment, age x index-group segment.
    const H7 = HALF_LIVES['7d'];
    const g = await trendingTop(redis, keys, { n: 10, now, halfLife: '7d' });
    expect(g.map((x) => x.articleId)).toEqual([A1, A2]);
    expect(g[0]?.score).toBeCloseTo(directDecayedSum(a1Times, now, H7), 12);
    const ch1 = await trendingTop(redis, keys, {
      n: 10,
      now,
      halfLife: '7d',
      segment: { kind: 'channel', value: '1' },
    });
    expect(ch1.map((x) => x.articleId)).toEqual([A2]);
    const young = await trendingTop(redis, keys, {
      n: 10,
      now,
      halfLife: '7d',
      segment: { kind: 'age_index', value: '25-34|Ladieswear' },
    });
    expect(young).toEqual([
      { articleId: A1, score: expect.closeTo(directDecayedSum(upper, now, H7), 12) as number },
    ]);
    const unknownAge = await trendingTop(redis, keys, {
      n: 10,
      now,
      halfLife: '7d',
      segment: { kind: 'age_index', value: 'unknown|Ladieswear' },
    });
    expect(unknownAge.map((x) => x.articleId)).toEqual([A1]);
    // Reading at another "now" rescales without changing the ranking.
    const later = await trendingTop(redis, keys, { n: 10, now: now + 7 * DAY_MS, halfLife: '7d' });
    expect(later[0]?.score).toBeCloseTo((g[0]?.score ?? 0) / 2, 12);
  });

  it('reaches the same state from the same events in another order, late ones included', async () => {
    const articles = makeArticles(30, T0);
    const customers = makeCustomers(20, T0);
    // Quantities from 1 to 4, and every 5th purchase with a second line of the same article at
    // the same time (an order of two lines): the units at an article's latest time add up.
    const inOrder = makePurchases({
      count: 400,
      customers: 20,
      articles: 30,
      start: T0,
      days: 60,
      seed: 11,
    }).flatMap((e, i) => {
      const line = { ...e, quantity: 1 + (i % 4) };
      return i % 5 === 0 ? [line, { ...line, event_id: `${e.event_id}-2`, quantity: 2 }] : [line];
    });
    // Another order: shuffled within 2-day blocks, and every 10th event delayed by 3 days.
    const blocks = new Map<number, Purchase[]>();
    for (const e of inOrder) {
      const b = Math.floor((e.event_time - T0) / (2 * DAY_MS));
      blocks.set(b, [...(blocks.get(b) ?? []), e]);
    }
    const reordered = [...blocks.values()].flatMap((b, i) => shuffled(b, i));
    const late = reordered.filter((_, i) => i % 10 === 0);
    const onTime = reordered.filter((_, i) => i % 10 !== 0);
    const withLate: Purchase[] = [];
    for (const e of onTime) {
      withLate.push(e);
      while (late[0] && late[0].event_time + 3 * DAY_MS <= e.event_time)
        withLate.push(late.shift()!);
    }
    withLate.push(...late);
    expect(withLate).toHaveLength(inOrder.length);
    expect(withLate.map((e) => e.event_id)).not.toEqual(inOrder.map((e) => e.event_id));

    const a = await world('order-a', producer);
    const b = await world('order-b', producer);
    worlds.push(a, b);
    await a.send({ articles, customers, purchases: inOrder });
    await b.send({
      articles: shuffled(articles, 1),
      customers: shuffled(customers, 2),
      purchases: withLate,
    });
    const nsA = `t${randomUUID().slice(0, 8)}`;
    const nsB = `t${randomUUID().slice(0, 8)}`;
    // Co-purchase fan-out is bounded (nearest partners first at processing time); order
    // independence holds while the bound is not reached, so this test sets it above any window.
    await processAll(a, redis, nsA, { copurchaseFanout: 1_000 });
    await processAll(b, redis, nsB, { copurchaseFanout: 1_000 });
    const dumpA = await dumpNamespace(redis, nsA, { ignorePositions: true });
    expect(dumpA.size).toBeGreaterThan(100);
    expectSameState(await dumpNamespace(redis, nsB, { ignorePositions: true }), dumpA);
  });

  it('counts nothing twice when a batch is redelivered after the Redis write but before the commit', async () => {
    const w = await world('redeliver', producer);
    worlds.push(w);
    const articles = makeArticles(10, T0);
    const purchases = makePurchases({
      count: 200,
      customers: 8,
      articles: 10,
      start: T0,
      days: 20,
      seed: 5,
    });
    await w.send({ articles, customers: makeCustomers(8, T0), purchases });

    // Reference: a clean run.
    const clean = `t${randomUUID().slice(0, 8)}`;
    await processAll(w, redis, clean);

    // Crashing runs, one per crash point, each in its own namespace: the purchase handler throws
    // once after step 1 (nothing written), after step 2 (customer state written, other slots
    // not) or after step 3 (everything written, not committed). The runner then redelivers the
    // batch without a commit having happened.
    for (const crashAfter of [1, 2, 3] as const) {
      let crashed = 0;
      const ns = `t${randomUUID().slice(0, 8)}`;
      const metrics = await processAll(w, redis, ns, {
        afterStep: (step) => {
          if (step === crashAfter && crashed === 0) {
            crashed++;
            throw new Error(`simulated crash after step ${step}`);
          }
        },
      });
      expect(crashed).toBe(1);
      expect((await metrics.retries.get()).values[0]?.value).toBe(1);
      expectSameState(await dumpNamespace(redis, ns), await dumpNamespace(redis, clean));
      const first = purchases[0]!.customer_id;
      const [c] = await readCustomers(redis, keySpace(ns), [first]);
      expect(c?.n).toBe(purchases.filter((p) => p.customer_id === first).length);
    }
  });

  it('sends exactly the N malformed records to the DLQ and processes every good one', async () => {
    const w = await world('dlq', producer);
    worlds.push(w);
    const good = makePurchases({
      count: 300,
      customers: 10,
      articles: 12,
      start: T0,
      days: 10,
      seed: 3,
    });
    const N = 7;
    await w.send({ articles: makeArticles(12, T0), purchases: good.slice(0, 150) });
    await producer.send({
      topic: w.ctx.topics.purchases.name,
      messages: Array.from({ length: N }, (_, i) =>
        i % 2 === 0
          ? { key: `bad${i}`, value: Buffer.from(`garbage ${i}`) }
          : {
              key: `bad${i}`,
              value: new EventProducer(
                producer,
                w.ctx.topics.purchases,
                w.codecs.purchases,
              ).toMessage(good[0]!).value as Buffer,
              headers: {},
            },
      ).map((m, i) =>
        i % 2 === 0 ? m : { key: m.key, value: Buffer.concat([m.value, Buffer.from([1, 2, 3])]) },
      ),
    });
    // Valid Avro, refused by the processors: dated far ahead of the processing clock, and keyed
    // by another customer than its own (the per-customer guards need one partition per customer).
    const encoder = new EventProducer(producer, w.ctx.topics.purchases, w.codecs.purchases);
    const future = { ...good[1]!, event_id: 'future-1', event_time: Date.UTC(2099, 0, 1) };
    const misKeyed = encoder.toMessage({ ...good[2]!, event_id: 'mis-keyed-1' });
    await producer.send({
      topic: w.ctx.topics.purchases.name,
      // The record's own timestamp is the send time: Kafka 4 refuses timestamps over an hour ahead
      // (log.message.timestamp.after.max.ms), so a hostile producer dates only the event.
      messages: [
        { ...encoder.toMessage(future), timestamp: String(Date.now()) },
        { ...misKeyed, key: 'somebody-else' },
      ],
    });
    await w.send({ purchases: good.slice(150) });
    const ns = `t${randomUUID().slice(0, 8)}`;
    const metrics = await processAll(w, redis, ns);

    const admin = w.ctx.kafka.admin();
    await admin.connect();
    expect(await endOffsetTotal(admin, w.ctx.topics.purchases.dlq)).toBe(N + 2);
    await admin.disconnect();
    const dlq = (await metrics.dlq.get()).values;
    expect(dlq.reduce((s, v) => s + v.value, 0)).toBe(N + 2);
    const byCode = (code: string) =>
      dlq.filter((v) => v.labels.code === code).reduce((s, v) => s + v.value, 0);
    expect(byCode('REC_ERR_FUTURE_EVENT')).toBe(1);
    expect(byCode('REC_ERR_KEY_MISMATCH')).toBe(1);
    const processed = (await metrics.events.get()).values.find(
      (v) => v.labels.topic === w.ctx.topics.purchases.name,
    );
    expect(processed?.value).toBe(good.length);
    const keys: KeySpace = keySpace(ns);
    const customers = [...new Set(good.map((g) => g.customer_id))];
    const states = await readCustomers(redis, keys, customers);
    expect(states.reduce((s, c) => s + c.n, 0)).toBe(good.length);
    // EMBEDDINGS=on: the taste group reads the same records; the purchases group owns the DLQ,
    // so the taste group only counts the N malformed ones as skipped, and applies every good one.
    const skipped = (await metrics.skipped.get()).values.reduce((s, v) => s + v.value, 0);
    expect(skipped).toBe(loadConfig().embeddings.enabled ? N + 2 : 0);
    if (loadConfig().embeddings.enabled) {
      const ekeys = embeddingKeys(ns);
      const applied = await Promise.all(
        customers.map((c) => redis.hget(ekeys.customer(c).taste, 'n')),
      );
      expect(applied.reduce((s, v) => s + Number(v), 0)).toBe(good.length);
    }
  });

  it('dead-letters purchases dated before the dedup horizon, a second publish and a new event alike, and counts neither', async () => {
    const articles = makeArticles(12, T0);
    const good = makePurchases({
      count: 240,
      customers: 6,
      articles: 12,
      start: T0,
      days: 120,
      seed: 5,
    });
    // The customer who buys most, over the whole 120 days.
    const counts = new Map<string, number>();
    for (const p of good) counts.set(p.customer_id, (counts.get(p.customer_id) ?? 0) + 1);
    const [customer] = [...counts].sort((x, y) => y[1] - x[1])[0]!;
    const theirs = good.filter((p) => p.customer_id === customer);
    const first = theirs[0]!;
    const newest = theirs.at(-1)!.event_time;
    expect(newest - first.event_time).toBeGreaterThan(100 * DAY_MS);
    // After the customer's newest purchase (120 days on): its first purchase published again (a
    // producer re-sending an old stretch), and a new purchase dated 100 days before its newest.
    const late = [first, { ...first, event_id: 'late-new-1', event_time: newest - 100 * DAY_MS }];
    const a = await world('late-a', producer);
    const b = await world('late-b', producer);
    worlds.push(a, b);
    await a.send({ articles, purchases: [...good, ...late] });
    await b.send({ articles, purchases: good });
    const nsA = `t${randomUUID().slice(0, 8)}`;
    const nsB = `t${randomUUID().slice(0, 8)}`;
    const metrics = await processAll(a, redis, nsA);
    await processAll(b, redis, nsB);

    const dlq = (await metrics.dlq.get()).values;
    expect(dlq.map((v) => [v.labels.code, v.value])).toEqual([['REC_ERR_LATE_EVENT', 2]]);
    const letters = await readDeadLetters(a.ctx.kafka, a.ctx.topics.purchases.dlq, a.ctx.logger);
    expect(letters.map((d) => d.code)).toEqual(['REC_ERR_LATE_EVENT', 'REC_ERR_LATE_EVENT']);
    for (const d of letters) {
      expect(d.reason).toMatch(/is before .*, the dedup horizon's cut \(30 days/);
      expect(d.reason).toContain(first.customer_id);
    }
    // Neither counted anywhere (the taste group, with EMBEDDINGS=on, skips them too): the state
    // is a clean run's, but for the guard's entries of the two.
    const noGuards = (d: Map<string, unknown>) =>
      new Map([...d].filter(([k]) => !k.endsWith(':seen')));
    const dumpA = await dumpNamespace(redis, nsA, { ignorePositions: true });
    expect(dumpA.size).toBeGreaterThan(50);
    expectSameState(
      noGuards(dumpA),
      noGuards(await dumpNamespace(redis, nsB, { ignorePositions: true })),
    );
    const [c] = await readCustomers(redis, keySpace(nsA), [first.customer_id]);
    expect(c?.n).toBe(theirs.length);
  });
});
