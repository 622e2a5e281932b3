/**
 * Scale-out and failover on the cluster profile: two processor instances in one consumer group
 * and two API instances, while a generated dataset streams in, through three faults in turn:
 * (a) `kill -9` of the Kafka broker leading a purchases partition, (b) `kill -9` of a Redis master
 * (its replica takes over; writes it had not replicated yet are lost, and the processors'
 * per-master positions re-process them), (c) one processor instance stopped (its partitions move
 * to the other). After each, processing completes; at the end every key equals a clean run's
 * of what the topics hold (a fresh group into a fresh namespace: nothing lost, nothing counted
 * twice, nothing dead-lettered), and the APIs answered throughout: the errors and p99 during each
 * fault and the time to recover are printed. The topic must hold every purchase the producer had
 * acknowledged: before EventProducer sent each partition on its own, it did not (a kafkajs retry
 * bug, docs/guarantees.md).
 * Skipped unless CLUSTER_TESTS=1 (see cluster-context.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Admin, Producer } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient } from '../../common/redis.ts';
import { featureNames } from '../../features/definitions.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { buildFixtureModel } from '../../models/fixture.ts';
import { loadModel } from '../../models/model-meta.ts';
import { activateModel, registerModel } from '../../models/registry.ts';
import { createProcessorMetrics } from '../../processors/metrics.ts';
import type { RunningProcessors } from '../../processors/start.ts';
import { startServing, type ServingHandle } from '../../serving/server.ts';
import { CLUSTER_PORTS } from '../../stack/cluster.ts';
import { consumerLag, endOffsetTotal } from '../../streams/admin.ts';
import { bootstrap, type Codecs } from '../../streams/bootstrap.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import type { Purchase } from '../../schemas/events.ts';
import { customerId, makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import { processAll, stackContext, startSuiteProcessors, waitFor } from '../helpers.ts';
import { dumpNamespace, expectSameState, type Dump } from '../redis-helpers.ts';
import {
  CLUSTER_TESTS,
  clusterConfig,
  killService,
  masterPorts,
  restoreCluster,
  sayWhySkipped,
} from './cluster-context.ts';

sayWhySkipped('failover.test.ts');

const T0 = Date.UTC(2020, 6, 6);
const DAY = 86_400_000;
const FEATURES = featureNames(false);
const CUSTOMERS = 120;
const ARTICLES = 60;
const articles = makeArticles(ARTICLES, T0);
const customers = makeCustomers(CUSTOMERS, T0);
const purchases = makePurchases({
  count: 9_000,
  customers: CUSTOMERS,
  articles: ARTICLES,
  start: T0,
  days: 60,
  seed: 44,
});

/** One API request of the load: when it started, how long it took, whether it was answered 200. */
interface Sample {
  readonly at: number;
  readonly ms: number;
  readonly ok: boolean;
}

/** Requests against the API instances in turn, ~25 per second, until stopped. */
function startLoad(urls: readonly string[]): { samples: Sample[]; stop: () => Promise<void> } {
  const samples: Sample[] = [];
  let stopped = false;
  let n = 0;
  const loop = async () => {
    while (!stopped) {
      const url = urls[n % urls.length] ?? '';
      const customer = customerId((n * 7919) % CUSTOMERS);
      n++;
      const at = Date.now();
      let ok = false;
      try {
        const res = await fetch(`${url}/v1/recommendations/${customer}?k=12`, {
          signal: AbortSignal.timeout(2_000),
        });
        ok = res.status === 200;
        await res.body?.cancel();
      } catch {
        ok = false;
      }
      samples.push({ at, ms: Date.now() - at, ok });
      await new Promise((r) => setTimeout(r, 40));
    }
  };
  const running = loop();
  return {
    samples,
    stop: async () => {
      stopped = true;
      await running;
    },
  };
}

/** Errors, count and p99 of the samples started in [from, to). */
function windowStats(samples: readonly Sample[], from: number, to: number) {
  const inside = samples.filter((s) => s.at >= from && s.at < to);
  const ms = inside.map((s) => s.ms).sort((a, b) => a - b);
  return {
    requests: inside.length,
    errors: inside.filter((s) => !s.ok).length,
    p99Ms: ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.99))] ?? NaN,
  };
}

interface FaultReport {
  fault: string;
  recoverS: number;
  requests: number;
  errors: number;
  p99Ms: number;
}

