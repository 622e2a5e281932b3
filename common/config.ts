/**
 * The one module that reads the environment (with the entry points: `*-cli.ts`, demo/, bench/,
 * which read their own command-specific settings). Service endpoints, stack settings, the Redis
 * namespace and the embeddings switch are parsed once with zod, every problem reported together,
 * then frozen. Only entry points call `loadConfig()`; everything else receives the values as
 * arguments. ESLint forbids `process.env` anywhere else.
 */
import { delimiter } from 'node:path';
import { z } from 'zod';
import { RecError } from './errors.ts';

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
  REDIS_NAMESPACE: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, 'may hold only A-Z a-z 0-9 . _ -')
    .default('rec'),
  EMBEDDINGS: z
    .string()
    .default('off')
    .transform((v) => v.toLowerCase())
    .pipe(z.enum(['on', 'off', 'true', 'false', '1', '0', ''], { error: 'must be on or off' })),
  EMBEDDINGS_NAMESPACE: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, 'may hold only A-Z a-z 0-9 . _ -')
    .optional(),
  EMBEDDINGS_MODEL_DIR: z.string().min(1).optional(),
  EMBEDDINGS_REMOTE_MODEL: z.string().optional(),
  REC_PYTHON: z.string().min(1).optional(),
});

/** The embeddings switch and the namespace of the article vectors: what processors and training take. */
export interface EmbeddingsSwitch {
  /** `EMBEDDINGS=on`: the taste processor, the embedding features and the `similar` source. */
  readonly enabled: boolean;
  /** Namespace of the article vectors and similar lists (`EMBEDDINGS_NAMESPACE`), if not ours. */
  readonly namespace?: string | undefined;
}

/** Embeddings off: the default wherever a switch is optional. */
export const EMBEDDINGS_OFF: EmbeddingsSwitch = Object.freeze({ enabled: false });

/** The embeddings switch and where their data lives (see docs/embeddings.md). */
export interface EmbeddingsConfig extends EmbeddingsSwitch {
  /** `EMBEDDINGS=on`: the taste processor, the embedding features and the `similar` source. */
  readonly enabled: boolean;
  /** Namespace of the article vectors and similar lists (`EMBEDDINGS_NAMESPACE`), if not ours. */
  readonly namespace: string | undefined;
  /** Where the local text model lives (`EMBEDDINGS_MODEL_DIR`, default `.stack/models`). */
  readonly modelDir: string | undefined;
  /** A Hugging Face hub id to fetch instead of the local model (`EMBEDDINGS_REMOTE_MODEL`). */
  readonly remoteModel: string | undefined;
}

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
  /** Prefix of every Redis key of this deployment (`REDIS_NAMESPACE`, default `rec`). */
  readonly redisNamespace: string;
  readonly embeddings: EmbeddingsConfig;
  /** The Python that builds the fixture model (`REC_PYTHON`, default the project's `.venv`). */
  readonly python: string | undefined;
}

/** Thrown when the environment holds invalid settings; lists every problem at once. */
export class ConfigError extends RecError {
  override readonly name: string = 'ConfigError';
  constructor(message: string) {
    super('REC_ERR_CONFIG', message);
  }
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
    redisNamespace: e.REDIS_NAMESPACE,
    embeddings: Object.freeze({
      enabled: e.EMBEDDINGS === 'on' || e.EMBEDDINGS === 'true' || e.EMBEDDINGS === '1',
      namespace: e.EMBEDDINGS_NAMESPACE,
      modelDir: e.EMBEDDINGS_MODEL_DIR,
      remoteModel: e.EMBEDDINGS_REMOTE_MODEL === '' ? undefined : e.EMBEDDINGS_REMOTE_MODEL,
    }),
    python: e.REC_PYTHON,
  };
  return Object.freeze(config);
}

/**
 * The machine's side of the environment, for the tools this project starts: the directories of
 * `PATH` (to find java, mvn, redis-server), `JAVA_HOME`, and the environment a child process
 * inherits (plus `extra`).
 */
export const hostEnv = {
  searchPath(): string[] {
    return (process.env.PATH ?? '').split(delimiter).filter((d) => d.length > 0);
  },
  javaHome(): string | undefined {
    return process.env.JAVA_HOME;
  },
  forChild(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return { ...process.env, ...extra };
  },
};
