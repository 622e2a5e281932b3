/**
 * An article, and articles like it:
 *  - `GET /v1/articles/{id}`: its name, colour, section, type, index group and sales (the mean
 *    unit price the demo page's buy button posts);
 *  - `GET /v1/articles/{id}/similar?k=`: co-purchase neighbours (bought together), scored by
 *    decayed co-purchase count;
 *  - `GET /v1/articles/{id}/similar/embedding?n=`: the articles whose text is closest (cosine of
 *    all-MiniLM-L6-v2 embeddings of name, type, colour, section and description), read from the
 *    similar-items index `npm run embed` builds; a known article not embedded yet answers 200
 *    with no items and `embedded: false`.
 * Both answer 404 for an unknown article (no metadata and no sales).
 */
import { OpenAPIHono, createRoute } from '@hono/zod-openapi';
import { readSimilar } from '../../embeddings/store.ts';
import { decayedValue } from '../../features/decay.ts';
import { embeddingKeys, type EmbeddingKeys } from '../../features/embedding-keys.ts';
import { COPURCHASE_HALF_LIFE, HALF_LIVES } from '../../features/keys.ts';
import { readArticles } from '../../features/state.ts';
import {
  ArticleResponse,
  EmbeddingSimilarQuery,
  EmbeddingSimilarResponse,
  ErrorResponse,
  SimilarParams,
  SimilarQuery,
  SimilarResponse,
  type ScoredArticleBody,
} from '../api-schemas.ts';
import { parseScored, readSummaries } from '../candidates/index.ts';
import { ServingError, storeRead } from '../http-errors.ts';
import { articleDetails } from './article-details.ts';
import { ERROR_RESPONSES, tookMs, type AppEnv, type RouteContext } from './context.ts';

const notFound = {
  description: 'Unknown article (no metadata and no sales)',
  content: { 'application/json': { schema: ErrorResponse } },
} as const;

const articleRoute = createRoute({
  method: 'get',
  path: '/v1/articles/{id}',
  summary: 'An article: display fields and sales',
  request: { params: SimilarParams },
  responses: {
    200: {
      description: 'The article',
      content: { 'application/json': { schema: ArticleResponse } },
    },
    404: notFound,
    ...ERROR_RESPONSES,
  },
});

const similarRoute = createRoute({
  method: 'get',
  path: '/v1/articles/{id}/similar',
  summary: 'Articles bought together with an article',
  request: { params: SimilarParams, query: SimilarQuery },
  responses: {
    200: {
      description: 'Co-purchase neighbours, best first',
      content: { 'application/json': { schema: SimilarResponse } },
    },
    404: notFound,
    ...ERROR_RESPONSES,
  },
});

const embeddingRoute = createRoute({
  method: 'get',
  path: '/v1/articles/{id}/similar/embedding',
  summary: 'Articles with the most similar text (embedding neighbours)',
  request: { params: SimilarParams, query: EmbeddingSimilarQuery },
  responses: {
    200: {
      description: 'Nearest articles by text embedding, best first',
      content: { 'application/json': { schema: EmbeddingSimilarResponse } },
    },
    400: ERROR_RESPONSES[400],
    404: notFound,
    503: {
      description: 'Feature store unavailable',
      content: { 'application/json': { schema: ErrorResponse } },
    },
  },
});

export function articleRoutes(ctx: RouteContext): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  const { redis, keys } = ctx;
  const ekeys = embeddingKeys(ctx.config.embeddingNamespace ?? keys.ns);

  app.openapi(articleRoute, async (c) => {
    const t0 = performance.now();
    const { id } = c.req.valid('param');
    const [article] = await storeRead('article', () => readArticles(redis, keys, [id]));
    if (!article || (article.n === 0 && Object.keys(article.meta).length === 0)) {
      throw new ServingError(404, 'REC_ERR_NOT_FOUND', `article ${id} is unknown`);
    }
    return c.json(
      {
        ...articleDetails(id, article.meta),
        mean_price: article.units > 0 ? article.revenue / article.units : null,
        sales: article.n,
        last_sale: article.last,
        took_ms: tookMs(t0),
      },
      200,
    );
  });

  app.openapi(similarRoute, async (c) => {
    const t0 = performance.now();
    const { id } = c.req.valid('param');
    const { k } = c.req.valid('query');
    const [states, flat] = await storeRead('article and co-purchases', () =>
      Promise.all([
        readArticles(redis, keys, [id]),
        redis.zrevrange(keys.article(id).copurchase, 0, k - 1, 'WITHSCORES'),
      ]),
    );
    const article = states[0];
    if (!article || (article.n === 0 && Object.keys(article.meta).length === 0)) {
      throw new ServingError(404, 'REC_ERR_NOT_FOUND', `article ${id} is unknown`);
    }
    const neighbours = parseScored(flat);
    const summaries = await readSummaries(
      redis,
      keys,
      neighbours.map((n) => n.articleId),
    );
    const now = ctx.eventNow([article.last, ...[...summaries.values()].map((s) => s.last)]);
    const items: ScoredArticleBody[] = neighbours.map((n, i) => ({
      article_id: n.articleId,
      name: summaries.get(n.articleId)?.name ?? null,
      score: decayedValue(n.logScore, now, HALF_LIVES[COPURCHASE_HALF_LIFE]),
      rank: i + 1,
    }));
    const name = article.meta.prod_name ?? null;
    return c.json({ article_id: id, name, items, took_ms: tookMs(t0), now }, 200);
  });

  app.openapi(embeddingRoute, async (c) => {
    const t0 = performance.now();
    const { id } = c.req.valid('param');
    const { n } = c.req.valid('query');
    const [exists, lists] = await readEmbeddingNeighbours(ctx, ekeys, id);
    if (!exists.known) throw new ServingError(404, 'REC_ERR_NOT_FOUND', `article ${id} is unknown`);
    const neighbours = (lists[0] ?? []).slice(0, n);
    const summaries = await readSummaries(redis, keys, [id, ...neighbours.map((x) => x.articleId)]);
    return c.json(
      {
        article_id: id,
        name: summaries.get(id)?.name ?? null,
        embedded: exists.embedded,
        items: neighbours.map((x, i) => ({
          article_id: x.articleId,
          name: summaries.get(x.articleId)?.name ?? null,
          score: x.score,
          rank: i + 1,
        })),
        took_ms: tookMs(t0),
      },
      200,
    );
  });
  return app;
}

/** Whether the article is known and embedded, and its similar list (one round trip each). */
function readEmbeddingNeighbours(ctx: RouteContext, ekeys: EmbeddingKeys, id: string) {
  const { redis, keys } = ctx;
  return storeRead('article and similar items', async () => {
    const pipe = redis.pipeline();
    pipe.exists(keys.article(id).meta, keys.article(id).stats);
    pipe.hexists(ekeys.article(id).vector, 'v');
    const [known, embedded] = ((await pipe.exec()) ?? []).map(([err, v]) => {
      if (err) throw err;
      return Number(v);
    });
    return [
      { known: (known ?? 0) > 0, embedded: (embedded ?? 0) > 0 },
      await readSimilar(redis, ekeys, [id]),
    ] as const;
  });
}
