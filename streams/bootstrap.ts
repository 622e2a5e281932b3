/**
 * Bootstrapping the event plumbing: create the topics (and DLQs) and register their schemas, then
 * hand back one codec per topic. Idempotent; every process that produces or consumes calls it.
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
import type { Logger } from '../common/logger.ts';
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

export async function bootstrap(deps: {
  kafka: Kafka;
  registry: SchemaRegistryClient;
  topics: Topics;
  logger: Logger;
}): Promise<Bootstrapped> {
  const admin = deps.kafka.admin();
  await admin.connect();
  let topicsResult: EnsureTopicsResult;
  try {
    topicsResult = await ensureTopics(admin, allTopics(deps.topics), deps.logger);
  } finally {
    await admin.disconnect();
  }
  const [purchases, articles, customers] = await Promise.all([
    AvroCodec.forTopic(deps.registry, deps.topics.purchases),
    AvroCodec.forTopic(deps.registry, deps.topics.articles),
    AvroCodec.forTopic(deps.registry, deps.topics.customers),
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
