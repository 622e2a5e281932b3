/**
 * Wiring of one serving process: Redis clients, the live model (active version from the registry,
 * re-read on every activation announcement and every `activeCheckMs`, hot-swapped when it moved),
 * the running A/B experiment (its variants' models, re-read on the same announcements and
 * checks), the degraded-mode trending cache, the Kafka producers of HTTP ingest and served-list
 * logging (only those switched on, connected lazily), the Hono app and the
 * HTTP server. `serve-cli.ts` calls it with settings from the environment (in each worker process
 * when SERVING_PROCESSES > 1, see cluster.ts); the demo and the tests call it directly.
 */
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { createRedis } from '../common/redis.ts';
import type { Kafka } from 'kafkajs';
import type { ServedLogConfig } from '../common/config.ts';
import type { Secret } from '../common/redact.ts';
import type { SchemaRegistryClient } from '../streams/kafka.ts';
import type { Topics } from '../streams/topics.ts';
import { featureNames } from '../features/definitions.ts';
import type { KeySpace } from '../features/keys.ts';
import type { Logger } from '../common/logger.ts';
import {
  createApp,
  DEFAULT_SCORER_WORKERS,
  DEFAULT_SERVING_CONFIG,
  defaultMaxInFlight,
  type ServingConfig,
} from './app.ts';
import {
  countRedisCommands,
  createServingMetrics,
  recordScorerEvent,
  type ServingMetrics,
} from './metrics.ts';
import { HEURISTIC_VERSION } from './ranking.ts';
import { LiveModel, type SwapOutcome } from './live-model.ts';
import { LiveExperiment, type ExperimentChange } from './live-experiment.ts';
import { watchActivations } from '../models/registry.ts';
import type { ModelTrust } from '../models/signing.ts';
import { TrendingCache } from './trending-cache.ts';
import { DEFAULT_SCORER_TIMEOUT_MS, type ScorerEvent } from './scoring/pool.ts';
import { ApiKeys } from './auth.ts';
import { KafkaPurchaseSink } from './ingest.ts';
import { ServedLog } from './served-log.ts';

export interface ServingOptions {
  redisUrl: string;
  /** A Redis Cluster's seed nodes (`REDIS_CLUSTER_NODES`): a Cluster client instead of one Redis. */
  redisClusterNodes?: readonly string[] | undefined;
  keys: KeySpace;
  logger: Logger;
  port: number;
  host?: string;
  /** Scorer worker threads (one ONNX session each; default 2). */
  workers?: number;
  /**
   * Watchdog of a scoring request (ms; SCORER_TIMEOUT_MS; default 1 000; 0: none): a worker
   * that does not answer in time is terminated and replaced (serving/scoring/pool.ts).
   */
  scorerTimeoutMs?: number;
  /** Settings; `maxInFlight` defaults to `defaultMaxInFlight(workers)`. */
  config?: Partial<ServingConfig>;
  /** The metrics to record in (default: a new set, with the process's default metrics). */
  metrics?: ServingMetrics;
  /** The text of `/metrics` (default: `metrics`'; see `ServingDeps.metricsText`). */
  metricsText?: () => Promise<string>;
  /** Fixed event-time "now" (tests); by default the latest event time a request reads. */
  now?: () => number;
  onSwap?: (o: SwapOutcome) => void;
  /**
   * Serve untrained fixture models (`kind: "fixture"`) when they are active; benchmarks and tests
   * only (`npm run serve`: SERVING_ALLOW_FIXTURE_MODEL=true). Default false: they are refused and
   * the current model, or the heuristic, keeps ranking (see serving/live-model.ts).
   */
  allowFixtureModel?: boolean;
  /**
   * Which model signatures to require (config `models.trust`: MODEL_SIGNING_KEY,
   * MODEL_ALLOW_UNSIGNED). Default: no key, unsigned models accepted (docs/serving.md).
   */
  trust?: ModelTrust;
  /**
   * How often to re-read the registry's `active` pointer and experiment, catching an announcement
   * this instance missed (ms; config `models.activeCheckMs`, MODEL_ACTIVE_CHECK_MS; default
   * 30 000).
   */
  activeCheckMs?: number;
  /**
   * Kafka and the registry (clients built by the entry point) and the topics, for HTTP ingest
   * and served-list logging. Without them neither runs: the ingest route answers 503 after its
   * key check, nothing is logged.
   */
  streams?: { kafka: Kafka; registry: SchemaRegistryClient; topics: Topics };
  /**
   * The keys of the write routes (config `apiKeys`, API_KEYS). None (default): they answer 403,
   * and no ingest producer is made.
   */
  apiKeys?: readonly Secret[];
  /**
   * Served-list logging (config `servedLog`; needs `streams`). Default: on, with
   * `DEFAULT_SERVED_LOG`'s bounds.
   */
  servedLog?: ServedLogConfig;
  /** Told of every A/B experiment this instance starts or stops running. */
  onExperiment?: (c: ExperimentChange) => void;
}

