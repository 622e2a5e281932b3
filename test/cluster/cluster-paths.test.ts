/**
 * The code runs unchanged on the cluster profile (3 brokers, topics replicated 3 times, a Redis
 * Cluster of 3 masters): topics get RF 3 and `min.insync.replicas=2`; the processors, the model
 * registry, experiments, serving and the training rows run on the Cluster client; the processors'
 * state and the training rows equal a single-node run's of the same events; and no node answered
 * any command with CROSSSLOT (every script and multi-key command keeps its keys in one slot).
 * Skipped unless CLUSTER_TESTS=1 (see cluster-context.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ConfigResourceTypes, type Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient } from '../../common/redis.ts';
import { featureNames } from '../../features/definitions.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { HEURISTIC_MODEL, startExperiment, stopExperiment } from '../../models/experiments.ts';
import { buildFixtureModel } from '../../models/fixture.ts';
import { loadModel } from '../../models/model-meta.ts';
import { activateModel, registerModel } from '../../models/registry.ts';
import { startServing, type ServingHandle } from '../../serving/server.ts';
import { bootstrap } from '../../streams/bootstrap.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { buildTrainingRows } from '../../training/rows.ts';
import { makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import { processAll, stackContext, waitFor, type StackContext } from '../helpers.ts';
import { dumpNamespace, expectSameState } from '../redis-helpers.ts';
import { CLUSTER_TESTS, clusterConfig, crossSlotErrors, sayWhySkipped } from './cluster-context.ts';

sayWhySkipped('cluster-paths.test.ts');

const T0 = Date.UTC(2020, 6, 6);
const DAY = 86_400_000;
const FEATURES = featureNames(false);
const articles = makeArticles(60, T0);
const customers = makeCustomers(80, T0);
const purchases = makePurchases({
  count: 4_000,
  customers: 80,
  articles: 60,
  start: T0,
  days: 50,
  seed: 33,
});

/** Publish the suite's events to `ctx`'s topics. */
async function publish(ctx: StackContext): Promise<void> {
  const { codecs } = await bootstrap(ctx);
  const producer = createIdempotentProducer(ctx.kafka);
  await producer.connect();
  try {
    await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(articles);
    await new EventProducer(producer, ctx.topics.customers, codecs.customers).send(customers);
    await new EventProducer(producer, ctx.topics.purchases, codecs.purchases).send(purchases);
  } finally {
    await producer.disconnect();
  }
}

async function topicReplication(kafka: Kafka, topic: string) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    const configs = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [
        { type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['min.insync.replicas'] },
      ],
    });
    return {
      replicas: meta.topics[0]?.partitions.map((p) => p.replicas.length) ?? [],
      minInsync: configs.resources[0]?.configEntries[0]?.configValue,
    };
  } finally {
    await admin.disconnect();
  }
}

