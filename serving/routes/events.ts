/**
 * `POST /v1/events/purchases`: HTTP ingest for storefronts that cannot speak Kafka. In order:
 *
 * 1. the API key (auth.ts): 403 while API_KEYS is empty, 401 without a valid bearer key — before
 *    the body is read;
 * 2. the body's size: 413 when `Content-Length` says more than `ingest.maxBytes`
 *    (INGEST_MAX_BYTES), and when the bytes actually read pass it (a chunked body);
 * 3. the body's shape: a JSON array of 1 to `ingest.maxEvents` objects, else 400 saying why
 *    (415 for another content type);
 * 4. each element on its own (ingest.ts `purchaseIn`): an invalid one gets status `invalid`
 *    naming its fields, the valid ones get their `event_id` (given, or derived so a retried batch
 *    gets the same ids);
 * 5. a valid one the processors would refuse as late (dated before the dedup horizon's cut of its
 *    customer's newest purchase, features/horizon.ts) gets status `late` saying so, read from
 *    Redis in one round trip; when Redis does not answer within 500 ms the check is skipped and
 *    the processors decide (they dead-letter it). The others are produced to `purchases` together;
 * 6. 202 with one status per element once Kafka acknowledged every valid event; 503 with
 *    `Retry-After` when it did not within `ingest.timeoutMs` (INGEST_TIMEOUT_MS): then nothing
 *    is claimed accepted, though some events may have been written — posting the same batch
 *    again is safe, the processors recognise the ids.
 */
import { OpenAPIHono, createRoute } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import {
  ErrorResponse,
  IngestResponse,
  purchaseBatch,
  type IngestResponseBody,
  type IngestStatusBody,
} from '../api-schemas.ts';
import { requireApiKey } from '../auth.ts';
import { type ErrorBody, requestIdOf, zodFields } from '../http-errors.ts';
import { postedEventId, purchaseIn, withEventIds, type PurchaseIn } from '../ingest.ts';
import { lateReason, readLateCuts } from '../../features/horizon.ts';
import type { Purchase } from '../../schemas/events.ts';
import { ERROR_RESPONSES, type AppEnv, type RouteContext } from './context.ts';

/** How long the lateness check waits for Redis before leaving the decision to the processors. */
const LATE_CHECK_TIMEOUT_MS = 500;

/** The security scheme of the write routes in `/openapi.json`. */
export const API_KEY_SCHEME = 'apiKey';

const error = (description: string) => ({
  description,
  content: { 'application/json': { schema: ErrorResponse } },
});

