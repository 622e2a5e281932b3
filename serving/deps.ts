/**
 * What the serving API (`createApp`, app.ts) is built from: its configuration, with defaults, and
 * everything it uses, injected — no module singletons, no environment reading — so tests and the
 * server entry point wire it alike.
 */
import type { RedisClient } from '../common/redis.ts';
import type { IngestConfig } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import type { Secret } from '../common/redact.ts';
import type { KeySpace } from '../features/keys.ts';
import {
  DEFAULT_CANDIDATE_CONFIG,
  type CandidateConfig,
  type SharedReads,
} from './candidates/index.ts';
import type { ApiKeys } from './auth.ts';
import type { PurchaseSink } from './ingest.ts';
import type { ServingMetrics } from './metrics.ts';
import type { VariantAssignment } from './live-experiment.ts';
import type { NoModel, Ranker } from './ranking.ts';
import type { ServedSink } from './served-log.ts';
import type { TrendingCache } from './trending-cache.ts';

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
  /**
   * Admission control (admission.ts): the most recommendation requests this process answers at a
   * time; one more is refused with 503 and `Retry-After`. 0: no limit. Default
   * `defaultMaxInFlight(scorer workers)`.
   */
  readonly maxInFlight: number;
  /**
   * Article states and trending sets read for a recommendation are reused by the app's next
   * ones for at most this long (ms, wall clock; 0: every request reads them): the staleness bound
   * of what all requests share (candidates/shared.ts). Customer state is always read.
   */
  readonly sharedReadsMaxAgeMs: number;
  /** Bounds of `POST /v1/events/purchases` (INGEST_MAX_EVENTS, INGEST_MAX_BYTES, INGEST_TIMEOUT_MS). */
  readonly ingest: IngestConfig;
  /**
   * The demo storefront page at `/demo` (routes/demo-page.ts): served when `enabled`; it may post
   * purchases only with `ingestKey` (DEMO_PAGE_KEY), which `/demo/config.json` hands to whoever
   * loads the page — never set by default.
   */
  readonly demoPage: { readonly enabled: boolean; readonly ingestKey: Secret | null };
}

/** The ingest bounds unless configured (common/config.ts). */
export const DEFAULT_INGEST_CONFIG: IngestConfig = Object.freeze({
  maxEvents: 500,
  maxBytes: 1024 * 1024,
  timeoutMs: 5_000,
});

/** Scorer worker threads of an instance unless told otherwise (`SCORER_WORKERS`). */
export const DEFAULT_SCORER_WORKERS = 2;

/**
 * Recommendation requests in flight per scorer thread by default. SCORER_WORKERS is sized to the
 * cores an instance may use, and those cores answer everything a request needs: with 100
 * candidates and 500 trees (`npm run bench:serve`) about 6 ms of CPU per answer, 1.4 ms of it in a
 * scorer thread and most of the rest the event loop's candidate reads. The last of 4 × 2 = 8
 * admitted requests so waits for about 7 others' CPU, some 50 ms on a core of its own. Admitting
 * twice as many would double that wait for no more throughput; half as many would likely refuse
 * bursts far below capacity (at a third of it, 100 requests/s, p99 was already 49 ms).
 */
export const IN_FLIGHT_PER_SCORER = 4;

/** The default `maxInFlight` of a process with `scorerWorkers` scorer threads. */
export function defaultMaxInFlight(scorerWorkers: number): number {
  return IN_FLIGHT_PER_SCORER * Math.max(1, scorerWorkers);
}

export const DEFAULT_SERVING_CONFIG: ServingConfig = {
  ...DEFAULT_CANDIDATE_CONFIG,
  maxInFlight: defaultMaxInFlight(DEFAULT_SCORER_WORKERS),
  rankerTimeoutMs: 250,
  requireModel: false,
  readyTimeoutMs: 500,
  trendingCacheSize: 200,
  trendingCacheRefreshMs: 10_000,
  sharedReadsMaxAgeMs: 1_000,
  ingest: DEFAULT_INGEST_CONFIG,
  demoPage: { enabled: true, ingestKey: null },
};

export interface ServingDeps {
  /**
   * The caller's client. Create it so that an outage fails fast instead of queueing: `new
   * Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 200 })`.
   */
  readonly redis: RedisClient;
  readonly keys: KeySpace;
  /** The current model, or null (heuristic ranking). Asked once per request (hot swaps). */
  readonly ranker: () => Ranker | null;
  /**
   * Why `ranker()` is null, for the answers and `/readyz` (LiveModel.noModel). Default: no
   * promoted model.
   */
  readonly noModel?: () => NoModel;
  /**
   * The A/B variant of a customer's recommendation request (LiveExperiment.assign), or null when
   * no experiment runs: then `ranker()` ranks and the answer's variant is 'default'. Default: none.
   */
  readonly assign?: (customerId: string) => VariantAssignment | null;
  readonly logger: Logger;
  readonly metrics: ServingMetrics;
  readonly config: ServingConfig;
  /** Event-time "now" (ms); see `RouteContext.eventNow` (routes/context.ts) when absent. */
  readonly now?: () => number;
  /**
   * The degraded-mode cache. When absent, the app makes one over `redis` that refreshes on demand
   * (a request finding it older than `trendingCacheRefreshMs` starts a background refresh); pass
   * one to share it or to run its periodic timer (`start()`), which the app never starts itself.
   */
  readonly trendingCache?: TrendingCache;
  /**
   * The text `/metrics` answers. Default: `metrics.registry`'s. A process of several
   * (`SERVING_PROCESSES`) answers every process's, summed by the primary (cluster.ts).
   */
  readonly metricsText?: () => Promise<string>;
  /**
   * What recommendations share (candidates/shared.ts). When absent, the app makes one from
   * `config.sharedReadsMaxAgeMs` (none when it is 0); pass one to set its clock (tests).
   */
  readonly sharedReads?: SharedReads;
  /** The keys of the write routes (auth.ts). Default: none, so the write routes answer 403. */
  readonly apiKeys?: ApiKeys;
  /**
   * Where `POST /v1/events/purchases` produces (ingest.ts `KafkaPurchaseSink`). Absent: the route
   * answers 503 after the key check (an instance without Kafka).
   */
  readonly ingest?: PurchaseSink;
  /** Where every 200 answer of /v1/recommendations is logged (served-log.ts). Absent: not logged. */
  readonly servedLog?: ServedSink;
}
