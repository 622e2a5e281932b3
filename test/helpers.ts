/**
 * Test helpers for suites against the real stack: services from the environment (set by the
 * global setup), a random topic prefix per suite, `waitFor` with a timeout, and cleanup.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import type { Kafka, Producer } from 'kafkajs';
import type { RedisClient } from '../common/redis.ts';
import type { ProcessorMetrics } from '../processors/metrics.ts';
import type { RunningProcessors } from '../processors/start.ts';
import { bootstrap, type Codecs } from '../streams/bootstrap.ts';
import { loadConfig, type Config, type EmbeddingsSwitch } from '../common/config.ts';
import type { KeySpace } from '../features/keys.ts';
import type { Served } from '../schemas/events.ts';
import { createIdempotentProducer } from '../streams/producer.ts';
import { createKafka, createRegistryClient, type SchemaRegistryClient } from '../streams/kafka.ts';
import { createLogger, type Logger } from '../common/logger.ts';
import { topics, allTopics, type Topics } from '../streams/topics.ts';

export interface StackContext {
  config: Config;
  kafka: Kafka;
  registry: SchemaRegistryClient;
  logger: Logger;
  prefix: string;
  topics: Topics;
  /** Delete this suite's topics. */
  cleanup(): Promise<void>;
}

/**
 * A suite's context: clients for the services of `config` (default: the environment's, the shared
 * stack; a fault suite passes the config of a private stack), its own topic prefix.
 */
export function stackContext(
  name: string,
  purchasePartitions = 3,
  config: Config = loadConfig(),
): StackContext {
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent', `test-${name}`);
  const kafka = createKafka(config, `test-${name}`, logger);
  const prefix = `test-${name}-${randomUUID().slice(0, 8)}.`;
  const t = topics(prefix, purchasePartitions, config.kafkaReplicationFactor);
  return {
    config,
    kafka,
    registry: createRegistryClient(config),
    logger,
    prefix,
    topics: t,
    async cleanup() {
      const admin = kafka.admin();
      await admin.connect();
      try {
        const existing = new Set(await admin.listTopics());
        const mine = allTopics(t)
          .flatMap((d) => [d.name, d.dlq])
          .filter((n) => existing.has(n));
        if (mine.length > 0) await admin.deleteTopics({ topics: mine });
      } finally {
        await admin.disconnect();
      }
    },
  };
}

/** A port nothing listens on right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address === null || typeof address === 'string') fail(new Error('no port'));
        else ok(address.port);
      });
    });
  });
}

/** Poll `check` until it returns a value other than undefined/false, or fail after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last instanceof Error ? last.message : JSON.stringify(last)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Run the real processors (every consumer group, taste included) over the suite's topics into
 * `keys` until they caught up with the end offsets, then stop them. Returns the codecs. Embeddings
 * as `embeddings` says (default: as the environment's EMBEDDINGS, config `embeddings`).
 */
export async function processAll(
  ctx: StackContext,
  redis: RedisClient,
  keys: KeySpace,
  groupPrefix: string,
  timeoutMs = 60_000,
  embeddings: EmbeddingsSwitch = loadConfig().embeddings,
): Promise<Codecs> {
  const { startProcessors } = await import('../processors/start.ts');
  const { createProcessorMetrics } = await import('../processors/metrics.ts');
  const { codecs } = await bootstrap(ctx);
  const producer = createIdempotentProducer(ctx.kafka);
  await producer.connect();
  try {
    const running = await startProcessors({
      kafka: ctx.kafka,
      redis,
      codecs,
      topics: ctx.topics,
      keys,
      logger: ctx.logger,
      metrics: createProcessorMetrics(false),
      dlqProducer: producer,
      groupPrefix,
      embeddings,
    });
    try {
      await running.caughtUp(timeoutMs);
    } finally {
      await running.stop();
    }
  } finally {
    await producer.disconnect();
  }
  return codecs;
}

/**
 * Start the real processors (every consumer group) over `ctx`'s topics into `keys`, left running
 * (stop them); with fresh metrics unless given. For fault tests that act while they run.
 */
export async function startSuiteProcessors(
  ctx: Pick<StackContext, 'kafka' | 'topics' | 'logger'>,
  opts: {
    readonly redis: RedisClient;
    readonly keys: KeySpace;
    readonly codecs: Codecs;
    readonly producer: Producer;
    readonly groupPrefix: string;
    readonly sessionTimeoutMs?: number;
    readonly positionsCheckMs?: number;
    readonly metrics?: ProcessorMetrics;
  },
): Promise<{ running: RunningProcessors; metrics: ProcessorMetrics }> {
  const { startProcessors } = await import('../processors/start.ts');
  const { createProcessorMetrics } = await import('../processors/metrics.ts');
  const metrics = opts.metrics ?? createProcessorMetrics(false);
  const running = await startProcessors({
    kafka: ctx.kafka,
    redis: opts.redis,
    codecs: opts.codecs,
    topics: ctx.topics,
    keys: opts.keys,
    logger: ctx.logger,
    metrics,
    dlqProducer: opts.producer,
    groupPrefix: opts.groupPrefix,
    ...(opts.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: opts.sessionTimeoutMs }),
    ...(opts.positionsCheckMs === undefined ? {} : { positionsCheckMs: opts.positionsCheckMs }),
  });
  return { running, metrics };
}

/** What a CLI run as a child process printed, its exit code and how long it took. */
export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly seconds: number;
}

/**
 * Run one of the project's TypeScript CLIs (`script`, relative to the repository root) as a child
 * process with tsx, as `npm run` would, with `env` over the test's environment (LOG_LEVEL warn
 * unless given).
 */
export function runTsCli(
  script: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<CliRun> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
      cwd: process.cwd(),
      env: { ...process.env, LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, stdout, stderr, seconds: (performance.now() - started) / 1000 });
    });
  });
}

/** Every record on the suite's `recommendations.served` topic so far, decoded with the registry. */
export async function readServed(
  ctx: Pick<StackContext, 'kafka' | 'registry' | 'topics' | 'logger'>,
): Promise<Served[]> {
  const { AvroCodec } = await import('../streams/avro.ts');
  const { replay } = await import('../streams/replay.ts');
  const codec = await AvroCodec.forTopic(ctx.registry, ctx.topics.served);
  const records: Served[] = [];
  await replay({
    kafka: ctx.kafka,
    topic: ctx.topics.served,
    codec,
    from: 0,
    to: Date.now() + 60_000,
    logger: ctx.logger,
    onRecords: (rs) => {
      for (const r of rs) records.push(r.value);
    },
  });
  return records;
}
