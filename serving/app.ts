/**
 * The serving API (Hono + zod OpenAPI). `createApp(deps)` builds it from what deps.ts describes —
 * everything injected, no module singletons, no environment reading — so tests and the server
 * entry point wire it alike. It adds the request middleware and mounts the route modules:
 *
 *   GET /v1/recommendations/{customerId}?k&index_group&section&product_group&allow_repurchase&explain
 *                                            routes/recommendations.ts
 *   GET /v1/articles/{id}                    an article's display fields and sales (routes/articles.ts)
 *   GET /v1/articles/{id}/similar?k          co-purchase neighbours (routes/articles.ts)
 *   GET /v1/articles/{id}/similar/embedding?n  text-embedding neighbours (routes/articles.ts)
 *   GET /v1/trending?segment&k               global, or channel:<id> / age_index:<bucket>|<group>
 *                                            (routes/trending.ts)
 *   POST /v1/events/purchases                HTTP ingest, API key required (routes/events.ts)
 *   GET /v1/customers?prefix&k               known customers by id prefix, or random ones
 *   GET /v1/customers/{customerId}           a customer's purchases and segments (routes/customers.ts)
 *   GET /healthz  /readyz  /metrics          routes/ops.ts (never refused)
 *   GET /demo                                the demo storefront page (routes/demo-page.ts)
 *   GET /openapi.json  /docs                 here
 *
 * "now": features and decayed scores are computed at event time — `deps.now()` when given, else
 * the latest event time the request read from the store (see `eventTimeNow` in
 * candidates/event-time.ts), else the wall clock.
 *
 * Admission control (admission.ts): at most `config.maxInFlight` recommendation requests are
 * answered at a time; more are refused at once with 503 and `Retry-After`.
 *
 * Write routes need an API key (auth.ts; 403 while none is configured), read routes are open.
 * Every 200 answer of recommendations is logged to `recommendations.served` when `deps.servedLog`
 * is given (served-log.ts).
 *
 * When Redis fails, recommendations and global trending are answered from the in-process trending
 * cache (`degraded: true`, `rec_serving_degraded_responses_total`; routes/degraded.ts); 503 only
 * when the cache is empty too (and always for similar items, which the cache does not hold).
 */
