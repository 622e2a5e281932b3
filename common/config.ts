/**
 * Service endpoints and stack settings, parsed once from the environment with zod, every problem
 * reported together, then frozen. Only `main`-style entry points call `loadConfig()`; everything
 * else receives the values as arguments.
 */
import { z } from 'zod';

const port = (fallback: number) => z.coerce.number().int().min(1).max(65535).default(fallback);

const envSchema = z.object({
  KAFKA_BROKERS: z.string().min(1).optional(),
  SCHEMA_REGISTRY_URL: z.url().optional(),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
    .optional(),
  KAFKA_PORT: port(9092),
  KAFKA_CONTROLLER_PORT: port(9093),
  SCHEMA_REGISTRY_PORT: port(8081),
  REDIS_PORT: port(6379),
  STACK_DIR: z.string().min(1).default('.stack'),
  TOPIC_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._-]*$/, 'may hold only A-Z a-z 0-9 . _ -')
    .default(''),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export interface Endpoints {
  /** Kafka bootstrap servers. */
  readonly kafkaBrokers: readonly string[];
  /** Confluent-compatible Schema Registry base URL (for Apicurio: `.../apis/ccompat/v7`). */
  readonly schemaRegistryUrl: string;
  readonly redisUrl: string;
}

export interface Config extends Endpoints {
  /** Which endpoints were given by the environment (and must not be started by the launcher). */
  readonly external: {
    readonly kafka: boolean;
    readonly registry: boolean;
    readonly redis: boolean;
  };
  readonly ports: {
    readonly kafka: number;
    readonly kafkaController: number;
    readonly registry: number;
    readonly redis: number;
  };
  readonly stackDir: string;
  readonly topicPrefix: string;
  readonly logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
}

/** Thrown when the environment holds invalid settings; lists every problem at once. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parse the environment (default: `process.env`) into a frozen config. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid environment settings:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const config: Config = {
    kafkaBrokers: (e.KAFKA_BROKERS ?? `127.0.0.1:${e.KAFKA_PORT}`)
      .split(',')
      .map((b) => b.trim())
      .filter((b) => b.length > 0),
    schemaRegistryUrl: (
      e.SCHEMA_REGISTRY_URL ?? `http://127.0.0.1:${e.SCHEMA_REGISTRY_PORT}/apis/ccompat/v7`
    ).replace(/\/+$/, ''),
    redisUrl: e.REDIS_URL ?? `redis://127.0.0.1:${e.REDIS_PORT}`,
    external: {
      kafka: e.KAFKA_BROKERS !== undefined,
      registry: e.SCHEMA_REGISTRY_URL !== undefined,
      redis: e.REDIS_URL !== undefined,
    },
    ports: {
      kafka: e.KAFKA_PORT,
      kafkaController: e.KAFKA_CONTROLLER_PORT,
      registry: e.SCHEMA_REGISTRY_PORT,
      redis: e.REDIS_PORT,
    },
    stackDir: e.STACK_DIR,
    topicPrefix: e.TOPIC_PREFIX,
    logLevel: e.LOG_LEVEL,
  };
  return Object.freeze(config);
}
