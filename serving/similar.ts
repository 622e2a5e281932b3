/**
 * `GET /v1/articles/{id}/similar/embedding?n=` — articles whose text is closest to an article's
 * (cosine of all-MiniLM-L6-v2 embeddings of name, type, colour, section and description), read
 * from the similar-items index `npm run embed` builds. `/v1/articles/{id}/similar` (co-purchase
 * neighbours) is unchanged. 404 for an unknown article (no metadata and no sales); a known article
 * that is not embedded yet answers 200 with no items and `embedded: false`.
 */
import { type OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { Redis } from 'ioredis';
import type { EmbeddingKeys } from '../features/embedding-keys.ts';
import type { KeySpace } from '../features/keys.ts';
import { readSimilar } from '../embeddings/store.ts';
import { readSummaries } from './candidates/index.ts';
import { ServingError, storeRead } from './http-errors.ts';
import { ErrorResponse, SimilarParams, SimpleItem } from './api-schemas.ts';

/** Most neighbours a request may ask for (the index keeps 20 by default). */
export const MAX_SIMILAR_N = 50;

export const EmbeddingSimilarQuery = z.strictObject({
  n: z.coerce
    .number({ error: `n must be an integer from 1 to ${MAX_SIMILAR_N}` })
    .int({ error: `n must be an integer from 1 to ${MAX_SIMILAR_N}` })
    .min(1, { error: `n must be an integer from 1 to ${MAX_SIMILAR_N}` })
    .max(MAX_SIMILAR_N, { error: `n must be an integer from 1 to ${MAX_SIMILAR_N}` })
    .default(10)
    .openapi({ description: `Number of items (1-${MAX_SIMILAR_N})`, example: 10 }),
});

export const EmbeddingSimilarResponse = z
  .object({
    article_id: z.string(),
    name: z.string().nullable(),
    embedded: z.boolean().openapi({ description: 'Whether the article has an embedding yet' }),
    items: z.array(SimpleItem).openapi({
      description: 'Nearest articles by text embedding; score = cosine similarity',
    }),
    took_ms: z.number(),
  })
  .openapi('EmbeddingSimilarResponse');

const route = createRoute({
  method: 'get',
  path: '/v1/articles/{id}/similar/embedding',
  summary: 'Articles with the most similar text (embedding neighbours)',
  request: { params: SimilarParams, query: EmbeddingSimilarQuery },
  responses: {
    200: {
      description: 'Nearest articles by text embedding, best first',
      content: { 'application/json': { schema: EmbeddingSimilarResponse } },
    },
    400: {
      description: 'Invalid request; every offending field is named',
      content: { 'application/json': { schema: ErrorResponse } },
    },
    404: {
      description: 'Unknown article (no metadata and no sales)',
      content: { 'application/json': { schema: ErrorResponse } },
    },
    503: {
      description: 'Feature store unavailable',
      content: { 'application/json': { schema: ErrorResponse } },
    },
  },
});

export interface SimilarRouteDeps {
  readonly redis: Redis;
  readonly keys: KeySpace;
  readonly ekeys: EmbeddingKeys;
}

// The app's Env type parameter is irrelevant here; any OpenAPIHono can take the route.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function registerEmbeddingSimilar(app: OpenAPIHono<any>, deps: SimilarRouteDeps): void {
  const { redis, keys, ekeys } = deps;
  app.openapi(route, async (c) => {
    const t0 = performance.now();
    const { id } = c.req.valid('param');
    const { n } = c.req.valid('query');
    const [exists, lists] = await storeRead('article and similar items', async () => {
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
        took_ms: Math.round((performance.now() - t0) * 100) / 100,
      },
      200,
    );
  });
}
