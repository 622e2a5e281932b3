/**
 * Bootstrapping the event plumbing: create the topics (and DLQs) and register their schemas, then
 * hand back one codec per topic. Idempotent; every process that produces or consumes calls it.
 * A broker or registry that is restarting is waited for (`BOOTSTRAP_RETRY`), so a process started
 * during such an outage starts when it ends instead of failing.
 */
import type { Kafka } from 'kafkajs';
import { ensureTopics, type EnsureTopicsResult } from './admin.ts';
import { AvroCodec } from './avro.ts';
import {
  createKafka,
  createRegistryClient,
  type KafkaEndpoint,
  type RegistryEndpoint,
  type SchemaRegistryClient,
} from './kafka.ts';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { retryTransient, type RetryPolicy } from './retriable.ts';
import { allTopics, topics as makeTopics, type Topics } from './topics.ts';
import type { Article, Customer, Purchase } from '../schemas/events.ts';

export interface Codecs {
  readonly purchases: AvroCodec<Purchase>;
  readonly articles: AvroCodec<Article>;
  readonly customers: AvroCodec<Customer>;
}

export interface Bootstrapped {
  readonly codecs: Codecs;
  readonly topicsResult: EnsureTopicsResult;
}

/**
 * How long `bootstrap` waits for a broker or registry that does not answer (transient errors:
 * `isTransient`), retrying with backoff and a warning each time, before it gives up.
 */
export const BOOTSTRAP_RETRY: RetryPolicy = { forMs: 120_000, initialMs: 500, maxMs: 5_000 };

export async function bootstrap(deps: {
  kafka: Kafka;
  registry: SchemaRegistryClient;
  topics: Topics;
  logger: Logger;
  retry?: RetryPolicy;
}): Promise<Bootstrapped> {
  const retrying = <T>(what: string, call: () => Promise<T>) =>
    retryTransient(call, deps.retry ?? BOOTSTRAP_RETRY, ({ attempt, delayMs, err }) => {
      deps.logger.warn({ attempt, delayMs, err: errorMessage(err) }, `${what}: retrying`);
    });
  const topicsResult: EnsureTopicsResult = await retrying('could not create topics', async () => {
    const admin = deps.kafka.admin();
    await admin.connect();
    try {
      return await ensureTopics(admin, allTopics(deps.topics), deps.logger);
    } finally {
      await admin.disconnect();
    }
  });
  const [purchases, articles, customers] = await Promise.all([
    retrying('could not register a schema', () =>
      AvroCodec.forTopic(deps.registry, deps.topics.purchases),
    ),
    retrying('could not register a schema', () =>
      AvroCodec.forTopic(deps.registry, deps.topics.articles),
    ),
    retrying('could not register a schema', () =>
      AvroCodec.forTopic(deps.registry, deps.topics.customers),
    ),
  ]);
  deps.logger.info(
    {
      subjects: {
        [deps.topics.purchases.subject]: purchases.schemaId,
        [deps.topics.articles.subject]: articles.schemaId,
        [deps.topics.customers.subject]: customers.schemaId,
      },
    },
    'schemas registered',
  );
  return { codecs: { purchases, articles, customers }, topicsResult };
}

/**
 * The clients an entry point needs for the event plumbing, from its config: a kafkajs client,
 * the topics under the configured prefix, and (after `bootstrap`) a codec per topic.
 */
export async function connectStreams(
  config: KafkaEndpoint & RegistryEndpoint & { topicPrefix: string },
  clientId: string,
  logger: Logger,
  purchasePartitions?: number,
): Promise<{ kafka: Kafka; topics: Topics } & Bootstrapped> {
  const kafka = createKafka(config, clientId, logger);
  const topics = makeTopics(config.topicPrefix, purchasePartitions, config.kafkaReplicationFactor);
  const done = await bootstrap({
    kafka,
    registry: createRegistryClient(config),
    topics,
    logger,
  });
  return { kafka, topics, ...done };
}
