/**
 * The serving API in process (`app.request()`) against the real Redis. The store is written by
 * the real processors' scripts (PurchaseProcessor, applyArticles / applyCustomers) into a fresh
 * namespace — no Kafka needed — so serving reads exactly what production would. Every answer
 * says what ranked it (`ranker`); an untrained fixture model in the registry is refused by a
 * LiveModel without `allowFixtureModel` (real ONNX, real registry) and served with it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyArticles, applyCustomers } from '../../processors/metadata.ts';
import { PurchaseProcessor } from '../../processors/purchases.ts';
import { defineScripts } from '../../processors/scripts.ts';
import type { Article, Customer, Purchase } from '../../schemas/events.ts';
import { createApp, DEFAULT_SERVING_CONFIG, type ServingConfig } from '../../serving/app.ts';
import {
  createServingMetrics,
  recordScorerEvent,
  type ServingMetrics,
} from '../../serving/metrics.ts';
import { ScorerPool, type ScorerEvent } from '../../serving/scoring/pool.ts';
import { buildFixtureModel } from '../../models/fixture.ts';
import { LiveModel, type SwapOutcome } from '../../serving/live-model.ts';
import { loadModel, type LoadedModel } from '../../models/model-meta.ts';
import { activateModel, readModel, registerModel } from '../../models/registry.ts';
import type { NoModel, Ranker } from '../../serving/ranking.ts';
import { RecommendationResponse } from '../../serving/api-schemas.ts';
import { TrendingCache } from '../../serving/trending-cache.ts';
import { SharedReads } from '../../serving/candidates/index.ts';
import { loadConfig } from '../../common/config.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { DAY_MS } from '../../features/decay.ts';
import { featureNames, featureVector } from '../../features/definitions.ts';
import { keySpace, type KeySpace } from '../../features/keys.ts';
import {
  ARTICLE_SUMMARY_FIELDS,
  copurchaseTop,
  deleteNamespace,
  readArticles,
  readCustomers,
  trendingTop,
} from '../../features/state.ts';
import { createLogger, type Logger } from '../../common/logger.ts';
import { articleId, makeArticles } from '../fixtures/events.ts';
import { waitFor } from '../helpers.ts';

/** The features this build computes with embeddings off (the default). */
const FEATURE_NAMES = featureNames(false);

const T0 = Date.UTC(2020, 5, 1);
const NOW = T0 + 25 * DAY_MS;
const A = (i: number): string => articleId(i);
/** Index group of fixture article i (makeArticles cycles through these). */
const GROUP = ['Ladieswear', 'Menswear', 'Divided', 'Sport'];
/** Fixture index of an article id (inverse of `articleId`). */
const idx = (id: string): number => Number(id) - 700000001;
const groupOf = (id: string): string | undefined => GROUP[idx(id) % 4];

interface ErrorJson {
  error: { code: string; message: string; fields?: { path: string; message: string }[] };
  request_id: string;
}
interface Item {
  article_id: string;
  name: string | null;
  score: number;
  rank: number;
  sources: string[];
  features?: Record<string, number | null>;
  reasons?: string[];
}
interface RecJson {
  customer_id: string;
  items: Item[];
  model_version: string;
  ranker: { kind: string; reason?: string; message?: string };
  degraded: boolean;
  degraded_reason?: string;
  cold_start: boolean;
  candidates: number;
  took_ms: number;
  now: number;
}
interface ListJson {
  article_id?: string;
  name?: string | null;
  segment?: string | null;
  source?: string;
  degraded?: boolean;
  items: { article_id: string; name: string | null; score: number; rank: number }[];
  now: number;
}

function record<T>(value: T, key: string, offset: number, timestamp: number): DecodedRecord<T> {
  return { value, key, topic: 'test', partition: 0, offset: String(offset), timestamp };
}

const customer = (id: string, age: number | null): Customer => ({
  customer_id: id,
  fn: null,
  active: null,
  club_member_status: 'ACTIVE',
  fashion_news_frequency: null,
  age,
  postal_code: null,
  updated_at: T0,
});

/** [customer, article index, day, channel]; event time = day + a position in ms (stable order). */
const PURCHASES: [string, number, number, number][] = [
  ['alice', 0, 0, 2],
  ['alice', 1, 1, 2],
  ['bob', 0, 2, 1],
  ['bob', 2, 3, 1],
  ['dave', 1, 19, 2],
  ['dave', 3, 20, 2],
  ['alice', 4, 20, 2],
  ['alice', 0, 21, 2],
  ['bob', 5, 22, 1],
  ['x1', 4, 22, 2],
  ['x1', 6, 22, 2],
  ['x2', 6, 22, 2],
  ['x3', 6, 23, 2],
  ['x1', 10, 23, 2],
  ['x1', 7, 23, 2],
  ['x2', 7, 23, 2],
  ['x4', 8, 23, 2],
  ['erin', 11, 23, 1],
  ['x4', 6, 24, 2],
  ['x5', 6, 24, 2],
  ['x3', 7, 24, 2],
  ['x5', 8, 24, 2],
  ['x6', 9, 24, 1],
];

const silent = createLogger('silent', 'test-serving');

async function waitReady(client: Redis): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve);
    client.once('error', reject);
  });
}

/** A client configured as the app expects (fast failures). */
function servingClient(url: string): Redis {
  const client = new Redis(url, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    commandTimeout: 2_000,
  });
  client.on('error', () => undefined);
  return client;
}

/** A client to a closed port: every command fails at once. */
function deadClient(): Redis {
  const client = new Redis({
    host: '127.0.0.1',
    port: 1,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  return client;
}

function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) return Number(m[3]);
  }
  return NaN;
}

