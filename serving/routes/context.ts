/**
 * What the route modules share: the request's variables (`AppEnv`), the services and clocks a
 * route uses (`RouteContext`, made once per app), the error responses every OpenAPI route
 * documents, and `took_ms`.
 */
import type { RedisClient } from '../../common/redis.ts';
import type { Logger } from '../../common/logger.ts';
import type { KeySpace } from '../../features/keys.ts';
import { ErrorResponse } from '../api-schemas.ts';
import { ApiKeys } from '../auth.ts';
import type { PurchaseSink } from '../ingest.ts';
import type { ServedSink } from '../served-log.ts';
import { SharedReads, eventTimeNow } from '../candidates/index.ts';
import type { ServingConfig, ServingDeps } from '../deps.ts';
import type { VariantAssignment } from '../live-experiment.ts';
import type { ServingMetrics } from '../metrics.ts';
import { NO_MODEL, type NoModel, type Ranker } from '../ranking.ts';
import type { TrendingCache } from '../trending-cache.ts';

export interface AppEnv {
  Variables: {
    requestId: string;
    /**
     * Milliseconds a ranked recommendation spent in its candidates, features and scoring stages
     * (routes/recommendations.ts); the request middleware counts the rest as the `http` stage.
     */
    stagesMs?: number;
  };
}

export interface RouteContext {
  readonly redis: RedisClient;
  readonly keys: KeySpace;
  readonly config: ServingConfig;
  readonly metrics: ServingMetrics;
  /** The app's logger (`module: serving`). */
  readonly logger: Logger;
  /** The degraded-mode cache (degraded.ts). */
  readonly cache: TrendingCache;
  /**
   * What recommendations share (article states, trending sets), reused for at most
   * `config.sharedReadsMaxAgeMs` (`deps.sharedReads` when given); null when that is 0.
   */
  readonly shared: SharedReads | null;
  /** The current model, or null (heuristic ranking); asked once per request (hot swaps). */
  readonly ranker: () => Ranker | null;
  /** The text of `/metrics` (`deps.metricsText`, else the app's registry). */
  readonly metricsText: () => Promise<string>;
  /** Why `ranker()` is null (default: no promoted model). */
  readonly noModel: () => NoModel;
  /** A customer's A/B variant, or null when no experiment runs (`deps.assign`). */
  readonly assign: (customerId: string) => VariantAssignment | null;
  /**
   * The event-time "now" of a request: `deps.now()` when given, else the latest event time the
   * request read from the store (`times`, see `eventTimeNow`), else the wall clock.
   */
  readonly eventNow: (times: Iterable<number | null | undefined>) => number;
  /** The "now" of an answer from the cache: `deps.now()`, else its latest sale, else the clock. */
  readonly cacheNow: () => number;
  /** The keys of the write routes (none: they answer 403). */
  readonly apiKeys: ApiKeys;
  /** Where ingested purchases go; null without Kafka (the ingest route answers 503). */
  readonly ingest: PurchaseSink | null;
  /** Where 200 answers of /v1/recommendations are logged; null: not logged. */
  readonly servedLog: ServedSink | null;
}

export function routeContext(
  deps: ServingDeps,
  logger: Logger,
  cache: TrendingCache,
): RouteContext {
  return {
    redis: deps.redis,
    keys: deps.keys,
    config: deps.config,
    metrics: deps.metrics,
    logger,
    cache,
    shared:
      deps.sharedReads ??
      (deps.config.sharedReadsMaxAgeMs > 0
        ? new SharedReads({ maxAgeMs: deps.config.sharedReadsMaxAgeMs })
        : null),
    ranker: () => deps.ranker(),
    metricsText: deps.metricsText ?? (() => deps.metrics.registry.metrics()),
    noModel: () => deps.noModel?.() ?? NO_MODEL,
    assign: deps.assign ?? noExperiment,
    eventNow: (times) => deps.now?.() ?? eventTimeNow(times, Date.now()),
    cacheNow: () => deps.now?.() ?? cache.latestEventTime() ?? Date.now(),
    apiKeys: deps.apiKeys ?? new ApiKeys([]),
    ingest: deps.ingest ?? null,
    servedLog: deps.servedLog ?? null,
  };
}

const noExperiment = (): null => null;

/**
 * Count an experiment's answer in the per-variant metrics (nothing without an experiment): the
 * answer, its items and its time, by variant (and the model version that ranked it).
 */
export function recordVariant(
  ctx: RouteContext,
  assigned: VariantAssignment | null,
  answer: { model_version: string; items: readonly unknown[]; took_ms: number },
): void {
  if (assigned === null) return;
  const { experiment, variant } = assigned;
  const m = ctx.metrics;
  m.experimentAnswers.inc({ experiment, variant, model_version: answer.model_version });
  m.experimentItems.inc({ experiment, variant }, answer.items.length);
  m.experimentSeconds.observe({ experiment, variant }, answer.took_ms / 1000);
}

/** The error responses of every OpenAPI route. */
export const ERROR_RESPONSES = {
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

export const round2 = (x: number): number => Math.round(x * 100) / 100;

/** `took_ms` of an answer: milliseconds since `t0`, to two decimals. */
export const tookMs = (t0: number): number => round2(performance.now() - t0);
