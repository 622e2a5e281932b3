/**
 * The one module that reads the environment (with the entry points: `*-cli.ts`, demo/, bench/,
 * which read their own command-specific settings). Service endpoints, stack settings, the Redis
 * namespace and the embeddings switch are parsed once with zod, every problem reported together,
 * then frozen. Only entry points call `loadConfig()`; everything else receives the values as
 * arguments. ESLint forbids `process.env` anywhere else.
 */
import { readFileSync } from 'node:fs';
import { delimiter } from 'node:path';
import { z } from 'zod';
import { RecError } from './errors.ts';
import { SigningKey, type ModelTrust } from './model-trust.ts';
import { Secret } from './redact.ts';

/** The shortest API key `API_KEYS` accepts. */
export const MIN_API_KEY_LENGTH = 16;

const port = (fallback: number) => z.coerce.number().int().min(1).max(65535).default(fallback);

const envSchema = z.object({
  KAFKA_BROKERS: z.string().min(1).optional(),
  SCHEMA_REGISTRY_URL: z.url().optional(),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
    .optional(),
  TRAINING_REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
    .optional(),
  REDIS_CLUSTER_NODES: z
    .string()
    .regex(
      /^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$/,
      'must be a comma-separated list of host:port',
    )
    .optional(),
  KAFKA_REPLICATION_FACTOR: z.coerce.number().int().min(1).max(7).default(1),
  KAFKA_SASL_MECHANISM: z
    .string()
    .transform((v) => v.toLowerCase())
    .pipe(
      z.enum(['plain', 'scram-sha-256', 'scram-sha-512'], {
        error: 'must be plain, scram-sha-256 or scram-sha-512',
      }),
    )
    .optional(),
  KAFKA_SASL_USERNAME: z.string().min(1).optional(),
  // Passwords are never echoed: zod's messages name the rule, not the input.
  KAFKA_SASL_PASSWORD: z.string().min(1).optional(),
  KAFKA_SSL: z.enum(['true', 'false', '1', '0'], { error: 'must be true or false' }).optional(),
  KAFKA_SSL_CA_FILE: z.string().min(1).optional(),
  SCHEMA_REGISTRY_USERNAME: z.string().min(1).optional(),
  SCHEMA_REGISTRY_PASSWORD: z.string().min(1).optional(),
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
  TRAIN_DASK_SCHEDULER: z
    .string()
    .regex(/^[a-z]+:\/\/\S+$|^[^\s/]+:\d+$/, 'must be a Dask scheduler address (tcp://host:8786)')
    .optional(),
  // The value is never echoed: zod's messages name the rule, not the input.
  MODEL_SIGNING_KEY: z
    .string()
    .min(32, 'must be at least 32 characters (e.g. `openssl rand -hex 32`)')
    .optional(),
  MODEL_ALLOW_UNSIGNED: z
    .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
    .optional(),
  MODEL_ACTIVE_CHECK_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
  MODEL_KEEP_VERSIONS: z.coerce.number().int().min(1).max(10_000).default(10),
  // The value is never echoed: zod's messages name the rule, not the input.
  API_KEYS: z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((k) => k.trim())
        .filter((k) => k.length > 0),
    )
    .pipe(
      z.array(
        z
          .string()
          .min(MIN_API_KEY_LENGTH, {
            error: `every key must be at least ${MIN_API_KEY_LENGTH} characters (e.g. \`openssl rand -hex 24\`)`,
          })
          .regex(/^[\x21-\x7e]+$/, { error: 'keys may hold only printable ASCII without spaces' }),
      ),
    ),
  INGEST_MAX_EVENTS: z.coerce.number().int().min(1).max(100_000).default(500),
  INGEST_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1_024)
    .max(64 * 1024 * 1024)
    .default(1024 * 1024),
  INGEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(5_000),
  SERVED_LOG: z
    .string()
    .default('on')
    .transform((v) => v.toLowerCase())
    .pipe(z.enum(['on', 'off', 'true', 'false', '1', '0'], { error: 'must be on or off' })),
  SERVED_LOG_BUFFER: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
  SERVED_LOG_BATCH: z.coerce.number().int().min(1).max(10_000).default(500),
  SERVED_LOG_FLUSH_MS: z.coerce.number().int().min(10).max(60_000).default(100),
  PROMOTE_AS: z
    .string()
    .transform((v) => v.toLowerCase())
    .pipe(z.enum(['switch', 'experiment'], { error: 'must be switch or experiment' }))
    .default('switch'),
  PROMOTE_EXPERIMENT_WEIGHT: z.coerce
    .number()
    .int('must be a whole percentage')
    .min(1, 'must be from 1 to 99 (percent of customers)')
    .max(99, 'must be from 1 to 99 (percent of customers)')
    .default(10),
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

