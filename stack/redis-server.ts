/**
 * Redis for the local stack: the machine's `redis-server` (installed with apt-get when missing
 * and we are root), run with AOF persistence under STACK_DIR so the feature store survives
 * restarts. A Redis already answering on the port is used as is and never recorded as ours.
 */
import { mkdir } from 'node:fs/promises';
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
import { logFileOf, pidFileOf, type ManagedService, type StackLog } from './service.ts';

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

const dataDirOf = (paths: StackPaths) => join(paths.data, 'redis');

export const redisService: ManagedService = {
  name: 'redis',
  externalEnv: 'REDIS_URL',
  processMarker: 'redis-server',
  startTimeoutMs: 30_000,

  endpoint: (config) => config.redisUrl,
  isExternal: (config) => config.external.redis,
  ports: (config) => [{ port: config.ports.redis, envHint: 'REDIS_PORT or REDIS_URL' }],

  async answers(config: Config) {
    const client = new Redis(config.redisUrl, {
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
  },

  async prepare(_config, paths, log) {
    await redisServer(log);
    await mkdir(dataDirOf(paths), { recursive: true });
  },

  start(config, paths) {
    return spawnDetached({
      // `prepare` made sure it exists.
      command: findExecutable('redis-server', FALLBACKS) ?? 'redis-server',
      args: [
        '--port',
        String(config.ports.redis),
        '--bind',
        '127.0.0.1',
        '--dir',
        dataDirOf(paths),
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
      ],
      cwd: dataDirOf(paths),
      logFile: logFileOf(paths, 'redis'),
      pidFile: pidFileOf(paths, 'redis'),
    });
  },
};
