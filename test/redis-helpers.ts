/**
 * Redis helpers for tests: dump every key of a namespace into a comparable form, and compare two
 * dumps with a relative tolerance for floating-point sums (log-adds and float increments are
 * commutative but rounding depends on order, at ~1e-15 relative); start a private redis-server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { scanKeys, type RedisClient } from '../common/redis.ts';
import { redisAnswers } from '../stack/redis-server.ts';
import { expect } from 'vitest';
import { waitFor } from './helpers.ts';

/**
 * A redis-server of its own on `port`, in `dir`: without persistence, or with `aofAlways` an AOF
 * fsynced at every write. The caller kills it.
 */
export function startRedis(
  port: number,
  dir: string,
  opts: { readonly aofAlways?: boolean } = {},
): ChildProcess {
  const persistence = opts.aofAlways
    ? ['--appendonly', 'yes', '--appendfsync', 'always']
    : ['--appendonly', 'no'];
  return spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, ...persistence, '--save', ''],
    { stdio: 'ignore' },
  );
}

/** Resolves once the redis-server on `port` answers PING (20 s at most). */
export async function pinged(port: number): Promise<void> {
  await waitFor(
    `redis-server on ${port}`,
    () => redisAnswers(`redis://127.0.0.1:${port}`),
    20_000,
    50,
  );
}

export type Dump = Map<string, unknown>;

/**
 * Dump every key of namespace `ns`. With `ignorePositions`, the Kafka bookkeeping is left out
 * (per-slot offsets, the customers' per-partition offsets, the position stored per event id in the
 * `seen` guard, the offset prefix of window members, the taste guard: its `tseen` entries, which
 * its prunes keep by the newest event time at the time, and its fields in the `taste` hash), so
 * that runs over differently ordered topics can be compared on what they compute.
 */
export async function dumpNamespace(
  redis: RedisClient,
  ns: string,
  opts: { ignorePositions?: boolean } = {},
): Promise<Dump> {
  const keys: string[] = [];
  // On a Cluster: every master's keys.
  for await (const batch of scanKeys(redis, `${ns}:*`, 1000)) keys.push(...batch);
  const out: Dump = new Map();
  for (const key of keys.sort()) {
    const name = key.slice(ns.length + 1);
    if (opts.ignorePositions && name.endsWith(':off')) continue;
    // The consumer groups' positions (each run its own groups; on a Cluster one hash per
    // master): never part of the state.
    if (name === 'positions' || name.startsWith('positions:')) continue;
    const type = await redis.type(key);
    if (type === 'hash') {
      const h = await redis.hgetall(key);
      if (opts.ignorePositions) {
        // Event-id guards (event id -> Kafka position): `seen` (customer.lua), `tseen` (taste.lua).
        if (name.endsWith(':seen')) for (const f of Object.keys(h)) h[f] = '*';
        if (name.endsWith(':tseen')) {
          out.set(name, '*');
          continue;
        }
        // The taste guard's fields (taste.lua): offsets per partition, entry counts.
        if (name.endsWith(':taste')) {
          const bookkeeping = (f: string) =>
            f.startsWith('o:') || f === 'seen' || f === 'seen_at_prune';
          out.set(name, Object.fromEntries(Object.entries(h).filter(([f]) => !bookkeeping(f))));
          continue;
        }
        // The customer state's per-partition offsets (`o:<partition>`).
        if (name.endsWith(':state')) {
          out.set(name, Object.fromEntries(Object.entries(h).filter(([f]) => !f.startsWith('o:'))));
          continue;
        }
      }
      out.set(name, h);
    } else if (type === 'zset') {
      // By member: members with (nearly) equal scores may be ranked either way after rounding.
      const flat = await redis.zrange(key, 0, -1, 'WITHSCORES');
      const pairs: [string, string][] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        let member = flat[i] as string;
        if (opts.ignorePositions && name.endsWith(':win')) member = member.replace(/^\d+\|/, '');
        pairs.push([member, flat[i + 1] as string]);
      }
      out.set(
        name,
        Object.fromEntries(pairs.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))),
      );
    } else if (type === 'string') {
      const raw = await redis.getBuffer(key);
      // HyperLogLogs are strings starting with "HYLL"; compare their estimates.
      out.set(
        name,
        raw?.subarray(0, 4).toString() === 'HYLL'
          ? { hll: await redis.pfcount(key) }
          : raw?.toString(),
      );
    } else out.set(name, { type });
  }
  return out;
}

const NUMERIC = /^-?\d+(\.\d+)?(e[-+]?\d+)?$/i;

function close(a: unknown, b: unknown, rel: number): boolean {
  if (typeof a === 'string' && typeof b === 'string' && NUMERIC.test(a) && NUMERIC.test(b)) {
    const x = Number(a);
    const y = Number(b);
    return x === y || Math.abs(x - y) <= rel * Math.max(Math.abs(x), Math.abs(y), 1e-300);
  }
  // Packed numbers (`n|last|L` of the customer's items): each part within the tolerance.
  if (typeof a === 'string' && typeof b === 'string' && a.includes('|') && b.includes('|')) {
    const pa = a.split('|');
    const pb = b.split('|');
    if (pa.every((x) => NUMERIC.test(x)) && pb.every((x) => NUMERIC.test(x))) {
      return close(pa, pb, rel);
    }
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => close(v, b[i], rel));
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return (
      close(ka, kb, rel) &&
      ka.every((k) =>
        close((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], rel),
      )
    );
  }
  return a === b;
}

/** Assert two dumps hold the same keys and values (numbers within `rel` relative tolerance). */
export function expectSameState(actual: Dump, expected: Dump, rel = 1e-9): void {
  expect([...actual.keys()]).toEqual([...expected.keys()]);
  const differing = [...expected.keys()].filter((k) => !close(actual.get(k), expected.get(k), rel));
  if (differing.length > 0) {
    const k = differing[0] as string;
    expect({ key: k, value: actual.get(k), differing: differing.length }).toEqual({
      key: k,
      value: expected.get(k),
      differing: 0,
    });
  }
}
