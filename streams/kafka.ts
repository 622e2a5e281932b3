/**
 * Factories for kafkajs and Schema Registry clients. Only entry points call these; everything else
 * receives the built clients. Both take the endpoints with their credentials (config's
 * `kafkaSecurity`, `schemaRegistryAuth`), so no client is built without them.
 */
import { Kafka, logLevel, type KafkaConfig } from 'kafkajs';
import { SchemaRegistryClient } from '@confluentinc/schemaregistry/dist/schemaregistry-client.js';
import type { ClientConfig } from '@confluentinc/schemaregistry/dist/rest-service.js';
import type { Endpoints } from '../common/config.ts';
import { kafkaSecurityOptions } from '../common/kafka-security.ts';
import { kafkaLogCreator, type Logger } from '../common/logger.ts';

export type KafkaEndpoint = Pick<Endpoints, 'kafkaBrokers' | 'kafkaSecurity'> &
  Partial<Pick<Endpoints, 'kafkaReplicationFactor'>>;
export type RegistryEndpoint = Pick<Endpoints, 'schemaRegistryUrl' | 'schemaRegistryAuth'>;

/** The kafkajs configuration `createKafka` builds (exported for its tests). */
export function kafkaConfig(
  endpoint: KafkaEndpoint,
  clientId: string,
  logger: Logger,
): KafkaConfig {
  return {
    clientId,
    brokers: [...endpoint.kafkaBrokers],
    ...kafkaSecurityOptions(endpoint.kafkaSecurity),
    logLevel: logLevel.WARN,
    logCreator: kafkaLogCreator(logger),
    connectionTimeout: 5_000,
    retry: { initialRetryTime: 200, retries: 8 },
  };
}

export function createKafka(endpoint: KafkaEndpoint, clientId: string, logger: Logger): Kafka {
  return new Kafka(kafkaConfig(endpoint, clientId, logger));
}

/** The registry client's configuration `createRegistryClient` builds (exported for its tests). */
export function registryClientConfig(endpoint: RegistryEndpoint): ClientConfig {
  const auth = endpoint.schemaRegistryAuth;
  return {
    baseURLs: [endpoint.schemaRegistryUrl],
    maxRetries: 3,
    ...(auth === undefined
      ? {}
      : {
          basicAuthCredentials: {
            credentialsSource: 'USER_INFO',
            userInfo: `${auth.username}:${auth.password.reveal()}`,
          },
        }),
  };
}

export function createRegistryClient(endpoint: RegistryEndpoint): SchemaRegistryClient {
  return new SchemaRegistryClient(registryClientConfig(endpoint));
}

export type { SchemaRegistryClient };
