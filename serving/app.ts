/**
 * The serving API (Hono + zod OpenAPI). `createApp(deps)` builds it with everything injected — no
 * module singletons, no environment reading — so tests and the server entry point wire it alike.
 *
 *   GET /v1/recommendations/{customerId}?k&index_group&section&product_group&allow_repurchase&explain
 *   GET /v1/articles/{id}/similar?k          co-purchase neighbours
 *   GET /v1/articles/{id}/similar/embedding?n  text-embedding neighbours (serving/similar.ts)
 *   GET /v1/trending?segment&k               global, or channel:<id> / age_index:<bucket>|<group>
 *   GET /healthz  /readyz  /metrics  /openapi.json  /docs
 *
 * "now": features and decayed scores are computed at event time — `deps.now()` when given, else
 * the latest event time the request read from the store (see `eventTimeNow` in candidates.ts),
 * else the wall clock.
 *
 * The Redis client is the caller's. Create it so that an outage fails fast instead of queueing:
 * `new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 200 })`.
 * When Redis fails, recommendations and global trending are answered from the in-process trending
 * cache (`degraded: true`, `rec_serving_degraded_responses_total`); 503 only when the cache is
 * empty too (and always for similar items, which the cache does not hold).
 *
 * Every recommendation answer says what ranked it (`ranker`): the active model, the heuristic
 * `heuristic-v2` and why (no promoted model, the active one refused by this instance, or a ranker
 * failure on this request), or the trending cache. Users are never told a ranking is a model's
 * when it is not.
 */
import { randomUUID } from 'node:crypto';
import { OpenAPIHono, createRoute } from '@hono/zod-openapi';
import { swaggerUI } from '@hono/swagger-ui';
import type { Context } from 'hono';
import { routePath } from 'hono/route';
import type { Redis } from 'ioredis';
import { FEATURE_NAMES, missingFeatures } from '../features/definitions.ts';
import { decayedValue } from '../features/decay.ts';
import {
  COPURCHASE_HALF_LIFE,
  HALF_LIVES,
  SEGMENT_HALF_LIFE,
  type KeySpace,
} from '../features/keys.ts';
import { readArticles, type ArticleState } from '../features/state.ts';
import type { Logger } from '../common/logger.ts';
import {
  DEFAULT_CANDIDATE_CONFIG,
  GLOBAL_TRENDING_HL,
  eventTimeNow,
  gatherCandidates,
  parseScored,
  readSummaries,
  type ArticleSummary,
  type CandidateConfig,
  type CandidateSet,
  type Filters,
} from './candidates/index.ts';
import {
  ServingError,
  StoreUnavailableError,
  badRequestBody,
  errorHandler,
  requestIdOf,
  storeRead,
} from './http-errors.ts';
import type { DegradedReason, ServingMetrics } from './metrics.ts';
import {
  HEURISTIC_VERSION,
  NO_MODEL,
  rankCandidates,
  reasonsFor,
  type NoModel,
  type RankOutcome,
  type Ranker,
} from './ranking.ts';
import {
  ErrorResponse,
  RecommendationParams,
  RecommendationQuery,
  RecommendationResponse,
  SimilarParams,
  SimilarQuery,
  SimilarResponse,
  TrendingQuery,
  TrendingResponse,
  parseSegment,
  type RankedByBody,
  type ReadyBody,
  type RecommendationItemBody,
  type RecommendationResponseBody,
  type ScoredArticleBody,
} from './api-schemas.ts';
import { TrendingCache } from './trending-cache.ts';
import { registerEmbeddingSimilar } from './similar.ts';
import { embeddingKeys } from '../features/embedding-keys.ts';

export interface ServingConfig extends CandidateConfig {
  /** A ranker taking longer than this falls back to the heuristic (ms; 0 = no limit). */
  readonly rankerTimeoutMs: number;
  /** `/readyz` is 503 without a loaded model (else the heuristic counts as ready). */
  readonly requireModel: boolean;
  /** Bound of the Redis PING of `/readyz` (ms). */
  readonly readyTimeoutMs: number;
  /** Trending cache size and refresh period, when `createApp` builds the cache itself. */
  readonly trendingCacheSize: number;
  readonly trendingCacheRefreshMs: number;
}

export const DEFAULT_SERVING_CONFIG: ServingConfig = {
  ...DEFAULT_CANDIDATE_CONFIG,
  rankerTimeoutMs: 250,
  requireModel: false,
  readyTimeoutMs: 500,
  trendingCacheSize: 200,
  trendingCacheRefreshMs: 10_000,
};

