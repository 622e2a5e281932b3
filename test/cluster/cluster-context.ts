/**
 * What the cluster suites share: whether they run (`CLUSTER_TESTS=1`, with the cluster profile up:
 * `npm run stack:up -- --profile cluster`), the profile's config, its Redis nodes (CROSSSLOT
 * counts, which are masters, their pids), and killing and restoring a node.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../../common/config.ts';
import { CLUSTER_PORTS, clusterEndpoints, clusterPaths } from '../../stack/cluster.ts';
import { ensureStack } from '../../stack/stack.ts';

/** The cluster suites run only when asked: they need the cluster profile up. */
export const CLUSTER_TESTS = process.env.CLUSTER_TESTS === '1';

/** Why a cluster suite is skipped, printed once per file. */
export function sayWhySkipped(file: string): void {
  if (!CLUSTER_TESTS) {
    console.log(
      `${file}: skipped (needs the cluster profile: npm run stack:up -- --profile cluster, then CLUSTER_TESTS=1 npx vitest run test/cluster/)`,
    );
  }
}

/** The environment's config pointed at the cluster profile (3 brokers, RF 3, Redis Cluster). */
export function clusterConfig(): Config {
  const base = loadConfig();
  const e = clusterEndpoints(base);
  return loadConfig({
    ...process.env,
    KAFKA_BROKERS: e.kafkaBrokers.join(','),
    SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
    REDIS_URL: e.redisUrl,
    REDIS_CLUSTER_NODES: (e.redisClusterNodes ?? []).join(','),
    KAFKA_REPLICATION_FACTOR: String(e.kafkaReplicationFactor),
  });
}

/** A plain connection to one node of the profile's Redis Cluster. */
export function nodeClient(port: number): Redis {
  const r = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: true });
  r.on('error', () => undefined);
  return r;
}

/** CROSSSLOT error replies each node has sent since it started (`INFO errorstats`). */
export async function crossSlotErrors(): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const port of CLUSTER_PORTS.redis) {
    const r = nodeClient(port);
    try {
      await r.connect();
      const info = await r.info('errorstats');
      out.set(port, Number(/errorstat_CROSSSLOT:count=(\d+)/.exec(info)?.[1] ?? 0));
    } catch {
      out.set(port, 0); // a node down (killed by a fault test): it answers nothing
    } finally {
      r.disconnect();
    }
  }
  return out;
}

/** The ports of the nodes that are masters now (by `ROLE`, asked of each live node). */
export async function masterPorts(): Promise<number[]> {
  const masters: number[] = [];
  for (const port of CLUSTER_PORTS.redis) {
    const r = nodeClient(port);
    try {
      await r.connect();
      const role = (await r.call('ROLE')) as unknown[];
      if (role[0] === 'master') masters.push(port);
    } catch {
      // down
    } finally {
      r.disconnect();
    }
  }
  return masters;
}

/** The pid the stack launcher recorded for a service of the cluster profile. */
export function clusterPid(config: Config, service: string): number {
  const file = join(clusterPaths(config.stackDir).run, `${service}.pid`);
  return Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
}

/** `kill -9` a service of the cluster profile (e.g. `kafka-2`, `redis-4`). */
export function killService(config: Config, service: string): number {
  const pid = clusterPid(config, service);
  process.kill(pid, 'SIGKILL');
  return pid;
}

/** Bring the cluster profile back to complete (restarts what was killed; waits until healthy). */
export async function restoreCluster(config: Config): Promise<void> {
  await ensureStack(config, () => undefined, 'cluster');
}
