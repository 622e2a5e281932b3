/**
 * API keys of the write routes (`Authorization: Bearer <key>`, keys from `API_KEYS`). Read routes
 * stay open. A presented key is compared with every configured one in constant time: both sides
 * are hashed first (sha256), so `timingSafeEqual` compares equal lengths and neither a key's
 * length nor its first differing byte shows in the time taken, and every key is compared (no
 * early exit on a match). Keys are never logged: they are held as `Secret`s and only their
 * digests are kept here.
 *
 * Without any key (`API_KEYS` empty, the default) the write routes are refused with 403: an open
 * write route is never the fallback of a missing setting.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import type { Secret } from '../common/redact.ts';
import type { ErrorBody } from './http-errors.ts';
import { requestIdOf } from './http-errors.ts';
import type { ServingMetrics } from './metrics.ts';

/** The realm named in `WWW-Authenticate`. */
export const AUTH_REALM = 'fashion-recsys';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** The configured keys, as digests. */
export class ApiKeys {
  readonly #digests: readonly Buffer[];

  constructor(keys: readonly Secret[]) {
    this.#digests = keys.map((k) => digest(k.reveal()));
  }

  /** Whether any key is configured (else the write routes are refused). */
  get configured(): boolean {
    return this.#digests.length > 0;
  }

  /** Whether `presented` is one of the keys; takes the same time whichever matches, if any. */
  accepts(presented: string): boolean {
    const d = digest(presented);
    let match = false;
    for (const k of this.#digests) match = timingSafeEqual(d, k) || match;
    return match;
  }
}

/** Why a write request was refused (the `reason` of `rec_serving_auth_refused_total`). */
export type AuthRefusal = 'no_keys' | 'missing' | 'invalid';

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or null. */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = /^Bearer[ \t]+([^ \t]+)[ \t]*$/i.exec(header);
  return m?.[1] ?? null;
}

/**
 * Middleware of a write route: 403 `REC_ERR_FORBIDDEN` when no key is configured, 401
 * `REC_ERR_UNAUTHORIZED` with `WWW-Authenticate` when the request has no bearer key or a wrong
 * one; the request goes on otherwise. Runs before the body is read.
 */
export function requireApiKey(keys: ApiKeys, metrics: ServingMetrics): MiddlewareHandler {
  return async (c, next) => {
    if (!keys.configured) {
      metrics.authRefused.inc({ reason: 'no_keys' });
      return refuse(
        c,
        403,
        'REC_ERR_FORBIDDEN',
        'write routes are disabled on this instance: API_KEYS is not set (set it to one or more ' +
          'comma-separated keys and send one as Authorization: Bearer <key>)',
      );
    }
    const token = bearerToken(c.req.header('authorization'));
    if (token === null) {
      metrics.authRefused.inc({ reason: 'missing' });
      c.header('WWW-Authenticate', `Bearer realm="${AUTH_REALM}"`);
      return refuse(
        c,
        401,
        'REC_ERR_UNAUTHORIZED',
        'this route needs an API key: send Authorization: Bearer <key> (one of API_KEYS)',
      );
    }
    if (!keys.accepts(token)) {
      metrics.authRefused.inc({ reason: 'invalid' });
      c.header(
        'WWW-Authenticate',
        `Bearer realm="${AUTH_REALM}", error="invalid_token", error_description="unknown API key"`,
      );
      return refuse(c, 401, 'REC_ERR_UNAUTHORIZED', 'the API key is not one of API_KEYS');
    }
    await next();
    return undefined;
  };
}

function refuse(
  c: Context,
  status: 401 | 403,
  code: 'REC_ERR_UNAUTHORIZED' | 'REC_ERR_FORBIDDEN',
  message: string,
): Response {
  const body: ErrorBody = { error: { code, message }, request_id: requestIdOf(c) };
  return c.json(body, status);
}