describe('serving API on the real Redis', () => {
  let admin: Redis;
  let client: Redis;
  let ns: string;
  let keys: KeySpace;
  const extraClients: Redis[] = [];

  interface Built {
    app: ReturnType<typeof createApp>;
    metrics: ServingMetrics;
  }
  const build = (
    opts: {
      redis?: Redis;
      ranker?: () => Ranker | null;
      noModel?: () => NoModel;
      config?: Partial<ServingConfig>;
      logger?: Logger;
      trendingCache?: TrendingCache;
      sharedReads?: SharedReads;
    } = {},
  ): Built => {
    const metrics = createServingMetrics();
    const app = createApp({
      redis: opts.redis ?? client,
      keys,
      ranker: opts.ranker ?? (() => null),
      ...(opts.noModel ? { noModel: opts.noModel } : {}),
      logger: opts.logger ?? silent,
      metrics,
      config: { ...DEFAULT_SERVING_CONFIG, ...opts.config },
      now: () => NOW,
      ...(opts.trendingCache ? { trendingCache: opts.trendingCache } : {}),
      ...(opts.sharedReads ? { sharedReads: opts.sharedReads } : {}),
    });
    return { app, metrics };
  };
  // T only names the JSON shape the test expects (the cast below); it is not inferred.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  const get = async <T>(
    b: Built,
    url: string,
    headers: Record<string, string> = {},
  ): Promise<{ res: Response; status: number; body: T }> => {
    const res = await b.app.request(url, { headers });
    return { res, status: res.status, body: (await res.json()) as T };
  };

  beforeAll(async () => {
    const url = loadConfig().redisUrl;
    admin = new Redis(url, { maxRetriesPerRequest: 3 });
    client = servingClient(url);
    await waitReady(client);
    ns = `tsrv${randomUUID().slice(0, 8)}`;
    keys = keySpace(ns);
    const scripts = defineScripts(admin);
    const articles: Article[] = makeArticles(13, T0).map((a, i) => ({
      ...a,
      section_name: i % 2 === 0 ? 'Womens Everyday' : 'Mens Basics',
    }));
    await applyArticles(
      admin,
      keys,
      scripts,
      articles.map((a, i) => record(a, a.article_id, i, T0)),
    );
    const customers = [
      customer('alice', 30),
      customer('bob', 60),
      customer('dave', 40),
      customer('erin', 20),
      customer('carol', 22),
      ...['x1', 'x2', 'x3', 'x4', 'x5', 'x6'].map((x) => customer(x, 47)),
    ];
    await applyCustomers(
      admin,
      keys,
      scripts,
      customers.map((c, i) => record(c, c.customer_id, i, T0)),
    );
    const purchases: DecodedRecord<Purchase>[] = PURCHASES.map(([c, a, day, ch], i) => {
      const t = T0 + day * DAY_MS + i * 1000;
      return record(
        {
          event_id: `e${i}`,
          customer_id: c,
          article_id: A(a),
          price: 0.01 + a / 1000,
          sales_channel_id: ch,
          quantity: 1,
          event_time: t,
        },
        c,
        i,
        t,
      );
    });
    const outcome = await new PurchaseProcessor(admin, keys, scripts).apply(purchases);
    expect(outcome).toEqual({ applied: PURCHASES.length, duplicates: 0, late: [] });
  });

  afterAll(async () => {
    if (ns) await deleteNamespace(admin, keySpace(ns));
    admin.disconnect();
    client.disconnect();
    for (const c of extraClients) c.disconnect();
  });

  describe('validation', () => {
    it.each([
      ['/v1/recommendations/bad%7Bid%7D', 'customerId'],
      ['/v1/recommendations/a:b', 'customerId'],
      ['/v1/recommendations/alice?k=0', 'k'],
      ['/v1/recommendations/alice?k=101', 'k'],
      ['/v1/recommendations/alice?k=abc', 'k'],
      ['/v1/recommendations/alice?k=2.5', 'k'],
      ['/v1/recommendations/alice?colour=red', 'colour'],
      ['/v1/recommendations/alice?explain=maybe', 'explain'],
      ['/v1/recommendations/alice?allow_repurchase=yes', 'allow_repurchase'],
      ['/v1/articles/x%20y/similar', 'id'],
      ['/v1/articles/0700000001/similar?k=0', 'k'],
      ['/v1/trending?segment=city:paris', 'segment'],
      ['/v1/trending?segment=age_index:teen|Sport', 'segment'],
      ['/v1/trending?segment=channel:web', 'segment'],
      ['/v1/trending?window=1d', 'window'],
    ])('%s → 400 naming %s', async (url, field) => {
      const b = build();
      const { res, status, body } = await get<ErrorJson>(b, url);
      expect(status).toBe(400);
      expect(body.error.code).toBe('REC_ERR_BAD_REQUEST');
      expect(body.error.fields?.map((f) => f.path)).toContain(field);
      expect(body.error.message).toContain(field);
      expect(body.request_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.headers.get('x-request-id')).toBe(body.request_id);
    });

    it('validates the id before any key is built from it: 400 even with Redis down', async () => {
      const dead = deadClient();
      extraClients.push(dead);
      const { status, body } = await get<ErrorJson>(
        build({ redis: dead }),
        '/v1/recommendations/x%7D%3Ay',
      );
      expect(status).toBe(400);
      expect(body.error.fields).toEqual([
        { path: 'customerId', message: expect.stringMatching(/^customerId must be/) as string },
      ]);
    });

    it('names every unknown parameter and every bad field at once', async () => {
      const { status, body } = await get<ErrorJson>(
        build(),
        '/v1/recommendations/alice?k=abc&foo=1&bar=2',
      );
      expect(status).toBe(400);
      expect(body.error.fields?.map((f) => f.path).sort()).toEqual(['bar', 'foo', 'k']);
      expect(body.error.fields?.find((f) => f.path === 'foo')?.message).toMatch(/unknown/);
    });

    it('says what an unknown segment kind is', async () => {
      const { body } = await get<ErrorJson>(build(), '/v1/trending?segment=city:paris');
      expect(body.error.fields?.[0]?.message).toMatch(/unknown segment kind "city"/);
    });

    it('keeps a well-formed incoming request id, and 404s unknown routes in the same shape', async () => {
      const { res, status, body } = await get<ErrorJson>(build(), '/v2/nothing', {
        'x-request-id': 'req-123',
      });
      expect(status).toBe(404);
      expect(body).toEqual({
        error: { code: 'REC_ERR_NOT_FOUND', message: 'no route for GET /v2/nothing' },
        request_id: 'req-123',
      });
      expect(res.headers.get('x-request-id')).toBe('req-123');
    });
  });

  describe('recommendations (heuristic)', () => {
    it('ranks k items for a known customer, without what they bought, with their sources', async () => {
      const b = build();
      const { status, body, res } = await get<RecJson>(b, '/v1/recommendations/alice?k=5');
      expect(status).toBe(200);
      expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      expect(body).toMatchObject({
        customer_id: 'alice',
        model_version: 'heuristic-v2',
        degraded: false,
        cold_start: false,
        now: NOW,
      });
      // No model: the answer says the heuristic ranked it, and why.
      expect(body.ranker).toEqual({
        kind: 'heuristic',
        reason: 'no_model',
        message: expect.stringMatching(
          /^no promoted model .*; ranking with heuristic-v2$/,
        ) as string,
      });
      expect(body.items).toHaveLength(5);
      expect(body.items.map((i) => i.rank)).toEqual([1, 2, 3, 4, 5]);
      const scores = body.items.map((i) => i.score);
      expect([...scores].sort((x, y) => y - x)).toEqual(scores);
      const bought = new Set([A(0), A(1), A(4)]);
      expect(body.items.filter((i) => bought.has(i.article_id))).toEqual([]);
      for (const it of body.items) {
        expect(it.sources.length).toBeGreaterThan(0);
        expect(it.name).toMatch(/^Article \d+$/);
        expect(it.features).toBeUndefined();
      }
      // The whole pool: co-purchase neighbours of her purchases, her channel's trending, global.
      const all = (await get<RecJson>(b, '/v1/recommendations/alice?k=100')).body;
      const sourcesOf = new Map(all.items.map((i) => [i.article_id, i.sources]));
      expect(sourcesOf.get(A(10))).toContain('copurchase'); // with A4, by x1
      expect(sourcesOf.get(A(3))).toContain('copurchase'); // with A1, by dave
      expect(sourcesOf.get(A(6))).toEqual(
        expect.arrayContaining(['trending_segment', 'trending_global']),
      );
      expect(all.items.filter((i) => bought.has(i.article_id))).toEqual([]);
      expect(all.candidates).toBe(all.items.length);
      // Sequential round trips: customer + global, then segments / co-purchases / the known
      // candidates' articles — every neighbour is also in the global top here, so no third.
      const roundTrips = async (m: ServingMetrics) =>
        (await m.redisRoundTrips.get()).values.find(
          (v) => v.metricName === 'rec_serving_redis_round_trips_sum',
        )?.value;
      expect(await roundTrips(b.metrics)).toBe(4);
      // With a short global quota the co-purchase neighbours are new: a third for their articles.
      const short = build({ config: { quotas: { ...DEFAULT_SERVING_CONFIG.quotas, global: 2 } } });
      const s = (await get<RecJson>(short, '/v1/recommendations/alice?k=100')).body;
      expect(await roundTrips(short.metrics)).toBe(3);
      expect(s.items.find((i) => i.article_id === A(10))).toMatchObject({
        name: 'Article 10',
        sources: ['copurchase', 'trending_segment'],
      });
    });

    it('includes bought articles with allow_repurchase=true, as repurchase', async () => {
      const { body } = await get<RecJson>(
        build(),
        '/v1/recommendations/alice?k=100&allow_repurchase=true',
      );
      const rep = body.items.filter((i) => i.sources.includes('repurchase'));
      expect(rep.map((i) => i.article_id).sort()).toEqual([A(0), A(1), A(4)].sort());
    });

    it('explains with the feature values of the shared definitions at the same now', async () => {
      const { body } = await get<RecJson>(build(), '/v1/recommendations/alice?k=100&explain=true');
      expect(body.items.length).toBeGreaterThan(5);
      const [alice] = await readCustomers(admin, keys, ['alice']);
      const states = await readArticles(
        admin,
        keys,
        body.items.map((i) => i.article_id),
      );
      body.items.forEach((item, i) => {
        const v = featureVector(FEATURE_NAMES, { customer: alice!, article: states[i]!, now: NOW });
        // Candidate-evidence features (s_*) need the candidate, which the response does not carry
        // in full: the number of sources is checked; the scores are zero unless their source is.
        const expected = Object.fromEntries(
          FEATURE_NAMES.filter((n) => !n.startsWith('s_')).map((n) => {
            const x = v[FEATURE_NAMES.indexOf(n)];
            return [n, Number.isFinite(x) ? x : null];
          }),
        );
        const features = item.features ?? {};
        const rest = Object.fromEntries(
          Object.entries(features).filter(([n]) => !n.startsWith('s_')),
        );
        const { s_sources, s_copurchase, s_segment } = features;
        expect(rest).toEqual(expected);
        expect(s_sources).toBe(item.sources.length);
        // A rank for exactly the sources that proposed the article.
        for (const n of FEATURE_NAMES.filter((f) => f.startsWith('s_rank_'))) {
          const source = n.slice('s_rank_'.length);
          if (item.sources.includes(source)) {
            expect(features[n]).toBeGreaterThanOrEqual(0);
          } else expect(features[n]).toBeNull();
        }
        if (!item.sources.includes('copurchase')) expect(s_copurchase).toBe(0);
        else {
          expect(s_copurchase).toBeGreaterThan(0);
          expect(features.s_copurchase_share).toBeGreaterThan(0);
        }
        // The co-purchase share is a mean of shares, and the strong score adds it to the
        // repurchase share (explained above, in [0, 1]).
        expect(features.s_copurchase_share).toBeGreaterThanOrEqual(0);
        expect(features.s_copurchase_share).toBeLessThanOrEqual(1);
        expect(features.s_strong).toBeCloseTo(
          (features.p_item_share ?? 0) + (features.s_copurchase_share ?? 0),
          12,
        );
        if (!item.sources.includes('trending_segment')) expect(s_segment).toBe(0);
        expect(item.reasons?.length).toBeGreaterThan(0);
      });
      const a10 = body.items.find((i) => i.article_id === A(10));
      expect(a10?.reasons?.join(' ')).toContain(`bought together with "Article 4" (${A(4)})`);
    });

    it('answers an unknown customer with trending (cold start), 200 not 404', async () => {
      const b = build();
      const { status, body } = await get<RecJson>(b, '/v1/recommendations/nobody-42?k=4');
      expect(status).toBe(200);
      expect(body.cold_start).toBe(true);
      expect(body.items).toHaveLength(4);
      for (const it of body.items) expect(it.sources).toEqual(['trending_global']);
      const global = await trendingTop(admin, keys, { n: 1, now: NOW, halfLife: '7d' });
      expect(body.items[0]?.article_id).toBe(global[0]?.articleId);
      const rt = await b.metrics.redisRoundTrips.get();
      expect(rt.values.find((v) => v.metricName?.endsWith('_sum'))?.value).toBe(2);
    });

    it('gives a customer known only by record (age) their age segment on cold start', async () => {
      const { body } = await get<RecJson>(build(), '/v1/recommendations/carol?k=100');
      expect(body.cold_start).toBe(true);
      // erin (20, the same u25 bucket) bought A11, a Sport article.
      const a11 = body.items.find((i) => i.article_id === A(11));
      expect(a11?.sources).toContain('trending_segment');
      expect(body.items.some((i) => i.sources.includes('copurchase'))).toBe(false);
    });

    it('restricts results to the filters (case-insensitive)', async () => {
      const b = build();
      const sport = (await get<RecJson>(b, '/v1/recommendations/alice?k=100&index_group=sport'))
        .body;
      expect(sport.items.length).toBeGreaterThan(0);
      for (const it of sport.items) {
        expect(groupOf(it.article_id)).toBe('Sport');
      }
      expect(sport.items.map((i) => i.article_id)).toEqual(
        expect.arrayContaining([A(3), A(7), A(11)]),
      );
      const both = (
        await get<RecJson>(
          b,
          '/v1/recommendations/alice?k=100&section=Womens%20Everyday&product_group=Shoes',
        )
      ).body;
      // Even articles are "Womens Everyday"; product groups cycle in fours, Shoes = i % 4 == 2.
      expect(both.items.map((i) => i.article_id).sort()).toEqual([A(2), A(6), A(10)].sort());
      const none = (await get<RecJson>(b, '/v1/recommendations/alice?index_group=Nothing')).body;
      expect(none.items).toEqual([]);
    });
  });

  describe('recommendations with a ranker', () => {
    const fake = (
      features: string[],
      score: (row: Float32Array) => number,
      calls: { matrix: Float32Array; rows: number }[] = [],
    ): Ranker => ({
      version: 'fake-1',
      features,
      score(matrix, rows) {
        calls.push({ matrix, rows });
        const scores = new Float32Array(rows);
        for (let r = 0; r < rows; r++) {
          scores[r] = score(matrix.subarray(r * features.length, (r + 1) * features.length));
        }
        return Promise.resolve({ scores, version: 'fake-1' });
      },
    });

    it("orders the items by the ranker's scores, one call per request", async () => {
      const calls: { matrix: Float32Array; rows: number }[] = [];
      // Least popular first: the opposite of what the heuristic favours.
      const ranker = fake(['a_pop_7d'], (row) => -(row[0] ?? 0), calls);
      const b = build({ ranker: () => ranker });
      const { body } = await get<RecJson>(b, '/v1/recommendations/alice?k=100&explain=true');
      expect(calls).toHaveLength(1);
      expect(body.model_version).toBe('fake-1');
      expect(body.ranker).toEqual({ kind: 'model' });
      expect(body.degraded).toBe(false);
      const pops = body.items.map((i) => i.features?.a_pop_7d ?? NaN);
      expect(pops.length).toBeGreaterThan(5);
      expect([...pops].sort((x, y) => x - y)).toEqual(pops);
      body.items.forEach((it) => {
        expect(it.score).toBe(Math.fround(-(it.features?.a_pop_7d ?? NaN)));
        expect(Object.keys(it.features ?? {})).toEqual(['a_pop_7d']);
      });
      expect(
        await b.metrics.registry.getSingleMetricAsString('rec_serving_model_version'),
      ).toContain('rec_serving_model_version{version="fake-1"} 1');
    });

    it('gets exactly the feature names it asked for, in order, one row per candidate', async () => {
      const names = ['p_units_bought', 'c_age', 'a_pop_7d', 'p_aff_pg', 'a_days_since_last_sold'];
      const calls: { matrix: Float32Array; rows: number }[] = [];
      const b = build({ ranker: () => fake(names, () => 0, calls) });
      const { body } = await get<RecJson>(b, '/v1/recommendations/alice?k=100');
      expect(calls).toHaveLength(1);
      const { matrix, rows } = calls[0]!;
      expect(rows).toBe(body.candidates);
      expect(matrix.length).toBe(rows * names.length);
      const [alice] = await readCustomers(admin, keys, ['alice']);
      const states = await readArticles(
        admin,
        keys,
        body.items.map((i) => i.article_id),
      );
      // Candidate-evidence columns (s_*) need the candidates themselves: compared elsewhere.
      const stateCols = names.flatMap((n, j) => (n.startsWith('s_') ? [] : [j]));
      const expectedRows = states
        .map((article) => {
          const v = featureVector(names, { customer: alice!, article, now: NOW });
          return stateCols.map((j) => String(Math.fround(v[j]!))).join(',');
        })
        .sort();
      const gotRows = Array.from({ length: rows }, (_, r) =>
        stateCols.map((j) => String(matrix[r * names.length + j])).join(','),
      ).sort();
      expect(gotRows).toEqual(expectedRows);
    });

    it('falls back to the heuristic when the ranker throws, says so and counts it', async () => {
      const broken: Ranker = {
        version: 'broken-1',
        features: ['a_pop_7d'],
        score: () => Promise.reject(new Error('onnx session exploded')),
      };
      const b = build({ ranker: () => broken });
      const { status, body } = await get<RecJson>(b, '/v1/recommendations/alice?k=5');
      expect(status).toBe(200);
      expect(body).toMatchObject({
        model_version: 'heuristic-v2',
        ranker: {
          kind: 'heuristic',
          reason: 'ranker_error',
          message: 'model broken-1 failed on this request; ranked with heuristic-v2',
        },
        degraded: true,
        degraded_reason: 'ranker_error',
      });
      // The failure's own message stays in the log.
      expect(JSON.stringify(body)).not.toContain('exploded');
      expect(body.items).toHaveLength(5);
      const heuristic = (await get<RecJson>(build(), '/v1/recommendations/alice?k=5')).body;
      expect(body.items).toEqual(heuristic.items);
      const text = await b.metrics.registry.metrics();
      expect(metricValue(text, 'rec_serving_ranker_errors_total', { reason: 'ranker_error' })).toBe(
        1,
      );
      expect(
        metricValue(text, 'rec_serving_degraded_responses_total', { reason: 'ranker_error' }),
      ).toBe(1);
    });

    it('falls back on a ranker timeout and on a model needing unknown features', async () => {
      const hanging: Ranker = {
        version: 'slow-1',
        features: ['a_pop_7d'],
        score: () => new Promise(() => undefined),
      };
      const slow = build({ ranker: () => hanging, config: { rankerTimeoutMs: 50 } });
      const a = (await get<RecJson>(slow, '/v1/recommendations/alice?k=3')).body;
      expect(a).toMatchObject({
        degraded: true,
        degraded_reason: 'ranker_timeout',
        ranker: { kind: 'heuristic', reason: 'ranker_timeout' },
      });
      expect(a.ranker.message).toContain('rankerTimeoutMs (50 ms)');
      const alien = build({ ranker: () => fake(['a_pop_7d', 'z_unknown'], () => 1) });
      const c = (await get<RecJson>(alien, '/v1/recommendations/alice?k=3')).body;
      expect(c).toMatchObject({
        degraded: true,
        degraded_reason: 'ranker_incompatible',
        ranker: { kind: 'heuristic', reason: 'ranker_incompatible' },
      });
    });

    it('answers an unexpected error with 500, a request id, and logs it with that id', async () => {
      const lines: string[] = [];
      const logger = pino(
        { level: 'error' },
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            lines.push(chunk.toString());
            cb();
          },
        }),
      );
      const b = build({
        logger,
        ranker: () => {
          throw new Error('model registry is corrupt');
        },
      });
      const { res, status, body } = await get<ErrorJson>(b, '/v1/recommendations/alice');
      expect(status).toBe(500);
      expect(body).toEqual({
        error: { code: 'REC_ERR_INTERNAL', message: 'internal error' },
        request_id: expect.stringMatching(/^[0-9a-f-]{36}$/) as string,
      });
      expect(res.headers.get('x-request-id')).toBe(body.request_id);
      const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(logged).toHaveLength(1);
      expect(logged[0]).toMatchObject({ request_id: body.request_id, msg: 'unhandled error' });
      expect(JSON.stringify(logged[0])).toContain('model registry is corrupt');
      expect(JSON.stringify(body)).not.toContain('corrupt');
    });
  });

  describe('admission control', () => {
    const ROUTE = '/v1/recommendations/:customerId';
    /** A ranker holding every request until `release()`: admitted requests stay in flight. */
    const held = () => {
      let release = (): void => undefined;
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      const state = { scoring: 0 };
      const ranker: Ranker = {
        version: 'held-1',
        features: ['a_pop_7d'],
        async score(matrix, rows) {
          state.scoring++;
          await released;
          const scores = Float32Array.from({ length: rows }, (_, r) => matrix[r] ?? 0);
          return { scores, version: 'held-1' };
        },
      };
      return { ranker, state, release };
    };
    const customers = ['alice', 'bob', 'dave', 'erin', 'carol', 'x1', 'x2', 'x3', 'x4', 'x5'];

    it('refuses recommendations past maxInFlight at once with 503 and Retry-After; the admitted ones are answered, operations never refused', async () => {
      const slow = held();
      const b = build({
        ranker: () => slow.ranker,
        config: { maxInFlight: 3, rankerTimeoutMs: 0 },
      });
      const settled: number[] = [];
      const pending = customers.map((c) =>
        Promise.resolve(b.app.request(`/v1/recommendations/${c}?k=3`)).then((res) => {
          settled.push(res.status);
          return res;
        }),
      );
      await waitFor(
        'the admitted requests at the ranker',
        () => slow.state.scoring >= 3,
        10_000,
        5,
      );
      // The ranker holds the 3 admitted ones; the other 7 were answered without waiting for them.
      const refused = Array.from({ length: 7 }, () => 503);
      expect(settled).toEqual(refused);
      expect((await b.app.request('/healthz')).status).toBe(200);
      expect((await b.app.request('/readyz')).status).toBe(200);
      const busy = await b.app.request('/metrics');
      expect(busy.status).toBe(200);
      const text = await busy.text();
      expect(metricValue(text, 'rec_serving_in_flight_requests', { route: ROUTE })).toBe(3);
      expect(metricValue(text, 'rec_serving_in_flight_limit', { route: ROUTE })).toBe(3);
      expect(metricValue(text, 'rec_serving_rejected_requests_total', { route: ROUTE })).toBe(7);

      slow.release();
      const answers: Response[] = await Promise.all(pending);
      expect(answers.map((r) => r.status).sort()).toEqual([200, 200, 200, ...refused]);
      for (const res of answers) {
        if (res.status === 200) {
          const body = (await res.json()) as RecJson;
          expect(body.model_version).toBe('held-1');
          expect(body.ranker).toEqual({ kind: 'model' });
          expect(body.items).toHaveLength(3);
        } else {
          expect(res.headers.get('retry-after')).toBe('1');
          const body = (await res.json()) as ErrorJson;
          expect(body).toEqual({
            error: {
              code: 'REC_ERR_UNAVAILABLE',
              message: expect.stringMatching(
                /^overloaded: 3 recommendation requests in flight/,
              ) as string,
            },
            request_id: res.headers.get('x-request-id'),
          });
        }
      }
      const after = await (await b.app.request('/metrics')).text();
      expect(metricValue(after, 'rec_serving_in_flight_requests', { route: ROUTE })).toBe(0);
      expect(
        metricValue(after, 'rec_serving_request_duration_seconds_count', {
          route: ROUTE,
          status: '503',
        }),
      ).toBe(7);
      // The slots are free again.
      expect((await b.app.request('/v1/recommendations/alice?k=3')).status).toBe(200);
    });

    it('frees the slot of a request that failed, and admits everything with maxInFlight 0', async () => {
      let broken = true;
      const b = build({
        config: { maxInFlight: 1 },
        ranker: () => {
          if (broken) throw new Error('model registry is corrupt');
          return null;
        },
      });
      expect((await b.app.request('/v1/recommendations/alice')).status).toBe(500);
      broken = false;
      expect((await b.app.request('/v1/recommendations/alice')).status).toBe(200);

      const slow = held();
      const open = build({
        ranker: () => slow.ranker,
        config: { maxInFlight: 0, rankerTimeoutMs: 0 },
      });
      const pending = customers.map((c) =>
        Promise.resolve(open.app.request(`/v1/recommendations/${c}?k=3`)),
      );
      await waitFor(
        'every request at the ranker',
        () => slow.state.scoring === customers.length,
        10_000,
        5,
      );
      slow.release();
      expect((await Promise.all(pending)).map((r) => r.status)).toEqual(customers.map(() => 200));
    });
  });

  describe('the untrained fixture ranker in the registry', () => {
    let dir: string;
    let fixture: LoadedModel;
    /** The fixture's trees under metadata of a trained model: stands in for a promoted one. */
    let trained: LoadedModel;
    const lives: LiveModel[] = [];

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'rec-serving-app-'));
      const built = await buildFixtureModel(dir, {
        features: FEATURE_NAMES,
        trees: 20,
        depth: 4,
        seed: 5,
        version: 'fixture-app-5',
      });
      fixture = await loadModel(built.onnxPath, built.metaPath, FEATURE_NAMES);
      expect(fixture.meta.kind).toBe('fixture');
      trained = {
        meta: { ...fixture.meta, kind: 'lightgbm', version: 'trained-app-1' },
        bytes: fixture.bytes,
      };
      await registerModel(admin, keys, fixture);
      await registerModel(admin, keys, trained);
    });

    afterAll(async () => {
      for (const live of lives) await live.close();
      rmSync(dir, { recursive: true, force: true });
    });

    /** A live model over this namespace's registry, and an app ranking with it. */
    const serve = (opts: { allowFixtureModel?: boolean; logger?: Logger } = {}) => {
      const swaps: SwapOutcome[] = [];
      const live = new LiveModel(admin, keys, FEATURE_NAMES, opts.logger ?? silent, {
        workers: 1,
        onSwap: (o) => swaps.push(o),
        ...(opts.allowFixtureModel === undefined
          ? {}
          : { allowFixtureModel: opts.allowFixtureModel }),
      });
      lives.push(live);
      const b = build({ ranker: () => live.ranker(), noModel: () => live.noModel() });
      return { live, swaps, b };
    };

    it('is refused without the opt-in: the heuristic ranks, says why, and the registry keeps it', async () => {
      await activateModel(admin, keys, fixture.meta.version, { available: FEATURE_NAMES });
      const lines: string[] = [];
      const logger = pino(
        { level: 'info' },
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            lines.push(chunk.toString());
            cb();
          },
        }),
      );
      const { live, swaps, b } = serve({ logger });
      const out = await live.loadActive();
      expect(out).toEqual({
        version: 'fixture-app-5',
        outcome: 'refused',
        reason: expect.stringContaining(
          'unless started with SERVING_ALLOW_FIXTURE_MODEL=true',
        ) as string,
      });
      expect(swaps).toEqual([out]);
      expect(live.ranker()).toBeNull();
      // Refused by this instance's policy, not rejected as broken: an opted-in instance serves it.
      expect(await readModel(admin, keys, fixture.meta.version)).toMatchObject({
        status: 'active',
        reason: null,
      });
      const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(logged).toContainEqual(
        expect.objectContaining({
          msg: 'model refused',
          version: 'fixture-app-5',
          keeping: 'heuristic-v2',
          reason: out?.reason,
        }),
      );

      const { status, body } = await get<RecJson>(b, '/v1/recommendations/alice?k=5');
      expect(status).toBe(200);
      expect(RecommendationResponse.safeParse(body).success).toBe(true);
      expect(body).toMatchObject({
        model_version: 'heuristic-v2',
        ranker: { kind: 'heuristic', reason: 'model_refused' },
        degraded: false,
      });
      expect(body.ranker.message).toMatch(
        /^model fixture-app-5 is an untrained fixture ranker .*SERVING_ALLOW_FIXTURE_MODEL=true.*; ranking with heuristic-v2$/,
      );
      const heuristic = (await get<RecJson>(build(), '/v1/recommendations/alice?k=5')).body;
      expect(body.items).toEqual(heuristic.items);
      const ready = await get<{ checks: { ranker: Record<string, unknown> } }>(b, '/readyz');
      expect(ready.status).toBe(200);
      expect(ready.body.checks.ranker).toEqual({
        ok: true,
        version: 'heuristic-v2',
        state: 'model_refused',
      });
    });

    it('is served with allowFixtureModel (benchmarks and tests), and the answer names it', async () => {
      await activateModel(admin, keys, fixture.meta.version, { available: FEATURE_NAMES });
      const { live, b } = serve({ allowFixtureModel: true });
      expect(await live.loadActive()).toEqual({ version: 'fixture-app-5', outcome: 'activated' });
      expect(live.version).toBe('fixture-app-5');
      const { body } = await get<RecJson>(b, '/v1/recommendations/alice?k=5');
      expect(RecommendationResponse.safeParse(body).success).toBe(true);
      expect(body).toMatchObject({
        model_version: 'fixture-app-5',
        ranker: { kind: 'model' },
        degraded: false,
      });
      expect(body.ranker.reason).toBeUndefined();
      expect(body.items).toHaveLength(5);
    });

    it('leaves the model being served in place when a fixture is activated without the opt-in', async () => {
      await activateModel(admin, keys, trained.meta.version, { available: FEATURE_NAMES });
      const { live, swaps, b } = serve();
      expect((await live.loadActive())?.outcome).toBe('activated');
      await activateModel(admin, keys, fixture.meta.version, { available: FEATURE_NAMES });
      expect((await live.sync())?.outcome).toBe('refused');
      expect(swaps.map((s) => `${s.version}:${s.outcome}`)).toEqual([
        'trained-app-1:activated',
        'fixture-app-5:refused',
      ]);
      expect(live.version).toBe('trained-app-1');
      const { body } = await get<RecJson>(b, '/v1/recommendations/alice?k=5');
      expect(body).toMatchObject({ model_version: 'trained-app-1', ranker: { kind: 'model' } });
    });
  });

  describe('a hung scorer worker (watchdog)', () => {
    let dir: string;
    let pool: ScorerPool;
    let b: Built;
    const events: ScorerEvent[] = [];

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'rec-serving-hang-'));
      const built = await buildFixtureModel(dir, {
        features: FEATURE_NAMES,
        trees: 20,
        depth: 4,
        seed: 7,
        version: 'fixture-hang-7',
      });
      const model = await loadModel(built.onnxPath, built.metaPath, FEATURE_NAMES);
      // The instance's pool: its watchdog events go to the app's /metrics, as server.ts wires it.
      b = build({ ranker: () => pool });
      pool = await ScorerPool.create({
        model,
        size: 1,
        timeoutMs: 400,
        onEvent: (e) => {
          events.push(e);
          recordScorerEvent(b.metrics, e);
        },
      });
    });

    afterAll(async () => {
      await pool.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const URL_ALICE = '/v1/recommendations/alice?k=5';
    const metricsText = async () => (await b.app.request('/metrics')).text();
    const replaced = () =>
      waitFor('the hung worker replaced', () => pool.readyWorkers === 1, 20_000, 20);

    it('answers with the heuristic and says so; the worker is recycled and the model ranks again', async () => {
      const before = (await get<RecJson>(b, URL_ALICE)).body;
      expect(before).toMatchObject({ degraded: false, ranker: { kind: 'model' } });
      expect(before.model_version).toBe('fixture-hang-7');
      const heuristic = (await get<RecJson>(build(), URL_ALICE)).body;

      // The request deadline (rankerTimeoutMs, 250 ms) answers first; the watchdog recycles.
      pool.simulateHang(0, 30_000);
      const t0 = performance.now();
      const hung = (await get<RecJson>(b, URL_ALICE)).body;
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(hung).toMatchObject({
        degraded: true,
        degraded_reason: 'ranker_timeout',
        model_version: 'heuristic-v2',
        ranker: { kind: 'heuristic', reason: 'ranker_timeout' },
      });
      expect(hung.items).toEqual(heuristic.items);
      await waitFor('the watchdog', () => events.length >= 2, 5_000, 20);
      await replaced();
      const text = await metricsText();
      expect(metricValue(text, 'rec_serving_scorer_timeouts_total')).toBe(1);
      expect(metricValue(text, 'rec_serving_scorer_recycled_total', { reason: 'timeout' })).toBe(1);
      const after = (await get<RecJson>(b, URL_ALICE)).body;
      expect(after).toMatchObject({ degraded: false, ranker: { kind: 'model' } });
      expect(after.model_version).toBe('fixture-hang-7');
      expect(after.items).toEqual(before.items);
    });

    it('without a request deadline, the watchdog itself fails the request into the heuristic', async () => {
      const heuristic = (await get<RecJson>(build(), URL_ALICE)).body;
      const noDeadline = build({ ranker: () => pool, config: { rankerTimeoutMs: 0 } });
      pool.simulateHang(0, 30_000);
      const t0 = performance.now();
      const hung = (await get<RecJson>(noDeadline, URL_ALICE)).body;
      const ms = performance.now() - t0;
      expect(ms).toBeGreaterThanOrEqual(390);
      expect(ms).toBeLessThan(2_000);
      expect(hung).toMatchObject({
        degraded: true,
        degraded_reason: 'ranker_error',
        ranker: {
          kind: 'heuristic',
          reason: 'ranker_error',
          message: 'model fixture-hang-7 failed on this request; ranked with heuristic-v2',
        },
      });
      expect(hung.items).toEqual(heuristic.items);
      await replaced();
      expect(metricValue(await metricsText(), 'rec_serving_scorer_timeouts_total')).toBe(2);
      const after = (await get<RecJson>(noDeadline, URL_ALICE)).body;
      expect(after).toMatchObject({ degraded: false, model_version: 'fixture-hang-7' });
    });
  });

  describe('shared reads', () => {
    it('answer as fresh reads do; article state is reused at most sharedReadsMaxAgeMs, the customer is always read', async () => {
      let clock = 0;
      const shared = new SharedReads({ maxAgeMs: 1_000, clock: () => clock });
      const cached = build({ sharedReads: shared });
      const fresh = build({ config: { sharedReadsMaxAgeMs: 0 } });
      const url = '/v1/recommendations/alice?k=100&explain=true&allow_repurchase=true';
      const answer = async (b: Built) => ({ ...(await get<RecJson>(b, url)).body, took_ms: 0 });
      const first = await answer(cached);
      clock = 500; // from the shared reads
      expect(await answer(cached)).toEqual(first);
      expect(first).toEqual(await answer(fresh));

      // The store changes: a candidate's sales and alice's purchase count (restored below).
      const target = first.items[0]!.article_id;
      const summaryKey = keys.article(target).summary;
      const sales = ARTICLE_SUMMARY_FIELDS.sales;
      const statsKey = keys.customer('alice').state;
      const salesBefore = (await admin.hget(summaryKey, sales))!;
      const nBefore = Number(await admin.hget(statsKey, 'n'));
      const [n = '0', ...rest] = salesBefore.split('|');
      await admin.hset(summaryKey, sales, [Number(n) + 100, ...rest].join('|'));
      await admin.hset(statsKey, 'n', nBefore + 100);
      const features = (b: RecJson) => b.items.find((i) => i.article_id === target)?.features;
      try {
        clock = 1_000; // at the bound: the shared article state, the customer read again
        const within = features(await answer(cached));
        expect(within?.a_purchases).toBe(features(first)?.a_purchases);
        expect(within?.c_purchases).toBe(nBefore + 100);
        clock = 1_001; // past it: read again
        expect(features(await answer(cached))?.a_purchases).toBe(Number(n) + 100);
      } finally {
        await admin.hset(summaryKey, sales, salesBefore);
        await admin.hset(statsKey, 'n', nBefore);
      }
    });
  });

  describe('similar and trending', () => {
    it('lists co-purchase neighbours with names and decayed scores', async () => {
      const { status, body } = await get<ListJson>(build(), `/v1/articles/${A(4)}/similar?k=10`);
      expect(status).toBe(200);
      expect(body.article_id).toBe(A(4));
      expect(body.name).toBe('Article 4');
      const expected = await copurchaseTop(admin, keys, A(4), 10, NOW);
      expect(body.items.map((i) => i.article_id)).toEqual(expected.map((e) => e.articleId));
      expect(body.items.map((i) => i.article_id)).toEqual(expect.arrayContaining([A(0), A(10)]));
      body.items.forEach((it, i) => {
        expect(it.score).toBeCloseTo(expected[i]!.score, 12);
        expect(it.name).toBe(`Article ${idx(it.article_id)}`);
        expect(it.rank).toBe(i + 1);
      });
    });

    it('404s only an unknown article; one with metadata but no sales has no neighbours', async () => {
      const b = build();
      const missing = await get<ErrorJson>(b, '/v1/articles/0999999999/similar');
      expect(missing.status).toBe(404);
      expect(missing.body.error.code).toBe('REC_ERR_NOT_FOUND');
      const unsold = await get<ListJson>(b, `/v1/articles/${A(12)}/similar`);
      expect(unsold.status).toBe(200);
      expect(unsold.body.items).toEqual([]);
    });

    it('lists global trending, equal to the store read at the same now', async () => {
      const { body } = await get<ListJson>(build(), '/v1/trending?k=3');
      const expected = await trendingTop(admin, keys, { n: 3, now: NOW, halfLife: '7d' });
      expect(body).toMatchObject({ segment: null, source: 'global', degraded: false, now: NOW });
      expect(body.items.map((i) => i.article_id)).toEqual(expected.map((e) => e.articleId));
      expect(body.items[0]?.article_id).toBe(A(6));
      body.items.forEach((it, i) => {
        expect(it.score).toBeCloseTo(expected[i]!.score, 12);
      });
    });

    it('lists trending by segment: channel and age bucket × index group', async () => {
      const b = build();
      const ch1 = (await get<ListJson>(b, '/v1/trending?segment=channel:1&k=10')).body;
      expect(ch1.segment).toBe('channel:1');
      expect(ch1.source).toBe('segment');
      expect(ch1.items.map((i) => i.article_id).sort()).toEqual(
        [A(0), A(2), A(5), A(9), A(11)].sort(),
      );
      const young = (await get<ListJson>(b, '/v1/trending?segment=age_index:u25|Sport')).body;
      expect(young.items.map((i) => i.article_id)).toEqual([A(11)]);
      expect(young.items[0]?.name).toBe('Article 11');
      const old = (await get<ListJson>(b, '/v1/trending?segment=age_index:55%2B|Ladieswear')).body;
      expect(old.items.map((i) => i.article_id)).toEqual([A(0)]);
    });
  });

  describe('degraded mode and operations', () => {
    it('answers from the trending cache when Redis goes away, 503 for what it cannot', async () => {
      const flaky = servingClient(loadConfig().redisUrl);
      extraClients.push(flaky);
      await waitReady(flaky);
      const cache = new TrendingCache({ redis: flaky, keys, refreshMs: 3_600_000 });
      expect(await cache.refresh()).toBe(true);
      const b = build({ redis: flaky, trendingCache: cache });
      const live = (await get<RecJson>(b, '/v1/recommendations/alice?k=3')).body;
      expect(live.degraded).toBe(false);

      flaky.disconnect();
      const { status, body } = await get<RecJson>(b, '/v1/recommendations/alice?k=3');
      expect(status).toBe(200);
      expect(body).toMatchObject({
        degraded: true,
        degraded_reason: 'store_unavailable',
        model_version: 'trending-cache',
        ranker: { kind: 'trending_cache', reason: 'store_unavailable' },
      });
      const global = await trendingTop(admin, keys, { n: 3, now: NOW, halfLife: '7d' });
      expect(body.items.map((i) => i.article_id)).toEqual(global.map((g) => g.articleId));
      body.items.forEach((it, i) => {
        expect(it.score).toBeCloseTo(global[i]!.score, 12);
        expect(it.sources).toEqual(['trending_global']);
        expect(it.name).toMatch(/^Article/);
      });
      const filtered = (await get<RecJson>(b, '/v1/recommendations/alice?index_group=Sport')).body;
      expect(filtered.degraded).toBe(true);
      expect(filtered.items.map((i) => groupOf(i.article_id))).toEqual(
        filtered.items.map(() => 'Sport'),
      );
      const trending = await get<ListJson>(b, '/v1/trending?segment=channel:1&k=2');
      expect(trending.status).toBe(200);
      expect(trending.body).toMatchObject({ degraded: true, source: 'global' });
      expect(trending.body.items).toHaveLength(2);
      const similar = await get<ErrorJson>(b, `/v1/articles/${A(4)}/similar`);
      expect(similar.status).toBe(503);
      expect(similar.body.error.code).toBe('REC_ERR_UNAVAILABLE');
      const text = await b.metrics.registry.metrics();
      expect(
        metricValue(text, 'rec_serving_degraded_responses_total', {
          route: '/v1/recommendations/:customerId',
          reason: 'store_unavailable',
        }),
      ).toBe(2);
      const ready = await get<{ status: string; reasons: string[] }>(b, '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.status).toBe('not_ready');
      expect(ready.body.reasons[0]).toMatch(/^redis: /);
    });

    it('503s with a request id when Redis is down and nothing is cached', async () => {
      const dead = deadClient();
      extraClients.push(dead);
      const b = build({ redis: dead });
      const started = performance.now();
      const { res, status, body } = await get<ErrorJson>(b, '/v1/recommendations/alice');
      expect(performance.now() - started).toBeLessThan(1_000);
      expect(status).toBe(503);
      expect(body.error.code).toBe('REC_ERR_UNAVAILABLE');
      expect(res.headers.get('x-request-id')).toBe(body.request_id);
      expect((await get<ErrorJson>(b, '/v1/trending')).status).toBe(503);
      const ready = await get<{ status: string; reasons: string[] }>(b, '/readyz');
      expect(ready.status).toBe(503);
      expect((await b.app.request('/healthz')).status).toBe(200);
    });

    it('/healthz and /readyz', async () => {
      const b = build();
      const health = await get<{ status: string }>(b, '/healthz');
      expect(health).toMatchObject({ status: 200, body: { status: 'ok' } });
      const ready = await get<{ status: string; checks: { ranker: { version: string } } }>(
        b,
        '/readyz',
      );
      expect(ready.status).toBe(200);
      expect(ready.body.status).toBe('ready');
      expect(ready.body.checks.ranker.version).toBe('heuristic-v2');
      const strict = build({ config: { requireModel: true } });
      const notReady = await get<{ reasons: string[] }>(strict, '/readyz');
      expect(notReady.status).toBe(503);
      expect(notReady.body.reasons).toEqual(['ranker: no model loaded (requireModel): no_model']);
    });

    it('/readyz names what is down in fixed words, never the error; the log has the detail', async () => {
      const lines: string[] = [];
      const logger = pino(
        { level: 'info' },
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            lines.push(chunk.toString());
            cb();
          },
        }),
      );
      const dead = deadClient();
      extraClients.push(dead);
      const b = build({ redis: dead, logger });
      const { status, body } = await get<Record<string, unknown>>(b, '/readyz');
      expect(status).toBe(503);
      expect(body).toEqual({
        status: 'not_ready',
        checks: {
          redis: { ok: false, state: 'down' },
          ranker: { ok: true, version: 'heuristic-v2', state: 'no_model' },
          trending_cache: { size: 0, last_refresh: null },
        },
        reasons: ['redis: down'],
      });
      const text = JSON.stringify(body);
      // What the client says (`Stream isn't writeable and enableOfflineQueue options is false`).
      for (const leak of ['writeable', 'enableOfflineQueue', '127.0.0.1', ':1', 'ECONN', 'rror']) {
        expect(text).not.toContain(leak);
      }
      // The detail is logged once, not at every probe.
      await get(b, '/readyz');
      const failed = lines.filter((l) => l.includes('readiness: redis check failed'));
      expect(failed).toHaveLength(1);
      expect(failed[0]).toContain("Stream isn't writeable and enableOfflineQueue");
    });

    it('/metrics exposes rec_serving_ series', async () => {
      const b = build();
      await b.app.request('/v1/recommendations/alice?k=3');
      await b.app.request('/v1/recommendations/alice?k=0');
      const res = await b.app.request('/metrics');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await res.text();
      expect(
        metricValue(text, 'rec_serving_request_duration_seconds_count', {
          route: '/v1/recommendations/:customerId',
          status: '200',
        }),
      ).toBe(1);
      expect(
        metricValue(text, 'rec_serving_request_duration_seconds_count', { status: '400' }),
      ).toBe(1);
      expect(metricValue(text, 'rec_serving_candidates_count')).toBe(1);
      expect(text).toContain('rec_serving_model_version{version="heuristic-v2"} 1');
      // One ranked request: each of its stages observed once (the 400 has none).
      for (const stage of ['candidates', 'features', 'scoring', 'http']) {
        expect(metricValue(text, 'rec_serving_stage_duration_seconds_count', { stage })).toBe(1);
      }
    });

    it('/openapi.json describes the /v1 paths; /docs serves Swagger UI', async () => {
      const b = build();
      const res = await b.app.request('/openapi.json');
      expect(res.status).toBe(200);
      const doc = (await res.json()) as { openapi: string; paths: Record<string, unknown> };
      expect(doc.openapi).toBe('3.0.0');
      // The answer's `ranker` is part of the documented schema, required.
      const schemas = (doc as { components?: { schemas?: Record<string, unknown> } }).components
        ?.schemas;
      expect(schemas?.RecommendationResponse).toMatchObject({
        required: expect.arrayContaining(['model_version', 'ranker']) as string[],
      });
      expect(schemas?.RankedBy).toMatchObject({
        properties: {
          kind: { enum: ['model', 'heuristic', 'trending_cache'] },
          reason: { enum: expect.arrayContaining(['no_model', 'model_refused']) as string[] },
        },
        required: ['kind'],
      });
      expect(Object.keys(doc.paths).sort()).toEqual([
        '/v1/articles/{id}',
        '/v1/articles/{id}/similar',
        '/v1/articles/{id}/similar/embedding',
        '/v1/customers',
        '/v1/customers/{customerId}',
        '/v1/events/purchases',
        '/v1/recommendations/{customerId}',
        '/v1/trending',
      ]);
      // The write route declares its API key and every refusal it answers.
      const ingest = (
        doc.paths['/v1/events/purchases'] as {
          post: { security: unknown; responses: Record<string, unknown> };
        }
      ).post;
      expect(ingest.security).toEqual([{ apiKey: [] }]);
      expect(Object.keys(ingest.responses).sort()).toEqual(
        ['202', '400', '401', '403', '413', '415', '500', '503'].sort(),
      );
      // Refusals under overload are documented with their Retry-After header.
      const recs = doc.paths['/v1/recommendations/{customerId}'] as {
        get: { responses: Record<string, { headers?: Record<string, unknown> }> };
      };
      expect(Object.keys(recs.get.responses['503']?.headers ?? {})).toEqual(['Retry-After']);
      const docs = await b.app.request('/docs');
      expect(docs.status).toBe(200);
      expect(await docs.text()).toContain('swagger');
    });
  });
});
