/**
 * The embedding side of candidate generation (issue 7), used by `gatherCandidates` only when
 * `EMBEDDINGS=on`:
 *  - the `similar` source: text-embedding neighbours (`npm run embed`'s index) of the customer's
 *    latest distinct purchases (the co-purchase seeds), scored by the best cosine over the seeds;
 *  - one extra round trip once the pool is final: the customer's taste vector, the vectors of the
 *    candidates and of the latest purchases, attached to the request's states for the embedding
 *    features (streams/features/embedding-state.ts).
 * Article vectors and similar lists are read from `CandidateConfig.embeddingNamespace` (default
 * the request's namespace; a training replay points it at the live one), taste vectors from the
 * request's namespace (the taste processor writes them there).
 */
import type { ChainableCommander, Redis } from 'ioredis';
import {
  decodeTaste,
  parseSimilar,
  readVectors,
  type Neighbour,
} from '../streams/embeddings/store.ts';
import { embeddingKeys, type EmbeddingKeys } from '../streams/features/embedding-keys.ts';
import {
  RECENT_FOR_SIMILARITY,
  attachArticleVector,
  attachCustomerEmbedding,
  embeddingsEnabled,
} from '../streams/features/embedding-state.ts';
import type { KeySpace } from '../streams/features/keys.ts';
import type { ArticleState, CustomerState } from '../streams/features/state.ts';

/** Whether embeddings take part in candidate generation and features (`EMBEDDINGS`, at start). */
export const EMBEDDINGS_ON = embeddingsEnabled();
/** Default quota of the `similar` source (0 when off). */
export const DEFAULT_SIMILAR_QUOTA = EMBEDDINGS_ON ? 30 : 0;

/** Key space of the article vectors for a request in `keys` (see the module comment). */
export function articleVectorKeys(keys: KeySpace, embeddingNamespace?: string): EmbeddingKeys {
  return embeddingKeys(embeddingNamespace ?? keys.ns);
}

/** Queue the similar-list reads of `seeds` on a pipeline (one GET each). */
export function queueSimilarReads(
  pipe: ChainableCommander,
  ekeys: EmbeddingKeys,
  seeds: readonly string[],
): void {
  for (const seed of seeds) pipe.get(ekeys.article(seed).similar);
}

/** Parse one GET reply of `queueSimilarReads`. */
export const similarReply = (v: unknown): Neighbour[] =>
  parseSimilar(typeof v === 'string' ? v : null);

/**
 * `similar` picks: neighbours of the seeds, best cosine over seeds, without the seeds and the
 * excluded articles, best first (ties by id), at most `n`.
 */
export function similarPicks(
  seeds: readonly string[],
  lists: readonly Neighbour[][],
  excluded: (id: string) => boolean,
  n: number,
): [string, { score: number; seed: string }][] {
  const seedSet = new Set(seeds);
  const best = new Map<string, { score: number; seed: string }>();
  seeds.forEach((seed, i) => {
    for (const x of lists[i] ?? []) {
      if (seedSet.has(x.articleId) || excluded(x.articleId)) continue;
      const prev = best.get(x.articleId);
      if (!prev || x.score > prev.score) best.set(x.articleId, { score: x.score, seed });
    }
  });
  return [...best].sort((a, b) => b[1].score - a[1].score || (a[0] < b[0] ? -1 : 1)).slice(0, n);
}

/**
 * Read and attach the embedding state of a request: the customer's taste, the vectors of their
 * latest distinct purchases and of every article in `articles`. One round trip.
 */
export async function attachEmbeddings(
  redis: Redis,
  keys: KeySpace,
  ekeys: EmbeddingKeys,
  customer: CustomerState,
  articles: ReadonlyMap<string, ArticleState>,
): Promise<void> {
  const recentIds: string[] = [];
  for (const r of customer.recent) {
    if (recentIds.length >= RECENT_FOR_SIMILARITY) break;
    if (!recentIds.includes(r.articleId)) recentIds.push(r.articleId);
  }
  const ids = [...new Set([...articles.keys(), ...recentIds])];
  const tasteKey = embeddingKeys(keys.ns).customer(customer.customerId).taste;
  const [taste, vectors] = await Promise.all([
    customer.n > 0 ? redis.hgetBuffer(tasteKey, 'v') : Promise.resolve(null),
    readVectors(redis, ekeys, ids),
  ]);
  for (const [id, a] of articles) {
    const v = vectors.get(id);
    if (v) attachArticleVector(a, v);
  }
  attachCustomerEmbedding(customer, {
    taste: decodeTaste(taste),
    recent: recentIds.flatMap((id) => {
      const v = vectors.get(id);
      return v ? [v] : [];
    }),
  });
}
