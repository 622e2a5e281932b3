/**
 * `GET /v1/trending?segment&k`: the global 7-day trending top, or a segment's (`channel:<id>`,
 * `age_index:<bucket>|<group>`); global trending from the trending cache when the feature store is
 * unavailable (degraded.ts).
 */
import { OpenAPIHono, createRoute } from '@hono/zod-openapi';
import { decayedValue } from '../../features/decay.ts';
import { HALF_LIVES, SEGMENT_HALF_LIFE } from '../../features/keys.ts';
import { TrendingQuery, TrendingResponse, parseSegment } from '../api-schemas.ts';
import { GLOBAL_TRENDING_HL, parseScored, readSummaries } from '../candidates/index.ts';
import { ServingError, StoreUnavailableError, storeRead } from '../http-errors.ts';
import { ERROR_RESPONSES, tookMs, type AppEnv, type RouteContext } from './context.ts';
import { cachedTrending } from './degraded.ts';

const ROUTE = '/v1/trending';

const route = createRoute({
  method: 'get',
  path: '/v1/trending',
  summary: 'Trending articles, global or of a segment (7-day half-life)',
  request: { query: TrendingQuery },
  responses: {
    200: {
      description: 'Trending articles, best first',
      content: { 'application/json': { schema: TrendingResponse } },
    },
    ...ERROR_RESPONSES,
  },
});

export function trendingRoutes(ctx: RouteContext): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  const { redis, keys, cache } = ctx;

  app.openapi(route, async (c) => {
    const t0 = performance.now();
    const { k, segment: rawSegment } = c.req.valid('query');
    const parsed = rawSegment === undefined ? null : parseSegment(rawSegment);
    if (typeof parsed === 'string') {
      // Unreachable: the query schema refuses what parseSegment refuses.
      throw new ServingError(400, 'REC_ERR_BAD_REQUEST', parsed, {
        fields: [{ path: 'segment', message: parsed }],
      });
    }
    const segmentName = parsed === null ? null : `${parsed.kind}:${parsed.value}`;
    const key =
      parsed === null
        ? keys.trending.global(GLOBAL_TRENDING_HL)
        : keys.trending.segment(parsed.kind, parsed.value, SEGMENT_HALF_LIFE);
    const halfLife = HALF_LIVES[parsed === null ? GLOBAL_TRENDING_HL : SEGMENT_HALF_LIFE];
    try {
      const entries = parseScored(
        await storeRead('trending', () => redis.zrevrange(key, 0, k - 1, 'WITHSCORES')),
      );
      const summaries = await readSummaries(
        redis,
        keys,
        entries.map((e) => e.articleId),
      );
      if (parsed === null) cache.offer(entries, summaries);
      const now = ctx.eventNow([...summaries.values()].map((s) => s.last));
      return c.json(
        {
          segment: segmentName,
          source: parsed === null ? ('global' as const) : ('segment' as const),
          items: entries.map((e, i) => ({
            article_id: e.articleId,
            name: summaries.get(e.articleId)?.name ?? null,
            score: decayedValue(e.logScore, now, halfLife),
            rank: i + 1,
          })),
          degraded: false,
          took_ms: tookMs(t0),
          now,
        },
        200,
      );
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      const degraded = cachedTrending(ctx, { route: ROUTE, segment: segmentName, k, t0 }, err);
      return c.json(degraded, 200);
    }
  });
  return app;
}