/** Served-list logging's defaults (SERVED_LOG, SERVED_LOG_BUFFER, _BATCH, _FLUSH_MS). */
export const DEFAULT_SERVED_LOG: ServedLogConfig = Object.freeze({
  enabled: true,
  bufferSize: 10_000,
  batchSize: 500,
  flushMs: 100,
});

/** Default period of the `active` pointer check (`MODEL_ACTIVE_CHECK_MS`). */
export const DEFAULT_ACTIVE_CHECK_MS = 30_000;

export interface ServingHandle {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly live: LiveModel;
  /** The running A/B experiment here (`current`), or none. */
  readonly experiment: LiveExperiment;
  readonly metrics: ServingMetrics;
  /** The served-list log, when it runs (`streams` given and `servedLog.enabled`). */
  readonly servedLog: ServedLog | null;
  /**
   * Stop listening, then flush the served-list log (bounded), disconnect the producers, stop
   * the model and close the Redis clients.
   */
  close(): Promise<void>;
}

/**
 * Start one serving instance: connect, load the registry's active model (refusing an untrained
 * fixture unless `allowFixtureModel`, and a model `trust` does not accept), watch activations and
 * check the `active` pointer periodically, fill the trending cache, listen.
 */
export async function startServing(opts: ServingOptions): Promise<ServingHandle> {
  const log = opts.logger.child({ module: 'serving' });
  // Fail fast when Redis is gone: the degraded path answers from the trending cache instead.
  const redis = createRedis(opts, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    commandTimeout: 500,
    lazyConnect: true,
  });
  await redis.connect();
  const subscriber = createRedis(opts, { lazyConnect: true });
  await subscriber.connect();
  const metrics = opts.metrics ?? createServingMetrics({ defaults: true });
  countRedisCommands(redis, metrics.redisCommands);
  const workers = opts.workers ?? DEFAULT_SCORER_WORKERS;
  const config: ServingConfig = {
    ...DEFAULT_SERVING_CONFIG,
    maxInFlight: defaultMaxInFlight(workers),
    ...opts.config,
  };
  const watchdogMs = opts.scorerTimeoutMs ?? DEFAULT_SCORER_TIMEOUT_MS;
  if (watchdogMs > 0 && config.rankerTimeoutMs > 0 && watchdogMs <= config.rankerTimeoutMs) {
    // Requests are then failed as ranker errors by the watchdog before their own deadline.
    log.warn(
      { scorerTimeoutMs: watchdogMs, rankerTimeoutMs: config.rankerTimeoutMs },
      'SCORER_TIMEOUT_MS is not above the request deadline: slow requests recycle scorer workers',
    );
  }
  const pools = {
    workers,
    ...(opts.scorerTimeoutMs === undefined ? {} : { scorerTimeoutMs: opts.scorerTimeoutMs }),
    onScorerEvent: (e: ScorerEvent) => {
      recordScorerEvent(metrics, e);
      if (e.kind === 'timeout') {
        log.error(e, 'scorer watchdog: a scoring request timed out; recycling its worker');
      } else {
        log.warn(e, 'scorer worker replaced');
      }
    },
    allowFixtureModel: opts.allowFixtureModel ?? false,
    ...(opts.trust === undefined ? {} : { trust: opts.trust }),
  };
  const live = new LiveModel(redis, opts.keys, featureNames(config.embeddings), opts.logger, {
    ...pools,
    onSwap: (o) => {
      log.info(o, 'model swap');
      if (o.outcome !== 'unchanged') metrics.modelSwaps.inc({ outcome: o.outcome });
      opts.onSwap?.(o);
    },
  });
  const experiment = new LiveExperiment(
    redis,
    opts.keys,
    featureNames(config.embeddings),
    opts.logger,
    {
      ...pools,
      onChange: (c) => {
        metrics.setExperiment(c.experiment);
        opts.onExperiment?.(c);
      },
    },
  );
  /** Re-read `active` and the experiment (a hint, a reconnect, the periodic check). */
  const syncAll = () => {
    void live.sync();
    void experiment.sync();
  };
  if (live.allowsFixtureModel) {
    log.warn(
      'allowFixtureModel: this instance serves untrained fixture models (benchmarks, tests)',
    );
  }
  // A message is a hint, whatever it names: re-read `active` and the experiment (registry.ts).
  const stopWatching = await watchActivations(subscriber, opts.keys, syncAll);
  // After a reconnect (ioredis subscribes again) a message may have been missed meanwhile.
  let subscribed = false;
  const onReady = () => {
    if (subscribed) syncAll();
  };
  subscriber.on('ready', onReady);
  await Promise.all([live.sync(), experiment.sync()]);
  subscribed = true;
  const activeCheck = setInterval(syncAll, opts.activeCheckMs ?? DEFAULT_ACTIVE_CHECK_MS);
  activeCheck.unref();
  const trendingCache = new TrendingCache({
    redis,
    keys: opts.keys,
    logger: opts.logger,
    capacity: config.trendingCacheSize,
    refreshMs: config.trendingCacheRefreshMs,
  });
  await trendingCache.refresh().catch((err: unknown) => {
    log.warn(
      { err: err instanceof Error ? err.message : String(err) },
      'trending cache empty at start',
    );
  });
  trendingCache.start();
  const apiKeys = new ApiKeys(opts.apiKeys ?? []);
  const streams = opts.streams;
  // Producers only for what is on: ingest with keys, logging unless SERVED_LOG=off. Neither
  // connects here: a Kafka away at start does not stop the reads.
  const ingest =
    streams !== undefined && apiKeys.configured
      ? new KafkaPurchaseSink(streams.kafka, streams.registry, streams.topics.purchases, log)
      : null;
  const logConfig = opts.servedLog ?? DEFAULT_SERVED_LOG;
  const servedLog =
    streams !== undefined && logConfig.enabled
      ? new ServedLog({
          kafka: streams.kafka,
          registry: streams.registry,
          topic: streams.topics.served,
          logger: log,
          metrics,
          bufferSize: logConfig.bufferSize,
          batchSize: logConfig.batchSize,
          flushMs: logConfig.flushMs,
        }).start()
      : null;
  const app = createApp({
    redis,
    keys: opts.keys,
    ranker: () => live.ranker(),
    noModel: () => live.noModel(),
    assign: (customerId) => experiment.assign(customerId),
    logger: opts.logger,
    metrics,
    config,
    trendingCache,
    apiKeys,
    ...(ingest === null ? {} : { ingest }),
    ...(servedLog === null ? {} : { servedLog }),
    ...(opts.now === undefined ? {} : { now: opts.now }),
    ...(opts.metricsText === undefined ? {} : { metricsText: opts.metricsText }),
  });
  const { server, url } = await listen(app.fetch, opts.port, opts.host);
  log.info(
    {
      url,
      model: live.version ?? HEURISTIC_VERSION,
      ...(live.version ? {} : live.noModel()),
      max_in_flight: config.maxInFlight,
      ingest: ingest === null ? (apiKeys.configured ? 'no kafka' : 'off (API_KEYS empty)') : 'on',
      served_log: servedLog === null ? 'off' : 'on',
      experiment: experiment.current?.name ?? null,
    },
    'serving',
  );
  return {
    url,
    live,
    experiment,
    metrics,
    servedLog,
    async close() {
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
      await servedLog?.close();
      await ingest?.close();
      trendingCache.stop();
      clearInterval(activeCheck);
      subscriber.off('ready', onReady);
      await stopWatching();
      await Promise.all([live.close(), experiment.close()]);
      subscriber.disconnect();
      redis.disconnect();
    },
  };
}

/** Serve `fetch` on `port` (0: any free port); the server and its base URL (loopback for 0.0.0.0). */
async function listen(
  fetch: Parameters<typeof serve>[0]['fetch'],
  port: number,
  hostname?: string,
): Promise<{ server: ServerType; url: string }> {
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch, port, hostname: hostname ?? '0.0.0.0' }, () => {
      resolve(s);
    });
  });
  const address = server.address() as AddressInfo;
  const host = hostname === undefined || hostname === '0.0.0.0' ? '127.0.0.1' : hostname;
  return { server, url: `http://${host}:${address.port}` };
}
