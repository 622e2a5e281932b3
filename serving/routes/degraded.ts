/**
 * Degraded mode: when the feature store is unavailable, recommendations and global trending are
 * answered from the in-process trending cache (trending-cache.ts), marked `degraded: true` and
 * counted in `rec_serving_degraded_responses_total`; 503 when the cache is empty too (similar
 * items have no degraded answer: the cache does not hold them).
 */
import type {
  RankedByBody,
  RecommendationResponseBody,
  TrendingResponseBody,
} from '../api-schemas.ts';
import { DEFAULT_VARIANT } from '../api-schemas.ts';
import type { Filters } from '../candidates/index.ts';
import { ServingError, type StoreUnavailableError } from '../http-errors.ts';
import type { VariantAssignment } from '../live-experiment.ts';
import { tookMs, type RouteContext } from './context.ts';

/** Model version reported for answers from the trending cache (Redis down). */
export const TRENDING_CACHE_VERSION = 'trending-cache';

/** `ranker` of the answers served from the trending cache (Redis down). */
const RANKED_BY_CACHE: RankedByBody = {
  kind: 'trending_cache',
  reason: 'store_unavailable',
  message:
    'feature store unavailable: global trending from the in-process cache, not ranked per customer',
};

function nothingCached(err: StoreUnavailableError): ServingError {
  return new ServingError(
    503,
    'REC_ERR_UNAVAILABLE',
    'feature store unavailable and no cached trending to answer with',
    { cause: err },
  );
}

export interface CachedRecommendationsRequest {
  /** Route pattern, for the degraded-responses metric. */
  readonly route: string;
  readonly requestId: string;
  readonly customerId: string;
  readonly k: number;
  readonly filters: Filters;
  readonly explain: boolean;
  /** When the request started (`performance.now()`). */
  readonly t0: number;
  /** The customer's A/B variant (null: no experiment): the answer still names it. */
  readonly assigned: VariantAssignment | null;
}

/** The recommendations answer from the cache: global trending, filtered, not personalised. */
export function cachedRecommendations(
  ctx: RouteContext,
  req: CachedRecommendationsRequest,
  err: StoreUnavailableError,
): RecommendationResponseBody {
  const now = ctx.cacheNow();
  const cached = ctx.cache.top(req.k, now, req.filters);
  if (ctx.cache.size === 0) throw nothingCached(err);
  ctx.logger.warn(
    { request_id: req.requestId, err: err.message },
    'serving recommendations from the trending cache',
  );
  ctx.metrics.degraded.inc({ route: req.route, reason: 'store_unavailable' });
  ctx.metrics.candidates.observe(cached.length);
  return {
    customer_id: req.customerId,
    items: cached.map((a, i) => ({
      article_id: a.articleId,
      name: a.name,
      score: a.score,
      rank: i + 1,
      sources: ['trending_global'],
      ...(req.explain
        ? { reasons: ['trending overall (cached while the feature store is down)'] }
        : {}),
    })),
    model_version: TRENDING_CACHE_VERSION,
    ranker: RANKED_BY_CACHE,
    degraded: true,
    degraded_reason: 'store_unavailable',
    cold_start: false,
    experiment: req.assigned?.experiment ?? null,
    variant: req.assigned?.variant ?? DEFAULT_VARIANT,
    candidates: cached.length,
    took_ms: tookMs(req.t0),
    now,
  };
}

export interface CachedTrendingRequest {
  /** Route pattern, for the degraded-responses metric. */
  readonly route: string;
  /** The segment asked for (answered with global trending all the same), or null. */
  readonly segment: string | null;
  readonly k: number;
  /** When the request started (`performance.now()`). */
  readonly t0: number;
}

/** The trending answer from the cache: global trending, whatever segment was asked. */
export function cachedTrending(
  ctx: RouteContext,
  req: CachedTrendingRequest,
  err: StoreUnavailableError,
): TrendingResponseBody {
  if (ctx.cache.size === 0) throw nothingCached(err);
  ctx.metrics.degraded.inc({ route: req.route, reason: 'store_unavailable' });
  const now = ctx.cacheNow();
  return {
    segment: req.segment,
    source: 'global',
    items: ctx.cache.top(req.k, now).map((a, i) => ({
      article_id: a.articleId,
      name: a.name,
      score: a.score,
      rank: i + 1,
    })),
    degraded: true,
    took_ms: tookMs(req.t0),
    now,
  };
}