export interface ServingDeps {
  /** See the module comment for the options it should be created with. */
  readonly redis: Redis;
  readonly keys: KeySpace;
  /** The current model, or null (heuristic ranking). Asked once per request (hot swaps). */
  readonly ranker: () => Ranker | null;
  /**
   * Why `ranker()` is null, for the answers and `/readyz` (LiveModel.noModel). Default: no
   * promoted model.
   */
  readonly noModel?: () => NoModel;
  readonly logger: Logger;
  readonly metrics: ServingMetrics;
  readonly config: ServingConfig;
  /** Event-time "now" (ms); see the module comment when absent. */
  readonly now?: () => number;
  /**
   * The degraded-mode cache. When absent, the app makes one over `redis` that refreshes on demand
   * (a request finding it older than `trendingCacheRefreshMs` starts a background refresh); pass
   * one to share it or to run its periodic timer (`start()`), which the app never starts itself.
   */
  readonly trendingCache?: TrendingCache;
}

export interface AppEnv {
  Variables: { requestId: string };
}

/** Model version reported for answers from the trending cache (Redis down). */
export const TRENDING_CACHE_VERSION = 'trending-cache';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

const errors = {
  400: {
    description: 'Invalid request; every offending field is named',
    content: { 'application/json': { schema: ErrorResponse } },
  },
  500: {
    description: 'Internal error (logged with the request id)',
    content: { 'application/json': { schema: ErrorResponse } },
  },
  503: {
    description: 'Feature store unavailable and nothing cached to answer with',
    content: { 'application/json': { schema: ErrorResponse } },
  },
} as const;

const recommendationsRoute = createRoute({
  method: 'get',
  path: '/v1/recommendations/{customerId}',
  summary: 'Ranked recommendations for a customer',
  description:
    'Candidates from repurchase, co-purchase, segment and global trending, ranked by the ' +
    'promoted model, or by the heuristic heuristic-v2 when there is none (or this instance ' +
    'refused it, e.g. an untrained fixture): `ranker` says which and why. Unknown customers get ' +
    'a cold-start answer (200).',
  request: { params: RecommendationParams, query: RecommendationQuery },
  responses: {
    200: {
      description: 'Recommendations',
      content: { 'application/json': { schema: RecommendationResponse } },
    },
    ...errors,
  },
});

const similarRoute = createRoute({
  method: 'get',
  path: '/v1/articles/{id}/similar',
  summary: 'Articles bought together with an article',
  request: { params: SimilarParams, query: SimilarQuery },
  responses: {
    200: {
      description: 'Co-purchase neighbours, best first',
      content: { 'application/json': { schema: SimilarResponse } },
    },
    404: {
      description: 'Unknown article (no metadata and no sales)',
      content: { 'application/json': { schema: ErrorResponse } },
    },
    ...errors,
  },
});

const trendingRoute = createRoute({
  method: 'get',
  path: '/v1/trending',
  summary: 'Trending articles, global or of a segment (7-day half-life)',
  request: { query: TrendingQuery },
  responses: {
    200: {
      description: 'Trending articles, best first',
      content: { 'application/json': { schema: TrendingResponse } },
    },
    ...errors,
  },
});

/** `ranker` of the answers served from the trending cache (Redis down). */
const RANKED_BY_CACHE: RankedByBody = {
  kind: 'trending_cache',
  reason: 'store_unavailable',
  message:
    'feature store unavailable: global trending from the in-process cache, not ranked per customer',
};

const round2 = (x: number): number => Math.round(x * 100) / 100;
const nullIfNaN = (v: number): number | null => (Number.isFinite(v) ? v : null);

function summaryOf(a: ArticleState): ArticleSummary {
  const m = a.meta;
  const text = (v: string | undefined) => (v === undefined || v === '' ? null : v);
  return {
    articleId: a.articleId,
    name: text(m.prod_name),
    indexGroup: text(m.index_group_name),
    section: text(m.section_name),
    productGroup: text(m.product_group_name),
    last: a.last,
  };
}

