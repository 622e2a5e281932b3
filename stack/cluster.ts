/**
 * The cluster profile of the local stack (`npm run stack:up -- --profile cluster`): three Kafka
 * KRaft nodes (broker and controller each; internal topics replicated 3 times, `min.insync.replicas`
 * 2), the Schema Registry, and a Redis Cluster of three masters with a replica each, joined with
 * `redis-cli --cluster create`. Its own ports and its own data under `STACK_DIR/cluster/`; the
 * downloads (Kafka jars, Apicurio) are the single-node stack's, which can run beside it.
 */
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Config, Endpoints } from '../common/config.ts';
import { kafkaAnswers, kafkaNodeService } from './kafka-broker.ts';
import {
  elapsed,
  findExecutable,
  runCommand,
  sleep,
  stackPaths,
  type StackPaths,
} from './process.ts';
import { redisNodeService } from './redis-server.ts';
import { registryService } from './apicurio.ts';
import type { ManagedService, StackLog } from './service.ts';

/** The ports of the cluster profile: none of the single-node stack's (9092, 9093, 8081, 6379). */
export const CLUSTER_PORTS = Object.freeze({
  kafka: [29092, 29093, 29094],
  controller: [29192, 29193, 29194],
  registry: 28081,
  /** Masters and replicas: which is which is up to `--cluster create` (and later failovers). */
  redis: [27001, 27002, 27003, 27004, 27005, 27006],
  /**
   * Their cluster bus ports, given explicitly: Redis's default (the port + 10000, 37001-37006) lies
   * in Linux's ephemeral range (32768-60999), where a client connection of the moment can hold one
   * and a node then fails to start ("Address already in use").
   */
  redisBus: [27101, 27102, 27103, 27104, 27105, 27106],
});

/** Topics of the cluster profile are replicated this many times (`KAFKA_REPLICATION_FACTOR`). */
export const CLUSTER_REPLICATION_FACTOR = 3;

/** Downloads from `STACK_DIR` (shared); pid files, logs and data under `STACK_DIR/cluster/`. */
export function clusterPaths(stackDir: string): StackPaths {
  const base = stackPaths(stackDir);
  const root = join(base.root, 'cluster');
  return {
    root: base.root,
    run: join(root, 'run'),
    logs: join(root, 'logs'),
    data: join(root, 'data'),
  };
}

const host = (port: number) => `127.0.0.1:${port}`;

/** The cluster profile's endpoints: what its clients are given. */
export function clusterEndpoints(config: Config): Endpoints {
  return {
    kafkaBrokers: CLUSTER_PORTS.kafka.map(host),
    kafkaSecurity: config.kafkaSecurity,
    schemaRegistryUrl: `http://${host(CLUSTER_PORTS.registry)}/apis/ccompat/v7`,
    schemaRegistryAuth: undefined,
    redisUrl: `redis://${host(CLUSTER_PORTS.redis[0] ?? 0)}`,
    redisClusterNodes: CLUSTER_PORTS.redis.map(host),
    kafkaReplicationFactor: CLUSTER_REPLICATION_FACTOR,
  };
}

/**
 * The config the profile's services are started with: its endpoints and ports, every service
 * ours (the environment's KAFKA_BROKERS, SCHEMA_REGISTRY_URL, REDIS_URL name the single-node
 * stack or another deployment, never this profile).
 */
export function clusterServiceConfig(config: Config): Config {
  return Object.freeze({
    ...config,
    ...clusterEndpoints(config),
    external: { kafka: false, registry: false, redis: false },
    ports: { ...config.ports, registry: CLUSTER_PORTS.registry },
  });
}

const voters = CLUSTER_PORTS.controller.map((p, i) => `${i + 1}@${host(p)}`).join(',');

const kafkaNodes: ManagedService[] = CLUSTER_PORTS.kafka.map((port, i) => {
  const name = `kafka-${i + 1}` as const;
  return kafkaNodeService({
    name,
    nodeId: i + 1,
    port: () => port,
    controllerPort: () => CLUSTER_PORTS.controller[i] ?? 0,
    voters: () => voters,
    confDir: (paths) => join(paths.data, '..', name),
    dataDir: (paths) => join(paths.data, name),
    clusterIdFile: (paths) => join(paths.data, '..', 'kafka-cluster-id'),
    extraProperties: [
      `offsets.topic.replication.factor=${CLUSTER_REPLICATION_FACTOR}`,
      // 50 by default: fewer partitions to elect and replicate on this small machine.
      'offsets.topic.num.partitions=10',
      `transaction.state.log.replication.factor=${CLUSTER_REPLICATION_FACTOR}`,
      'transaction.state.log.min.isr=2',
      'transaction.state.log.num.partitions=5',
      `share.coordinator.state.topic.replication.factor=${CLUSTER_REPLICATION_FACTOR}`,
      'share.coordinator.state.topic.min.isr=2',
      `default.replication.factor=${CLUSTER_REPLICATION_FACTOR}`,
      'min.insync.replicas=2',
      // A killed broker is fenced (and leaves the ISRs) after 4 s instead of 9: writes with
      // acks=all wait for it no longer than that.
      'broker.session.timeout.ms=4000',
      'broker.heartbeat.interval.ms=1000',
      'replica.lag.time.max.ms=10000',
      // Memory and threads for three brokers on a 2-core machine.
      'num.network.threads=2',
      'num.io.threads=2',
      'num.replica.fetchers=1',
      'num.recovery.threads.per.data.dir=1',
      'log.cleaner.dedupe.buffer.size=8388608',
    ],
    heap: ['-Xms128m', '-Xmx384m'],
    processMarker: join('cluster', name, 'server.properties'),
    envHints: {
      port: 'nothing (the cluster profile)',
      controller: 'nothing (the cluster profile)',
    },
  });
});

