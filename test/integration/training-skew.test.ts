/**
 * The skew test: a training row's feature vector equals what the live API returns with
 * `explain=true` for the same customer and article, after the same events were processed and with
 * "now" = the cutoff. The live namespace is processed from the events before the cutoff; the
 * label week is published afterwards (so the live state never sees it), and the rows builder
 * replays the same topics into its own isolated namespace. The live co-buyer lists are built at the
 * cutoff, as a training cycle ending there would have built them.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { bootstrap } from '../../streams/bootstrap.ts';
import { featureNames } from '../../features/definitions.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { readDataset } from '../../streams/loader/dataset.ts';
import { publishDataset } from '../../streams/loader/publish.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { createProcessorMetrics } from '../../processors/metrics.ts';
import { buildCoBuyers } from '../../processors/co-buyers.ts';
import { startProcessors } from '../../processors/start.ts';
import { startServing } from '../../serving/server.ts';
import { buildTrainingRows, type QueryInfo } from '../../training/rows.ts';
import { generateDataset } from '../fixtures/generate.ts';
import { stackContext } from '../helpers.ts';

/** The features this build computes with embeddings off (the default). */
const FEATURE_NAMES = featureNames(false);

interface Explained {
  items: { article_id: string; features?: Record<string, number | null> }[];
  model_version: string;
}

describe('training rows against the live API (no training/serving skew)', () => {
  const ctx = stackContext('skew');
  const live = keySpace(`k${randomUUID().slice(0, 8)}`);
  const dir = mkdtempSync(join(tmpdir(), 'rec-skew-'));
  const redis = new Redis(ctx.config.redisUrl);

  afterAll(async () => {
    await deleteNamespace(redis, live);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
    await ctx.cleanup();
  });

  it(
    'gives the same feature vectors offline as the API explains at the cutoff',
    { timeout: 240_000 },
    async () => {
      generateDataset(dir, {
        customers: 80,
        articles: 100,
        purchases: 2500,
        seed: 17,
        startDate: '2020-06-01',
        days: 42,
      });
      const data = await readDataset(dir);
      const cutoff = Date.parse('2020-07-06T00:00:00Z'); // 5 weeks of history, 1 label week
      const { codecs } = await bootstrap(ctx);
      const producer = createIdempotentProducer(ctx.kafka);
      await producer.connect();
      const before = data.purchases.filter((p) => p.event_time < cutoff);
      const after = data.purchases.filter((p) => p.event_time >= cutoff);
      expect(after.length).toBeGreaterThan(50);
      await publishDataset(
        { producer, topics: ctx.topics, codecs },
        { ...data, purchases: before },
      );

      // The live state: processors over everything before the cutoff.
      const running = await startProcessors({
        kafka: ctx.kafka,
        redis,
        codecs,
        topics: ctx.topics,
        keys: live,
        logger: ctx.logger,
        metrics: createProcessorMetrics(false),
        dlqProducer: producer,
        groupPrefix: `skew-${live.ns}`,
      });
      await running.caughtUp(60_000);
      await running.stop();
      // The co-buyer lists a training cycle at the cutoff would have built for the live namespace.
      await buildCoBuyers(redis, live, { now: cutoff });
      // The label week reaches Kafka only now; the live namespace never processes it.
      await new EventProducer(producer, ctx.topics.purchases, codecs.purchases).send(after);
      await producer.disconnect();

      const queries: QueryInfo[] = [];
      const rowsNs = keySpace(`r${randomUUID().slice(0, 8)}`);
      try {
        await buildTrainingRows(
          { kafka: ctx.kafka, redis, codecs, topics: ctx.topics, logger: ctx.logger },
          { cutoffs: [cutoff], namespace: rowsNs.ns, onQuery: (q) => queries.push(q) },
        );
      } finally {
        await deleteNamespace(redis, rowsNs);
      }
      expect(queries.length).toBeGreaterThan(10);

      const serving = await startServing({
        redisUrl: ctx.config.redisUrl,
        keys: live,
        logger: ctx.logger,
        port: 0,
        host: '127.0.0.1',
        now: () => cutoff,
      });
      let compared = 0;
      let coBuyerValues = 0;
      try {
        for (const q of queries.filter((_, i) => i % 3 === 0)) {
          const res = await fetch(
            `${serving.url}/v1/recommendations/${q.customerId}?k=100&explain=true&allow_repurchase=true`,
          );
          expect(res.status).toBe(200);
          const body = (await res.json()) as Explained;
          const offline = new Map(q.candidates.map((c, i) => [c.articleId, q.features[i] ?? []]));
          for (const item of body.items) {
            const row = offline.get(item.article_id);
            if (row === undefined || item.features === undefined) continue;
            FEATURE_NAMES.forEach((name, j) => {
              const api = item.features?.[name];
              const off = row[j] ?? NaN;
              if (api === null || api === undefined || Number.isNaN(off)) {
                expect({ name, api: api ?? null, off: Number.isNaN(off) ? null : off }).toEqual({
                  name,
                  api: null,
                  off: null,
                });
              } else {
                expect(
                  Math.abs(api - off),
                  `${name} for ${q.customerId} / ${item.article_id}`,
                ).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(off)));
              }
            });
            if (Number.isFinite(item.features.p_cobuy_mean)) coBuyerValues++;
            compared++;
          }
        }
      } finally {
        await serving.close();
      }
      expect(compared).toBeGreaterThan(100);
      expect(coBuyerValues).toBeGreaterThan(10);
    },
  );
});
