/**
 * Errors of the serving API and their one JSON shape:
 *
 *   { "error": { "code": "REC_ERR_…", "message": "…", "fields"?: [{ "path", "message" }] },
 *     "request_id": "…" }
 *
 * - request validation (zod, through the routes' `defaultHook` or a ZodError thrown anywhere)
 *   → 400 `REC_ERR_BAD_REQUEST`, every offending field named (unknown query parameters included);
 * - a `ServingError` (and Hono's own `HTTPException`s) keep their status;
 * - the feature store being unreachable is a `StoreUnavailableError`: routes turn it into a
 *   degraded answer when they can, and it maps to 503 `REC_ERR_UNAVAILABLE` when they cannot;
 * - anything else → 500 `REC_ERR_INTERNAL` with a generic message; the error itself is logged with
 *   the request id (the client gets the id, never the internals).
 */
import type { Context, ErrorHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { ZodError } from 'zod';
import type { Logger } from '../common/logger.ts';
import { RecError, type ServingErrorCode } from '../common/errors.ts';

export type { ServingErrorCode } from '../common/errors.ts';

export interface FieldIssue {
  /** Dotted path of the offending field (a query or path parameter name). */
  readonly path: string;
  readonly message: string;
}

export interface ErrorBody {
  error: { code: ServingErrorCode; message: string; fields?: FieldIssue[] };
  request_id: string;
}

/** An error with a status and a stable code, answered as is. */
export class ServingError extends RecError {
  override readonly name: string = 'ServingError';
  declare readonly code: ServingErrorCode;
  readonly status: ContentfulStatusCode;
  readonly fields: readonly FieldIssue[] | undefined;

  constructor(
    status: ContentfulStatusCode,
    code: ServingErrorCode,
    message: string,
    opts: { fields?: readonly FieldIssue[]; cause?: unknown } = {},
  ) {
    super(code, message, { cause: opts.cause });
    this.status = status;
    this.fields = opts.fields;
  }
}

/**
 * The feature store (Redis) did not answer: connection refused or closed, command timeout, offline
 * queue disabled, or a server-side "not ready" reply (LOADING, MASTERDOWN…). Not a bug: callers
 * degrade.
 */
export class StoreUnavailableError extends RecError {
  override readonly name: string = 'StoreUnavailableError';
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('REC_ERR_UNAVAILABLE', message, { retriable: true, cause: opts.cause });
  }
}

/** Server replies meaning "not available right now" rather than "your command is wrong". */
const UNAVAILABLE_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|CLUSTERDOWN|TRYAGAIN|NOREPLICAS)\b/;

/**
 * Whether a Redis client error means the store is unavailable. ioredis raises `ReplyError` for
 * server replies (a WRONGTYPE there is a bug, not an outage); everything else it raises — closed
 * connection, "Stream isn't writeable", command timeout, MaxRetriesPerRequestError — is transport.
 */
export function isStoreUnavailable(err: unknown): boolean {
  if (err instanceof StoreUnavailableError) return true;
  if (!(err instanceof Error)) return false;
  if (err.name === 'ReplyError') return UNAVAILABLE_REPLY.test(err.message);
  return true;
}

/**
 * Run a Redis read; transport failures become `StoreUnavailableError`, anything else (a reply
 * error, a parsing bug) propagates unchanged.
 */
export async function storeRead<T>(what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (err instanceof StoreUnavailableError || !isStoreUnavailable(err)) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new StoreUnavailableError(`feature store unavailable (${what}): ${message}`, {
      cause: err,
    });
  }
}

/** Turn zod issues into named fields: `unrecognized_keys` names each unknown key. */
export function zodFields(error: ZodError): FieldIssue[] {
  const out: FieldIssue[] = [];
  for (const issue of error.issues) {
    const base = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({
          path: base === '' ? key : `${base}.${key}`,
          message: `unknown parameter "${key}"`,
        });
      }
    } else {
      out.push({ path: base === '' ? '(request)' : base, message: issue.message });
    }
  }
  return out;
}

export function badRequestBody(error: ZodError, requestId: string): ErrorBody {
  const fields = zodFields(error);
  const names = [...new Set(fields.map((f) => f.path))].join(', ');
  return {
    error: { code: 'REC_ERR_BAD_REQUEST', message: `invalid request: ${names}`, fields },
    request_id: requestId,
  };
}

function codeOfStatus(status: number): ServingErrorCode {
  if (status === 401) return 'REC_ERR_UNAUTHORIZED';
  if (status === 403) return 'REC_ERR_FORBIDDEN';
  if (status === 404) return 'REC_ERR_NOT_FOUND';
  if (status === 413) return 'REC_ERR_PAYLOAD_TOO_LARGE';
  if (status === 503) return 'REC_ERR_UNAVAILABLE';
  if (status >= 400 && status < 500) return 'REC_ERR_BAD_REQUEST';
  return 'REC_ERR_INTERNAL';
}

/** The request id of `c`, set by the request-id middleware (a fallback for early failures). */
export function requestIdOf(c: Context): string {
  const id: unknown = c.get('requestId');
  return typeof id === 'string' ? id : 'unknown';
}

/** The app's one error handler (`app.onError`). */
export function errorHandler(logger: Logger): ErrorHandler {
  return (err, c) => {
    const requestId = requestIdOf(c);
    c.header('x-request-id', requestId);
    if (err instanceof ZodError) return c.json(badRequestBody(err, requestId), 400);
    if (err instanceof ServingError) {
      const body: ErrorBody = {
        error: {
          code: err.code,
          message: err.message,
          ...(err.fields ? { fields: [...err.fields] } : {}),
        },
        request_id: requestId,
      };
      if (err.status >= 500) logger.warn({ request_id: requestId, err }, err.message);
      return c.json(body, err.status);
    }
    if (err instanceof HTTPException) {
      const body: ErrorBody = {
        error: { code: codeOfStatus(err.status), message: err.message || 'request failed' },
        request_id: requestId,
      };
      return c.json(body, err.status);
    }
    if (err instanceof StoreUnavailableError) {
      logger.warn({ request_id: requestId, err }, 'feature store unavailable');
      const body: ErrorBody = {
        error: { code: 'REC_ERR_UNAVAILABLE', message: 'feature store unavailable' },
        request_id: requestId,
      };
      return c.json(body, 503);
    }
    logger.error({ request_id: requestId, err, path: c.req.path }, 'unhandled error');
    const body: ErrorBody = {
      error: { code: 'REC_ERR_INTERNAL', message: 'internal error' },
      request_id: requestId,
    };
    return c.json(body, 500);
  };
}
