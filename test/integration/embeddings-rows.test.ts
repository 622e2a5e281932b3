/**
 * Training rows with EMBEDDINGS=on: the row builder replays purchases through the taste
 * processor's code too, into its isolated namespace, reads article vectors from the live one,
 * and its rows carry the embedding features and the `similar` source. (EMBEDDINGS=off rows are
 * covered by training-rows.test.ts.)
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Candidate } from '../../serving/candidates/index.ts';
import { bootstrap } from '../../streams/bootstrap.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { embeddingKeys } from '../../features/embedding-keys.ts';
import { keySpace } from '../../features/keys.ts';
import { readDataset } from '../../streams/loader/dataset.ts';
import { runLoad } from '../../streams/loader/load.ts';
import type { Article } from '../../schemas/events.ts';
import { generateDataset } from '../fixtures/generate.ts';
import { processAll, stackContext } from '../helpers.ts';

import { applyArticles } from '../../processors/metadata.ts';
import { defineScripts } from '../../processors/scripts.ts';
import { buildSimilar, embedArticles } from '../../embeddings/embed.ts';
import { loadEmbedder } from '../../embeddings/model.ts';
import { featureNames } from '../../features/definitions.ts';
import { deleteNamespace } from '../../features/state.ts';
import { buildTrainingRows } from '../../training/rows.ts';
import { rebuildTaste } from '../../processors/taste-rebuild.ts';
import { decodeTaste, dot } from '../../embeddings/store.ts';

// A deployment with embeddings on.
const EMBEDDINGS = { enabled: true } as const;
const FEATURE_NAMES = featureNames(true);

const CUTOFF = Date.UTC(2020, 6, 13);

describe('training rows with EMBEDDINGS=on', () => {
  const ctx = stackContext('embrows');
  const dir = mkdtempSync(join(tmpdir(), 'embrows-'));
  const id = randomUUID().slice(0, 8);
  const live = `emblive-${id}`;
  const ns = `embrows-${id}`;
  let redis: Redis;
  const features: number[][] = [];
  const candidates: Candidate[] = [];
  let recall: Record<string, number | undefined> = {};
  let codecs: Awaited<ReturnType<typeof bootstrap>>['codecs'];

  beforeAll(async () => {
    redis = new Redis(ctx.config.redisUrl, { maxRetriesPerRequest: null });
    generateDataset(join(dir, 'data'), {
      customers: 60,
      articles: 60,
      purchases: 900,
      seed: 11,
      startDate: '2020-06-10',
      days: 40,
    });
    await runLoad({
      config: { ...ctx.config, topicPrefix: ctx.prefix },
      logger: ctx.logger,
      dataDir: join(dir, 'data'),
      progress: false,
    });
    // The live store's article vectors (what `npm run embed` keeps).
    const dataset = await readDataset(join(dir, 'data'));
    const records: DecodedRecord<Article>[] = dataset.articles.map((value, i) => ({
      value,
      key: null,
      topic: 'direct',
      partition: 0,
      offset: String(i),
      timestamp: value.updated_at,
    }));
    await applyArticles(redis, keySpace(live), defineScripts(redis), records);
    const embedder = await loadEmbedder({ remoteModel: undefined });
    try {
      await embedArticles(redis, keySpace(live), embeddingKeys(live), embedder, {
        scope: { kind: 'all' },
      });
    } finally {
      await embedder.dispose();
    }
    await buildSimilar(redis, embeddingKeys(live), { n: 10 });

    ({ codecs } = await bootstrap(ctx));
    const result = await buildTrainingRows(
      {
        kafka: ctx.kafka,
        redis,
        codecs,
        topics: ctx.topics,
        logger: ctx.logger,
        embeddings: EMBEDDINGS,
      },
      {
        cutoffs: [CUTOFF],
        namespace: ns,
        liveNamespace: live,
        onQuery: (q) => {
          features.push(...q.features.map((f) => [...f]));
          candidates.push(...q.candidates);
        },
      },
    );
    recall = result.candidateRecall;
  });

  afterAll(async () => {
    for (const n of [ns, live]) await deleteNamespace(redis, keySpace(n));
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
    await ctx.cleanup();
  });

  it('replays the taste processor and fills the embedding features and the similar source', async () => {
    expect(candidates.length).toBeGreaterThan(0);
    const taste = FEATURE_NAMES.indexOf('p_emb_taste_cos');
    const recent = FEATURE_NAMES.indexOf('p_emb_recent_max');
    expect(taste).toBeGreaterThan(-1);
    expect(recent).toBeGreaterThan(-1);
    const finite = (i: number) => features.filter((f) => Number.isFinite(f[i])).length;
    // Customers with history have a taste: most of their candidates get a value.
    expect(finite(taste)).toBeGreaterThan(features.length / 4);
    expect(finite(recent)).toBe(finite(taste));
    for (const f of features) {
      if (Number.isFinite(f[taste])) expect(Math.abs(f[taste]!)).toBeLessThanOrEqual(1.0001);
    }
    expect(candidates.some((c) => c.sources.includes('similar'))).toBe(true);
    expect(recall.similar).toBeGreaterThanOrEqual(0);
    // The taste state was rebuilt in the training namespace, never in the live one.
    const scan = async (pattern: string): Promise<string[]> => {
      const out: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 10_000);
        cursor = next;
        out.push(...batch);
      } while (cursor !== '0');
      return out;
    };
    expect((await scan(`${ns}:{u:*}:taste`)).length).toBeGreaterThan(0);
    expect(await scan(`${live}:{u:*}:taste`)).toEqual([]);
  });

  it('starts the taste consumer group with the processors: one taste update per purchase event', async () => {
    const keys = keySpace(live);
    await processAll(ctx, redis, keys, `g-${id}`, 120_000, EMBEDDINGS);
    const dataset = await readDataset(join(dir, 'data'));
    const customers = [...new Set(dataset.purchases.map((p) => p.customer_id))];
    const pipe = redis.pipeline();
    for (const c of customers) {
      pipe.hget(keys.customer(c).state, 'n');
      pipe.hget(embeddingKeys(live).customer(c).taste, 'n');
    }
    const v = ((await pipe.exec()) ?? []).map(([, x]) => x as string | null);
    customers.forEach((_, i) => {
      expect(v[i * 2 + 1]).toBe(v[i * 2]);
      expect(Number(v[i * 2])).toBeGreaterThan(0);
    });

    // Rebuilt from the topic: the same tastes.
    const tastes = async () => {
      const p = redis.pipeline();
      for (const c of customers) p.hgetBuffer(embeddingKeys(live).customer(c).taste, 'v');
      return ((await p.exec()) ?? []).map(([, x]) => decodeTaste(x as Buffer | null));
    };
    const before = await tastes();
    const report = await rebuildTaste(
      { kafka: ctx.kafka, redis, codecs, topics: ctx.topics, keys, logger: ctx.logger },
      embeddingKeys(live),
    );
    expect(report.applied).toBe(v.filter((_, i) => i % 2 === 0).reduce((s, n) => s + Number(n), 0));
    const after = await tastes();
    before.forEach((t, i) => {
      expect(t).not.toBeNull();
      expect(dot(t, after[i])).toBeGreaterThan(0.99999);
    });
  });
});
