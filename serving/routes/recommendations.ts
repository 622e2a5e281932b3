/**
 * `GET /v1/recommendations/{customerId}`: the customer's candidates (candidates/), ranked by the
 * active model or the heuristic (ranking.ts), the first `k` answered with what ranked them; from
 * the trending cache when the feature store is unavailable (degraded.ts).
 *
 * Every 200 answer is logged to `recommendations.served` when the app has a served log
 * (served-log.ts; never awaited). Every answer says what ranked it (`ranker`): the active model, the heuristic `heuristic-v2` and
 * why (no promoted model, the active one refused by this instance, or a ranker failure on this
 * request), or the trending cache. Users are never told a ranking is a model's when it is not.
 *
 * While an A/B experiment runs (serving/live-experiment.ts) the customer's sticky variant picks
 * the ranker instead of the active model (its model, or the heuristic), and the answer names the
 * experiment and the variant; without one it is `experiment: null`, `variant: 'default'`.
 */
import { featureNames } from '../../features/definitions.ts';
import { OpenAPIHono, createRoute } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { ArticleState } from '../../features/state.ts';
import {
  DEFAULT_VARIANT,
  ErrorResponse,
  RecommendationParams,
  RecommendationQuery,
  RecommendationResponse,
  type RankedByBody,
  type RecommendationItemBody,
  type RecommendationResponseBody,
} from '../api-schemas.ts';
import {
  gatherCandidates,
  type ArticleSummary,
  type CandidateSet,
  type Filters,
} from '../candidates/index.ts';
import { StoreUnavailableError, requestIdOf } from '../http-errors.ts';
import {
  HEURISTIC_VERSION,
  rankCandidates,
  reasonsFor,
  type RankOutcome,
  type RankerFailure,
  type Ranker,
} from '../ranking.ts';
import type { VariantAssignment } from '../live-experiment.ts';
import {
  ERROR_RESPONSES,
  recordVariant,
  tookMs,
  type AppEnv,
  type RouteContext,
} from './context.ts';
import { cachedRecommendations } from './degraded.ts';

/** The route pattern, as the request metrics and the degraded-responses metric name it. */
const ROUTE = '/v1/recommendations/:customerId';

const route = createRoute({
  method: 'get',
  path: '/v1/recommendations/{customerId}',
  summary: 'Ranked recommendations for a customer',
  description:
    'Candidates from repurchase, co-purchase, segment and global trending, ranked by the ' +
    'promoted model, or by the heuristic heuristic-v2 when there is none (or this instance ' +
    'refused it, e.g. an untrained fixture): `ranker` says which and why. Unknown customers get ' +
    'a cold-start answer (200). Past its in-flight limit an instance refuses at once: 503 ' +
    'REC_ERR_UNAVAILABLE with Retry-After.',
  request: { params: RecommendationParams, query: RecommendationQuery },
  responses: {
    200: {
      description: 'Recommendations',
      content: { 'application/json': { schema: RecommendationResponse } },
    },
    ...ERROR_RESPONSES,
    503: {
      description:
        'Overloaded (the instance answers as many recommendation requests at a time as it is ' +
        'allowed: retry after Retry-After), or the feature store unavailable with nothing cached',
      headers: {
        'Retry-After': {
          description: 'Seconds to wait before retrying (overload only)',
          schema: { type: 'integer' },
        },
      },
      content: { 'application/json': { schema: ErrorResponse } },
    },
  },
});

export function recommendationRoutes(ctx: RouteContext): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  const reportFailure = failureReporter(ctx);

  app.openapi(route, async (c) => {
    const t0 = performance.now();
    const { customerId } = c.req.valid('param');
    const q = c.req.valid('query');
    const filters: Filters = {
      indexGroup: q.index_group,
      section: q.section,
      productGroup: q.product_group,
    };
    const explain = q.explain ?? false;
    const assigned = ctx.assign(customerId);

    let set: CandidateSet;
    const tCandidates = performance.now();
    try {
      set = await gatherCandidates(
        ctx.redis,
        ctx.keys,
        ctx.config,
        { customerId, filters, allowRepurchase: q.allow_repurchase ?? false },
        ctx.shared,
      );
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      const request = { customerId, k: q.k, filters, explain, t0, assigned };
      const requestId = requestIdOf(c);
      const degraded = cachedRecommendations(ctx, { ...request, route: ROUTE, requestId }, err);
      recordVariant(ctx, assigned, degraded);
      ctx.servedLog?.record(degraded, requestId);
      return c.json(degraded, 200);
    }
    recordCandidates(ctx, set);

    const now = ctx.eventNow([set.customer.last, ...[...set.articles.values()].map((a) => a.last)]);
    const ranker = assigned === null ? ctx.ranker() : assigned.ranker;
    const tRank = performance.now();
    const outcome = await rankCandidates(
      { candidates: set.candidates, customer: set.customer, articles: set.articles, now, explain },
      ranker,
      { timeoutMs: ctx.config.rankerTimeoutMs, features: featureNames(ctx.config.embeddings) },
    );
    recordStages(c, ctx, {
      candidates: tRank - tCandidates,
      features: outcome.featuresMs,
      scoring: performance.now() - tRank - outcome.featuresMs,
    });
    if (outcome.fallback) reportFailure(outcome.fallback, ranker, requestIdOf(c));
    ctx.metrics.setModelVersion(outcome.modelVersion);

    const body: RecommendationResponseBody = {
      customer_id: customerId,
      items: answerItems(set, outcome, { k: q.k, explain, now }),
      model_version: outcome.modelVersion,
      ranker: rankedBy(ctx, ranker, outcome, assigned),
      degraded: outcome.fallback !== null,
      ...(outcome.fallback ? { degraded_reason: outcome.fallback.reason } : {}),
      cold_start: set.coldStart,
      experiment: assigned?.experiment ?? null,
      variant: assigned?.variant ?? DEFAULT_VARIANT,
      candidates: set.candidates.length,
      took_ms: tookMs(t0),
      now,
    };
    recordVariant(ctx, assigned, body);
    // A reference onto a bounded buffer: built, encoded and sent in the background (served-log.ts).
    ctx.servedLog?.record(body, requestIdOf(c));
    return c.json(body, 200);
  });
  return app;
}