export type SaslMechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';

/** How clients authenticate to Kafka and encrypt the connection (`KAFKA_SASL_*`, `KAFKA_SSL*`). */
export interface KafkaSecurity {
  /** SASL credentials, or none (no authentication). */
  readonly sasl:
    | {
        readonly mechanism: SaslMechanism;
        readonly username: string;
        readonly password: Secret;
      }
    | undefined;
  /** TLS to the brokers (`KAFKA_SSL`; on by default when a CA file is given). */
  readonly ssl: boolean;
  /** PEM text of `KAFKA_SSL_CA_FILE`, read at startup: the CA the brokers' certificates are checked against. */
  readonly ca: string | undefined;
}

/** Plaintext, no authentication: the local stack. */
export const NO_KAFKA_SECURITY: KafkaSecurity = Object.freeze({
  sasl: undefined,
  ssl: false,
  ca: undefined,
});

/** HTTP basic auth to the Schema Registry (`SCHEMA_REGISTRY_USERNAME` / `_PASSWORD`). */
export interface RegistryAuth {
  readonly username: string;
  readonly password: Secret;
}

/** The `Authorization` header value for raw HTTP calls to the registry. */
export function basicAuthHeader(auth: RegistryAuth): string {
  return `Basic ${Buffer.from(`${auth.username}:${auth.password.reveal()}`, 'utf8').toString('base64')}`;
}

export interface Endpoints {
  /** Kafka bootstrap servers. */
  readonly kafkaBrokers: readonly string[];
  /** SASL and TLS settings every kafkajs client is built with. */
  readonly kafkaSecurity: KafkaSecurity;
  /** Confluent-compatible Schema Registry base URL (for Apicurio: `.../apis/ccompat/v7`). */
  readonly schemaRegistryUrl: string;
  /** Basic auth credentials for the registry, if it wants them. */
  readonly schemaRegistryAuth: RegistryAuth | undefined;
  /** May carry credentials and TLS (`rediss://user:pass@host:port`); print it only through `redact`. */
  readonly redisUrl: string;
  /**
   * A Redis Cluster's seed nodes (`REDIS_CLUSTER_NODES`, `host:port`): when set, every client is
   * an ioredis `Cluster` (credentials and TLS still from `redisUrl`); undefined: one Redis.
   */
  readonly redisClusterNodes: readonly string[] | undefined;
  /**
   * Replication factor of the topics this project creates (`KAFKA_REPLICATION_FACTOR`, 1 on the
   * single-node stack, 3 in the cluster profile); from 3 up they get `min.insync.replicas=2`.
   */
  readonly kafkaReplicationFactor: number;
}

/** The model registry's trust and upkeep settings (docs/serving.md, "Trusted registry"). */
export interface ModelRegistryConfig {
  /** `MODEL_SIGNING_KEY` (redacted when printed) and `MODEL_ALLOW_UNSIGNED`. */
  readonly trust: ModelTrust;
  /** How often a serving instance re-reads the `active` pointer (`MODEL_ACTIVE_CHECK_MS`). */
  readonly activeCheckMs: number;
  /** Registered versions kept besides the active one (`MODEL_KEEP_VERSIONS`). */
  readonly keepVersions: number;
}

/** `POST /v1/events/purchases` (serving/routes/events.ts): its bounds. */
export interface IngestConfig {
  /** Most events in one request (`INGEST_MAX_EVENTS`). */
  readonly maxEvents: number;
  /** Most bytes of one request body (`INGEST_MAX_BYTES`); more is refused with 413. */
  readonly maxBytes: number;
  /** How long a request waits for Kafka to acknowledge its events (`INGEST_TIMEOUT_MS`); then 503. */
  readonly timeoutMs: number;
}

/** Served-list logging (serving/served-log.ts): every answer of /v1/recommendations to Kafka. */
export interface ServedLogConfig {
  /** `SERVED_LOG` (default on). */
  readonly enabled: boolean;
  /** Most answers held for sending (`SERVED_LOG_BUFFER`); more are dropped and counted. */
  readonly bufferSize: number;
  /** Most records per produce request (`SERVED_LOG_BATCH`). */
  readonly batchSize: number;
  /** How often the buffer is sent (`SERVED_LOG_FLUSH_MS`), and at once when a batch is full. */
  readonly flushMs: number;
}
/**
 * What the trainer does with a model the gate promotes (docs/training.md): `switch` makes it the
 * active model (`PROMOTE_AS=switch`, the default); `experiment` starts an A/B experiment of it
 * against the active model, or the heuristic when none is active, with `experimentWeight` percent
 * of the customers (`PROMOTE_AS=experiment`, `PROMOTE_EXPERIMENT_WEIGHT`).
 */
