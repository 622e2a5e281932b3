/**
 * Fault: Redis comes back with less than it acknowledged. A private `redis-server` (AOF,
 * `appendfsync always`) holds the processors' state; a copy of its persistence is taken after a
 * first part of the stream, a second part is processed and committed, then Redis is killed and
 * restarted from the copy: the state of the second part is gone while Kafka's committed offsets
 * are past it. Before any new event arrives, the processors' idle check finds the store behind
 * (its positions, `keys.positions`, against the committed offsets) and re-processes from what it
 * holds; every key ends equal to a clean run's.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keySpace } from '../../features/keys.ts';
import type { RunningProcessors } from '../../processors/start.ts';
import { bootstrap, type Codecs } from '../../streams/bootstrap.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import { freePort, stackContext, startSuiteProcessors, waitFor } from '../helpers.ts';
import { dumpNamespace, expectSameState, pinged, startRedis } from '../redis-helpers.ts';

const T0 = Date.UTC(2020, 2, 2);

describe('Redis restored from older persistence than the committed offsets', () => {
  const ctx = stackContext('behind');
  // A port nothing listens on (a random one could be taken, e.g. by a client's ephemeral port).
  let port = 0;
  const dir = mkdtempSync(join(tmpdir(), 'rec-behind-'));
  const copy = mkdtempSync(join(tmpdir(), 'rec-behind-copy-'));
  let server: ChildProcess | null = null;
  let redis: Redis | null = null;
  let producer: Producer | null = null;
  const running: RunningProcessors[] = [];
  const contexts: ReturnType<typeof stackContext>[] = [];

  beforeAll(async () => {
    port = await freePort();
  });

  afterAll(async () => {
    for (const r of running) await r.stop().catch(() => undefined);
    await producer?.disconnect();
    redis?.disconnect();
    server?.kill('SIGKILL');
    await ctx.cleanup();
    for (const c of contexts) await c.cleanup();
    rmSync(dir, { recursive: true, force: true });
    rmSync(copy, { recursive: true, force: true });
  });

  it('re-processes what Redis lost, and ends equal to a clean run', async () => {
    server = startRedis(port, dir, { aofAlways: true });
    await pinged(port);
    redis = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: null });
    redis.on('error', () => undefined); // refused connections while Redis restarts: retried
    const { codecs } = await bootstrap(ctx);
    producer = createIdempotentProducer(ctx.kafka);
    await producer.connect();
    const purchases = new EventProducer(producer, ctx.topics.purchases, codecs.purchases);
    await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(
      makeArticles(30, T0),
    );
    await new EventProducer(producer, ctx.topics.customers, codecs.customers).send(
      makeCustomers(40, T0),
    );
    const all = makePurchases({
      count: 1_500,
      customers: 40,
      articles: 30,
      start: T0,
      days: 30,
      seed: 5,
    });
    const [a, b, c] = [all.slice(0, 500), all.slice(500, 1_000), all.slice(1_000)] as const;
    const ns = `behind${randomUUID().slice(0, 8)}`;
    const start = async (r: Redis, namespace: string, groupPrefix: string, k: Codecs) =>
      (
        await startSuiteProcessors(ctx, {
          redis: r,
          keys: keySpace(namespace),
          codecs: k,
          producer: producer as Producer,
          groupPrefix,
          positionsCheckMs: 500,
        })
      ).running;
    const live = await start(redis, ns, `behind-${randomUUID().slice(0, 8)}`, codecs);
    running.push(live);

    await purchases.send(a);
    await live.caughtUp(120_000);
    // Idle and fsynced at every write: a consistent copy of Redis's persistence after part A.
    cpSync(dir, copy, { recursive: true });

    await purchases.send(b);
    await live.caughtUp(120_000);
    const afterB = Number(await redis.hget(keySpace(ns).trending.offsets, '0'));

    // Redis dies and comes back from the copy: part B's effects are gone, its offsets committed.
    server.kill('SIGKILL');
    await new Promise((r) => server?.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
    cpSync(copy, dir, { recursive: true });
    server = startRedis(port, dir, { aofAlways: true });
    await pinged(port);
    expect(Number(await redis.hget(keySpace(ns).trending.offsets, '0'))).toBeLessThan(afterB);
    const nOf = async (namespace: string) => {
      const ids = [...new Set(all.map((p) => p.customer_id))];
      const ns2 = keySpace(namespace);
      const counts = await Promise.all(
        ids.map(async (id) => Number((await redis?.hget(ns2.customer(id).state, 'n')) ?? 0)),
      );
      return counts.reduce((s, x) => s + x, 0);
    };
    // No new record arrives: the idle check finds the store behind the committed offsets and
    // re-processes part B all the same.
    await waitFor(
      'part B re-applied without new records',
      async () => (await nOf(ns)) === a.length + b.length,
      60_000,
      200,
    );

    await purchases.send(c);
    await live.caughtUp(120_000);
    expect(await nOf(ns)).toBe(all.length);

    // A clean run of the whole stream into another namespace of the same Redis.
    const cleanNs = `clean${randomUUID().slice(0, 8)}`;
    const clean = await start(redis, cleanNs, `clean-${randomUUID().slice(0, 8)}`, codecs);
    running.push(clean);
    await clean.caughtUp(120_000);
    const want = await dumpNamespace(redis, cleanNs);
    expect(want.size).toBeGreaterThan(200);
    expectSameState(await dumpNamespace(redis, ns), want);
  });

  it('retries while Redis is down for a minute, reports the partitions stuck, and dead-letters nothing', async () => {
    const down = mkdtempSync(join(tmpdir(), 'rec-down-'));
    const downPort = await freePort();
    let srv = startRedis(downPort, down, { aofAlways: true });
    try {
      await pinged(downPort);
      // As `npm run processors` builds it: a command fails after a reconnect attempt instead of
      // waiting forever, so a batch fails, is retried with backoff and the partition shows stuck.
      const r = new Redis(downPort, '127.0.0.1', { maxRetriesPerRequest: 1 });
      r.on('error', () => undefined);
      // Topics of its own: the stream above is not part of this one.
      const own = stackContext('down');
      contexts.push(own);
      const { codecs } = await bootstrap(own);
      const purchases = new EventProducer(
        producer as Producer,
        own.topics.purchases,
        codecs.purchases,
      );
      const all = makePurchases({
        count: 600,
        customers: 30,
        articles: 20,
        start: T0,
        days: 20,
        seed: 9,
        idPrefix: 'down',
      });
      const ns = `down${randomUUID().slice(0, 8)}`;
      const { running: live, metrics } = await startSuiteProcessors(own, {
        redis: r,
        keys: keySpace(ns),
        codecs,
        producer: producer as Producer,
        groupPrefix: `down-${randomUUID().slice(0, 8)}`,
      });
      running.push(live);
      await purchases.send(all.slice(0, 300));
      await live.caughtUp(120_000);

      srv.kill('SIGKILL');
      const downAt = Date.now();
      await new Promise((res) => srv.once('exit', res));
      await purchases.send(all.slice(300));
      await waitFor('a stuck partition', () => !metrics.health().ok, 60_000, 100);
      const stuck = metrics.health().stuck;
      expect(stuck[0]?.topic).toBe(own.topics.purchases.name);
      expect(stuck[0]?.attempts).toBeGreaterThanOrEqual(5);
      // Down for a minute: longer than the consumer session (30 s), so the retrying member must
      // keep its partitions by heartbeating, and the backoff reaches its 10 s cap.
      await new Promise((res) => setTimeout(res, Math.max(0, 60_000 - (Date.now() - downAt))));
      expect(metrics.health().ok).toBe(false);

      srv = startRedis(downPort, down, { aofAlways: true });
      await pinged(downPort);
      await live.caughtUp(120_000);
      expect(metrics.health().ok).toBe(true);
      const keys = keySpace(ns);
      const ids = [...new Set(all.map((p) => p.customer_id))];
      const n = await Promise.all(
        ids.map(async (id) => Number((await r.hget(keys.customer(id).state, 'n')) ?? 0)),
      );
      expect(n.reduce((x, y) => x + y, 0)).toBe(all.length);
      expect((await metrics.dlq.get()).values.reduce((x, v) => x + v.value, 0)).toBe(0);
      r.disconnect();
    } finally {
      srv.kill('SIGKILL');
      rmSync(down, { recursive: true, force: true });
    }
  }, 180_000);
});