export function createApp(deps: ServingDeps): OpenAPIHono<AppEnv> {
  const { redis, keys, metrics, config } = deps;
  const logger = deps.logger.child({ module: 'serving' });
  const cache =
    deps.trendingCache ??
    new TrendingCache({
      redis,
      keys,
      logger,
      capacity: config.trendingCacheSize,
      refreshMs: config.trendingCacheRefreshMs,
    });

  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) return c.json(badRequestBody(result.error, requestIdOf(c)), 400);
      return undefined;
    },
  });

  app.use('*', async (c, next) => {
    const started = performance.now();
    const incoming = c.req.header('x-request-id');
    const requestId = incoming !== undefined && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    c.set('requestId', requestId);
    c.header('x-request-id', requestId);
    cache.refreshIfStale();
    await next();
    if (!c.res.headers.has('x-request-id')) c.header('x-request-id', requestId);
    const path = routePath(c as Context, -1);
    const route = path === '*' || path === '/*' || path === '' ? 'unmatched' : path;
    const seconds = (performance.now() - started) / 1000;
    metrics.requestSeconds.observe({ route, status: String(c.res.status) }, seconds);
    logger.debug(
      { request_id: requestId, route, status: c.res.status, ms: round2(seconds * 1000) },
      'request',
    );
  });
  app.onError(errorHandler(logger));
  app.notFound((c) =>
    c.json(
      {
        error: { code: 'REC_ERR_NOT_FOUND', message: `no route for ${c.req.method} ${c.req.path}` },
        request_id: requestIdOf(c),
      },
      404,
    ),
  );

  const eventNow = (times: Iterable<number | null | undefined>): number =>
    deps.now?.() ?? eventTimeNow(times, Date.now());

  const noModel = (): NoModel => deps.noModel?.() ?? NO_MODEL;

  /** What ranked an answer: the model, or the heuristic and why (see the module comment). */
  const rankedBy = (ranker: Ranker | null, outcome: RankOutcome): RankedByBody => {
    const fallback = outcome.fallback;
    if (fallback !== null) {
      // Fixed sentences: the failure's own message (logged) may carry internals.
      const model = `model ${ranker?.version ?? '?'}`;
      const what = {
        ranker_error: `${model} failed on this request`,
        ranker_timeout: `${model} took longer than rankerTimeoutMs (${config.rankerTimeoutMs} ms)`,
        ranker_incompatible: `${model} needs features this build cannot produce`,
      }[fallback.reason];
      return {
        kind: 'heuristic',
        reason: fallback.reason,
        message: `${what}; ranked with ${HEURISTIC_VERSION}`,
      };
    }
    if (ranker === null) return { kind: 'heuristic', ...noModel() };
    return { kind: 'model' };
  };

  const incompatibleLogged = new Set<string>();
  const degraded = (route: string, reason: DegradedReason): void => {
    metrics.degraded.inc({ route, reason });
  };

  // ---- recommendations ------------------------------------------------------------------------
  app.openapi(recommendationsRoute, async (c) => {
    const t0 = performance.now();
    const { customerId } = c.req.valid('param');
    const q = c.req.valid('query');
    const filters: Filters = {
      indexGroup: q.index_group,
      section: q.section,
      productGroup: q.product_group,
    };
    const explain = q.explain ?? false;
    const route = '/v1/recommendations/:customerId';

    let set: CandidateSet;
    try {
      set = await gatherCandidates(redis, keys, config, {
        customerId,
        filters,
        allowRepurchase: q.allow_repurchase ?? false,
      });
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      const now = deps.now?.() ?? cache.latestEventTime() ?? Date.now();
      const cached = cache.top(q.k, now, filters);
      if (cache.size === 0) {
        throw new ServingError(
          503,
          'REC_ERR_UNAVAILABLE',
          'feature store unavailable and no cached trending to answer with',
          { cause: err },
        );
      }
      logger.warn(
        { request_id: requestIdOf(c), err: err.message },
        'serving recommendations from the trending cache',
      );
      degraded(route, 'store_unavailable');
      metrics.candidates.observe(cached.length);
      const body: RecommendationResponseBody = {
        customer_id: customerId,
        items: cached.map((a, i) => ({
          article_id: a.articleId,
          name: a.name,
          score: a.score,
          rank: i + 1,
          sources: ['trending_global'],
          ...(explain
            ? { reasons: ['trending overall (cached while the feature store is down)'] }
            : {}),
        })),
        model_version: TRENDING_CACHE_VERSION,
        ranker: RANKED_BY_CACHE,
        degraded: true,
        degraded_reason: 'store_unavailable',
        cold_start: false,
        candidates: cached.length,
        took_ms: round2(performance.now() - t0),
        now,
      };
      return c.json(body, 200);
    }
    metrics.redisRoundTrips.observe(set.roundTrips);
    metrics.candidates.observe(set.candidates.length);
    const globalSummaries = new Map<string, ArticleSummary>();
    for (const g of set.globalTop) {
      const a = set.articles.get(g.articleId);
      if (a) globalSummaries.set(g.articleId, summaryOf(a));
    }
    cache.offer(set.globalTop, globalSummaries);

    const now = eventNow([set.customer.last, ...[...set.articles.values()].map((a) => a.last)]);
    const ranker = deps.ranker();
    const outcome = await rankCandidates(
      {
        candidates: set.candidates,
        customer: set.customer,
        articles: set.articles,
        now,
        explain,
      },
      ranker,
      { timeoutMs: config.rankerTimeoutMs },
    );
    if (outcome.fallback) {
      const reason = outcome.fallback.reason;
      metrics.rankerErrors.inc({ reason });
      degraded(route, reason);
      // An incompatible model fails every request the same way: say it once per version.
      const once = `${ranker?.version ?? ''}|${reason}`;
      if (reason !== 'ranker_incompatible' || !incompatibleLogged.has(once)) {
        incompatibleLogged.add(once);
        logger.error(
          { request_id: requestIdOf(c), err: outcome.fallback, model: ranker?.version },
          'ranker failed; ranked with the heuristic',
        );
      }
    }
    metrics.setModelVersion(outcome.modelVersion);

    const names = new Map<string, string | null>(set.recentNames);
    for (const a of set.articles.values()) names.set(a.articleId, a.meta.prod_name ?? null);
    const items: RecommendationItemBody[] = outcome.items.slice(0, q.k).map((it, i) => ({
      article_id: it.candidate.articleId,
      name: it.article.meta.prod_name ?? null,
      score: it.score,
      rank: i + 1,
      sources: [...it.candidate.sources],
      ...(explain && it.features
        ? {
            features: Object.fromEntries(
              Object.entries(it.features).map(([k, v]) => [k, nullIfNaN(v)]),
            ),
          }
        : {}),
      ...(explain ? { reasons: reasonsFor(it, set.customer, names, now) } : {}),
    }));
    const body: RecommendationResponseBody = {
      customer_id: customerId,
      items,
      model_version: outcome.modelVersion,
      ranker: rankedBy(ranker, outcome),
      degraded: outcome.fallback !== null,
      ...(outcome.fallback ? { degraded_reason: outcome.fallback.reason } : {}),
      cold_start: set.coldStart,
      candidates: set.candidates.length,
      took_ms: round2(performance.now() - t0),
      now,
    };
    return c.json(body, 200);
  });

  // ---- similar items ----------------------------------------------------------------------------
  app.openapi(similarRoute, async (c) => {
    const t0 = performance.now();
    const { id } = c.req.valid('param');
    const { k } = c.req.valid('query');
    const [states, flat] = await storeRead('article and co-purchases', () =>
      Promise.all([
        readArticles(redis, keys, [id]),
        redis.zrevrange(keys.article(id).copurchase, 0, k - 1, 'WITHSCORES'),
      ]),
    );
    const article = states[0];
    if (!article || (article.n === 0 && Object.keys(article.meta).length === 0)) {
      throw new ServingError(404, 'REC_ERR_NOT_FOUND', `article ${id} is unknown`);
    }
    const neighbours = parseScored(flat);
    const summaries = await readSummaries(
      redis,
      keys,
      neighbours.map((n) => n.articleId),
    );
    const now = eventNow([article.last, ...[...summaries.values()].map((s) => s.last)]);
    const items: ScoredArticleBody[] = neighbours.map((n, i) => ({
      article_id: n.articleId,
      name: summaries.get(n.articleId)?.name ?? null,
      score: decayedValue(n.logScore, now, HALF_LIVES[COPURCHASE_HALF_LIFE]),
      rank: i + 1,
    }));
    return c.json(
      {
        article_id: id,
        name: article.meta.prod_name ?? null,
        items,
        took_ms: round2(performance.now() - t0),
        now,
      },
      200,
    );
  });

  // ---- trending ---------------------------------------------------------------------------------
  app.openapi(trendingRoute, async (c) => {
    const t0 = performance.now();
    const { k, segment: rawSegment } = c.req.valid('query');
    const parsed = rawSegment === undefined ? null : parseSegment(rawSegment);
    if (typeof parsed === 'string') {
      // Unreachable: the query schema refuses what parseSegment refuses.
      throw new ServingError(400, 'REC_ERR_BAD_REQUEST', parsed, {
        fields: [{ path: 'segment', message: parsed }],
      });
    }
    const segmentName = parsed === null ? null : `${parsed.kind}:${parsed.value}`;
    const key =
      parsed === null
        ? keys.trending.global(GLOBAL_TRENDING_HL)
        : keys.trending.segment(parsed.kind, parsed.value, SEGMENT_HALF_LIFE);
    const halfLife = HALF_LIVES[parsed === null ? GLOBAL_TRENDING_HL : SEGMENT_HALF_LIFE];
    try {
      const entries = parseScored(
        await storeRead('trending', () => redis.zrevrange(key, 0, k - 1, 'WITHSCORES')),
      );
      const summaries = await readSummaries(
        redis,
        keys,
        entries.map((e) => e.articleId),
      );
      if (parsed === null) cache.offer(entries, summaries);
      const now = eventNow([...summaries.values()].map((s) => s.last));
      return c.json(
        {
          segment: segmentName,
          source: parsed === null ? ('global' as const) : ('segment' as const),
          items: entries.map((e, i) => ({
            article_id: e.articleId,
            name: summaries.get(e.articleId)?.name ?? null,
            score: decayedValue(e.logScore, now, halfLife),
            rank: i + 1,
          })),
          degraded: false,
          took_ms: round2(performance.now() - t0),
          now,
        },
        200,
      );
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      if (cache.size === 0) {
        throw new ServingError(
          503,
          'REC_ERR_UNAVAILABLE',
          'feature store unavailable and no cached trending to answer with',
          { cause: err },
        );
      }
      degraded('/v1/trending', 'store_unavailable');
      const now = deps.now?.() ?? cache.latestEventTime() ?? Date.now();
      return c.json(
        {
          segment: segmentName,
          source: 'global' as const,
          items: cache.top(k, now).map((a, i) => ({
            article_id: a.articleId,
            name: a.name,
            score: a.score,
            rank: i + 1,
          })),
          degraded: true,
          took_ms: round2(performance.now() - t0),
          now,
        },
        200,
      );
    }
  });

  // ---- operations -------------------------------------------------------------------------------
  app.get('/healthz', (c) => c.json({ status: 'ok' }, 200));

  app.get('/readyz', async (c) => {
    const reasons: string[] = [];
    let redisCheck: ReadyBody['checks']['redis'] = { ok: true };
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        redis.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            reject(new Error(`no answer within ${config.readyTimeoutMs} ms`));
          }, config.readyTimeoutMs);
        }),
      ]);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      redisCheck = { ok: false, message };
      reasons.push(`redis: ${message}`);
    } finally {
      clearTimeout(timer);
    }
    const ranker = deps.ranker();
    let rankerCheck: ReadyBody['checks']['ranker'];
    const missing = ranker === null ? [] : missingFeatures(ranker.features);
    if (ranker !== null && missing.length > 0) {
      const message = `model ${ranker.version} needs unknown features (${missing.join(', ')}); ranking with the heuristic`;
      rankerCheck = { ok: !config.requireModel, version: ranker.version, message };
      if (config.requireModel) reasons.push(`ranker: ${message}`);
    } else if (ranker !== null) {
      rankerCheck = { ok: true, version: ranker.version };
    } else if (config.requireModel) {
      const why = noModel().message;
      rankerCheck = { ok: false, version: HEURISTIC_VERSION, message: why };
      reasons.push(`ranker: no model loaded (requireModel): ${why}`);
    } else {
      rankerCheck = { ok: true, version: HEURISTIC_VERSION, message: noModel().message };
    }
    const body: ReadyBody = {
      status: reasons.length === 0 ? 'ready' : 'not_ready',
      checks: {
        redis: redisCheck,
        ranker: rankerCheck,
        trending_cache: { size: cache.size, last_refresh: cache.lastRefresh },
      },
      reasons,
    };
    return c.json(body, reasons.length === 0 ? 200 : 503);
  });

  app.get('/metrics', async (c) => {
    const text = await metrics.registry.metrics();
    return c.body(text, 200, { 'content-type': metrics.registry.contentType });
  });

  registerEmbeddingSimilar(app, {
    redis,
    keys,
    ekeys: embeddingKeys(config.embeddingNamespace ?? keys.ns),
  });

  app.doc('/openapi.json', {
    openapi: '3.0.0',
    info: {
      title: 'fashion-recsys serving API',
      version: '1.0.0',
      description: `Real-time fashion recommendations. Features: ${FEATURE_NAMES.length} shared definitions (features/definitions.ts).`,
    },
  });
  app.get('/docs', swaggerUI({ url: '/openapi.json' }));

  return app;
}
