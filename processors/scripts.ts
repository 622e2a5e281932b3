/**
 * The Lua scripts of the processors, loaded from the `.lua` files beside this module and defined
 * on an ioredis client (EVALSHA with automatic EVAL fallback, usable in pipelines).
 */
import { readFileSync } from 'node:fs';
import type { ChainableCommander, Redis } from 'ioredis';

const NAMES = ['customer', 'article', 'copurchase', 'trending', 'metadata'] as const;
export type ScriptName = (typeof NAMES)[number];

const sources: Record<ScriptName, string> = Object.fromEntries(
  NAMES.map((n) => [n, readFileSync(new URL(`./lua/${n}.lua`, import.meta.url), 'utf8')]),
) as Record<ScriptName, string>;

type Arg = string | number;

/** Typed handle to call a script on a pipeline: keys then args. */
export interface Scripts {
  call(
    pipe: ChainableCommander,
    name: ScriptName,
    keys: readonly string[],
    args: readonly Arg[],
  ): void;
}

/** Define every script on `redis` (idempotent per client). */
export function defineScripts(redis: Redis): Scripts {
  for (const name of NAMES) {
    if (!(`rec_${name}` in redis)) redis.defineCommand(`rec_${name}`, { lua: sources[name] });
  }
  return {
    call(pipe, name, keys, args) {
      const fn = (pipe as unknown as Record<string, (...a: Arg[]) => unknown>)[`rec_${name}`];
      if (typeof fn !== 'function') throw new Error(`script ${name} is not defined on this client`);
      fn.call(pipe, keys.length, ...keys, ...args);
    },
  };
}
