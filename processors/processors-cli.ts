/**
 * `npm run processors`: the processors' process. Reads the environment (common/config.ts plus
 * PROCESSOR_* settings below), builds the clients, starts the consumers and the metrics endpoint,
 * and stops cleanly on SIGINT / SIGTERM (in-flight batches finish; uncommitted ones are redelivered
 * to the next run and skipped by the event-id guards).
 */
import { z } from 'zod';
import { createRedis } from '../common/redis.ts';
import { connectStreams } from '../streams/bootstrap.ts';
import { loadConfig } from '../common/config.ts';
import { keySpace } from '../features/keys.ts';
import { createLogger } from '../common/logger.ts';
import { createIdempotentProducer } from '../streams/producer.ts';
import { createProcessorMetrics, serveMetrics } from './metrics.ts';
import { startProcessors } from './start.ts';

const env = z
  .object({
    PROCESSOR_METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9464),
    PROCESSOR_GROUP: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/)
      .default('rec-processors'),
    PROCESSOR_RECENT_CAP: z.coerce.number().int().positive().default(50),
    PROCESSOR_COPURCHASE_WINDOW_DAYS: z.coerce.number().positive().default(14),
    PROCESSOR_COPURCHASE_FANOUT: z.coerce.number().int().positive().default(20),
    PROCESSOR_DEDUP_HORIZON_DAYS: z.coerce.number().positive().default(30),
    PROCESSOR_ITEMS_CAP: z.coerce.number().int().positive().default(200),
    PROCESSOR_COPURCHASE_CAP: z.coerce.number().int().positive().default(100),
    PROCESSOR_TRENDING_CAP: z.coerce.number().int().positive().default(2_000),
    PROCESSOR_MAX_EVENT_SKEW_HOURS: z.coerce.number().nonnegative().default(24),
    PROCESSOR_SESSION_TIMEOUT_MS: z.coerce.number().int().min(6_000).default(30_000),
    PROCESSOR_POSITIONS_CHECK_MS: z.coerce.number().int().min(0).default(5_000),
  })
  .parse(process.env);

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, 'processors');
  const { kafka, topics, codecs } = await connectStreams(config, 'rec-processors', logger);
  const redis = createRedis(config, {
    // While Redis is unreachable a command fails after a reconnect attempt rather than waiting
    // forever: the consumer runner retries the batch with backoff, heartbeating, and reports the
    // partition stuck on /healthz (a command queued forever would hold the batch silently).
    maxRetriesPerRequest: 1,
    enableAutoPipelining: false,
  });
  const metrics = createProcessorMetrics();
  const server =
    env.PROCESSOR_METRICS_PORT > 0 ? await serveMetrics(metrics, env.PROCESSOR_METRICS_PORT) : null;
  const dlqProducer = createIdempotentProducer(kafka);
  await dlqProducer.connect();
  const running = await startProcessors({
    kafka,
    redis,
    codecs,
    topics,
    keys: keySpace(config.redisNamespace),
    logger,
    metrics,
    dlqProducer,
    groupPrefix: env.PROCESSOR_GROUP,
    sessionTimeoutMs: env.PROCESSOR_SESSION_TIMEOUT_MS,
    positionsCheckMs: env.PROCESSOR_POSITIONS_CHECK_MS,
    embeddings: config.embeddings,
    maxEventSkewMs: env.PROCESSOR_MAX_EVENT_SKEW_HOURS * 3_600_000,
    options: {
      recentCap: env.PROCESSOR_RECENT_CAP,
      copurchaseWindowMs: env.PROCESSOR_COPURCHASE_WINDOW_DAYS * 86_400_000,
      copurchaseFanout: env.PROCESSOR_COPURCHASE_FANOUT,
      dedupHorizonMs: env.PROCESSOR_DEDUP_HORIZON_DAYS * 86_400_000,
      itemsCap: env.PROCESSOR_ITEMS_CAP,
      copurchaseCap: env.PROCESSOR_COPURCHASE_CAP,
      trendingCap: env.PROCESSOR_TRENDING_CAP,
    },
  });
  logger.info(
    { groups: running.groups, metricsPort: env.PROCESSOR_METRICS_PORT },
    'processors running',
  );

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    void (async () => {
      await running.stop();
      await dlqProducer.disconnect();
      server?.close();
      redis.disconnect();
      process.exit(0);
    })();
  };
  process.on('SIGINT', () => {
    shutdown('SIGINT');
  });
  process.on('SIGTERM', () => {
    shutdown('SIGTERM');
  });
}

main().catch((err: unknown) => {
  console.error(
    `processors failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
  process.exit(1);
});
