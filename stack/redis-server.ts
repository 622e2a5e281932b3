/**
 * Redis for the local stack: the machine's `redis-server` (installed with apt-get when missing
 * and we are root), run with AOF persistence under STACK_DIR so the feature store survives
 * restarts. A Redis already answering on the port is used as is and never recorded as ours. The
 * cluster profile runs six of them with `--cluster-enabled yes` (stack/cluster.ts joins them).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { hostEnv, type Config } from '../common/config.ts';
import {
  CommandError,
  elapsed,
  findExecutable,
  runCommand,
  spawnDetached,
  type StackPaths,
} from './process.ts';
import {
  logFileOf,
  pidFileOf,
  type ManagedService,
  type ServiceName,
  type StackLog,
} from './service.ts';

const FALLBACKS = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'];

/** The `redis-server` binary, installing the Debian package when missing and running as root. */
async function redisServer(log: StackLog): Promise<string> {
  const found = findExecutable('redis-server', FALLBACKS);
  if (found !== undefined) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(
      'redis-server not found: install it (e.g. `sudo apt-get install redis-server`) or set REDIS_URL to a running Redis',
    );
  }
  const started = Date.now();
  log('redis: redis-server not found; installing it with apt-get…');
  const env = hostEnv.forChild({ DEBIAN_FRONTEND: 'noninteractive' });
  const install = () =>
    runCommand('apt-get', ['install', '-y', '--no-install-recommends', 'redis-server'], { env });
  try {
    await install();
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    // A fresh machine has no package lists yet ("Unable to locate package").
    await runCommand('apt-get', ['update'], { env });
    await install();
  }
  log(`redis: redis-server installed in ${elapsed(started)}`);
  const installed = findExecutable('redis-server', FALLBACKS);
  if (installed === undefined)
    throw new Error('redis: apt-get succeeded but no redis-server found');
  return installed;
}

/** `redisUrl` (its credentials and TLS) pointed at cluster node `hostPort`. */
function clusterNodeUrl(redisUrl: string, hostPort: string): string {
  const url = new URL(redisUrl);
  url.host = hostPort;
  return url.toString();
}

/** Whether a Redis answers PONG at `url`. Never throws. */
export async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 1_000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // Connection failures are reported through the rejected promise below; without a listener
  // ioredis would also print them as unhandled 'error' events.
  client.on('error', () => undefined);
  try {
    await client.connect();
    // Resolves only on +PONG; anything else (e.g. -NOAUTH) rejects.
    await client.ping();
    return true;
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** One `redis-server` of the stack: the single one, or a node of the cluster profile's. */
export interface RedisNode {
  readonly name: ServiceName;
  port(config: Config): number;
  dataDir(paths: StackPaths): string;
  /** Arguments after the common ones (port, bind, dir, persistence, cluster bus port). */
  readonly extraArgs: readonly string[];
  /**
   * Cluster nodes: every node's bus port by its port. This node's (`--cluster-port`) is checked
   * free before it starts, and a `nodes.conf` written with other bus ports (Redis's default, the
   * port + 10000) is rewritten to these before the start, or the nodes could not reach each other.
   */
  readonly busPorts?: ReadonlyMap<number, number>;
  /** A substring of the server's command line unique to it (redis-server rewrites its title). */
  readonly processMarker: string;
  readonly envHint: string;
}

/**
 * Rewrite the bus ports of a cluster node's `nodes.conf` (`<id> <ip>:<port>@<bus port>…` per node)
 * to `byPort`'s, when it holds others; nothing when the file is missing (a fresh node).
 */
export async function moveBusPorts(
  file: string,
  byPort: ReadonlyMap<number, number>,
  log: StackLog,
): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const moved = text.replace(/^(\S+ [^\s:]*:(\d+)@)(\d+)/gm, (line, head: string, port: string) => {
    const bus = byPort.get(Number(port));
    return bus === undefined ? line : `${head}${bus}`;
  });
  if (moved === text) return;
  await writeFile(file, moved);
  log(`${file}: cluster bus ports moved to ${[...new Set(byPort.values())].join(', ')}`);
}

/** A managed service running `node`. */
export function redisNodeService(node: RedisNode): ManagedService {
  const busPort = (config: Config): number | undefined => {
    if (node.busPorts === undefined) return undefined;
    const bus = node.busPorts.get(node.port(config));
    if (bus === undefined)
      throw new Error(`${node.name}: no bus port for port ${node.port(config)}`);
    return bus;
  };
  return {
    name: node.name,
    externalEnv: 'REDIS_URL',
    processMarker: node.processMarker,
    startTimeoutMs: 30_000,

    endpoint: (config) =>
      !config.external.redis
        ? `redis://127.0.0.1:${node.port(config)}`
        : config.redisClusterNodes === undefined
          ? config.redisUrl
          : `cluster ${config.redisClusterNodes.join(',')}`,
    isExternal: (config) => config.external.redis,
    ports: (config) => {
      const bus = busPort(config);
      return [
        { port: node.port(config), envHint: node.envHint },
        ...(bus === undefined ? [] : [{ port: bus, envHint: node.envHint }]),
      ];
    },

    answers: (config: Config) =>
      redisAnswers(
        !config.external.redis
          ? `redis://127.0.0.1:${node.port(config)}`
          : config.redisClusterNodes === undefined
            ? config.redisUrl
            : clusterNodeUrl(config.redisUrl, config.redisClusterNodes[0] ?? ''),
      ),

    async prepare(_config, paths, log) {
      await redisServer(log);
      await mkdir(node.dataDir(paths), { recursive: true });
      if (node.busPorts) {
        await moveBusPorts(join(node.dataDir(paths), 'nodes.conf'), node.busPorts, log);
      }
    },

    start(config, paths) {
      const bus = busPort(config);
      return spawnDetached({
        // `prepare` made sure it exists.
        command: findExecutable('redis-server', FALLBACKS) ?? 'redis-server',
        args: [
          '--port',
          String(node.port(config)),
          '--bind',
          '127.0.0.1',
          '--dir',
          node.dataDir(paths),
          // Feature state is rebuilt by replaying Kafka, but a restart should not force that:
          // append-only file, fsync once a second; no RDB snapshots on top.
          '--appendonly',
          'yes',
          '--appendfsync',
          'everysec',
          '--save',
          '',
          '--daemonize',
          'no',
          ...(bus === undefined ? [] : ['--cluster-port', String(bus)]),
          ...node.extraArgs,
        ],
        cwd: node.dataDir(paths),
        logFile: logFileOf(paths, node.name),
        pidFile: pidFileOf(paths, node.name),
      });
    },
  };
}

/** The single-node stack's Redis on REDIS_PORT (or the one REDIS_URL names). */
export const redisService: ManagedService = redisNodeService({
  name: 'redis',
  port: (config) => config.ports.redis,
  dataDir: (paths) => join(paths.data, 'redis'),
  extraArgs: [],
  processMarker: 'redis-server',
  envHint: 'REDIS_PORT or REDIS_URL',
});
