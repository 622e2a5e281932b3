/**
 * The embedding step as one call (used by `npm run embed` and the demo) and the namespace of the
 * article vectors.
 */
import type { RedisClient } from '../common/redis.ts';
import type { Config } from '../common/config.ts';
import { embeddingKeys, type EmbeddingKeys } from '../features/embedding-keys.ts';
import type { KeySpace } from '../features/keys.ts';
import { buildSimilar, embedArticles, type EmbedReport, type SimilarReport } from './embed.ts';
import { loadEmbedder, type EmbedderOptions } from './model.ts';

/**
 * Key space of the article vectors and similar lists: `EMBEDDINGS_NAMESPACE`, else
 * `REDIS_NAMESPACE` (training replays read them from here, not from their own).
 */
export function articleEmbeddingKeys(
  config: Pick<Config, 'redisNamespace' | 'embeddings'>,
): EmbeddingKeys {
  return embeddingKeys(config.embeddings.namespace ?? config.redisNamespace);
}

export interface EmbedRunOptions extends EmbedderOptions {
  /** Embed the whole catalogue (default: sold + embedded before + updated since). */
  readonly all?: boolean;
  readonly updatedSince?: number;
  /** Only articles last sold at or after this instant (ms) among the sold ones (demo scope). */
  readonly soldSince?: number;
  /** Neighbours per article (default 20). */
  readonly neighbours?: number;
  readonly batchSize?: number;
  readonly progress?: boolean;
}

export interface EmbedRunReport {
  readonly embed: EmbedReport;
  readonly similar: SimilarReport;
  readonly loadMs: number;
}

/** Load the model, embed new/changed articles, rebuild the similar-items index. */
export async function runEmbedding(
  redis: RedisClient,
  keys: KeySpace,
  ekeys: EmbeddingKeys,
  opts: EmbedRunOptions = {},
): Promise<EmbedRunReport> {
  const t0 = performance.now();
  const embedder = await loadEmbedder(opts);
  const loadMs = performance.now() - t0;
  try {
    const embed = await embedArticles(redis, keys, ekeys, embedder, {
      scope: opts.all
        ? { kind: 'all' }
        : {
            kind: 'sold',
            ...(opts.updatedSince === undefined ? {} : { updatedSince: opts.updatedSince }),
            ...(opts.soldSince === undefined ? {} : { soldSince: opts.soldSince }),
          },
      ...(opts.batchSize === undefined ? {} : { batchSize: opts.batchSize }),
      progress: opts.progress ?? false,
    });
    // Nothing new and an index of the same size and depth: keep it.
    const n = opts.neighbours ?? 20;
    const [built, count] = await Promise.all([redis.hgetall(ekeys.meta), redis.scard(ekeys.ids)]);
    if (embed.embedded === 0 && Number(built.articles) === count && Number(built.similar_n) === n) {
      return { embed, similar: { articles: count, n, readMs: 0, buildMs: 0, kept: true }, loadMs };
    }
    const similar = await buildSimilar(redis, ekeys, { n, progress: opts.progress ?? false });
    return { embed, similar, loadMs };
  } finally {
    await embedder.dispose();
  }
}

/** Human-readable lines of a run. */
export function describeEmbedding(r: EmbedRunReport): string[] {
  const e = r.embed;
  const s = r.similar;
  return [
    `  model loaded in ${(r.loadMs / 1000).toFixed(1)} s`,
    `  catalogue ${e.catalogue} articles, ${e.inScope} in scope: ${e.embedded} embedded, ` +
      `${e.unchanged} unchanged (cached by content hash), ${e.empty} without text`,
    e.embedded > 0
      ? `  embedding: ${e.perSecond.toFixed(0)} articles/s (${(e.ms / 1000).toFixed(1)} s with reads and writes)`
      : '  embedding: nothing new',
    s.kept
      ? `  similar items: index of ${s.articles} articles unchanged, kept`
      : `  similar items: ${s.n} neighbours for each of ${s.articles} articles in ` +
        `${(s.buildMs / 1000).toFixed(1)} s (+${(s.readMs / 1000).toFixed(1)} s reading vectors)`,
  ];
}