import { randomUUID } from 'node:crypto';
import { OpenAPIHono } from '@hono/zod-openapi';
import { swaggerUI } from '@hono/swagger-ui';
import type { Context, MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { featureNames } from '../features/definitions.ts';
import { admission, InFlightLimit } from './admission.ts';
import type { ServingDeps } from './deps.ts';
import { badRequestBody, errorHandler, requestIdOf } from './http-errors.ts';
import {
  articleRoutes,
  eventRoutes,
  customerRoutes,
  demoPageRoutes,
  opsRoutes,
  recommendationRoutes,
  round2,
  routeContext,
  trendingRoutes,
  type AppEnv,
  type RouteContext,
} from './routes/index.ts';
import { TrendingCache } from './trending-cache.ts';

export {
  DEFAULT_SCORER_WORKERS,
  DEFAULT_INGEST_CONFIG,
  DEFAULT_SERVING_CONFIG,
  defaultMaxInFlight,
  type ServingConfig,
  type ServingDeps,
} from './deps.ts';
export { TRENDING_CACHE_VERSION, type AppEnv } from './routes/index.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The recommendations route, in Hono's syntax (also the pattern the metrics name it by). */
const RECOMMENDATIONS_ROUTE = '/v1/recommendations/:customerId';

export function createApp(deps: ServingDeps): OpenAPIHono<AppEnv> {
  const { redis, keys, config } = deps;
  const logger = deps.logger.child({ module: 'serving' });
  const cache =
    deps.trendingCache ??
    new TrendingCache({
      redis,
      keys,
      logger,
      capacity: config.trendingCacheSize,
      refreshMs: config.trendingCacheRefreshMs,
    });
  const ctx = routeContext(deps, logger, cache);

  // Its default hook answers every route's invalid request (400); the sub-apps inherit it.
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) return c.json(badRequestBody(result.error, requestIdOf(c)), 400);
      return undefined;
    },
  });
  app.use('*', requestMiddleware(ctx));
  // Admission control: refused before validation, Redis or scoring (admission.ts).
  app.use(
    RECOMMENDATIONS_ROUTE,
    admission(new InFlightLimit(config.maxInFlight), ctx.metrics, RECOMMENDATIONS_ROUTE),
  );
  app.onError(errorHandler(logger));
  // A path the API serves, asked with another method: 405 with the methods it takes (Allow);
  // an unknown path: 404.
  app.notFound((c) => {
    const allowed = allowedMethods(app.routes, c.req.path);
    if (allowed.length > 0) {
      c.header('Allow', allowed.join(', '));
      return c.json(
        {
          error: {
            code: 'REC_ERR_BAD_REQUEST',
            message: `method ${c.req.method} is not allowed on ${c.req.path} (allowed: ${allowed.join(', ')})`,
          },
          request_id: requestIdOf(c),
        },
        405,
      );
    }
    return c.json(
      {
        error: { code: 'REC_ERR_NOT_FOUND', message: `no route for ${c.req.method} ${c.req.path}` },
        request_id: requestIdOf(c),
      },
      404,
    );
  });

  app.route('/', recommendationRoutes(ctx));
  app.route('/', articleRoutes(ctx));
  app.route('/', trendingRoutes(ctx));
  app.route('/', eventRoutes(ctx));
  app.route('/', opsRoutes(ctx));
  app.route('/', customerRoutes(ctx));
  app.route('/', demoPageRoutes(ctx));

  app.doc('/openapi.json', {
    openapi: '3.0.0',
    info: {
      title: 'fashion-recsys serving API',
      version: '1.0.0',
      description: `Real-time fashion recommendations. Features: ${featureNames(deps.config.embeddings).length} shared definitions (features/definitions.ts).`,
    },
  });
  app.get('/docs', swaggerUI({ url: '/openapi.json' }));

  return app;
}

/**
 * Every request: its id (the caller's `x-request-id` when well-formed, else a new one) in the
 * context and the response header; a background refresh of the trending cache when stale; then
 * the latency metric by route pattern and status (and, for a ranked recommendation, its `http`
 * stage: the request's time minus the stages the route measured), and a debug log line.
 */
function requestMiddleware(ctx: RouteContext): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const started = performance.now();
    const incoming = c.req.header('x-request-id');
    const requestId = incoming !== undefined && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    c.set('requestId', requestId);
    c.header('x-request-id', requestId);
    ctx.cache.refreshIfStale();
    await next();
    if (!c.res.headers.has('x-request-id')) c.header('x-request-id', requestId);
    const path = routePath(c as Context, -1);
    const route = path === '*' || path === '/*' || path === '' ? 'unmatched' : path;
    const seconds = (performance.now() - started) / 1000;
    ctx.metrics.requestSeconds.observe({ route, status: String(c.res.status) }, seconds);
    const stagesMs = c.get('stagesMs');
    if (stagesMs !== undefined) {
      ctx.metrics.stageSeconds.observe({ stage: 'http' }, Math.max(0, seconds - stagesMs / 1000));
    }
    ctx.logger.debug(
      { request_id: requestId, route, status: c.res.status, ms: round2(seconds * 1000) },
      'request',
    );
  };
}

/** The methods of the routes whose path pattern matches `path` (HEAD with GET). */
function allowedMethods(
  routes: readonly { method: string; path: string }[],
  path: string,
): string[] {
  const methods = new Set<string>();
  for (const r of routes) {
    if (r.method === 'ALL') continue;
    const pattern = r.path.replace(/[.*+?^$()[\]\\]/g, '\\$&').replace(/:[^/]+/g, '[^/]+');
    if (new RegExp(`^${pattern}$`).test(path)) {
      methods.add(r.method);
      if (r.method === 'GET') methods.add('HEAD');
    }
  }
  return [...methods].sort();
}