describe.skipIf(!CLUSTER_TESTS)(
  'scale-out and failover on the cluster profile [CLUSTER_TESTS=1]',
  () => {
    const ctx = CLUSTER_TESTS ? stackContext('failover', 3, clusterConfig()) : (null as never);
    const ns = `fo${randomUUID().slice(0, 8)}`;
    const keys = keySpace(ns);
    const group = `fo-${randomUUID().slice(0, 8)}`;
    const dir = mkdtempSync(join(tmpdir(), 'rec-failover-'));
    const clients: RedisClient[] = [];
    const running: RunningProcessors[] = [];
    const servings: ServingHandle[] = [];
    let producer: Producer | null = null;
    let admin: Admin | null = null;

    afterAll(async () => {
      for (const r of running) await r.stop().catch(() => undefined);
      for (const s of servings) await s.close().catch(() => undefined);
      await producer?.disconnect().catch(() => undefined);
      await admin?.disconnect().catch(() => undefined);
      if (CLUSTER_TESTS) {
        // Whatever a failed run left killed comes back for the next suite.
        await restoreCluster(ctx.config).catch(() => undefined);
        const r = clients[0];
        for (const k of [keys, keySpace(`${ns}clean`)]) {
          if (r) await deleteNamespace(r, k).catch(() => undefined);
        }
        await ctx.cleanup().catch(() => undefined);
      }
      for (const c of clients) c.disconnect();
      rmSync(dir, { recursive: true, force: true });
    });

    it('processes what the topics hold exactly once through a broker kill, a Redis master kill and a processor leaving, and keeps answering', async () => {
      const { codecs } = await bootstrap(ctx);
      producer = createIdempotentProducer(ctx.kafka);
      await producer.connect();
      await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(articles);
      await new EventProducer(producer, ctx.topics.customers, codecs.customers).send(customers);
      const send = new EventProducer(producer, ctx.topics.purchases, codecs.purchases);

      // Two processor instances (each its own Cluster client, as two processes would have).
      const metrics = createProcessorMetrics(false);
      const startInstance = async (c: Codecs) => {
        const redis = createRedis(ctx.config, { maxRetriesPerRequest: 1 });
        redis.on('error', () => undefined); // a killed node: retried by the runner
        clients.push(redis);
        const { running: r } = await startSuiteProcessors(ctx, {
          redis,
          keys,
          codecs: c,
          producer: producer as Producer,
          groupPrefix: group,
          sessionTimeoutMs: 6_000,
          positionsCheckMs: 1_000,
          metrics,
        });
        running.push(r);
        return r;
      };
      await startInstance(codecs);
      const second = await startInstance(codecs);

      // Two API instances with a fixture ranker.
      const built = await buildFixtureModel(join(dir, 'model'), {
        trees: 50,
        seed: 5,
        version: `fixture-failover-${ns}`,
      });
      const model = await loadModel(built.onnxPath, built.metaPath, FEATURES);
      const adminRedis = clients[0] as RedisClient;
      await registerModel(adminRedis, keys, model);
      await activateModel(adminRedis, keys, model.meta.version, { available: FEATURES });
      for (let i = 0; i < 2; i++) {
        servings.push(
          await startServing({
            redisUrl: ctx.config.redisUrl,
            redisClusterNodes: ctx.config.redisClusterNodes,
            keys,
            logger: ctx.logger,
            port: 0,
            host: '127.0.0.1',
            now: () => T0 + 60 * DAY,
            allowFixtureModel: true,
          }),
        );
      }
      const load = startLoad(servings.map((s) => s.url));

      admin = ctx.kafka.admin();
      await admin.connect();
      const purchasesGroup = `${group}.${ctx.topics.purchases.name}`;
      const caughtUp = (what: string) =>
        waitFor(
          what,
          async () =>
            (await consumerLag(admin as Admin, purchasesGroup, ctx.topics.purchases.name)).every(
              (p) => p.lag === 0,
            ),
          180_000,
          200,
        );
      /** Send `events` in pieces; run `fault` after the third; returns when it struck. */
      const streamWithFault = async (events: readonly Purchase[], fault: () => Promise<void>) => {
        const piece = Math.ceil(events.length / 10);
        let struck = 0;
        for (let i = 0; i * piece < events.length; i++) {
          if (i === 3) {
            struck = Date.now();
            await fault();
          }
          await send.send(events.slice(i * piece, (i + 1) * piece));
        }
        return struck;
      };
      const reports: FaultReport[] = [];
      const measure = async (fault: string, struck: number) => {
        await caughtUp(`processing to complete after: ${fault}`);
        const recovered = Date.now();
        reports.push({
          fault,
          recoverS: (recovered - struck) / 1000,
          ...windowStats(load.samples, struck, recovered),
        });
      };

      const chunk = purchases.length / 3;
      await send.send(purchases.slice(0, 600));
      await caughtUp('the first events');

      // (a) The broker leading purchases partition 0, killed mid-stream.
      const meta = await admin.fetchTopicMetadata({ topics: [ctx.topics.purchases.name] });
      const leader = meta.topics[0]?.partitions.find((p) => p.partitionId === 0)?.leader ?? 1;
      const a = await streamWithFault(purchases.slice(600, chunk), async () => {
        killService(ctx.config, `kafka-${leader}`);
        await Promise.resolve();
      });
      await measure(`kill -9 Kafka broker ${leader} (leader of purchases-0)`, a);
      await restoreCluster(ctx.config);

      // (b) A Redis master, killed mid-stream: its replica takes over.
      const [masterPort] = await masterPorts();
      const redisService = `redis-${CLUSTER_PORTS.redis.indexOf(masterPort ?? 0) + 1}`;
      const b = await streamWithFault(purchases.slice(chunk, 2 * chunk), async () => {
        killService(ctx.config, redisService);
        await Promise.resolve();
      });
      await measure(`kill -9 Redis master ${redisService} (:${masterPort})`, b);
      // The store may still be re-processing what the failed-over master lost (the idle check).
      const settle = async () => {
        await new Promise((r) => setTimeout(r, 3_000));
        await caughtUp('re-processing after the failover');
      };
      await settle();
      await restoreCluster(ctx.config);

      // (c) One processor instance stops: its partitions move to the other.
      const c = await streamWithFault(purchases.slice(2 * chunk), async () => {
        await second.stop();
        running.splice(running.indexOf(second), 1);
      });
      await measure('one of two processor instances stopped', c);
      const quiet = Date.now();
      await new Promise((r) => setTimeout(r, 3_000));
      await load.stop();
      const after = windowStats(load.samples, quiet, Date.now());

      console.log(
        `failover figures (requests to 2 API instances, ~25/s; recover = fault to consumer lag 0):\n${reports
          .map(
            (r) =>
              `  ${r.fault}: recovered in ${r.recoverS.toFixed(1)} s; ${r.errors} errors of ${r.requests} requests, p99 ${r.p99Ms} ms`,
          )
          .join(
            '\n',
          )}\n  after: ${after.errors} errors of ${after.requests}, p99 ${after.p99Ms} ms`,
      );

      // What Kafka holds: every record the producer had acknowledged? (See the module comment.)
      const held = await endOffsetTotal(admin, ctx.topics.purchases.name);
      console.log(
        `purchases topic: ${held} records held of ${purchases.length} sent and acknowledged` +
          (held === purchases.length ? '' : ` (${purchases.length - held} missing)`),
      );
      expect(held).toBe(purchases.length);

      // A clean run of what the topics hold: a fresh group into a fresh namespace, no fault.
      const cleanNs = `${ns}clean`;
      const cleanRedis = createRedis(ctx.config, { maxRetriesPerRequest: 1 });
      clients.push(cleanRedis);
      await processAll(ctx, cleanRedis, keySpace(cleanNs), `clean-${group}`, 120_000);
      const want = await dumpNamespace(cleanRedis, cleanNs);
      expect(want.size).toBeGreaterThan(500);
      // Re-processing of what the failed-over master lost may still be finishing.
      // The model registry lives in the cluster's namespace only.
      const state = async () =>
        new Map([...(await dumpNamespace(adminRedis, ns))].filter(([k]) => !k.startsWith('{m}:')));
      let got: Dump = new Map();
      const same = (x: Dump, y: Dump = want) => {
        try {
          expectSameState(x, y);
          return true;
        } catch {
          return false;
        }
      };
      await waitFor(
        'the cluster state to equal the clean run',
        async () => same((got = await state())),
        60_000,
        1_000,
      ).catch(() => {
        const differing = [...new Set([...got.keys(), ...want.keys()])].filter(
          (k) => !same(new Map([[k, got.get(k)]]), new Map([[k, want.get(k)]])),
        );
        console.log(`keys differing from the clean run: ${differing.length}`);
        for (const k of differing.slice(0, 8)) {
          console.log(k, JSON.stringify(got.get(k)), JSON.stringify(want.get(k)));
        }
      });
      expectSameState(got, want);
      expect((await metrics.dlq.get()).values.reduce((s, v) => s + v.value, 0)).toBe(0);

      // The APIs kept answering through every fault, and answer everything once recovered.
      for (const r of reports) expect(r.requests - r.errors).toBeGreaterThan(0);
      expect(after.requests).toBeGreaterThan(20);
      expect(after.errors).toBe(0);
    }, 600_000);
  },
);
