/**
 * Embedding state of a request (issue 7): article vectors, the customer's taste vector and the
 * vectors of their latest purchases, attached to the `ArticleState` / `CustomerState` objects that
 * candidate generation returns (serving/candidates/, which training rows use too), and the two
 * ranking features computed from them. Attached when embeddings are on (config `embeddings.enabled`,
 * `EMBEDDINGS=on`); the features are then part of `featureSet(true)` (definitions.ts), and absent
 * from `featureSet(false)` (the default). Missing vectors read NaN.
 *
 * `EMBEDDINGS=on` turns on the taste processor, the embedding features and the `similar`
 * candidate source; `off` (the default: the backtest measured no gain, docs/embeddings.md) leaves
 * the pipeline as it is without embeddings. `npm run embed` and the `/similar/embedding` route work
 * either way. The switch is a value (common/config.ts) passed to whoever needs it.
 */
import type { FeatureDefinition } from './feature.ts';
import type { ArticleState, CustomerState } from './state.ts';

export interface CustomerEmbedding {
  /** Unit direction of the time-decayed mean of purchased articles' vectors, or null. */
  readonly taste: Float32Array | null;
  /** Vectors of the latest distinct purchases that have one (newest first). */
  readonly recent: readonly Float32Array[];
}

const articleVectors = new WeakMap<ArticleState, Float32Array>();
const customerEmbeddings = new WeakMap<CustomerState, CustomerEmbedding>();

export function attachArticleVector(article: ArticleState, v: Float32Array): void {
  articleVectors.set(article, v);
}

export function attachCustomerEmbedding(customer: CustomerState, e: CustomerEmbedding): void {
  customerEmbeddings.set(customer, e);
}

export function articleVectorOf(article: ArticleState): Float32Array | undefined {
  return articleVectors.get(article);
}

export function customerEmbeddingOf(customer: CustomerState): CustomerEmbedding | undefined {
  return customerEmbeddings.get(customer);
}

/** Latest distinct purchases whose vectors feed `p_emb_recent_max`. */
export const RECENT_FOR_SIMILARITY = 10;

function dot(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return NaN;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] ?? 0) * (b[i] ?? 0);
  return s;
}

const TASTE_FEATURES: readonly FeatureDefinition[] = [
  {
    name: 'p_emb_taste_cos',
    scope: 'pair',
    writes:
      'taste.lua: {u}:taste v (decayed sum of purchased articles’ vectors) · npm run embed: {a}:emb',
    read: ({ customer, article }) => {
      const taste = customerEmbeddingOf(customer)?.taste;
      const v = articleVectorOf(article);
      return taste && v ? dot(taste, v) : NaN;
    },
  },
  {
    name: 'p_emb_recent_max',
    scope: 'pair',
    writes: `customer.lua: {u}:recent (last ${RECENT_FOR_SIMILARITY} distinct) · npm run embed: {a}:emb`,
    read: ({ customer, article }) => {
      const recent = customerEmbeddingOf(customer)?.recent ?? [];
      const v = articleVectorOf(article);
      if (!v || recent.length === 0) return NaN;
      let best = -Infinity;
      for (const r of recent) best = Math.max(best, dot(r, v));
      return best;
    },
  },
];

/** The embedding features, part of the feature set when embeddings are on. */
export const EMBEDDING_FEATURES: readonly FeatureDefinition[] = TASTE_FEATURES;