export interface PromotionConfig {
  readonly as: 'switch' | 'experiment';
  /** Percent of customers the new model serves in the experiment (1-99). */
  readonly experimentWeight: number;
}

/** Promotion switches `active`: the default. */
export const PROMOTE_BY_SWITCH: PromotionConfig = Object.freeze({
  as: 'switch',
  experimentWeight: 10,
});

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
  /**
   * The Redis the training rows are rebuilt in (`TRAINING_REDIS_URL`, one Redis, not a cluster;
   * print it only through `redact`): the rows replay the whole history into a namespace of their
   * own, about as large as the live state, so at full size they belong beside the live Redis, not
   * in it. Undefined: the live Redis (`redisUrl` / `redisClusterNodes`).
   */
  readonly trainingRedisUrl: string | undefined;
  readonly embeddings: EmbeddingsConfig;
  /** The Python that builds the fixture model (`REC_PYTHON`, default the project's `.venv`). */
  readonly python: string | undefined;
  /** Dask scheduler the trainer trains on (`TRAIN_DASK_SCHEDULER`; default: in process). */
  readonly trainDask: string | undefined;
  /** Model signing, the active-pointer check, pruning. */
  readonly models: ModelRegistryConfig;
  /**
   * The keys the API's write routes accept (`API_KEYS`, comma-separated; redacted when printed).
   * None: the write routes are refused (403), reads stay open.
   */
  readonly apiKeys: readonly Secret[];
  readonly ingest: IngestConfig;
  readonly servedLog: ServedLogConfig;
  /** How the trainer promotes a model that passed the gate (`PROMOTE_AS`). */
  readonly promotion: PromotionConfig;
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
  const allowUnsigned =
    e.MODEL_ALLOW_UNSIGNED === undefined
      ? e.MODEL_SIGNING_KEY === undefined
      : e.MODEL_ALLOW_UNSIGNED === 'true' || e.MODEL_ALLOW_UNSIGNED === '1';
  if (!allowUnsigned && e.MODEL_SIGNING_KEY === undefined) {
    throw new ConfigError(
      'invalid environment settings:\n  MODEL_ALLOW_UNSIGNED: false needs MODEL_SIGNING_KEY ' +
        '(without a key no model can be verified)',
    );
  }
  const security = securityOf(e);
  const config: Config = {
    kafkaSecurity: security.kafka,
    schemaRegistryAuth: security.registry,
    kafkaBrokers: (e.KAFKA_BROKERS ?? `127.0.0.1:${e.KAFKA_PORT}`)
      .split(',')
      .map((b) => b.trim())
      .filter((b) => b.length > 0),
    schemaRegistryUrl: (
      e.SCHEMA_REGISTRY_URL ?? `http://127.0.0.1:${e.SCHEMA_REGISTRY_PORT}/apis/ccompat/v7`
    ).replace(/\/+$/, ''),
    redisUrl: e.REDIS_URL ?? `redis://127.0.0.1:${e.REDIS_PORT}`,
    redisClusterNodes:
      e.REDIS_CLUSTER_NODES === undefined
        ? undefined
        : Object.freeze(e.REDIS_CLUSTER_NODES.split(',').map((n) => n.trim())),
    trainingRedisUrl: e.TRAINING_REDIS_URL,
    kafkaReplicationFactor: e.KAFKA_REPLICATION_FACTOR,
    external: {
      kafka: e.KAFKA_BROKERS !== undefined,
      registry: e.SCHEMA_REGISTRY_URL !== undefined,
      redis: e.REDIS_URL !== undefined || e.REDIS_CLUSTER_NODES !== undefined,
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
    trainDask: e.TRAIN_DASK_SCHEDULER,
    models: Object.freeze({
      trust: Object.freeze({
        key: e.MODEL_SIGNING_KEY === undefined ? undefined : new SigningKey(e.MODEL_SIGNING_KEY),
        allowUnsigned,
      }),
      activeCheckMs: e.MODEL_ACTIVE_CHECK_MS,
      keepVersions: e.MODEL_KEEP_VERSIONS,
    }),
    apiKeys: Object.freeze(e.API_KEYS.map((k) => new Secret(k))),
    ingest: Object.freeze({
      maxEvents: e.INGEST_MAX_EVENTS,
      maxBytes: e.INGEST_MAX_BYTES,
      timeoutMs: e.INGEST_TIMEOUT_MS,
    }),
    servedLog: Object.freeze({
      enabled: e.SERVED_LOG === 'on' || e.SERVED_LOG === 'true' || e.SERVED_LOG === '1',
      bufferSize: e.SERVED_LOG_BUFFER,
      batchSize: e.SERVED_LOG_BATCH,
      flushMs: e.SERVED_LOG_FLUSH_MS,
    }),
    promotion: Object.freeze({
      as: e.PROMOTE_AS,
      experimentWeight: e.PROMOTE_EXPERIMENT_WEIGHT,
    }),
  };
  return Object.freeze(config);
}

