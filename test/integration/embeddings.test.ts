/**
 * Article embeddings on the real Redis, with the local model (no network): the catalogue goes in
 * through the processors' metadata code, `embedArticles` embeds it once and afterwards only what
 * changed (content-hash cache), `buildSimilar` finds each article's same-product-code colour
 * variants as its nearest neighbours, and the serving route answers from that index.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyArticles } from '../../processors/metadata.ts';
import { defineScripts } from '../../processors/scripts.ts';
import type { Article } from '../../schemas/events.ts';
import { createApp, DEFAULT_SERVING_CONFIG } from '../../serving/app.ts';
import { createServingMetrics } from '../../serving/metrics.ts';
import { loadConfig } from '../../common/config.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { buildSimilar, embedArticles } from '../../embeddings/embed.ts';
import { loadEmbedder, type Embedder } from '../../embeddings/model.ts';
import { readSimilar, readVectors } from '../../embeddings/store.ts';
import { embeddingKeys, type EmbeddingKeys } from '../../features/embedding-keys.ts';
import { keySpace, type KeySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { createLogger } from '../../common/logger.ts';
import { embeddingCatalogue } from '../fixtures/embedding-articles.ts';
import { activeSources } from '../../serving/candidates/index.ts';
import { featureNames } from '../../features/definitions.ts';
import { ConfigError } from '../../common/config.ts';

const records = (articles: readonly Article[]): DecodedRecord<Article>[] =>
  articles.map((value, i) => ({
    value,
    key: value.article_id,
    topic: 'articles',
    partition: 0,
    offset: String(i),
    timestamp: value.updated_at,
  }));

const productOf = (id: string): string => id.slice(0, 7);

describe('article embeddings and similar items', () => {
  let redis: Redis;
  let keys: KeySpace;
  let ekeys: EmbeddingKeys;
  let embedder: Embedder;
  const catalogue = embeddingCatalogue();

  beforeAll(async () => {
    redis = new Redis(loadConfig().redisUrl, { maxRetriesPerRequest: null });
    const ns = `emb-${randomUUID().slice(0, 8)}`;
    keys = keySpace(ns);
    ekeys = embeddingKeys(ns);
    await applyArticles(redis, keys, defineScripts(redis), records(catalogue));
    embedder = await loadEmbedder({ remoteModel: undefined });
  });
  afterAll(async () => {
    await embedder.dispose();
    await deleteNamespace(redis, keys);
    redis.disconnect();
  });

  it('adds the features and the similar source only with EMBEDDINGS=on (off by default)', () => {
    for (const on of [false, true]) {
      expect(featureNames(on).includes('p_emb_taste_cos')).toBe(on);
      expect(featureNames(on).includes('p_emb_recent_max')).toBe(on);
      expect(activeSources(on).includes('similar')).toBe(on);
    }
    // The embedding features come last: a set with them only appends columns.
    expect(featureNames(true).slice(0, featureNames(false).length)).toEqual(featureNames(false));
    const enabled = (env: NodeJS.ProcessEnv) => loadConfig(env).embeddings.enabled;
    expect(enabled({ EMBEDDINGS: 'on' })).toBe(true);
    expect(enabled({ EMBEDDINGS: 'OFF' })).toBe(false);
    expect(enabled({})).toBe(false);
    expect(() => enabled({ EMBEDDINGS: 'maybe' })).toThrow(ConfigError);
    expect(() => enabled({ EMBEDDINGS: 'maybe' })).toThrow(/EMBEDDINGS: must be on or off/);
  });

  it('embeds the catalogue once, then only the article whose text changed', async () => {
    const sold = await embedArticles(redis, keys, ekeys, embedder, { scope: { kind: 'sold' } });
    expect(sold).toMatchObject({ catalogue: catalogue.length, inScope: 0, embedded: 0 });

    const first = await embedArticles(redis, keys, ekeys, embedder, { scope: { kind: 'all' } });
    expect(first).toMatchObject({ inScope: catalogue.length, embedded: catalogue.length });
    expect(first.unchanged).toBe(0);
    expect(await redis.scard(ekeys.ids)).toBe(catalogue.length);

    const again = await embedArticles(redis, keys, ekeys, embedder, { scope: { kind: 'all' } });
    expect(again).toMatchObject({ embedded: 0, unchanged: catalogue.length });

    const target = catalogue[0]!;
    const before = (await readVectors(redis, ekeys, [target.article_id])).get(target.article_id);
    const other = catalogue[5]!.article_id;
    const otherBefore = await redis.hgetBuffer(ekeys.article(other).vector, 'v');
    // A catalogue update of one article (later updated_at, new colour and description).
    await applyArticles(
      redis,
      keys,
      defineScripts(redis),
      records([
        {
          ...target,
          colour_group_name: 'Dark Green',
          detail_desc: 'Ribbed jersey top with narrow shoulder straps.',
          updated_at: target.updated_at + 86_400_000,
        },
      ]),
    );
    const update = await embedArticles(redis, keys, ekeys, embedder, { scope: { kind: 'all' } });
    expect(update.ids).toEqual([target.article_id]);
    expect(update).toMatchObject({ embedded: 1, unchanged: catalogue.length - 1 });
    const after = (await readVectors(redis, ekeys, [target.article_id])).get(target.article_id);
    expect(Array.from(after!)).not.toEqual(Array.from(before!));
    expect(await redis.hgetBuffer(ekeys.article(other).vector, 'v')).toEqual(otherBefore);

    // The default scope keeps embedded articles fresh even without sales.
    const fresh = await embedArticles(redis, keys, ekeys, embedder, { scope: { kind: 'sold' } });
    expect(fresh).toMatchObject({ inScope: catalogue.length, embedded: 0 });
  });

  it("finds an article's same-product-code colour variants as its nearest neighbours", async () => {
    const report = await buildSimilar(redis, ekeys, { n: 5, block: 7 });
    expect(report).toMatchObject({ articles: catalogue.length, n: 5 });
    const ids = catalogue.map((a) => a.article_id);
    const lists = await readSimilar(redis, ekeys, ids);
    ids.forEach((id, i) => {
      const list = lists[i]!;
      expect(list).toHaveLength(5);
      expect(list.map((x) => x.articleId)).not.toContain(id);
      const scores = list.map((x) => x.score);
      expect([...scores].sort((a, b) => b - a)).toEqual(scores);
      const variants = ids.filter((o) => o !== id && productOf(o) === productOf(id));
      // Every other colour variant of the product ranks above any other product.
      expect(new Set(list.slice(0, variants.length).map((x) => x.articleId))).toEqual(
        new Set(variants),
      );
    });
  });

  it('answers GET /v1/articles/{id}/similar/embedding from the index', async () => {
    const app = createApp({
      redis,
      keys,
      ranker: () => null,
      logger: createLogger('silent', 'test-embeddings'),
      metrics: createServingMetrics(),
      config: DEFAULT_SERVING_CONFIG,
    });
    const get = async (path: string) => {
      const res = await app.request(path);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const ok = await get('/v1/articles/0706016001/similar/embedding?n=2');
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({
      article_id: '0706016001',
      name: 'Jade HW Skinny Denim TRS',
      embedded: true,
    });
    const items = ok.body.items as { article_id: string; name: string; rank: number }[];
    expect(items.map((x) => x.article_id).sort()).toEqual(['0706016002', '0706016003']);
    expect(items.map((x) => x.rank)).toEqual([1, 2]);
    expect(items[0]!.name).toBe('Jade HW Skinny Denim TRS');

    expect((await get('/v1/articles/0706016001/similar/embedding')).status).toBe(200);
    const unknown = await get('/v1/articles/0999999001/similar/embedding');
    expect(unknown.status).toBe(404);
    for (const bad of ['n=0', 'n=51', 'n=two', 'k=3']) {
      const res = await get(`/v1/articles/0706016001/similar/embedding?${bad}`);
      expect(res.status).toBe(400);
      const field = bad.split('=')[0]!;
      expect(JSON.stringify(res.body)).toContain(`"path":"${field}"`);
    }
    // The co-purchase route is unchanged.
    expect((await get('/v1/articles/0706016001/similar?k=2')).status).toBe(200);
  });
});
