/**
 * The routes of the serving API, one module per resource, each a function of the app's
 * `RouteContext` (context.ts) returning an OpenAPIHono sub-app that app.ts mounts: recommendations,
 * articles (lookup, similar items), customers (search, purchases), trending, events (HTTP
 * ingest, API key required), ops (health, readiness, metrics) and the demo page (not in the
 * OpenAPI document). degraded.ts answers
 * from the trending cache when the feature store is down.
 *
 * May import common/, schemas/, features/, streams/, embeddings/, models/ and the rest of
 * serving/ except app.ts; route modules do not import one another (context.ts and degraded.ts
 * aside).
 */
export { articleRoutes } from './articles.ts';
export { customerRoutes } from './customers.ts';
export { DEMO_PAGE_CSP, demoPageRoutes } from './demo-page.ts';
export { round2, routeContext, type AppEnv, type RouteContext } from './context.ts';
export { TRENDING_CACHE_VERSION } from './degraded.ts';
export { API_KEY_SCHEME, eventRoutes } from './events.ts';
export { opsRoutes } from './ops.ts';
export { recommendationRoutes } from './recommendations.ts';
export { trendingRoutes } from './trending.ts';
