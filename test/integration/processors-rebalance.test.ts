/**
 * Fault: a second processor instance joins the consumer groups mid-stream and leaves again (its
 * partitions move twice). Every key ends equal to a clean single run's, and nothing is dead-
 * lettered.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Producer } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { consumerLag } from '../../streams/admin.ts';
import { keySpace } from '../../features/keys.ts';
import { createProcessorMetrics } from '../../processors/metrics.ts';
import type { RunningProcessors } from '../../processors/start.ts';
import { bootstrap } from '../../streams/bootstrap.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import { stackContext, startSuiteProcessors, waitFor } from '../helpers.ts';
import { dumpNamespace, expectSameState } from '../redis-helpers.ts';

const T0 = Date.UTC(2020, 6, 6);

describe('a processor joining and leaving mid-stream', () => {
  const ctx = stackContext('rebalance');
  const redis = new Redis(ctx.config.redisUrl);
  let producer: Producer | null = null;
  const running: RunningProcessors[] = [];

  afterAll(async () => {
    for (const r of running) await r.stop().catch(() => undefined);
    await producer?.disconnect();
    await ctx.cleanup();
    redis.disconnect();
  });

  it('ends equal to a clean run, with nothing dead-lettered', async () => {
    const { codecs } = await bootstrap(ctx);
    producer = createIdempotentProducer(ctx.kafka);
    await producer.connect();
    await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(
      makeArticles(40, T0),
    );
    await new EventProducer(producer, ctx.topics.customers, codecs.customers).send(
      makeCustomers(60, T0),
    );
    const all = makePurchases({
      count: 6_000,
      customers: 60,
      articles: 40,
      start: T0,
      days: 40,
      seed: 21,
    });
    const purchases = new EventProducer(producer, ctx.topics.purchases, codecs.purchases);

    const ns = `rebal${randomUUID().slice(0, 8)}`;
    const group = `rebal-${randomUUID().slice(0, 8)}`;
    const metrics = createProcessorMetrics(false);
    const start = async (namespace: string, groupPrefix: string) =>
      (
        await startSuiteProcessors(ctx, {
          redis,
          keys: keySpace(namespace),
          codecs,
          producer: producer as Producer,
          groupPrefix,
          sessionTimeoutMs: 6_000,
          metrics,
        })
      ).running;
    const first = await start(ns, group);
    running.push(first);
    const admin = ctx.kafka.admin();
    await admin.connect();
    const lag = async () =>
      (
        await consumerLag(admin, `${group}.${ctx.topics.purchases.name}`, ctx.topics.purchases.name)
      ).reduce((s, p) => s + p.lag, 0);

    // Half the stream, then a second instance joins while the first is still working on it.
    await purchases.send(all.slice(0, 3_000));
    await waitFor('some commits', async () => (await lag()) < 3_000, 60_000, 20);
    const second = await start(ns, group);
    running.push(second);
    await purchases.send(all.slice(3_000));
    await waitFor(
      'the second instance to take a share',
      async () => (await lag()) < 2_000,
      60_000,
      20,
    );
    // It leaves (a clean stop: its partitions move back).
    await second.stop();
    running.splice(running.indexOf(second), 1);
    await first.caughtUp(120_000);
    await admin.disconnect();

    const cleanNs = `clean${randomUUID().slice(0, 8)}`;
    const clean = await start(cleanNs, `clean-${randomUUID().slice(0, 8)}`);
    running.push(clean);
    await clean.caughtUp(120_000);
    const want = await dumpNamespace(redis, cleanNs);
    expect(want.size).toBeGreaterThan(300);
    expectSameState(await dumpNamespace(redis, ns), want);
    expect((await metrics.dlq.get()).values.reduce((s, v) => s + v.value, 0)).toBe(0);
  }, 240_000);
});
