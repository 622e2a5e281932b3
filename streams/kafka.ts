/**
 * Factories for kafkajs and Schema Registry clients. Only entry points call these; everything else
 * receives the built clients.
 */
import { Kafka, logLevel } from 'kafkajs';
import { SchemaRegistryClient } from '@confluentinc/schemaregistry/dist/schemaregistry-client.js';
import { kafkaLogCreator, type Logger } from '../common/logger.ts';

export function createKafka(brokers: readonly string[], clientId: string, logger: Logger): Kafka {
  return new Kafka({
    clientId,
    brokers: [...brokers],
    logLevel: logLevel.WARN,
    logCreator: kafkaLogCreator(logger),
    connectionTimeout: 5_000,
    retry: { initialRetryTime: 200, retries: 8 },
  });
}

export function createRegistryClient(url: string): SchemaRegistryClient {
  return new SchemaRegistryClient({ baseURLs: [url], maxRetries: 3 });
}

export type { SchemaRegistryClient };
