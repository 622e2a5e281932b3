/**
 * Prometheus metrics of the serving API (`rec_serving_*`), in their own registry (exposed by the
 * app's `/metrics` route).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RedisClient } from '../common/redis.ts';
import type { ScorerEvent } from './scoring/pool.ts';

/** Why a response was degraded. */
export type DegradedReason =
  'store_unavailable' | 'ranker_error' | 'ranker_timeout' | 'ranker_incompatible';

/**
 * The stages of a ranked recommendation request: `candidates` (the candidate reads), `features`
 * (building the feature rows), `scoring` (the model through the scorer pool, or the heuristic, and
 * the sort) and `http` (the rest of the request in the server: routing, validation, the
 * middleware, building and serialising the answer).
 */
export type Stage = 'candidates' | 'features' | 'scoring' | 'http';

export interface ServingMetrics {
  readonly registry: Registry;
  /** Request latency by route pattern (e.g. `/v1/recommendations/:customerId`) and status. */
  readonly requestSeconds: Histogram<'route' | 'status'>;
  /** Candidates scored per recommendation request. */
  readonly candidates: Histogram;
  /** Sequential Redis round trips per recommendation request. */
  readonly redisRoundTrips: Histogram;
  /** Seconds per stage of each ranked recommendation request (`Stage`). */
  readonly stageSeconds: Histogram<'stage'>;
  /** Commands sent by the instance's Redis client (`countRedisCommands`). */
  readonly redisCommands: Counter;
  /** Responses served degraded, by route and reason. */
  readonly degraded: Counter<'route' | 'reason'>;
  /** Ranker failures (each fell back to the heuristic), by reason. */
  readonly rankerErrors: Counter<'reason'>;
  /** Requests being answered, by guarded route (admission.ts). */
  readonly inFlight: Gauge<'route'>;
  /** The most requests of a guarded route answered at a time (`maxInFlight`; 0: no limit). */
  readonly inFlightLimit: Gauge<'route'>;
  /** Requests refused with 503 because the route's limit was reached, by route. */
  readonly rejected: Counter<'route'>;
  /** Scoring requests the scorer watchdog failed (`SCORER_TIMEOUT_MS`). */
  readonly scorerTimeouts: Counter;
  /** Scorer workers replaced, by reason: `timeout` (hung, terminated) or `exit` (crashed). */
  readonly scorerRecycled: Counter<'reason'>;
  /**
   * Model activation attempts of this instance by outcome: `activated`, `rejected` (failed a
   * check; marked in the registry) or `refused` (a fixture without the opt-in). A refused
   * `active` version counts once, not at every periodic re-check.
   */
  readonly modelSwaps: Counter<'outcome'>;
  /** 1 for the model version that ranked the latest request (`heuristic-v2` without a model). */
  readonly modelVersion: Gauge<'version'>;
  /** Set the model version gauge to `version` (only one series is 1 at a time). */
  setModelVersion(version: string): void;
  /** Write requests refused by the API-key check, by reason (auth.ts `AuthRefusal`). */
  readonly authRefused: Counter<'reason'>;
  /** Events of `POST /v1/events/purchases`, by status: accepted (acknowledged by Kafka), invalid. */
  readonly ingestEvents: Counter<'status'>;
  /** Served-list records acknowledged by Kafka (served-log.ts). */
  readonly servedLogSent: Counter;
  /** Served-list records dropped, by reason: buffer_full, kafka_unavailable, send_failed, invalid. */
  readonly servedLogDropped: Counter<'reason'>;
  /** Served-list records waiting to be sent (read at each scrape from `readServedLogBuffer`). */
  readonly servedLogBuffered: Gauge;
  /** Where `servedLogBuffered` reads its value when scraped (the served log's buffer length). */
  readServedLogBuffer(read: () => number): void;
  /**
   * Answers of an A/B experiment (degraded ones included), by experiment, variant and the model
   * version that ranked them (`heuristic-v2`, `trending-cache` when not the variant's model).
   */
  readonly experimentAnswers: Counter<'experiment' | 'variant' | 'model_version'>;
  /** Items answered per experiment and variant. */
  readonly experimentItems: Counter<'experiment' | 'variant'>;
  /** Time of an experiment's answers in the route (its `took_ms`), by experiment and variant. */
  readonly experimentSeconds: Histogram<'experiment' | 'variant'>;
  /** The running experiment's variants and weights (one series per variant; none without one). */
  readonly experimentVariants: Gauge<'experiment' | 'variant' | 'model' | 'served_by'>;
  /** Set the variants gauge to the experiment this instance runs (null: none). */
  setExperiment(
    experiment: {
      name: string;
      variants: readonly { name: string; model: string; weight: number; servedBy: string }[];
    } | null,
  ): void;
}

