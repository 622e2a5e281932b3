/**
 * `npm run serve`: the recommendation API. Reads the environment (common/config.ts plus the
 * SERVING_* settings below), serves until SIGINT / SIGTERM.
 *
 * SERVING_MAX_CANDIDATES=N (default: the app's defaults, 150 with quotas repurchase 100,
 * siblings 40, co-purchase 30, segment 30, similar 30 with EMBEDDINGS=on, global 30) caps the candidates per
 * recommendation at N and scales the quotas by the same shares of N (global trending: N). Global
 * trending fills whatever the personal sources leave, so a request holds exactly N candidates whenever the store has N to offer (a cold
 * customer gets them from global trending). The serving benchmark runs with N = 100.
 *
 * SERVING_ALLOW_FIXTURE_MODEL=true (default false) lets this instance serve an untrained fixture
 * ranker (`npm run model -- fixture`) when it is the active model. For benchmarks and tests only:
 * without it a fixture is refused and the API ranks with the heuristic `heuristic-v2` (or keeps
 * the model it had), saying so in every answer.
 *
 * SERVING_MAX_IN_FLIGHT=N (default 4 × SCORER_WORKERS) is admission control: the most
 * recommendation requests a process answers at a time; one more gets 503 REC_ERR_UNAVAILABLE with
 * `Retry-After` at once (serving/admission.ts). 0 turns the limit off.
 *
 * SERVING_SHARED_READS_MS=N (default 1000) bounds how old the article states and trending sets a
 * recommendation reuses from the process's previous ones may be (serving/candidates/shared.ts);
 * the customer's own state is always read. 0: every request reads everything.
 *
 * MODEL_SIGNING_KEY, MODEL_ALLOW_UNSIGNED, MODEL_ACTIVE_CHECK_MS (common/config.ts): which model
 * signatures the instance requires and how often it re-reads the registry's `active` pointer (see
 * docs/serving.md, "Trusted registry").
 *
 * SCORER_TIMEOUT_MS=N (default 1000; 0: off) is the scorer watchdog: a scoring request not
 * answered in N ms fails (the request is ranked with the heuristic) and its worker thread, taken
 * as hung, is terminated and replaced (serving/scoring/pool.ts). Keep it above the request
 * deadline (`rankerTimeoutMs`, 250 ms), which answers the user first.
 *
 * API_KEYS, INGEST_*, SERVED_LOG* (common/config.ts): the keys of the write routes (none: they
 * answer 403), the bounds of `POST /v1/events/purchases`, and served-list logging to
 * `recommendations.served` (on by default). Kafka and registry clients are made only when ingest
 * (a key) or logging is on; the producers connect on first use, so a Kafka away at start does not
 * stop the reads.
 * SERVING_DEMO_PAGE=on|off (default on) serves the demo storefront page at `/demo`
 * (routes/demo-page.ts). DEMO_PAGE_KEY=<one of API_KEYS> (default: none) lets that page buy: it is
 * handed to every browser that loads the page, so set it for a local demo only (`npm run demo`
 * does, with a key of its own); without it the page is read-only.
 *
 * SERVING_PROCESSES=N (default 1) runs N API processes on the one port (node:cluster,
 * serving/cluster.ts), each with its own scorer pool of SCORER_WORKERS threads and its own
 * SERVING_MAX_IN_FLIGHT; this process is then their primary: it prints the `serving on` line once
 * all serve, replaces one that dies, and stops them all on SIGINT / SIGTERM.
 */
import cluster from 'node:cluster';
import { z } from 'zod';
import { loadConfig, type Config } from '../common/config.ts';
import { keySpace } from '../features/keys.ts';
import { createLogger, type Logger } from '../common/logger.ts';
import { Secret } from '../common/redact.ts';
import type { ServingConfig } from './app.ts';
import { linkToPrimary, startPrimary, type ProcessReady } from './cluster.ts';
import { createKafka, createRegistryClient } from '../streams/kafka.ts';
import { topics } from '../streams/topics.ts';
import { createServingMetrics } from './metrics.ts';
import { defaultCandidateConfig, scaledCandidateConfig } from './candidates/index.ts';
import { startServing } from './server.ts';

