/**
 * The embedding side of candidate generation (issue 7), used by `gatherCandidates` only when
 * `EMBEDDINGS=on`:
 *  - the `similar` source: text-embedding neighbours (`npm run embed`'s index) of the customer's
 *    latest distinct purchases (the co-purchase seeds), scored by the best cosine over the seeds,
 *    only articles that have sold before now (`CandidatePool.select`);
 *  - the customer's taste vector, the vectors of the candidates and of the latest purchases,
 *    read with the round trips candidate generation makes anyway (`EmbeddingReads`: no round trip
 *    of their own) and attached to the request's states for the embedding features
 *    (features/embedding-state.ts).
 * Article vectors and similar lists are read from `CandidateConfig.embeddingNamespace` (default
 * the request's namespace; a training replay points it at the live one), taste vectors from the
 * request's namespace (the taste processor writes them there).
 */
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from '../../common/redis.ts';
import { decodeTaste, parseSimilar, readVectors, type Neighbour } from '../../embeddings/store.ts';
import { embeddingKeys, type EmbeddingKeys } from '../../features/embedding-keys.ts';
import {
  RECENT_FOR_SIMILARITY,
  attachArticleVector,
  attachCustomerEmbedding,
} from '../../features/embedding-state.ts';
import type { KeySpace } from '../../features/keys.ts';
import type { ArticleState, CustomerState } from '../../features/state.ts';
import type { CandidatePool } from './pool.ts';
import type { Replies } from './replies.ts';

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

/** The replies of `queueSimilarReads`: each seed's neighbours. */
export function similarReplies(replies: Replies, seeds: readonly string[]): Neighbour[][] {
  return seeds.map(() => {
    const v = replies.next();
    return parseSimilar(typeof v === 'string' ? v : null);
  });
}

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

/** Add the `similar` picks (see `similarPicks`). */
export function addSimilar(
  pool: CandidatePool,
  seeds: readonly string[],
  lists: readonly Neighbour[][],
  excluded: (id: string) => boolean,
  n: number,
): void {
  similarPicks(seeds, lists, excluded, n).forEach(([articleId, v], rank) => {
    pool.add(articleId, 'similar', rank).similar = v;
  });
}

/**
 * The embedding state of one request: the customer's taste, the vectors of their latest distinct
 * purchases and of every candidate article. Read alongside the reads `gatherCandidates` makes
 * anyway (round trip 2 for the known articles, round trip 3 for the new ones), so embeddings cost
 * no round trip of their own; then attached to the request's states.
 */
export class EmbeddingReads {
  /** Latest distinct purchases whose vectors feed `p_emb_recent_max` (newest first). */
  readonly recentIds: readonly string[];
  private readonly vectors = new Map<string, Float32Array>();
  private readonly requested = new Set<string>();
  private tasteBlob: Buffer | null = null;
  private tasteRequested = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly ekeys: EmbeddingKeys,
    private readonly customer: CustomerState,
  ) {
    const recent: string[] = [];
    for (const r of customer.recent) {
      if (recent.length >= RECENT_FOR_SIMILARITY) break;
      if (!recent.includes(r.articleId)) recent.push(r.articleId);
    }
    this.recentIds = recent;
  }

  /**
   * Read the taste (on the first call, for a customer with history) and the vectors of `ids` not
   * read yet; resolves to whether anything was sent. Call it in the same tick as the other reads
   * of a round trip so that they go out together.
   */
  async read(ids: Iterable<string>): Promise<boolean> {
    const fresh = [...new Set(ids)].filter((id) => !this.requested.has(id));
    for (const id of fresh) this.requested.add(id);
    const withTaste = !this.tasteRequested && this.customer.n > 0;
    this.tasteRequested = true;
    if (fresh.length === 0 && !withTaste) return false;
    const tasteKey = embeddingKeys(this.keys.ns).customer(this.customer.customerId).taste;
    const [taste, vectors] = await Promise.all([
      withTaste ? this.redis.hgetBuffer(tasteKey, 'v') : Promise.resolve(null),
      readVectors(this.redis, this.ekeys, fresh),
    ]);
    if (withTaste) this.tasteBlob = taste;
    for (const [id, v] of vectors) this.vectors.set(id, v);
    return true;
  }

  /** Attach what was read to the customer and to the articles (those with a vector). */
  attach(articles: ReadonlyMap<string, ArticleState>): void {
    for (const [id, a] of articles) {
      const v = this.vectors.get(id);
      if (v) attachArticleVector(a, v);
    }
    attachCustomerEmbedding(this.customer, {
      taste: decodeTaste(this.tasteBlob),
      recent: this.recentIds.flatMap((id) => {
        const v = this.vectors.get(id);
        return v ? [v] : [];
      }),
    });
  }
}
