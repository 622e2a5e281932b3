/**
 * Operations: `GET /healthz` (the process answers), `GET /readyz` (Redis answers a PING in time,
 * and a model is loaded when `requireModel`; 503 with the reasons otherwise) and `GET /metrics`
 * (Prometheus; every process's, summed, when several serve). Not in the OpenAPI document, and
 * never refused by admission control (admission.ts guards recommendations only).
 *
 * `/readyz` is probed from outside the service: it answers a fixed vocabulary per dependency
 * (`redis.state`: ok, down, timeout; `ranker.state`: model, no_model, model_refused,
 * model_incompatible) and fixed reasons, never an error's text (a Redis error may name hosts,
 * ports, a URL). The details are logged instead, when a check's outcome changes.
 */
import { OpenAPIHono } from '@hono/zod-openapi';
import type { RedisClient } from '../../common/redis.ts';
import { featureNames, missingFeatures } from '../../features/definitions.ts';
import type { ReadyBody } from '../api-schemas.ts';
import { HEURISTIC_VERSION } from '../ranking.ts';
import type { AppEnv, RouteContext } from './context.ts';

type RedisCheck = ReadyBody['checks']['redis'];
type RankerCheck = ReadyBody['checks']['ranker'];

export function opsRoutes(ctx: RouteContext): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  const log = ctx.logger.child({ route: '/readyz' });
  /** What was last logged per check, so a probe every few seconds logs a change once. */
  const logged = { redis: 'ok', ranker: '' };

  app.get('/healthz', (c) => c.json({ status: 'ok' }, 200));

  app.get('/readyz', async (c) => {
    const reasons: string[] = [];
    const ping = await pingRedis(ctx.redis, ctx.config.readyTimeoutMs);
    const redis: RedisCheck = { ok: ping.state === 'ok', state: ping.state };
    const redisLog = ping.state === 'ok' ? 'ok' : `${ping.state}: ${ping.detail}`;
    if (redisLog !== logged.redis) {
      if (ping.state === 'ok') log.info('readiness: redis answers again');
      else log.warn({ state: ping.state, err: ping.detail }, 'readiness: redis check failed');
      logged.redis = redisLog;
    }
    if (ping.state === 'down') reasons.push('redis: down');
    if (ping.state === 'timeout') reasons.push('redis: timeout');
    const ranker = checkRanker(ctx, reasons);
    if (ranker.detail !== logged.ranker) {
      if (ranker.detail !== '') {
        log.warn({ state: ranker.check.state, detail: ranker.detail }, 'readiness: ranker');
      }
      logged.ranker = ranker.detail;
    }
    const body: ReadyBody = {
      status: reasons.length === 0 ? 'ready' : 'not_ready',
      checks: {
        redis,
        ranker: ranker.check,
        trending_cache: { size: ctx.cache.size, last_refresh: ctx.cache.lastRefresh },
      },
      reasons,
    };
    return c.json(body, reasons.length === 0 ? 200 : 503);
  });

  app.get('/metrics', async (c) => {
    const text = await ctx.metricsText();
    return c.body(text, 200, { 'content-type': ctx.metrics.registry.contentType });
  });
  return app;
}

/** A Redis PING answered within `timeoutMs`, or why not (`detail`: for the log only). */
async function pingRedis(
  redis: RedisClient,
  timeoutMs: number,
): Promise<{ state: 'ok' } | { state: 'down' | 'timeout'; detail: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = Symbol('timeout');
  try {
    const r = await Promise.race([
      redis.ping(),
      new Promise<typeof timedOut>((resolve) => {
        timer = setTimeout(() => {
          resolve(timedOut);
        }, timeoutMs);
      }),
    ]);
    if (r === timedOut) return { state: 'timeout', detail: `no answer within ${timeoutMs} ms` };
    return { state: 'ok' };
  } catch (err) {
    return { state: 'down', detail: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The ranker's readiness: a model needing unknown features ranks with the heuristic, and no model
 * at all is ready unless `requireModel` (which adds to `reasons`). `detail` (the log's) says why.
 */
function checkRanker(ctx: RouteContext, reasons: string[]): { check: RankerCheck; detail: string } {
  const { requireModel } = ctx.config;
  const ranker = ctx.ranker();
  const missing =
    ranker === null ? [] : missingFeatures(ranker.features, featureNames(ctx.config.embeddings));
  if (ranker !== null && missing.length > 0) {
    if (requireModel) reasons.push('ranker: the model needs features this build cannot compute');
    return {
      check: { ok: !requireModel, version: ranker.version, state: 'model_incompatible' },
      detail: `model ${ranker.version} needs unknown features (${missing.join(', ')}); ranking with the heuristic`,
    };
  }
  if (ranker !== null) {
    return { check: { ok: true, version: ranker.version, state: 'model' }, detail: '' };
  }
  const why = ctx.noModel();
  if (requireModel) reasons.push(`ranker: no model loaded (requireModel): ${why.reason}`);
  return {
    check: { ok: !requireModel, version: HEURISTIC_VERSION, state: why.reason },
    detail: why.message,
  };
}