export function eventRoutes(ctx: RouteContext): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  const { maxBytes, maxEvents, timeoutMs } = ctx.config.ingest;
  const log = ctx.logger.child({ route: '/v1/events/purchases' });
  app.openAPIRegistry.registerComponent('securitySchemes', API_KEY_SCHEME, {
    type: 'http',
    scheme: 'bearer',
    description: 'One of the keys in API_KEYS, as Authorization: Bearer <key>',
  });

  const route = createRoute({
    method: 'post',
    path: '/v1/events/purchases',
    summary: 'Ingest purchases (API key required)',
    description:
      `A JSON array of 1 to ${maxEvents} purchases (the fields of the Avro Purchase; ` +
      '`event_id` optional and then derived deterministically, `quantity` default 1), produced ' +
      'to the purchases topic like loaded ones. 202 with one status per element: an invalid ' +
      'element is named with its fields while the valid ones go through; one the processors ' +
      "would refuse as late (before the dedup horizon's cut of its customer's newest purchase) " +
      `is 'late' and not produced. Bodies over ${maxBytes} ` +
      'bytes are refused (413). 503: Kafka did not acknowledge in time; nothing is claimed ' +
      'accepted and the same batch may be posted again (the ids make it safe).',
    security: [{ [API_KEY_SCHEME]: [] }],
    middleware: [requireApiKey(ctx.apiKeys, ctx.metrics), limitBody(maxBytes)] as const,
    request: {
      body: {
        required: true,
        content: { 'application/json': { schema: purchaseBatch(maxEvents) } },
      },
    },
    responses: {
      202: {
        description: 'Every valid event acknowledged by Kafka; one status per element',
        content: { 'application/json': { schema: IngestResponse } },
      },
      400: error(
        `Not a JSON array of 1 to ${maxEvents} objects (malformed JSON, another shape, too many)`,
      ),
      401: {
        ...error('No API key, or one that is not in API_KEYS'),
        headers: {
          'WWW-Authenticate': {
            description:
              'Bearer realm="fashion-recsys" (with error="invalid_token" for a wrong key)',
            schema: { type: 'string' },
          },
        },
      },
      403: error('Write routes are disabled on this instance: API_KEYS is not set'),
      413: error(`The body is larger than ${maxBytes} bytes (INGEST_MAX_BYTES)`),
      415: error('The body is not application/json'),
      500: ERROR_RESPONSES[500],
      503: {
        ...error(
          'Kafka did not acknowledge the events in time (or this instance has no Kafka): none is ' +
            'claimed accepted; retry the same batch after Retry-After',
        ),
        headers: {
          'Retry-After': {
            description: 'Seconds to wait before retrying',
            schema: { type: 'integer' },
          },
        },
      },
    },
  });

  app.openapi(route, async (c) => {
    const batch: readonly unknown[] = c.req.valid('json');
    const requestId = requestIdOf(c);
    const statuses: IngestStatusBody[] = [];
    const valid: { index: number; event: PurchaseIn }[] = [];
    batch.forEach((raw, index) => {
      const parsed = purchaseIn.safeParse(raw);
      if (parsed.success) {
        valid.push({ index, event: parsed.data });
        return;
      }
      const fields = zodFields(parsed.error).map((f) =>
        f.message.startsWith('unknown parameter') ? { ...f, message: `unknown field` } : f,
      );
      const names = [...new Set(fields.map((f) => f.path))].join(', ');
      statuses[index] = {
        index,
        event_id: postedEventId(raw),
        status: 'invalid',
        error: { code: 'REC_ERR_BAD_REQUEST', message: `invalid purchase: ${names}`, fields },
      };
    });
    const events = withEventIds(valid.map((v) => v.event));
    if (events.length > 0 && ctx.ingest === null) {
      return unavailable(c, 'HTTP ingest is not enabled on this instance (it has no Kafka)');
    }
    const late = await lateEvents(events);
    const send = events.filter((_, i) => !late.has(i));
    if (send.length > 0 && ctx.ingest !== null) {
      try {
        await withTimeout(ctx.ingest.send(send), timeoutMs);
      } catch (err) {
        log.warn(
          { request_id: requestId, events: send.length, err: errText(err) },
          'ingest: Kafka did not acknowledge; answered 503',
        );
        return unavailable(
          c,
          `Kafka did not acknowledge the events within ${timeoutMs} ms (INGEST_TIMEOUT_MS): none ` +
            'is claimed accepted; post the same batch again (its event ids make a retry safe)',
        );
      }
    }
    events.forEach((e, i) => {
      const index = valid[i]?.index ?? 0;
      const refused = late.get(i);
      statuses[index] =
        refused === undefined
          ? { index, event_id: e.event_id, status: 'accepted' }
          : { index, event_id: e.event_id, status: 'late', error: lateError(e, refused) };
    });
    const invalid = batch.length - events.length;
    ctx.metrics.ingestEvents.inc({ status: 'accepted' }, send.length);
    ctx.metrics.ingestEvents.inc({ status: 'invalid' }, invalid);
    ctx.metrics.ingestEvents.inc({ status: 'late' }, late.size);
    log.debug({ request_id: requestId, accepted: send.length, invalid, late: late.size }, 'ingest');
    const body: IngestResponseBody = {
      accepted: send.length,
      invalid,
      late: late.size,
      events: statuses,
      request_id: requestId,
    };
    return c.json(body, 202);
  });

  /**
   * The events (by position) the processors would refuse as late, with the cut each is before;
   * none when no processors recorded their horizon here, or Redis does not answer in time.
   */
  async function lateEvents(events: readonly Purchase[]): Promise<Map<number, LateCut>> {
    const late = new Map<number, LateCut>();
    if (events.length === 0) return late;
    let read;
    try {
      read = await withTimeout(
        readLateCuts(
          ctx.redis,
          ctx.keys,
          events.map((e) => e.customer_id),
        ),
        LATE_CHECK_TIMEOUT_MS,
      );
    } catch (err) {
      log.warn(
        { events: events.length, err: errText(err) },
        'ingest: lateness not checked (Redis); the processors decide',
      );
      return late;
    }
    if (read === null) return late;
    events.forEach((e, i) => {
      const cut = read.cuts.get(e.customer_id);
      if (cut !== undefined && e.event_time < cut) late.set(i, { cut, horizonMs: read.horizonMs });
    });
    return late;
  }
  return app;
}

