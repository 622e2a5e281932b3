/**
 * Admission control of the recommendations route: at most `maxInFlight` requests of one process
 * are being answered at a time; one more is refused at once with 503 `REC_ERR_UNAVAILABLE` and
 * `Retry-After`, before it touches Redis or the scorer pool.
 *
 * Why refuse rather than queue or degrade: a request past the limit would wait behind the others
 * for the same CPU (the event loop, the scorer threads, Redis on the same cores), so every answer
 * gets slower while the overload lasts. Ranking it with the heuristic saves only the scoring; the
 * candidate reads and the feature rows, most of a request's CPU, remain. Refusing costs next to
 * nothing and keeps the latency of the requests that were admitted bounded by the limit; the
 * storefront, told when to retry, can show its own fallback meanwhile.
 *
 * Only `/v1/recommendations/{customerId}` is guarded: the other routes are a Redis read or two,
 * and the operations routes (`/healthz`, `/readyz`, `/metrics`) must answer most of all when the
 * instance is busy.
 */
import type { MiddlewareHandler } from 'hono';
import type { ErrorBody } from './http-errors.ts';
import { requestIdOf } from './http-errors.ts';
import type { ServingMetrics } from './metrics.ts';

/** `Retry-After` of a refused request (seconds): an overload outlasts a few milliseconds. */
export const RETRY_AFTER_SECONDS = 1;

/** A counter of the requests in flight with a ceiling (`limit` 0: no ceiling). */
export class InFlightLimit {
  #inFlight = 0;

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 0) {
      throw new RangeError(`maxInFlight must be a non-negative integer, got ${limit}`);
    }
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Take a slot; false when all `limit` are taken (the caller refuses the request). */
  tryEnter(): boolean {
    if (this.limit > 0 && this.#inFlight >= this.limit) return false;
    this.#inFlight++;
    return true;
  }

  leave(): void {
    if (this.#inFlight > 0) this.#inFlight--;
  }
}

/**
 * The middleware guarding `route` (the pattern the metrics name) with `gate`: admitted requests
 * hold a slot until their answer is made, whatever it is; refused ones get the error shape of
 * http-errors.ts with `Retry-After`, counted in `rec_serving_requests_rejected_total` and not
 * logged one by one (an overload would flood the log).
 */
export function admission(
  gate: InFlightLimit,
  metrics: ServingMetrics,
  route: string,
): MiddlewareHandler {
  metrics.inFlightLimit.set({ route }, gate.limit);
  metrics.inFlight.set({ route }, 0);
  metrics.rejected.inc({ route }, 0);
  const message =
    `overloaded: ${gate.limit} recommendation requests in flight already (maxInFlight); ` +
    `retry after ${RETRY_AFTER_SECONDS} s`;
  return async (c, next) => {
    if (!gate.tryEnter()) {
      metrics.rejected.inc({ route });
      const body: ErrorBody = {
        error: { code: 'REC_ERR_UNAVAILABLE', message },
        request_id: requestIdOf(c),
      };
      return c.json(body, 503, { 'retry-after': String(RETRY_AFTER_SECONDS) });
    }
    metrics.inFlight.inc({ route });
    try {
      await next();
    } finally {
      gate.leave();
      metrics.inFlight.dec({ route });
    }
  };
}
