/**
 * Redis keys of the article-text embeddings (issue 7), beside the main layout in keys.ts and with
 * the same hash tags, so a script touching a customer's or an article's keys stays in one slot.
 *
 * Two namespaces meet here. Article vectors and their similar-items lists are content-derived (the
 * catalogue text and the model), written by `npm run embed` into the deployment's namespace
 * (`EMBEDDINGS_NAMESPACE`, default the live `rec`); taste vectors are per-customer processor state
 * and live in the processor's own namespace, so a training replay rebuilds them in its isolated
 * namespace while reading the live article vectors.
 */
export interface ArticleEmbeddingKeys {
  /** hash: v = vector blob (see store.ts), h = content hash of the text and model */
  readonly vector: string;
  /** string: the top-N neighbours, `<article> <cosine>` pairs joined by ',', best first */
  readonly similar: string;
}

export interface CustomerEmbeddingKeys {
  /**
   * hash: v = float32 LE blob of the decayed sum of purchased articles' vectors, w = decayed
   * weight, t = reference event time (ms) both are decayed to, n = purchases applied; the guard's
   * bookkeeping: `o:<partition>` = highest offset applied, `seen` = entries of `tasteSeen`,
   * `seen_at_prune` = entries its last prune kept
   */
  readonly taste: string;
  /**
   * hash event_id -> `<partition>:<offset>|<event time>` applied to the taste vector (the event-id
   * guard; entries more than the dedup horizon older than `t` are forgotten, see taste.lua)
   */
  readonly tasteSeen: string;
}

export interface EmbeddingKeys {
  readonly ns: string;
  article(articleId: string): ArticleEmbeddingKeys;
  customer(customerId: string): CustomerEmbeddingKeys;
  /** set of article ids with a vector */
  readonly ids: string;
  /** hash: model, dim, articles, similar_n, built_at (ms), build_ms */
  readonly meta: string;
}

export function embeddingKeys(ns = 'rec'): EmbeddingKeys {
  if (!/^[A-Za-z0-9_.-]+$/.test(ns)) throw new Error(`invalid key namespace "${ns}"`);
  return {
    ns,
    article: (a) => ({ vector: `${ns}:{a:${a}}:emb`, similar: `${ns}:{a:${a}}:sim` }),
    customer: (c) => ({ taste: `${ns}:{u:${c}}:taste`, tasteSeen: `${ns}:{u:${c}}:tseen` }),
    ids: `${ns}:{e}:ids`,
    meta: `${ns}:{e}:meta`,
  };
}