/**
 * The stage times of a ranked request (ms; the `candidates` stage includes the little between the
 * reads and the ranking); their sum is left in the context for the request middleware, which
 * observes the `http` stage as the rest of the request's time in the server.
 */
function recordStages(
  c: Context<AppEnv>,
  ctx: RouteContext,
  ms: { candidates: number; features: number; scoring: number },
): void {
  const stages = ctx.metrics.stageSeconds;
  stages.observe({ stage: 'candidates' }, ms.candidates / 1000);
  stages.observe({ stage: 'features' }, ms.features / 1000);
  stages.observe({ stage: 'scoring' }, ms.scoring / 1000);
  c.set('stagesMs', ms.candidates + ms.features + ms.scoring);
}

/** Candidate metrics, and the global trending top read for the trending cache (when new). */
function recordCandidates(ctx: RouteContext, set: CandidateSet): void {
  ctx.metrics.redisRoundTrips.observe(set.roundTrips);
  ctx.metrics.candidates.observe(set.candidates.length);
  if (!ctx.cache.isNewOffer(set.globalTop)) return;
  const globalSummaries = new Map<string, ArticleSummary>();
  for (const g of set.globalTop) {
    const a = set.articles.get(g.articleId);
    if (a) globalSummaries.set(g.articleId, summaryOf(a));
  }
  ctx.cache.offer(set.globalTop, globalSummaries);
}

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

/**
 * Counts a ranker failure (the heuristic ranked instead) and logs it; an incompatible model
 * fails every request the same way, so that is logged once per version.
 */
function failureReporter(ctx: RouteContext) {
  const incompatibleLogged = new Set<string>();
  return (failure: RankerFailure, ranker: Ranker | null, requestId: string): void => {
    const reason = failure.reason;
    ctx.metrics.rankerErrors.inc({ reason });
    ctx.metrics.degraded.inc({ route: ROUTE, reason });
    const once = `${ranker?.version ?? ''}|${reason}`;
    if (reason !== 'ranker_incompatible' || !incompatibleLogged.has(once)) {
      incompatibleLogged.add(once);
      ctx.logger.error(
        { request_id: requestId, err: failure, model: ranker?.version },
        'ranker failed; ranked with the heuristic',
      );
    }
  };
}

const nullIfNaN = (v: number): number | null => (Number.isFinite(v) ? v : null);

/** The first `k` ranked items as answered (features and reasons with `explain`). */
function answerItems(
  set: CandidateSet,
  outcome: RankOutcome,
  opts: { k: number; explain: boolean; now: number },
): RecommendationItemBody[] {
  const { explain, now } = opts;
  const names = new Map<string, string | null>(set.recentNames);
  for (const a of set.articles.values()) names.set(a.articleId, a.meta.prod_name ?? null);
  return outcome.items.slice(0, opts.k).map((it, i) => ({
    article_id: it.candidate.articleId,
    name: it.article.meta.prod_name ?? null,
    colour: it.article.meta.colour_group_name ?? null,
    section: it.article.meta.section_name ?? null,
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
}

/** What ranked an answer: the model, or the heuristic and why (see the module comment). */
function rankedBy(
  ctx: RouteContext,
  ranker: Ranker | null,
  outcome: RankOutcome,
  assigned: VariantAssignment | null,
): RankedByBody {
  const fallback = outcome.fallback;
  if (fallback !== null) {
    // Fixed sentences: the failure's own message (logged) may carry internals.
    const model = `model ${ranker?.version ?? '?'}`;
    const what = {
      ranker_error: `${model} failed on this request`,
      ranker_timeout: `${model} took longer than rankerTimeoutMs (${ctx.config.rankerTimeoutMs} ms)`,
      ranker_incompatible: `${model} needs features this build cannot produce`,
    }[fallback.reason];
    return {
      kind: 'heuristic',
      reason: fallback.reason,
      message: `${what}; ranked with ${HEURISTIC_VERSION}`,
    };
  }
  if (ranker === null) return { kind: 'heuristic', ...(assigned?.noModel ?? ctx.noModel()) };
  return { kind: 'model' };
}
