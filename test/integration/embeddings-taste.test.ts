/**
 * EMBEDDINGS=on, on the real Redis with the local model (no network, no Kafka: records are handed
 * to the processors' code as a consumer would): the taste processor applies each purchase once
 * (redeliveries and duplicates skipped) and keeps the decayed mean direction whatever the arrival
 * order; candidate generation adds the `similar` source and the embedding features read the taste
 * and the latest purchases; articles without a vector read NaN.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Article, Purchase } from '../../schemas/events.ts';
import { loadConfig } from '../../common/config.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { embeddingKeys, type EmbeddingKeys } from '../../features/embedding-keys.ts';
import { keySpace, type KeySpace } from '../../features/keys.ts';
import { embeddingCatalogue } from '../fixtures/embedding-articles.ts';

import { applyArticles } from '../../processors/metadata.ts';
import { PurchaseProcessor } from '../../processors/purchases.ts';
import { defineScripts } from '../../processors/scripts.ts';
import { TasteProcessor, TASTE_HALF_LIFE } from '../../processors/taste.ts';
import {
  activeSources,
  defaultCandidateConfig,
  gatherCandidates,
} from '../../serving/candidates/index.ts';
import { buildSimilar, embedArticles } from '../../embeddings/embed.ts';
import { loadEmbedder } from '../../embeddings/model.ts';
import { decodeTaste, dot, readVectors } from '../../embeddings/store.ts';
import { featureNames, featureVector } from '../../features/definitions.ts';
import { HALF_LIVES } from '../../features/keys.ts';
import { deleteNamespace, emptyArticleState } from '../../features/state.ts';

// Embeddings on: the feature set, the sources and the candidate configuration of such a deployment.
const FEATURE_NAMES = featureNames(true);
const SOURCES = activeSources(true);
const CANDIDATES = defaultCandidateConfig(true);

const DAY = 86_400_000;
const T0 = Date.UTC(2020, 8, 10);

const articleRecords = (articles: readonly Article[]): DecodedRecord<Article>[] =>
  articles.map((value, i) => ({
    value,
    key: value.article_id,
    topic: 'articles',
    partition: 0,
    offset: String(i),
    timestamp: value.updated_at,
  }));

let offset = 0;
const purchase = (
  customer: string,
  article: string,
  time: number,
  opts: { eventId?: string; offset?: number } = {},
): DecodedRecord<Purchase> => {
  const o = opts.offset ?? offset++;
  return {
    value: {
      event_id: opts.eventId ?? `e-${customer}-${article}-${time}`,
      customer_id: customer,
      article_id: article,
      price: 0.03,
      sales_channel_id: 2,
      quantity: 1,
      event_time: time,
    },
    key: customer,
    topic: 'purchases',
    partition: 0,
    offset: String(o),
    timestamp: time,
  };
};

describe('taste vectors, embedding features and the similar source (EMBEDDINGS=on)', () => {
  let redis: Redis;
  let keys: KeySpace;
  let ekeys: EmbeddingKeys;
  const catalogue = embeddingCatalogue();

  beforeAll(async () => {
    redis = new Redis(loadConfig().redisUrl, { maxRetriesPerRequest: null });
    const ns = `taste-${randomUUID().slice(0, 8)}`;
    keys = keySpace(ns);
    ekeys = embeddingKeys(ns);
    // One article stays without a vector: it joins the catalogue after the embedding run.
    await applyArticles(redis, keys, defineScripts(redis), articleRecords(catalogue.slice(0, -1)));
    const embedder = await loadEmbedder({ remoteModel: undefined });
    try {
      await embedArticles(redis, keys, ekeys, embedder, { scope: { kind: 'all' } });
    } finally {
      await embedder.dispose();
    }
    await buildSimilar(redis, ekeys, { n: 5 });
    await applyArticles(redis, keys, defineScripts(redis), articleRecords(catalogue.slice(-1)));
  });
  afterAll(async () => {
    await deleteNamespace(redis, keys);
    redis.disconnect();
  });

  it('turns the features and the source on', () => {
    expect(FEATURE_NAMES).toContain('p_emb_taste_cos');
    expect(FEATURE_NAMES).toContain('p_emb_recent_max');
    expect(SOURCES).toContain('similar');
  });

  it('applies each purchase once and keeps the decayed mean direction in any order', async () => {
    const taste = new TasteProcessor(redis, keys, ekeys);
    const jeans = '0706016001';
    const luna = '0562245001';
    const events = [purchase('cust-a', jeans, T0), purchase('cust-a', luna, T0 + 10 * DAY)];
    expect(await taste.apply(events)).toEqual({
      applied: 2,
      withoutVector: 0,
      skipped: 0,
      late: 0,
    });
    const stored = await redis.hgetall(ekeys.customer('cust-a').taste);
    // Redelivered (same positions) and duplicated (same event id, another position): skipped.
    expect(await taste.apply(events)).toMatchObject({ applied: 0, skipped: 2 });
    const dup = purchase('cust-a', jeans, T0, { offset: 999 });
    expect(await taste.apply([dup])).toMatchObject({ applied: 0, skipped: 1 });
    expect(await redis.hgetall(ekeys.customer('cust-a').taste)).toEqual(stored);
    expect(stored.n).toBe('2');

    const vectors = await readVectors(redis, ekeys, [jeans, luna]);
    const w = Math.exp((-Math.LN2 / HALF_LIVES[TASTE_HALF_LIFE]) * 10 * DAY);
    const expected = vectors.get(luna)!.map((x, i) => x + w * vectors.get(jeans)![i]!);
    const norm = Math.sqrt(dot(expected, expected));
    const got = decodeTaste(await redis.hgetBuffer(ekeys.customer('cust-a').taste, 'v'));
    expect(dot(got, expected) / norm).toBeGreaterThan(0.99999);
    expect(Number(stored.w)).toBeCloseTo(1 + w, 6);

    // The same purchases in reverse order (another customer): the same direction.
    await taste.apply([purchase('cust-b', luna, T0 + 10 * DAY)]);
    await taste.apply([purchase('cust-b', jeans, T0)]);
    const reversed = decodeTaste(await redis.hgetBuffer(ekeys.customer('cust-b').taste, 'v'));
    expect(dot(reversed, got)).toBeGreaterThan(0.99999);

    // An article without a vector is seen, and adds nothing.
    const unembedded = catalogue.at(-1)!.article_id;
    expect(await taste.apply([purchase('cust-b', unembedded, T0 + 11 * DAY)])).toEqual({
      applied: 1,
      withoutVector: 1,
      skipped: 0,
      late: 0,
    });
    const after = decodeTaste(await redis.hgetBuffer(ekeys.customer('cust-b').taste, 'v'));
    expect(dot(after, reversed)).toBeGreaterThan(0.99999);
  });

  it('adds similar candidates and computes the embedding features', async () => {
    const scripts = defineScripts(redis);
    const purchases = new PurchaseProcessor(redis, keys, scripts);
    const taste = new TasteProcessor(redis, keys, ekeys);
    const strapBlack = '0108775001';
    const neverSold = '0108775004';
    // Every article but one sold once before, each to another customer (no co-purchases): the
    // similar source proposes only articles that have sold.
    await purchases.apply(
      catalogue
        .map((a) => a.article_id)
        .filter((id) => id !== neverSold)
        .map((id, i) => purchase(`cust-o${i}`, id, T0 - DAY)),
    );
    const events = [purchase('cust-c', strapBlack, T0)];
    await purchases.apply(events);
    await taste.apply(events);

    const set = await gatherCandidates(redis, keys, CANDIDATES, {
      customerId: 'cust-c',
      filters: {},
      allowRepurchase: false,
    });
    const similar = set.candidates
      .filter((c) => c.sources.includes('similar'))
      .sort((a, b) => (b.similar?.score ?? 0) - (a.similar?.score ?? 0));
    const ids = similar.map((c) => c.articleId);
    // The other colours of the strap top are its nearest text neighbours; the one that never
    // sold is left out.
    expect(ids.slice(0, 2).sort()).toEqual(['0108775002', '0108775003']);
    expect(ids).not.toContain(neverSold);
    expect(similar[0]!.similar).toMatchObject({ seed: strapBlack });
    expect(ids).not.toContain(strapBlack);

    const names = ['p_emb_taste_cos', 'p_emb_recent_max'];
    const ctx = (id: string) => ({
      customer: set.customer,
      article: set.articles.get(id) ?? emptyArticleState(id),
      now: T0 + DAY,
    });
    const [tasteCos, recentMax] = featureVector(names, ctx('0108775002'));
    expect(tasteCos).toBeGreaterThan(0.8);
    // One purchase: the taste is that article's vector.
    expect(recentMax).toBeCloseTo(tasteCos!, 5);
    const boots = featureVector(names, ctx(similar.at(-1)!.articleId));
    expect(boots[0]).toBeLessThan(tasteCos!);
    // Unknown to the index (no vector), or a customer without history: NaN.
    expect(featureVector(names, ctx(catalogue.at(-1)!.article_id))).toEqual([NaN, NaN]);
    const cold = await gatherCandidates(redis, keys, CANDIDATES, {
      customerId: 'nobody',
      filters: {},
      allowRepurchase: false,
    });
    const any = cold.candidates[0]?.articleId ?? '0108775002';
    expect(
      featureVector(names, {
        customer: cold.customer,
        article: cold.articles.get(any) ?? emptyArticleState(any),
        now: T0,
      }),
    ).toEqual([NaN, NaN]);
  });
});