interface LateCut {
  cut: number;
  horizonMs: number;
}

/** Why a purchase is refused as late: its time, the cut and what would let it in. */
function lateError(e: Purchase, { cut, horizonMs }: LateCut) {
  return {
    code: 'REC_ERR_LATE_EVENT' as const,
    message:
      `${lateReason(e.event_time, e.customer_id, cut, horizonMs)}: the processors would refuse ` +
      'it as late. Not produced; the processors accept it once they run with a ' +
      'PROCESSOR_DEDUP_HORIZON_DAYS past its lateness',
    fields: [{ path: 'event_time', message: `before ${new Date(cut).toISOString()}` }],
  };
}

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** 503 `REC_ERR_UNAVAILABLE` with `Retry-After: 1`. */
function unavailable(c: Context<AppEnv>, message: string) {
  const body = {
    error: { code: 'REC_ERR_UNAVAILABLE' as const, message },
    request_id: requestIdOf(c),
  } satisfies ErrorBody;
  return c.json(body, 503, { 'Retry-After': '1' });
}

/** `promise`, or a rejection after `ms` (the promise goes on; its outcome is then ignored). */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no acknowledgement within ${ms} ms`));
    }, ms);
  });
  promise.catch(() => undefined);
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * 413 `REC_ERR_PAYLOAD_TOO_LARGE` for a body over `maxBytes`: by its `Content-Length` before
 * reading, and by the bytes read (a chunked body has no length). The body read is handed on.
 */
function limitBody(maxBytes: number): MiddlewareHandler<AppEnv> {
  const tooLarge = (c: Context<AppEnv>, what: string) => {
    const body: ErrorBody = {
      error: {
        code: 'REC_ERR_PAYLOAD_TOO_LARGE',
        message: `the body ${what}; the limit is ${maxBytes} bytes (INGEST_MAX_BYTES): send fewer events per request`,
      },
      request_id: requestIdOf(c),
    };
    return c.json(body, 413);
  };
  return async (c, next) => {
    const declared = c.req.header('content-length');
    if (declared !== undefined && Number(declared) > maxBytes) {
      return tooLarge(c, `is ${declared} bytes (Content-Length)`);
    }
    const stream = c.req.raw.body;
    if (stream === null) {
      await next();
      return undefined;
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    // Node's web streams are async iterable (the DOM typings this build leaves out say so);
    // leaving the loop early cancels the stream.
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      if (size > maxBytes) {
        return tooLarge(c, `passed ${maxBytes} bytes while being read`);
      }
      chunks.push(chunk);
    }
    c.req.raw = new Request(c.req.raw, { body: Buffer.concat(chunks) });
    await next();
    return undefined;
  };
}