const env = z
  .object({
    SERVING_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
    SERVING_HOST: z.string().default('0.0.0.0'),
    SCORER_WORKERS: z.coerce.number().int().min(1).max(16).default(2),
    SCORER_TIMEOUT_MS: z.coerce.number().int().min(0).max(600_000).default(1_000),
    SERVING_MAX_CANDIDATES: z.coerce.number().int().min(1).max(1000).optional(),
    SERVING_MAX_IN_FLIGHT: z.coerce.number().int().min(0).max(100_000).optional(),
    SERVING_SHARED_READS_MS: z.coerce.number().int().min(0).max(60_000).optional(),
    SERVING_PROCESSES: z.coerce.number().int().min(1).max(64).default(1),
    SERVING_ALLOW_FIXTURE_MODEL: z
      .enum(['true', 'false', '1', '0'], {
        error:
          'SERVING_ALLOW_FIXTURE_MODEL must be true or false (true: benchmarks and tests only)',
      })
      .default('false')
      .transform((v) => v === 'true' || v === '1'),
    SERVING_DEMO_PAGE: z
      .enum(['on', 'off', 'true', 'false', '1', '0'], {
        error: 'SERVING_DEMO_PAGE must be on or off',
      })
      .default('on')
      .transform((v) => v === 'on' || v === 'true' || v === '1'),
    // The value is never echoed: zod's messages name the rule, not the input.
    DEMO_PAGE_KEY: z.string().min(1).optional(),
  })
  .superRefine((e, ctx) => {
    if (e.DEMO_PAGE_KEY === undefined) return;
    const keys = (process.env.API_KEYS ?? '').split(',').map((k) => k.trim());
    if (!keys.includes(e.DEMO_PAGE_KEY)) {
      ctx.addIssue({
        code: 'custom',
        path: ['DEMO_PAGE_KEY'],
        message:
          'DEMO_PAGE_KEY must be one of API_KEYS (the key the demo page posts purchases with)',
      });
    }
  })
  .parse(process.env);

/** Candidate settings: the defaults, or scaled to SERVING_MAX_CANDIDATES (module comment). */
function candidateConfig(max: number | undefined, embeddings: boolean): Partial<ServingConfig> {
  const { maxCandidates, quotas } =
    max === undefined ? defaultCandidateConfig(embeddings) : scaledCandidateConfig(max, embeddings);
  return { maxCandidates, quotas, embeddings };
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, 'serving');
  if (env.SERVING_PROCESSES > 1 && cluster.isPrimary) {
    await runPrimary(logger);
  } else {
    await runProcess(config, logger);
  }
}

/** What the `serving on` line says about the ranking. */
function rankingNote(r: Pick<ProcessReady, 'model' | 'noModel'>): string {
  return r.model === null ? `— ${r.noModel ?? 'no model'}` : `(model: ${r.model})`;
}

/** SIGINT / SIGTERM run `stop` once, then the process exits 0. */
function onStopSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = () => {
    if (stopping) return;
    stopping = true;
    void stop().then(() => process.exit(0));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** SERVING_PROCESSES > 1: fork the serving processes, supervise them, stop them on a signal. */
async function runPrimary(logger: Logger): Promise<void> {
  const primary = startPrimary({ processes: env.SERVING_PROCESSES, logger });
  onStopSignals(() => primary.stop());
  const ready = await primary.ready;
  console.log(`serving on ${ready.url} ${rankingNote(ready)} [${env.SERVING_PROCESSES} processes]`);
}

/** One serving process: alone, or one of a primary's (then it reports to it). */
async function runProcess(config: Config, logger: Logger): Promise<void> {
  const metrics = createServingMetrics({ defaults: true });
  const link = cluster.isWorker ? linkToPrimary(metrics.registry) : null;
  const needsKafka = config.apiKeys.length > 0 || config.servedLog.enabled;
  const handle = await startServing({
    redisUrl: config.redisUrl,
    redisClusterNodes: config.redisClusterNodes,
    keys: keySpace(config.redisNamespace),
    logger,
    port: env.SERVING_PORT,
    host: env.SERVING_HOST,
    workers: env.SCORER_WORKERS,
    scorerTimeoutMs: env.SCORER_TIMEOUT_MS,
    allowFixtureModel: env.SERVING_ALLOW_FIXTURE_MODEL,
    trust: config.models.trust,
    activeCheckMs: config.models.activeCheckMs,
    metrics,
    ...(link === null ? {} : { metricsText: () => link.metricsText() }),
    apiKeys: config.apiKeys,
    servedLog: config.servedLog,
    ...(needsKafka
      ? {
          streams: {
            kafka: createKafka(config, 'rec-serving', logger),
            registry: createRegistryClient(config),
            topics: topics(config.topicPrefix),
          },
        }
      : {}),
    config: {
      ingest: config.ingest,
      ...candidateConfig(env.SERVING_MAX_CANDIDATES, config.embeddings.enabled),
      ...(env.SERVING_MAX_IN_FLIGHT === undefined
        ? {}
        : { maxInFlight: env.SERVING_MAX_IN_FLIGHT }),
      ...(env.SERVING_SHARED_READS_MS === undefined
        ? {}
        : { sharedReadsMaxAgeMs: env.SERVING_SHARED_READS_MS }),
      demoPage: {
        enabled: env.SERVING_DEMO_PAGE,
        ingestKey: env.DEMO_PAGE_KEY === undefined ? null : new Secret(env.DEMO_PAGE_KEY),
      },
      // Where `npm run embed` wrote the article vectors (default: the serving namespace).
      ...(config.embeddings.namespace ? { embeddingNamespace: config.embeddings.namespace } : {}),
    },
  });
  onStopSignals(() => handle.close());
  const model = handle.live.version;
  const ready: ProcessReady = {
    url: handle.url,
    model,
    noModel: model === null ? handle.live.noModel().message : null,
  };
  if (link === null) console.log(`serving on ${ready.url} ${rankingNote(ready)}`);
  else link.ready(ready);
}

main().catch((err: unknown) => {
  console.error(
    `serving failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
  process.exit(1);
});
