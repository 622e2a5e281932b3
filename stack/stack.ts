/**
 * Orchestration of the local stack (Kafka, Schema Registry, Redis) without Docker: bring every
 * service up idempotently, stop only what this launcher started, and report status. Services
 * named by the environment (KAFKA_BROKERS, SCHEMA_REGISTRY_URL, REDIS_URL) are only checked.
 * Two profiles: `single` (one of each) and `cluster` (three Kafka nodes, a six-node Redis Cluster:
 * stack/cluster.ts).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config, Endpoints } from '../common/config.ts';
import {
  CLUSTER_SERVICES,
  clusterEndpoints,
  clusterPaths,
  clusterServiceConfig,
  formCluster,
} from './cluster.ts';
import { kafkaService } from './kafka-broker.ts';
import { acquireLock } from '../common/lock.ts';
import {
  createMutex,
  elapsed,
  makeStackDirs,
  portInUse,
  readLivePid,
  stackPaths,
  stopByPidFile,
  tailLog,
  waitUntil,
  type StackPaths,
  type StopOutcome,
} from './process.ts';
import { redisService } from './redis-server.ts';
import { registryService } from './apicurio.ts';
import {
  logFileOf,
  pidFileOf,
  type ManagedService,
  type ServiceName,
  type StackLog,
} from './service.ts';
import { RecError } from '../common/errors.ts';
import { redact } from '../common/redact.ts';

export type { ServiceName, StackLog, StopOutcome };

/** Every managed service, in display order. They start in parallel: none needs another. */
const SERVICES: readonly ManagedService[] = [kafkaService, registryService, redisService];

/** `single`: one broker, one registry, one Redis; `cluster`: see stack/cluster.ts. */
export type StackProfile = 'single' | 'cluster';

export const STACK_PROFILES: readonly StackProfile[] = ['single', 'cluster'];

/** What a profile runs, where, and with which settings. */
interface Profile {
  readonly services: readonly ManagedService[];
  /** The config its services are probed and started with. */
  readonly config: Config;
  readonly paths: StackPaths;
  readonly endpoints: Endpoints;
  /** Run once every service answers (e.g. joining the Redis Cluster). */
  readonly after?: (log: StackLog) => Promise<void>;
}

function profileOf(config: Config, profile: StackProfile): Profile {
  if (profile === 'single') {
    return {
      services: SERVICES,
      config,
      paths: stackPaths(config.stackDir),
      endpoints: endpointsOf(config),
    };
  }
  const own = clusterServiceConfig(config);
  return {
    services: CLUSTER_SERVICES,
    config: own,
    paths: clusterPaths(config.stackDir),
    endpoints: clusterEndpoints(config),
    after: (log) => formCluster(own, log),
  };
}

/** Thrown by `ensureStack` when a service cannot be brought up; lists every failure. */
export class StackError extends RecError {
  override readonly name: string = 'StackError';
  constructor(message: string) {
    super('REC_ERR_STACK', message);
  }
}

/** Who runs a service. */
export type Ownership =
  /** Started by this launcher; `pid` is in `STACK_DIR/run/<service>.pid`. */
  | { readonly kind: 'ours'; readonly pid: number }
  /** Named by the environment; the launcher never starts or stops it. */
  | { readonly kind: 'external' }
  /** Answers on our port but was not started by this launcher (e.g. a system Redis). */
  | { readonly kind: 'foreign' }
  | { readonly kind: 'none' };

export interface ServiceStatus {
  readonly service: ServiceName;
  /** For display: any password in it is masked (`redact`). */
  readonly endpoint: string;
  readonly answering: boolean;
  readonly owner: Ownership;
}

export interface StopResult {
  readonly service: ServiceName;
  /** 'external' services are never stopped. */
  readonly outcome: StopOutcome | 'external';
}

/**
 * The `stack:up` summary: the endpoints as environment settings to copy, passwords masked (the
 * credentials a deployment was given stay in its own environment; print them nowhere).
 */
export function endpointLines(endpoints: Endpoints): string[] {
  return [
    `KAFKA_BROKERS=${endpoints.kafkaBrokers.join(',')}`,
    `SCHEMA_REGISTRY_URL=${redact(endpoints.schemaRegistryUrl)}`,
    endpoints.redisClusterNodes === undefined
      ? `REDIS_URL=${redact(endpoints.redisUrl)}`
      : `REDIS_CLUSTER_NODES=${endpoints.redisClusterNodes.join(',')}`,
    ...(endpoints.kafkaReplicationFactor === 1
      ? []
      : [`KAFKA_REPLICATION_FACTOR=${endpoints.kafkaReplicationFactor}`]),
  ];
}

/** One `stack:status` line: service, endpoint (password masked), answering, who runs it. */
export function describeStatus(s: ServiceStatus): string {
  const owner =
    s.owner.kind === 'ours'
      ? `started by stack launcher (pid ${s.owner.pid})`
      : s.owner.kind === 'external'
        ? 'external (from environment)'
        : s.owner.kind === 'foreign'
          ? 'running, not started by this launcher'
          : 'not running';
  const answering = s.answering ? 'answering' : 'NOT answering';
  return `${s.service.padEnd(8)} ${s.endpoint.padEnd(45)} ${answering.padEnd(13)} ${owner}`;
}

function endpointsOf(config: Config): Endpoints {
  return {
    kafkaBrokers: config.kafkaBrokers,
    kafkaSecurity: config.kafkaSecurity,
    schemaRegistryUrl: config.schemaRegistryUrl,
    schemaRegistryAuth: config.schemaRegistryAuth,
    redisUrl: config.redisUrl,
    redisClusterNodes: config.redisClusterNodes,
    kafkaReplicationFactor: config.kafkaReplicationFactor,
  };
}