/**
 * How often the default metrics sample the event loop (ms; prom-client's
 * `eventLoopMonitoringPrecision`). Their `rec_serving_nodejs_eventloop_lag_*` gauges are the
 * intervals between two samples, so an idle loop reads this much: a delay is the gauge less it.
 */
export const EVENT_LOOP_SAMPLE_MS = 10;

/** Node's and the process's default metrics, named `rec_serving_*`, into `register`. */
export function collectServingDefaults(register: Registry): void {
  collectDefaultMetrics({
    register,
    prefix: 'rec_serving_',
    eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
  });
}

export function createServingMetrics(opts: { defaults?: boolean } = {}): ServingMetrics {
  const registry = new Registry();
  if (opts.defaults ?? false) collectServingDefaults(registry);
  const registers = [registry];
  const requestSeconds = new Histogram({
    name: 'rec_serving_request_duration_seconds',
    help: 'HTTP request latency by route pattern and status',
    labelNames: ['route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const candidates = new Histogram({
    name: 'rec_serving_candidates',
    help: 'Candidates scored per recommendation request',
    buckets: [0, 10, 25, 50, 75, 100, 150, 200, 300],
    registers,
  });
  const redisRoundTrips = new Histogram({
    name: 'rec_serving_redis_round_trips',
    help: 'Sequential Redis round trips per recommendation request',
    buckets: [1, 2, 3, 4, 5],
    registers,
  });
  const stageSeconds = new Histogram({
    name: 'rec_serving_stage_duration_seconds',
    help: 'Time of each stage of a ranked recommendation request: candidates, features, scoring, http (the rest)',
    labelNames: ['stage'] as const,
    buckets: [
      0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
      0.015, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 5,
    ],
    registers,
  });
  const redisCommands = new Counter({
    name: 'rec_serving_redis_commands_total',
    help: 'Commands sent by the Redis client of the instance (pipelined and scripted ones included)',
    registers,
  });
  const degraded = new Counter({
    name: 'rec_serving_degraded_responses_total',
    help: 'Responses served degraded (trending cache while Redis is down, heuristic after a ranker failure)',
    labelNames: ['route', 'reason'] as const,
    registers,
  });
  const rankerErrors = new Counter({
    name: 'rec_serving_ranker_errors_total',
    help: 'Ranker failures; each request fell back to the heuristic',
    labelNames: ['reason'] as const,
    registers,
  });
  // With SERVING_PROCESSES > 1, /metrics sums every process's series (cluster.ts): the in-flight
  // figures and the limit are the whole instance's.
  const inFlight = new Gauge({
    name: 'rec_serving_in_flight_requests',
    help: 'Requests being answered, by route guarded by admission control',
    labelNames: ['route'] as const,
    registers,
  });
  const inFlightLimit = new Gauge({
    name: 'rec_serving_in_flight_limit',
    help: 'Most requests of the route answered at a time; more are refused with 503 (0: no limit)',
    labelNames: ['route'] as const,
    registers,
  });
  const rejected = new Counter({
    name: 'rec_serving_rejected_requests_total',
    help: 'Requests refused with 503 and Retry-After because the route was at its in-flight limit',
    labelNames: ['route'] as const,
    registers,
  });
  const scorerTimeouts = new Counter({
    name: 'rec_serving_scorer_timeouts_total',
    help: 'Scoring requests not answered within SCORER_TIMEOUT_MS; each recycles its worker',
    registers,
  });
  const scorerRecycled = new Counter({
    name: 'rec_serving_scorer_recycled_total',
    help: 'Scorer worker threads replaced: timeout (hung, terminated by the watchdog) or exit (crashed)',
    labelNames: ['reason'] as const,
    registers,
  });
  const modelSwaps = new Counter({
    name: 'rec_serving_model_swaps_total',
    help: 'Model activation attempts by outcome: activated, rejected (failed a check) or refused (fixture without the opt-in)',
    labelNames: ['outcome'] as const,
    registers,
  });
  const modelVersion = new Gauge({
    name: 'rec_serving_model_version',
    help: 'Model version that ranked the latest request (value 1)',
    labelNames: ['version'] as const,
    registers,
    // 1, not the number of processes, when several serve (cluster.ts sums the others).
    aggregator: 'max',
  });
  const authRefused = new Counter({
    name: 'rec_serving_auth_refused_total',
    help: 'Write requests refused by the API-key check: no_keys (API_KEYS empty, 403), missing or invalid key (401)',
    labelNames: ['reason'] as const,
    registers,
  });
  const ingestEvents = new Counter({
    name: 'rec_serving_ingest_events_total',
    help: 'Events posted to /v1/events/purchases: accepted (acknowledged by Kafka), invalid, or late (refused: before the dedup horizon cut)',
    labelNames: ['status'] as const,
    registers,
  });
  const servedLogSent = new Counter({
    name: 'rec_served_log_sent_total',
    help: 'Answers of /v1/recommendations logged to recommendations.served (acknowledged by Kafka)',
    registers,
  });
  const servedLogDropped = new Counter({
    name: 'rec_served_log_dropped_total',
    help: 'Answers not logged: buffer_full (SERVED_LOG_BUFFER), kafka_unavailable, send_failed, invalid',
    labelNames: ['reason'] as const,
    registers,
  });
  let bufferLength: (() => number) | null = null;
  const servedLogBuffered = new Gauge({
    name: 'rec_served_log_buffered',
    help: 'Answers waiting to be logged to recommendations.served',
    registers,
    collect() {
      if (bufferLength !== null) this.set(bufferLength());
    },
  });
  const experimentAnswers = new Counter({
    name: 'rec_serving_experiment_answers_total',
    help: 'Recommendation answers of an A/B experiment, by experiment, variant and the model version that ranked them',
    labelNames: ['experiment', 'variant', 'model_version'] as const,
    registers,
  });
  const experimentItems = new Counter({
    name: 'rec_serving_experiment_items_total',
    help: 'Items answered by an A/B experiment, by experiment and variant',
    labelNames: ['experiment', 'variant'] as const,
    registers,
  });
  const experimentSeconds = new Histogram({
    name: 'rec_serving_experiment_answer_duration_seconds',
    help: "Time of an A/B experiment's answers in the route (took_ms), by experiment and variant",
    labelNames: ['experiment', 'variant'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const experimentVariants = new Gauge({
    name: 'rec_serving_experiment_variant_weight',
    help: 'Weight of each variant of the running A/B experiment, with the model it names and what ranks it here (served_by: the model, or heuristic-v2 when it was refused)',
    labelNames: ['experiment', 'variant', 'model', 'served_by'] as const,
    registers,
    // The weight, not the number of processes, when several serve (cluster.ts sums the others).
    aggregator: 'max',
  });
  let current: string | null = null;
  return {
    authRefused,
    ingestEvents,
    servedLogSent,
    servedLogDropped,
    servedLogBuffered,
    readServedLogBuffer(read) {
      bufferLength = read;
    },
    registry,
    requestSeconds,
    candidates,
    redisRoundTrips,
    stageSeconds,
    redisCommands,
    degraded,
    rankerErrors,
    inFlight,
    inFlightLimit,
    rejected,
    scorerTimeouts,
    scorerRecycled,
    modelSwaps,
    modelVersion,
    setModelVersion(version) {
      if (version === current) return;
      modelVersion.reset();
      modelVersion.labels(version).set(1);
      current = version;
    },
    experimentAnswers,
    experimentItems,
    experimentSeconds,
    experimentVariants,
    setExperiment(experiment) {
      experimentVariants.reset();
      for (const v of experiment?.variants ?? []) {
        experimentVariants
          .labels({
            experiment: experiment?.name ?? '',
            variant: v.name,
            model: v.model,
            served_by: v.servedBy,
          })
          .set(v.weight);
      }
    },
  };
}

/** Count a scorer pool's watchdog timeouts and worker replacements (`ScorerPoolOptions.onEvent`). */
export function recordScorerEvent(metrics: ServingMetrics, e: ScorerEvent): void {
  if (e.kind === 'timeout') metrics.scorerTimeouts.inc();
  else metrics.scorerRecycled.labels(e.reason).inc();
}

/**
 * Count every command `redis` sends in `counter`: its `sendCommand`, which plain, pipelined and
 * scripted commands all go through, wrapped.
 */
export function countRedisCommands(redis: RedisClient, counter: Counter): void {
  // Redis and Cluster both route every command through `sendCommand` (a Cluster's pipelines
  // send their commands one by one: common/redis.ts).
  const target = redis as unknown as { sendCommand: (...args: unknown[]) => unknown };
  const send = target.sendCommand.bind(redis);
  target.sendCommand = (...args: unknown[]) => {
    counter.inc();
    return send(...args);
  };
}
