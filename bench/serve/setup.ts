/**
 * What one benchmark run owns and removes afterwards: fresh topic, consumer-group and Redis
 * namespace names, the Kafka client and admin and the Redis client, the environment of its child
 * processes, the model folder; and the children themselves (stopped first when the run ends).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Admin, Kafka } from 'kafkajs';
import { pino, type Logger } from 'pino';
import { createRedis, deleteMatching, type RedisClient } from '../../common/redis.ts';
import { loadConfig, type Config, type Endpoints } from '../../common/config.ts';
import { createLogger } from '../../common/logger.ts';
import { keySpace, type KeySpace } from '../../features/keys.ts';
import { ensureStack } from '../../stack/stack.ts';
import { createKafka } from '../../streams/kafka.ts';
import { allTopics, topics as makeTopics, type Topics } from '../../streams/topics.ts';
import { stopChild, type Child } from './children.ts';
import { message, say } from './stats.ts';

export interface BenchRun {
  readonly config: Config;
  readonly logger: Logger;
  readonly endpoints: Endpoints;
  /** Prefix of the run's topics (`bench-serve-<id>.`). */
  readonly prefix: string;
  /** The run's Redis namespace. */
  readonly ns: string;
  /** Prefix of the processors' consumer groups. */
  readonly groupPrefix: string;
  readonly keys: KeySpace;
  readonly topics: Topics;
  readonly redis: RedisClient;
  readonly kafka: Kafka;
  readonly admin: Admin;
  /** Environment of the child processes (the stack's endpoints, the namespace). */
  readonly childEnv: NodeJS.ProcessEnv;
  /** The processors' consumer groups, one per input topic. */
  readonly groups: readonly { readonly group: string; readonly topic: string }[];
  readonly modelDir: string;
  /** The child processes running, stopped by `closeRun`. */
  readonly children: { processors: Child | null; api: Child | null };
}

/** Bring the stack up and open a run on it. */
export async function openRun(): Promise<BenchRun> {
  const config = loadConfig();
  // Logs on stderr: stdout carries only the result line.
  const logger = createLogger('warn', 'bench', pino.destination(2));
  const endpoints = await ensureStack(config, say);
  const runId = randomUUID().slice(0, 8);
  const prefix = `bench-serve-${runId}.`;
  const ns = `benchserve${runId}`;
  const groupPrefix = `bench-serve-${runId}`;
  const topics = makeTopics(prefix);
  const kafka = createKafka(endpoints, 'rec-bench-serve', logger);
  const redis = createRedis(endpoints, { maxRetriesPerRequest: null });
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    KAFKA_BROKERS: endpoints.kafkaBrokers.join(','),
    SCHEMA_REGISTRY_URL: endpoints.schemaRegistryUrl,
    REDIS_URL: endpoints.redisUrl,
    REDIS_NAMESPACE: ns,
    LOG_LEVEL: 'warn',
  };
  const groups = [topics.articles, topics.customers, topics.purchases].map((t) => ({
    group: `${groupPrefix}.${t.name}`,
    topic: t.name,
  }));
  const modelDir = mkdtempSync(join(tmpdir(), 'rec-bench-serve-'));
  const admin = kafka.admin();
  await admin.connect();
  return {
    config,
    logger,
    endpoints,
    prefix,
    ns,
    groupPrefix,
    keys: keySpace(ns),
    topics,
    redis,
    kafka,
    admin,
    childEnv,
    groups,
    modelDir,
    children: { processors: null, api: null },
  };
}

/** Stop the children; delete the run's topics, consumer groups, keys and model folder. */
export async function closeRun(run: BenchRun): Promise<void> {
  const { admin, redis } = run;
  await stopChild(run.children.api);
  await stopChild(run.children.processors);
  await admin
    .deleteTopics({ topics: allTopics(run.topics).flatMap((d) => [d.name, d.dlq]) })
    .catch((err: unknown) => {
      say(`could not delete topics: ${message(err)}`);
    });
  await admin.deleteGroups(run.groups.map((g) => g.group)).catch(() => undefined);
  await admin.disconnect();
  await deleteMatching(redis, `${run.ns}:*`);
  redis.disconnect();
  rmSync(run.modelDir, { recursive: true, force: true });
}