/** Wait for a process of ours to answer; on failure the message carries its log's tail. */
async function awaitAnswer(
  s: ManagedService,
  config: Config,
  paths: StackPaths,
  pid: number,
): Promise<void> {
  const result = await waitUntil(() => s.answers(config), {
    timeoutMs: s.startTimeoutMs,
    intervalMs: 500,
    pid,
  });
  if (result === 'ok') return;
  if (result === 'exited') await rm(pidFileOf(paths, s.name), { force: true });
  const logFile = logFileOf(paths, s.name);
  const tail = await tailLog(logFile, 20);
  const what =
    result === 'exited'
      ? `exited during startup (pid ${pid})`
      : `did not answer at ${redact(s.endpoint(config))} within ${s.startTimeoutMs / 1000} s (pid ${pid} left running; \`npm run stack:down\` stops it)`;
  throw new Error(
    `${s.name}: ${what}. Last lines of ${logFile}:\n${tail.replace(/^/gm, '    ') || '    (empty)'}`,
  );
}

async function ensureService(
  s: ManagedService,
  config: Config,
  paths: StackPaths,
  log: StackLog,
  maven: <T>(job: () => Promise<T>) => Promise<T>,
): Promise<void> {
  // Printed and thrown: never with its password (REDIS_URL may carry one).
  const endpoint = redact(s.endpoint(config));
  if (s.isExternal(config)) {
    if (await s.answers(config)) {
      log(`${s.name}: using ${endpoint} (from ${s.externalEnv})`);
      return;
    }
    throw new Error(`${s.name}: ${s.externalEnv}=${endpoint} does not answer`);
  }

  const pidFile = pidFileOf(paths, s.name);
  const running = await readLivePid(pidFile, s.processMarker);
  if (running !== undefined) {
    if (await s.answers(config)) {
      log(`${s.name}: already running (pid ${running}) at ${endpoint}`);
      return;
    }
    // Ours but not answering yet: most likely still starting from an earlier `up`.
    const since = Date.now();
    log(`${s.name}: pid ${running} is still starting; waiting…`);
    await awaitAnswer(s, config, paths, running);
    log(`${s.name}: running (pid ${running}) at ${endpoint} after ${elapsed(since)} more`);
    return;
  }
  if (await s.answers(config)) {
    log(`${s.name}: ${endpoint} already answers (not started by this launcher); using it`);
    return;
  }
  for (const { port, envHint } of s.ports(config)) {
    if (await portInUse(port)) {
      throw new Error(`${s.name}: port ${port} is in use by another program; set ${envHint}`);
    }
  }

  await s.prepare(config, paths, log, maven);
  const started = Date.now();
  const pid = await s.start(config, paths);
  await awaitAnswer(s, config, paths, pid);
  log(`${s.name}: started (pid ${pid}) at ${endpoint} in ${elapsed(started)}`);
}

/**
 * Make sure Kafka, the Schema Registry and Redis answer, starting (in parallel) whatever is
 * missing, and return their endpoints. Idempotent: services already answering are left alone.
 * Downloads (Maven) are cached under `config.stackDir`. Throws `StackError` listing every
 * service that could not be brought up.
 */
export async function ensureStack(
  config: Config,
  log: StackLog = () => undefined,
  profile: StackProfile = 'single',
): Promise<Endpoints> {
  const p = profileOf(config, profile);
  const { paths } = p;
  await makeStackDirs(paths);
  const release = await acquireLock(join(paths.run, 'up.lock'), (holder) => {
    log(`waiting for another stack launcher (pid ${holder}) to finish…`);
  });
  try {
    const maven = createMutex();
    const results = await Promise.allSettled(
      p.services.map((s) => ensureService(s, p.config, paths, log, maven)),
    );
    const failures = results.flatMap((r) =>
      r.status === 'rejected'
        ? [r.reason instanceof Error ? r.reason.message : String(r.reason)]
        : [],
    );
    if (failures.length > 0) throw new StackError(failures.join('\n'));
    if (p.after) {
      try {
        await p.after(log);
      } catch (err) {
        throw new StackError(err instanceof Error ? err.message : String(err));
      }
    }
    return p.endpoints;
  } finally {
    await release();
  }
}

/**
 * Stop the services this launcher started (SIGTERM, then SIGKILL after ~20 s) and remove their
 * pid files. External services and processes we did not start are never touched.
 */
export async function stopStack(
  config: Config,
  profile: StackProfile = 'single',
): Promise<StopResult[]> {
  const p = profileOf(config, profile);
  const { paths } = p;
  return Promise.all(
    p.services.map(async (s): Promise<StopResult> => {
      if (s.isExternal(p.config)) return { service: s.name, outcome: 'external' };
      const outcome = await stopByPidFile(pidFileOf(paths, s.name), s.processMarker);
      return { service: s.name, outcome };
    }),
  );
}

/** Per service: endpoint, whether it answers, and who runs it. Removes stale pid files. */
export async function stackStatus(
  config: Config,
  profile: StackProfile = 'single',
): Promise<ServiceStatus[]> {
  const p = profileOf(config, profile);
  const { paths } = p;
  return Promise.all(
    p.services.map(async (s): Promise<ServiceStatus> => {
      const config = p.config;
      const [answering, pid] = await Promise.all([
        s.answers(config),
        s.isExternal(config)
          ? Promise.resolve(undefined)
          : readLivePid(pidFileOf(paths, s.name), s.processMarker),
      ]);
      const owner: Ownership = s.isExternal(config)
        ? { kind: 'external' }
        : pid !== undefined
          ? { kind: 'ours', pid }
          : answering
            ? { kind: 'foreign' }
            : { kind: 'none' };
      return { service: s.name, endpoint: redact(s.endpoint(config)), answering, owner };
    }),
  );
}
