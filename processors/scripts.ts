/**
 * The Lua scripts of the processors, loaded from the `.lua` files in `lua/` and defined on an
 * ioredis client (EVALSHA with automatic EVAL fallback, usable in pipelines).
 *
 * Helpers several scripts use (`fmt`, `logadd`, the per-partition offset guard) live once in
 * `lua/include/<name>.lua`; a script pulls one in with a line `--- @include "<name>"` (the
 * directive of bullmq's scripts), which `loadScript` replaces with the file's text. An include may
 * include others; each is inserted once per script, at its first directive. The text sent to Redis
 * is the resolved one, the same on every load, so its SHA is stable.
 *
 * A few includes are generated from the TypeScript definitions instead of read from a file
 * (`GENERATED`): constants a script would otherwise receive as arguments on every call.
 */
import { readFileSync } from 'node:fs';
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from '../common/redis.ts';
import { articleSummaryArgs } from '../features/state.ts';

const NAMES = ['customer', 'article', 'copurchase', 'trending', 'metadata', 'taste'] as const;
export type ScriptName = (typeof NAMES)[number];

/** The directive lines of a script (a new expression per use: the flag `g` keeps state). */
const includeLines = () => /^--- @include "([^"]+)"[ \t]*$/gm;

function readLua(path: string): string {
  return readFileSync(new URL(`./lua/${path}.lua`, import.meta.url), 'utf8');
}

/** A Lua string literal of a plain name (letters, digits, `_`, `:`, `-`, `.`). */
function luaName(name: string): string {
  if (!/^[A-Za-z0-9_:.-]*$/.test(name)) throw new Error(`not a plain Lua name: "${name}"`);
  return `'${name}'`;
}

/**
 * Includes generated from the definitions: `summary-args`, the article summary's layout
 * (features/state.ts `articleSummaryArgs`) as metadata.lua reads it, in one table.
 */
const GENERATED: Record<string, () => string> = {
  'summary-args': () =>
    '-- The article summary layout (features/state.ts articleSummaryArgs, generated): its metadata\n' +
    '-- and sales fields, the count f of metadata fields, the f fields, the stats fields of sales.\n' +
    `local SUMMARY_ARGS = { ${articleSummaryArgs().map(luaName).join(', ')} }`,
};

/** `source` with every `--- @include "name"` line replaced by lua/include/name.lua (resolved too). */
function resolveIncludes(
  source: string,
  script: string,
  done: Set<string>,
  stack: string[],
): string {
  return source.replace(includeLines(), (_line, name: string) => {
    if (stack.includes(name)) {
      throw new Error(`${script}.lua: include loop ${[...stack, name].join(' -> ')}`);
    }
    if (done.has(name)) return `-- (${name} included above)`;
    done.add(name);
    const generated = GENERATED[name];
    if (generated !== undefined) return generated();
    let text: string;
    try {
      text = readLua(`include/${name}`);
    } catch (err) {
      throw new Error(`${script}.lua: cannot include "${name}" (lua/include/${name}.lua)`, {
        cause: err,
      });
    }
    return resolveIncludes(text, script, done, [...stack, name]).replace(/\n$/, '');
  });
}

/** The text of script `name` (lua/<name>.lua) as Redis runs it: its includes resolved. */
export function loadScript(name: ScriptName): string {
  return resolveIncludes(readLua(name), name, new Set(), []);
}

const sources: Record<ScriptName, string> = Object.fromEntries(
  NAMES.map((n) => [n, loadScript(n)]),
) as Record<ScriptName, string>;

type Arg = string | number | Buffer;

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
export function defineScripts(redis: RedisClient): Scripts {
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