const BUS_PORTS = new Map(
  CLUSTER_PORTS.redis.map((port, i) => [port, CLUSTER_PORTS.redisBus[i] as number]),
);

const redisNodes: ManagedService[] = CLUSTER_PORTS.redis.map((port, i) => {
  const name = `redis-${i + 1}` as const;
  return redisNodeService({
    name,
    port: () => port,
    dataDir: (paths) => join(paths.data, name),
    extraArgs: [
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      'nodes.conf',
      // A master unreachable for 2 s is failed over to its replica.
      '--cluster-node-timeout',
      '2000',
      // The other masters keep serving their slots while one is being failed over.
      '--cluster-require-full-coverage',
      'no',
    ],
    processMarker: host(port),
    envHint: 'nothing (the cluster profile)',
    busPorts: BUS_PORTS,
  });
});

/** Every service of the profile, in display order. */
export const CLUSTER_SERVICES: readonly ManagedService[] = [
  ...kafkaNodes,
  registryService,
  ...redisNodes,
];

/** `CLUSTER INFO` of one node as a map, or undefined when it does not answer. */
async function clusterInfo(port: number): Promise<Map<string, string> | undefined> {
  const client = new Redis(port, '127.0.0.1', {
    lazyConnect: true,
    connectTimeout: 1_000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const text = (await client.call('CLUSTER', 'INFO')) as string;
    return new Map(
      text
        .split(/\r?\n/)
        .filter((l) => l.includes(':'))
        .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
    );
  } catch {
    return undefined;
  } finally {
    client.disconnect();
  }
}

/** Every node sees a complete, healthy cluster of all six. */
async function redisClusterOk(): Promise<boolean> {
  const infos = await Promise.all(CLUSTER_PORTS.redis.map(clusterInfo));
  return infos.every(
    (i) =>
      i?.get('cluster_state') === 'ok' &&
      i.get('cluster_slots_ok') === '16384' &&
      i.get('cluster_known_nodes') === String(CLUSTER_PORTS.redis.length),
  );
}

/**
 * After every service answers: join the Redis nodes into a cluster (once: fresh nodes know only
 * themselves) and wait until every node reports it healthy, and until the three brokers are
 * registered with the controllers.
 */
export async function formCluster(config: Config, log: StackLog): Promise<void> {
  const infos = await Promise.all(CLUSTER_PORTS.redis.map(clusterInfo));
  const fresh = infos.every(
    (i) => i?.get('cluster_known_nodes') === '1' && i.get('cluster_slots_assigned') === '0',
  );
  if (fresh) {
    const started = Date.now();
    log('redis cluster: creating (3 masters, a replica each)…');
    const cli = findExecutable('redis-cli', ['/usr/bin/redis-cli', '/usr/local/bin/redis-cli']);
    if (cli === undefined) throw new Error('redis-cli not found (Debian package redis-tools)');
    await runCommand(cli, [
      '--cluster',
      'create',
      ...CLUSTER_PORTS.redis.map(host),
      '--cluster-replicas',
      '1',
      '--cluster-yes',
    ]);
    log(`redis cluster: created in ${elapsed(started)}`);
  }
  const deadline = Date.now() + 60_000;
  let redisOk = false;
  let kafkaOk = false;
  while (Date.now() < deadline) {
    redisOk ||= await redisClusterOk();
    kafkaOk ||= await kafkaAnswers(
      CLUSTER_PORTS.kafka.map(host),
      config,
      CLUSTER_PORTS.kafka.length,
    );
    if (redisOk && kafkaOk) return;
    await sleep(500);
  }
  throw new Error(
    [
      redisOk
        ? ''
        : 'redis cluster: not every node reports cluster_state:ok with 6 nodes within 60 s',
      kafkaOk ? '' : 'kafka: the three brokers did not all register within 60 s',
    ]
      .filter((l) => l !== '')
      .join('\n'),
  );
}
