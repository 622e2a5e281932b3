/**
 * Keeping secrets out of output: `redact(url)` masks the credentials of any URL in a string
 * before it is printed or logged, and `Secret` holds a configured password so that printing the
 * configuration (console.log, JSON.stringify, pino) never shows it. The logger's redact paths
 * (common/logger.ts) mask password-like fields of logged objects.
 */
import { inspect } from 'node:util';

export const MASK = '***';

// scheme://user:password@  or  scheme://password@ (ioredis reads a lone userinfo as the password)
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@]*)@/gi;
// ?password=…, &token=… and the like in a query string
const QUERY_SECRET = /([?&](?:password|pass|passwd|secret|token|key|api_key|apikey)=)[^&#\s]*/gi;

/**
 * `s` with the password of every URL in it masked: `redis://user:pass@host` → `redis://user:***@host`,
 * `rediss://pass@host` → `rediss://***@host`; password-like query parameters likewise. Strings
 * without credentials (broker lists, plain URLs) come back unchanged.
 */
export function redact(s: string): string {
  return s
    .replace(USERINFO, (_m, scheme: string, userinfo: string) => {
      if (userinfo === '') return `${scheme}@`;
      const colon = userinfo.indexOf(':');
      return colon === -1 ? `${scheme}${MASK}@` : `${scheme}${userinfo.slice(0, colon)}:${MASK}@`;
    })
    .replace(QUERY_SECRET, `$1${MASK}`);
}

/** A configured password or token: `reveal()` gives it to the client that needs it; printing shows `[redacted]`. */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toJSON(): string {
    return '[redacted]';
  }
  toString(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return 'Secret [redacted]';
  }
}