describe.skipIf(!CLUSTER_TESTS)('the code on the cluster profile [CLUSTER_TESTS=1]', () => {
  const ctx = CLUSTER_TESTS ? stackContext('cpaths', 3, clusterConfig()) : (null as never);
  const single = CLUSTER_TESTS ? stackContext('cpaths-single') : (null as never);
  const ns = `cp${randomUUID().slice(0, 8)}`;
  const keys = keySpace(ns);
  const dir = mkdtempSync(join(tmpdir(), 'rec-cluster-paths-'));
  let redis: RedisClient;
  let singleRedis: Redis;
  let crossSlotBefore: Map<number, number>;
  let serving: ServingHandle | null = null;
  let singleServing: ServingHandle | null = null;

  beforeAll(async () => {
    redis = createRedis(ctx.config, { maxRetriesPerRequest: 1 });
    singleRedis = new Redis(single.config.redisUrl);
    crossSlotBefore = await crossSlotErrors();
    await Promise.all([publish(ctx), publish(single)]);
  });

  afterAll(async () => {
    await serving?.close();
    await singleServing?.close();
    if (CLUSTER_TESTS) {
      for (const n of [ns, `${ns}rows`]) {
        await deleteNamespace(redis, keySpace(n));
        await deleteNamespace(singleRedis, keySpace(n));
      }
      redis.disconnect();
      singleRedis.disconnect();
      await ctx.cleanup();
      await single.cleanup();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the topics with 3 replicas and min.insync.replicas=2', async () => {
    for (const t of [ctx.topics.purchases.name, ctx.topics.purchases.dlq]) {
      const r = await topicReplication(ctx.kafka, t);
      expect(r.replicas.length).toBeGreaterThan(0);
      expect(r.replicas.every((n) => n === 3)).toBe(true);
      expect(r.minInsync).toBe('2');
    }
  });

  it('processes into the Cluster exactly what a single Redis holds after the same events', async () => {
    await processAll(ctx, redis, keys, `cp-${ns}`, 120_000);
    await processAll(single, singleRedis, keys, `cp-${ns}`, 120_000);
    const want = await dumpNamespace(singleRedis, ns);
    expect(want.size).toBeGreaterThan(500);
    expectSameState(await dumpNamespace(redis, ns), want);
  }, 300_000);

  it('registers, activates, serves and runs an experiment on the Cluster', async () => {
    const built = await buildFixtureModel(join(dir, 'model'), {
      trees: 50,
      seed: 3,
      version: `fixture-cluster-${ns}`,
    });
    const model = await loadModel(built.onnxPath, built.metaPath, FEATURES);
    const start = async (r: RedisClient, c: StackContext) => {
      await registerModel(r, keys, model);
      await activateModel(r, keys, model.meta.version, { available: FEATURES });
      return startServing({
        redisUrl: c.config.redisUrl,
        redisClusterNodes: c.config.redisClusterNodes,
        keys,
        logger: c.logger,
        port: 0,
        host: '127.0.0.1',
        now: () => T0 + 50 * DAY,
        allowFixtureModel: true,
        activeCheckMs: 500,
      });
    };
    serving = await start(redis, ctx);
    singleServing = await start(singleRedis, single);
    const url = serving.url;
    const get = async (path: string, base = url) => {
      const res = await fetch(`${base}${path}`);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    // The same answers as an instance reading a single Redis with the same state.
    for (const c of customers.slice(0, 10)) {
      const path = `/v1/recommendations/${c.customer_id}?k=12`;
      const r = await get(path);
      expect(r.status).toBe(200);
      expect(r.body.model_version).toBe(model.meta.version);
      expect((r.body.items as unknown[]).length).toBeGreaterThan(0);
      const want = await get(path, singleServing.url);
      const ids = (b: Record<string, unknown>) =>
        (b.items as { article_id: string }[]).map((i) => i.article_id);
      expect(ids(r.body)).toEqual(ids(want.body));
    }
    const similar = await get(`/v1/articles/${articles[0]?.article_id ?? ''}/similar?k=5`);
    expect(similar.status).toBe(200);
    expect((await get('/v1/trending?k=5')).status).toBe(200);

    const name = `cluster-${ns}`;
    await startExperiment(
      redis,
      keys,
      {
        name,
        variants: [
          { name: 'model', model: model.meta.version, weight: 1 },
          { name: 'heuristic', model: HEURISTIC_MODEL, weight: 1 },
        ],
      },
      { available: FEATURES },
    );
    const variants = await waitFor('answers of both variants', async () => {
      const seen = new Set<string>();
      for (const c of customers.slice(0, 20)) {
        const r = await get(`/v1/recommendations/${c.customer_id}?k=5`);
        if (r.status === 200 && r.body.experiment === name) seen.add(String(r.body.variant));
      }
      return seen.size === 2 ? seen : undefined;
    });
    expect([...variants].sort()).toEqual(['heuristic', 'model']);
    await stopExperiment(redis, keys, { available: FEATURES });
  }, 120_000);

  it('builds the same training rows on the Cluster as on a single Redis', async () => {
    const cutoffs = [T0 + 35 * DAY, T0 + 42 * DAY];
    const build = async (c: StackContext, r: RedisClient) => {
      const { codecs } = await bootstrap(c);
      return buildTrainingRows(
        { kafka: c.kafka, redis: r, codecs, topics: c.topics, logger: c.logger },
        { cutoffs, namespace: `${ns}rows`, customerSample: { others: 10, seed: 7 } },
      );
    };
    const onCluster = await build(ctx, redis);
    const onSingle = await build(single, singleRedis);
    expect(onCluster.queries).toBeGreaterThan(20);
    expect(onCluster.positives).toBeGreaterThan(0);
    expect({
      queries: onCluster.queries,
      positives: onCluster.positives,
      perCutoff: onCluster.perCutoff,
    }).toEqual({
      queries: onSingle.queries,
      positives: onSingle.positives,
      perCutoff: onSingle.perCutoff,
    });
  }, 180_000);

  it('no node answered any of it with CROSSSLOT', async () => {
    const after = await crossSlotErrors();
    for (const [port, n] of after)
      expect({ port, crossSlot: n }).toEqual({
        port,
        crossSlot: crossSlotBefore.get(port) ?? 0,
      });
  });
});
