/**
 * Fault injection: `kill -9` of a processor process in the middle of a stream, then a restart.
 * The final Redis state must equal that of a clean single run, key for key.
 */
import { loadConfig } from '../../common/config.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { bootstrap } from '../../streams/bootstrap.ts';
import { consumerLag } from '../../streams/admin.ts';
import { keySpace } from '../../features/keys.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { createProcessorMetrics } from '../../processors/metrics.ts';
import { startProcessors } from '../../processors/start.ts';
import { tasteGroupId } from '../../processors/taste.ts';
import { makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import { stackContext, waitFor } from '../helpers.ts';
import { dumpNamespace, expectSameState } from '../redis-helpers.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const T0 = Date.UTC(2020, 0, 6);
// Caps no set reaches: a capped set keeps the top members at each trim, so once a cap is reached
// the state depends on how the partitions' batches interleaved, which a restart changes (the caps
// themselves: processors-bounds.test.ts). Both runs, the killed one and the clean one, use these.
const UNCAPPED = { copurchaseCap: 1_000_000, trendingCap: 1_000_000, itemsCap: 1_000_000 };

describe('processor killed with SIGKILL mid-stream', () => {
  const ctx = stackContext('kill');
  const redis = new Redis(ctx.config.redisUrl);
  const children: ChildProcess[] = [];

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await ctx.cleanup();
    redis.disconnect();
  });

  function startProcess(ns: string, group: string): ChildProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', 'processors/processors-cli.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        KAFKA_BROKERS: ctx.config.kafkaBrokers.join(','),
        SCHEMA_REGISTRY_URL: ctx.config.schemaRegistryUrl,
        REDIS_URL: ctx.config.redisUrl,
        TOPIC_PREFIX: ctx.prefix,
        REDIS_NAMESPACE: ns,
        PROCESSOR_GROUP: group,
        PROCESSOR_METRICS_PORT: '0',
        // The killed member holds its partitions until its session expires.
        PROCESSOR_SESSION_TIMEOUT_MS: '8000',
        LOG_LEVEL: 'warn',
        PROCESSOR_COPURCHASE_CAP: String(UNCAPPED.copurchaseCap),
        PROCESSOR_TRENDING_CAP: String(UNCAPPED.trendingCap),
        PROCESSOR_ITEMS_CAP: String(UNCAPPED.itemsCap),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(child);
    return child;
  }

  it(
    'restarts to a state equal to a clean run, comparing every key',
    { timeout: 240_000 },
    async () => {
      const { codecs } = await bootstrap(ctx);
      const producer = createIdempotentProducer(ctx.kafka);
      await producer.connect();
      const purchases = makePurchases({
        count: 15_000,
        customers: 3_000,
        articles: 800,
        start: T0,
        days: 90,
        seed: 42,
      });
      await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(
        makeArticles(800, T0),
      );
      await new EventProducer(producer, ctx.topics.customers, codecs.customers).send(
        makeCustomers(3_000, T0),
      );
      await new EventProducer(producer, ctx.topics.purchases, codecs.purchases).send(purchases);

      const ns = `k${randomUUID().slice(0, 8)}`;
      const group = `kill-${randomUUID().slice(0, 8)}`;
      const purchaseGroup = `${group}.${ctx.topics.purchases.name}`;
      // EMBEDDINGS=on (inherited by the child): the taste group consumes purchases too, and its
      // state is compared as well, so the restarted process must have caught up in both groups.
      const tasteGroup = loadConfig().embeddings.enabled
        ? tasteGroupId(group, ctx.topics.purchases.name)
        : null;
      const admin = ctx.kafka.admin();
      await admin.connect();
      const lagOf = async (g: string) =>
        (await consumerLag(admin, g, ctx.topics.purchases.name)).reduce((s, p) => s + p.lag, 0);
      const remaining = () => lagOf(purchaseGroup);
      const remainingAll = async () =>
        (await remaining()) + (tasteGroup === null ? 0 : await lagOf(tasteGroup));

      const first = startProcess(ns, group);
      let stderr = '';
      first.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      // Kill once some, but not all, purchases have been committed (by the purchases group and,
      // when on, by the taste group).
      await waitFor(
        'the first commits',
        async () =>
          (await remaining()) < purchases.length &&
          (tasteGroup === null || (await lagOf(tasteGroup)) < purchases.length),
        60_000,
        20,
      );
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      const left = await remaining();
      expect(left, `processor finished before it could be killed: ${stderr}`).toBeGreaterThan(0);

      const second = startProcess(ns, group);
      await waitFor(
        'the restarted processor to catch up',
        async () => (await remainingAll()) === 0,
        120_000,
        100,
      );
      second.kill('SIGTERM');
      await new Promise((r) => second.once('exit', r));
      await admin.disconnect();

      // Clean single run in-process, into another namespace.
      const cleanNs = `c${randomUUID().slice(0, 8)}`;
      const running = await startProcessors({
        kafka: ctx.kafka,
        redis,
        codecs,
        topics: ctx.topics,
        keys: keySpace(cleanNs),
        logger: ctx.logger,
        metrics: createProcessorMetrics(false),
        dlqProducer: producer,
        groupPrefix: `clean-${randomUUID().slice(0, 8)}`,
        options: UNCAPPED,
      });
      await running.caughtUp(120_000);
      await running.stop();
      await producer.disconnect();

      const clean = await dumpNamespace(redis, cleanNs);
      expect(clean.size).toBeGreaterThan(2_000);
      expectSameState(await dumpNamespace(redis, ns), clean);
    },
  );
});
