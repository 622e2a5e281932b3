/**
 * The demo's embedding step: set up the local model if needed, embed the new and changed articles
 * (default scope: sold ones; cached by content hash, so a re-run embeds nothing), rebuild the
 * similar-items index and print the text neighbours of one article with their names. With
 * EMBEDDINGS=on, the customers' taste vectors are rebuilt when articles were newly embedded (the
 * processors ran before the articles had vectors).
 */
import type { RedisClient } from '../common/redis.ts';
import { rebuildTaste, type TasteRebuildDeps } from '../processors/taste-rebuild.ts';
import { ensureModel } from '../embeddings/model.ts';
import type { EmbeddingsConfig } from '../common/config.ts';
import { describeEmbedding, runEmbedding } from '../embeddings/job.ts';
import { modelsRoot } from '../embeddings/model.ts';
import { readSimilar } from '../embeddings/store.ts';
import { embeddingKeys } from '../features/embedding-keys.ts';
import type { KeySpace } from '../features/keys.ts';
import { readArticles } from '../features/state.ts';

const label = (meta: Record<string, string>): string =>
  [meta.prod_name, meta.product_type_name, meta.colour_group_name]
    .filter((x) => x !== undefined && x !== '')
    .join(', ');

export async function showSimilarItems(
  redis: RedisClient,
  keys: KeySpace,
  articleId: string | undefined,
  opts: { embeddings: EmbeddingsConfig; progress: boolean; all?: boolean; soldSince?: number },
  /** With embeddings on: rebuild the tastes when articles were newly embedded. */
  streams?: Omit<TasteRebuildDeps, 'redis' | 'keys'>,
): Promise<void> {
  try {
    const root = modelsRoot(opts.embeddings.modelDir);
    await ensureModel((line) => {
      console.log(`  ${line}`);
    }, root);
    const ekeys = embeddingKeys(keys.ns);
    const report = await runEmbedding(redis, keys, ekeys, {
      root,
      remoteModel: opts.embeddings.remoteModel,
      progress: opts.progress,
      all: opts.all ?? false,
      ...(opts.soldSince === undefined ? {} : { soldSince: opts.soldSince }),
    });
    for (const line of describeEmbedding(report)) console.log(line);
    if (opts.embeddings.enabled && streams && report.embed.embedded > 0) {
      const r = await rebuildTaste({ ...streams, redis, keys }, ekeys, opts);
      console.log(`  taste vectors rebuilt from ${r.applied} purchases (embeddings on)`);
    }
    if (articleId === undefined) return;
    const [list = []] = await readSimilar(redis, ekeys, [articleId]);
    const states = await readArticles(redis, keys, [articleId, ...list.map((n) => n.articleId)]);
    const meta = new Map(states.map((s) => [s.articleId, s.meta]));
    console.log(
      `\nSimilar items (text embeddings) to ${articleId} ${label(meta.get(articleId) ?? {})}:`,
    );
    list.slice(0, 8).forEach((n, i) => {
      console.log(
        `  ${String(i + 1).padStart(2)}. ${n.articleId}  ${n.score.toFixed(3)}  ${label(meta.get(n.articleId) ?? {})}`,
      );
    });
  } catch (err) {
    console.log(`  embeddings skipped: ${err instanceof Error ? err.message : String(err)}`);
  }
}
