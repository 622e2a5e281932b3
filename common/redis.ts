/**
 * The one factory of the Redis clients this project creates: one Redis (`REDIS_URL`), or with
 * `REDIS_CLUSTER_NODES` an ioredis `Cluster`, typed alike (`RedisClient`). On a Cluster a
 * pipeline sends each command on its own to the node of its slot (ioredis' own pipelines refuse
 * keys of different nodes; ours batch many customers and articles), and SCAN and bulk deletes run
 * per master (`scanKeys`, `unlinkKeys`). Every multi-key command and script keeps its keys in one
 * slot through the hash tags of features/keys.ts.
 */
import {
  Cluster,
  Redis,
  type ChainableCommander,
  type ClusterOptions,
  type RedisOptions,
} from 'ioredis';
import type { Endpoints } from './config.ts';

/** A single Redis or a Redis Cluster: what every Redis-using function takes. */
export type RedisClient = Redis | Cluster;

/** Where Redis is: `redisUrl` (credentials, TLS) and, for a Cluster, its seed nodes. */
export type RedisEndpoint = Pick<Endpoints, 'redisUrl'> &
  Partial<Pick<Endpoints, 'redisClusterNodes'>>;

/** Options valid for the whole Cluster client (the rest go to each node's connection). */
const CLUSTER_LEVEL = ['lazyConnect', 'enableOfflineQueue', 'enableReadyCheck'] as const;

/**
 * A Cluster whose `pipeline()` accepts commands of any slots: recorded, then sent one by one on
 * `exec()` (each routed, redirected and retried by the Cluster like a plain command; commands of
 * one node keep their order on its connection), the replies in the pipeline's order.
 */
class SlotRoutedCluster extends Cluster {
  override pipeline(commands?: unknown[][]): ChainableCommander {
    const queue: [string, unknown[]][] = (commands ?? []).map(([name, ...args]) => [
      String(name),
      args,
    ]);
    const methods = this as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const exec = async (): Promise<[Error | null, unknown][]> => {
      const sent = queue.map(([name, args]) => {
        const fn = methods[name];
        if (typeof fn !== 'function') throw new Error(`pipeline: unknown command ${name}`);
        return fn.apply(this, args);
      });
      const settled = await Promise.allSettled(sent);
      return settled.map((s) =>
        s.status === 'fulfilled'
          ? [null, s.value]
          : [s.reason instanceof Error ? s.reason : new Error(String(s.reason)), undefined],
      );
    };
    const proxy: ChainableCommander = new Proxy({} as ChainableCommander, {
      get: (_target, prop) => {
        if (prop === 'exec') return exec;
        if (prop === 'length') return queue.length;
        if (prop === 'then') return undefined; // not a thenable
        if (typeof prop !== 'string' || typeof methods[prop] !== 'function') return undefined;
        return (...args: unknown[]) => {
          queue.push([prop, args]);
          return proxy;
        };
      },
    });
    return proxy;
  }
}

function clusterNode(hostPort: string): { host: string; port: number } {
  const at = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, at), port: Number(hostPort.slice(at + 1)) };
}

/**
 * The credentials and TLS of a `redis[s]://[user[:password]@]host:port` URL, read as ioredis reads
 * it for one Redis (a lone userinfo is the password).
 */
function urlOptions(redisUrl: string): RedisOptions {
  const url = new URL(redisUrl);
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  return {
    ...(password === '' ? (user === '' ? {} : { password: user }) : { username: user, password }),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/**
 * A client for `endpoint`: a Cluster when it names cluster nodes (`options` then apply to every
 * node's connection, and `lazyConnect`, `enableOfflineQueue`, `enableReadyCheck` to the Cluster
 * too), else one Redis.
 */
export function createRedis(endpoint: RedisEndpoint, options: RedisOptions = {}): RedisClient {
  const nodes = endpoint.redisClusterNodes;
  if (nodes === undefined || nodes.length === 0) return new Redis(endpoint.redisUrl, options);
  const clusterOptions: ClusterOptions = {
    redisOptions: { ...urlOptions(endpoint.redisUrl), ...options },
    // A failed-over master's slots move to its replica: follow quickly.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    slotsRefreshTimeout: 2_000,
  };
  for (const k of CLUSTER_LEVEL) {
    if (options[k] !== undefined) Object.assign(clusterOptions, { [k]: options[k] });
  }
  return new SlotRoutedCluster(nodes.map(clusterNode), clusterOptions);
}

/** Whether `redis` is a Cluster client. */
export function isCluster(redis: RedisClient): redis is Cluster {
  return redis instanceof Cluster;
}

/** The clients to SCAN: each master of a Cluster, or the one Redis. */
export function scanTargets(redis: RedisClient): Redis[] {
  return isCluster(redis) ? redis.nodes('master') : [redis];
}

/**
 * Every key matching `pattern`, in batches (SCAN on each master of a Cluster; a key may come twice
 * when it moves meanwhile, as with any SCAN).
 */
export async function* scanKeys(
  redis: RedisClient,
  pattern: string,
  count = 5_000,
): AsyncGenerator<string[]> {
  for (const node of scanTargets(redis)) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
      cursor = next;
      if (batch.length > 0) yield batch;
    } while (cursor !== '0');
  }
}

/** UNLINK `keys` (one command on a single Redis, one per key on a Cluster); returns the count. */
export async function unlinkKeys(redis: RedisClient, keys: readonly string[]): Promise<number> {
  if (keys.length === 0) return 0;
  if (!isCluster(redis)) return redis.unlink(...keys);
  const pipe = redis.pipeline();
  for (const k of keys) pipe.unlink(k);
  const results = (await pipe.exec()) ?? [];
  let n = 0;
  for (const [err, v] of results) {
    if (err) throw err;
    n += Number(v);
  }
  return n;
}

/** Delete every key matching `pattern`; returns how many. */
export async function deleteMatching(redis: RedisClient, pattern: string): Promise<number> {
  let deleted = 0;
  for await (const batch of scanKeys(redis, pattern)) deleted += await unlinkKeys(redis, batch);
  return deleted;
}

/** CRC16/XMODEM, the checksum Redis Cluster maps keys to slots with. */
function crc16(data: Buffer): number {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The Cluster slot of `key` (0-16383): its hash tag's (`{...}`, non-empty) when it has one. */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  return crc16(Buffer.from(key, 'utf8')) % 16384;
}

/**
 * One hash tag per master of the Cluster (`s<n>`, the first whose slot the master serves), in
 * the masters' slot order; undefined before the client knows the slots. Stable while slots do not
 * move between masters (a failover keeps them: the replica takes its master's slots).
 */
export function shardTags(redis: Cluster): string[] | undefined {
  const masterOf = (slot: number) => redis.slots[slot]?.[0];
  const masters = new Set<string>();
  for (const nodes of redis.slots) if (nodes[0] !== undefined) masters.add(nodes[0]);
  if (masters.size === 0) return undefined;
  const tags = new Map<string, string>();
  for (let n = 0; tags.size < masters.size && n < 100_000; n++) {
    const tag = `s${n}`;
    const master = masterOf(keySlot(tag));
    if (master !== undefined && !tags.has(master)) tags.set(master, tag);
  }
  return [...tags.values()].sort((a, b) => keySlot(a) - keySlot(b));
}