/**
 * Kafka SASL/TLS and registry basic auth from the parsed environment; reads the CA file. Every
 * inconsistency is a ConfigError naming the variable (all of them together).
 */
function securityOf(e: z.infer<typeof envSchema>): {
  kafka: KafkaSecurity;
  registry: RegistryAuth | undefined;
} {
  const problems: string[] = [];
  const mechanism = e.KAFKA_SASL_MECHANISM;
  if (mechanism !== undefined) {
    if (e.KAFKA_SASL_USERNAME === undefined) {
      problems.push(`KAFKA_SASL_USERNAME: required with KAFKA_SASL_MECHANISM=${mechanism}`);
    }
    if (e.KAFKA_SASL_PASSWORD === undefined) {
      problems.push(`KAFKA_SASL_PASSWORD: required with KAFKA_SASL_MECHANISM=${mechanism}`);
    }
  } else {
    for (const v of ['KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD'] as const) {
      if (e[v] !== undefined) {
        problems.push(
          `KAFKA_SASL_MECHANISM: required with ${v} (plain, scram-sha-256 or scram-sha-512)`,
        );
      }
    }
  }
  const sslFlag =
    e.KAFKA_SSL === undefined ? undefined : e.KAFKA_SSL === 'true' || e.KAFKA_SSL === '1';
  let ca: string | undefined;
  if (e.KAFKA_SSL_CA_FILE !== undefined) {
    if (sslFlag === false) {
      problems.push('KAFKA_SSL_CA_FILE: set, but KAFKA_SSL=false (a CA is only used over TLS)');
    }
    try {
      ca = readFileSync(e.KAFKA_SSL_CA_FILE, 'utf8');
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
        problems.push(`KAFKA_SSL_CA_FILE: ${e.KAFKA_SSL_CA_FILE} holds no PEM certificate`);
      }
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      problems.push(`KAFKA_SSL_CA_FILE: cannot read ${e.KAFKA_SSL_CA_FILE} (${why})`);
    }
  }
  const user = e.SCHEMA_REGISTRY_USERNAME;
  const pass = e.SCHEMA_REGISTRY_PASSWORD;
  if ((user === undefined) !== (pass === undefined)) {
    problems.push(
      user === undefined
        ? 'SCHEMA_REGISTRY_USERNAME: required with SCHEMA_REGISTRY_PASSWORD'
        : 'SCHEMA_REGISTRY_PASSWORD: required with SCHEMA_REGISTRY_USERNAME',
    );
  }
  if (
    e.SCHEMA_REGISTRY_URL !== undefined &&
    /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(e.SCHEMA_REGISTRY_URL)
  ) {
    // fetch() refuses such URLs, and they end up in logs: credentials go in their own variables.
    problems.push(
      'SCHEMA_REGISTRY_URL: must not carry credentials; set SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD',
    );
  }
  if (problems.length > 0) {
    throw new ConfigError(
      `invalid environment settings:\n${problems.map((p) => `  ${p}`).join('\n')}`,
    );
  }
  const kafka: KafkaSecurity = Object.freeze({
    sasl:
      mechanism === undefined ||
      e.KAFKA_SASL_USERNAME === undefined ||
      e.KAFKA_SASL_PASSWORD === undefined
        ? undefined
        : Object.freeze({
            mechanism,
            username: e.KAFKA_SASL_USERNAME,
            password: new Secret(e.KAFKA_SASL_PASSWORD),
          }),
    ssl: sslFlag ?? ca !== undefined,
    ca,
  });
  const registry =
    user === undefined || pass === undefined
      ? undefined
      : Object.freeze({ username: user, password: new Secret(pass) });
  return { kafka, registry };
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
