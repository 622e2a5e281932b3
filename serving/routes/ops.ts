/**
 * Operations: `GET /healthz` (the process answers), `GET /readyz` (Redis answers a PING in time,
 * and a model is loaded when `requireModel`; 503 with the reasons otherwise) and `GET /metrics`
 * (Prometheus; every process's, summed, when several serve). Not in the OpenAPI document, and
 * never refused by admission control (admission.ts guards recommendations only).
 */
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Redis } from 'ioredis';
import { featureNames, missingFeatures } from '../../features/definitions.ts';
import type { ReadyBody } from '../api-schemas.ts';
import { HEURISTIC_VERSION } from '../ranking.ts';
import type { AppEnv, RouteContext } from './context.ts';

export function opsRoutes(ctx: RouteContext): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();

  app.get('/healthz', (c) => c.json({ status: 'ok' }, 200));

  app.get('/readyz', async (c) => {
    const reasons: string[] = [];
    const redisCheck = await pingRedis(ctx.redis, ctx.config.readyTimeoutMs);
    if (!redisCheck.ok) reasons.push(`redis: ${redisCheck.message}`);
    const rankerCheck = checkRanker(ctx, reasons);
    const body: ReadyBody = {
      status: reasons.length === 0 ? 'ready' : 'not_ready',
      checks: {
        redis: redisCheck,
        ranker: rankerCheck,
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

/** A Redis PING answered within `timeoutMs`, or why not. */
async function pingRedis(
  redis: Redis,
  timeoutMs: number,
): Promise<{ ok: true } | { ok: false; message: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.ping(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`no answer within ${timeoutMs} ms`));
        }, timeoutMs);
      }),
    ]);
    return { ok: true };
  } catch (err) {
    return { ok: false, message: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The ranker's readiness: a model needing unknown features ranks with the heuristic, and no model
 * at all is ready unless `requireModel` (which adds to `reasons`).
 */
function checkRanker(ctx: RouteContext, reasons: string[]): ReadyBody['checks']['ranker'] {
  const { requireModel } = ctx.config;
  const ranker = ctx.ranker();
  const missing =
    ranker === null ? [] : missingFeatures(ranker.features, featureNames(ctx.config.embeddings));
  if (ranker !== null && missing.length > 0) {
    const message = `model ${ranker.version} needs unknown features (${missing.join(', ')}); ranking with the heuristic`;
    if (requireModel) reasons.push(`ranker: ${message}`);
    return { ok: !requireModel, version: ranker.version, message };
  }
  if (ranker !== null) return { ok: true, version: ranker.version };
  if (requireModel) {
    const why = ctx.noModel().message;
    reasons.push(`ranker: no model loaded (requireModel): ${why}`);
    return { ok: false, version: HEURISTIC_VERSION, message: why };
  }
  return { ok: true, version: HEURISTIC_VERSION, message: ctx.noModel().message };
}
