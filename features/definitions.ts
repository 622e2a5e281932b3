/**
 * The feature definitions shared by serving and training. Each feature names the state it reads
 * (written by the processors' scripts, see `writes`) and computes its value from that state at an
 * explicit "now" — never the wall clock — so a training row built at a cutoff is what serving would
 * have computed at that instant. Missing values are NaN (LightGBM's and ONNX's "missing").
 */
import { CO_BUYER_HALF_LIFE_MS, CO_BUYER_WINDOW_MS } from './co-buyers.ts';
import { decayedValue } from './decay.ts';
import {
  AFFINITY_HALF_LIFE,
  COPURCHASE_HALF_LIFE,
  HALF_LIVES,
  ITEM_HALF_LIFE,
  type HalfLife,
} from './keys.ts';
import { productKey, type ArticleState, type CustomerState, type ItemStat } from './state.ts';
import { EMBEDDING_FEATURES } from './embedding-state.ts';
import type { FeatureContext, FeatureDefinition } from './feature.ts';

export type { CandidateEvidence, FeatureContext, FeatureDefinition } from './feature.ts';

const days = (ms: number): number => ms / 86_400_000;
const since = (t: number | null, now: number): number => (t === null ? NaN : days(now - t));
const ratio = (a: number, b: number): number => (b === 0 ? NaN : a / b);

interface RecentStat {
  /** Latest purchase time. */
  last: number;
  /** Position among the distinct articles of the recent list (0 = the latest). */
  rank: number;
  /** Purchases within the list. */
  n: number;
}

/**
 * Values derived from a customer state, each computed once per state (the state does not change).
 * The last state asked for is kept in front of the WeakMap: a request's or a query's feature rows
 * read one customer in turn, 100 candidates × several features, and an identity check is cheaper
 * than a WeakMap lookup.
 */
class PerCustomer<T> {
  private readonly byState = new WeakMap<CustomerState, T>();
  private lastState: CustomerState | null = null;
  private lastValue: T | null = null;

  constructor(private readonly derive: (customer: CustomerState) => T) {}

  get(customer: CustomerState): T {
    if (customer === this.lastState) return this.lastValue as T;
    let value = this.byState.get(customer);
    if (value === undefined) {
      value = this.derive(customer);
      this.byState.set(customer, value);
    }
    this.lastState = customer;
    this.lastValue = value;
    return value;
  }
}

/** Values derived from a customer state at one "now": per state, those of the last now asked for. */
class PerCustomerAt<T> {
  private readonly slots = new PerCustomer<{ now: number; value: T | null }>(() => ({
    now: NaN,
    value: null,
  }));

  constructor(private readonly derive: (customer: CustomerState, now: number) => T) {}

  get(customer: CustomerState, now: number): T {
    const slot = this.slots.get(customer);
    if (slot.value === null || slot.now !== now) {
      slot.value = this.derive(customer, now);
      slot.now = now;
    }
    return slot.value;
  }
}

/** Per customer state, its recent purchases by article. */
const recentIndexes = new PerCustomer((customer) => {
  const index = new Map<string, RecentStat>();
  for (const p of customer.recent) {
    const r = index.get(p.articleId);
    if (r === undefined) index.set(p.articleId, { last: p.time, rank: index.size, n: 1 });
    else {
      r.n++;
      if (p.time > r.last) r.last = p.time;
    }
  }
  return index;
});

/** The customer's latest purchases of the article, within the recent list (newest first). */
function recentOf(customer: CustomerState, articleId: string): RecentStat | null {
  return recentIndexes.get(customer).get(articleId) ?? null;
}

const popularity = (hl: HalfLife): FeatureDefinition => ({
  name: `a_pop_${hl}`,
  scope: 'article',
  writes: `article.lua: {a}:stats pop:${hl} (log-space decayed purchase count)`,
  read: ({ article, now }) => decayedValue(article.popularity[hl] ?? null, now, HALF_LIVES[hl]),
});

/** Per customer state, its affinities' decayed total at a "now" (read by six features per candidate). */
const affinityTotals = new PerCustomerAt((customer, now) =>
  decayedValue(customer.affinityTotal, now, HALF_LIVES[AFFINITY_HALF_LIFE]),
);

/** Affinity of the customer to the article's value of one category, as a decayed share. */
const affinity = (prefix: string, metaField: string): FeatureDefinition => ({
  name: `p_aff_${prefix}`,
  scope: 'pair',
  writes: `customer.lua: {u}:state f:${prefix}:<value> and f:_total (log-space decayed counts)`,
  read: ({ customer, article, now }) => {
    const value = article.meta[metaField];
    if (value === undefined || value === '' || customer.affinityTotal === null) return NaN;
    const stored = customer.affinity.get(prefix)?.get(value) ?? null;
    return ratio(
      decayedValue(stored, now, HALF_LIVES[AFFINITY_HALF_LIFE]),
      affinityTotals.get(customer, now),
    );
  },
});

/** The customer's purchases of the candidate article (`a`) or of its product code (`p`). */
function itemOf(ctx: FeatureContext, level: 'a' | 'p'): ItemStat | undefined {
  return level === 'a'
    ? ctx.customer.items.get(ctx.article.articleId)
    : ctx.customer.products.get(productKey(ctx.article));
}

/** Purchase count, days since the latest, and time-weighted count of an article or product. */
const itemFeatures = (level: 'a' | 'p'): FeatureDefinition[] => {
  const name = level === 'a' ? 'item' : 'prod';
  const what = level === 'a' ? 'a:<article>' : 'p:<product code>';
  return [
    {
      name: `p_${name}_n`,
      scope: 'pair',
      writes: `customer.lua: {u}:state ${what} (n)`,
      read: (ctx) => itemOf(ctx, level)?.n ?? 0,
    },
    {
      name: `p_${name}_days_since_last`,
      scope: 'pair',
      writes: `customer.lua: {u}:state ${what} (last)`,
      read: (ctx) => since(itemOf(ctx, level)?.last ?? null, ctx.now),
    },
    {
      name: `p_${name}_weighted`,
      scope: 'pair',
      writes: `customer.lua: {u}:state ${what} (log-space count, ${ITEM_HALF_LIFE} half-life)`,
      read: (ctx) =>
        decayedValue(itemOf(ctx, level)?.logCount ?? null, ctx.now, HALF_LIVES[ITEM_HALF_LIFE]),
    },
  ];
};

/**
 * How much of the customer's latest purchase of the candidate article is used up if they go on
 * buying it at the rate they did before it: the units bought before the latest purchase per day
 * from the first purchase to the latest, times the days since the latest, over the latest
 * purchase's units. 1 is when a customer restocking at a steady rate would buy again. NaN before
 * a purchase at least a day ahead of the latest.
 */
function stockUsed(ctx: FeatureContext): number {
  const item = ctx.customer.items.get(ctx.article.articleId);
  const units = ctx.customer.bought[ctx.article.articleId];
  if (item === undefined || units === undefined || !(item.lastUnits > 0)) return NaN;
  const span = days(item.last - item.first);
  if (!(span >= 1)) return NaN;
  return (((units - item.lastUnits) / span) * since(item.last, ctx.now)) / item.lastUnits;
}

/** Per customer state, the largest log-space count among its articles and among its products. */
const topCounts = new PerCustomer((customer) => {
  const max = (m: ReadonlyMap<string, ItemStat>) => {
    let v = -Infinity;
    for (const s of m.values()) if (s.logCount > v) v = s.logCount;
    return v;
  };
  return { a: max(customer.items), p: max(customer.products) };
});

function topCount(customer: CustomerState, level: 'a' | 'p'): number {
  return topCounts.get(customer)[level];
}

/**
 * The candidate's time-weighted purchases by the customer (article or product code) divided by
 * those of the customer's most bought one: the strong heuristic's repurchase score, in [0, 1]
 * (NaN for a customer without purchases). Both decay alike, so the share does not depend on "now".
 */
function itemShare(ctx: FeatureContext, level: 'a' | 'p'): number {
  const top = topCount(ctx.customer, level);
  if (top === -Infinity) return NaN;
  const item = itemOf(ctx, level);
  return item === undefined ? 0 : Math.exp(item.logCount - top);
}

/** Rank of the candidate within one source's ordering (NaN when the source did not propose it). */
const sourceRank = (source: string): FeatureDefinition => ({
  name: `s_rank_${source}`,
  scope: 'pair',
  writes: `candidate generation: position in the ${source} source`,
  read: ({ candidate }) => candidate?.ranks[source] ?? NaN,
});

/** The customer's purchases weighed for co-buyer features at one "now" (co-buyers.ts). */
interface CoBuyerWeights {
  /** The purchases within the window (in the state's item order) and 2^(-age / half-life) each. */
  readonly ids: readonly string[];
  readonly weights: readonly number[];
  /** The same as a map, article id -> weight. */
  readonly byId: ReadonlyMap<string, number>;
  readonly sum: number;
}

function weighCoBuyers(customer: CustomerState, now: number): CoBuyerWeights {
  const ids: string[] = [];
  const weights: number[] = [];
  const byId = new Map<string, number>();
  let sum = 0;
  for (const [id, stat] of customer.items) {
    const age = now - stat.last;
    if (age < 0 || age > CO_BUYER_WINDOW_MS) continue;
    const x = 2 ** (-age / CO_BUYER_HALF_LIFE_MS);
    ids.push(id);
    weights.push(x);
    byId.set(id, x);
    sum += x;
  }
  return { ids, weights, byId, sum };
}

const coBuyerWeights = new PerCustomerAt(weighCoBuyers);

/**
 * The last candidate's co-buyer scores: the two features read them in turn, so one computation
 * serves both (a row's features are written one after the other).
 */
let lastCoBuyerScores: {
  readonly article: ArticleState;
  readonly customer: CustomerState;
  readonly now: number;
  readonly mean: number;
  readonly max: number;
} | null = null;

/**
 * The candidate's co-buyer similarity to the customer's purchases within the window, each weighed
 * by its age: the weighted mean over those purchases, or the largest weighted one. NaN when the
 * candidate has no neighbours or the customer no purchase within the window.
 */
function coBuyerScore(ctx: FeatureContext, how: 'mean' | 'max'): number {
  const { article, customer, now } = ctx;
  const neighbours = article.coBuyers;
  if (neighbours === null) return NaN;
  let scores = lastCoBuyerScores;
  if (
    scores === null ||
    scores.article !== article ||
    scores.customer !== customer ||
    scores.now !== now
  ) {
    const w = coBuyerWeights.get(customer, now);
    let sum = 0;
    let max = 0;
    // Walk the smaller side and look each id up in the other: every candidate runs this, with up to
    // 100 neighbours (53 on average on hm-sample) against the customer's articles within the window
    // (about 10). The product of weight and cosine is the same whichever side is walked.
    if (w.ids.length < neighbours.size) {
      for (let i = 0; i < w.ids.length; i++) {
        const b = neighbours.get(w.ids[i] as string);
        if (b === undefined) continue;
        const p = (w.weights[i] as number) * b;
        sum += p;
        if (p > max) max = p;
      }
    } else {
      for (const [id, b] of neighbours) {
        const a = w.byId.get(id);
        if (a === undefined) continue;
        const p = a * b;
        sum += p;
        if (p > max) max = p;
      }
    }
    scores =
      w.sum === 0
        ? { article, customer, now, mean: NaN, max: NaN }
        : { article, customer, now, mean: sum / w.sum, max };
    lastCoBuyerScores = scores;
  }
  return how === 'mean' ? scores.mean : scores.max;
}

/** The features computed with embeddings off (the default). */
const BASE_FEATURES: readonly FeatureDefinition[] = [
  // customer
  {
    name: 'c_purchases',
    scope: 'customer',
    writes: 'customer.lua: {u}:state n',
    read: ({ customer }) => customer.n,
  },
  {
    name: 'c_units',
    scope: 'customer',
    writes: 'customer.lua: {u}:state units',
    read: ({ customer }) => customer.units,
  },
  {
    name: 'c_spend',
    scope: 'customer',
    writes: 'customer.lua: {u}:state spend',
    read: ({ customer }) => customer.spend,
  },
  {
    name: 'c_avg_price',
    scope: 'customer',
    writes: 'customer.lua: {u}:state price_sum / n',
    read: ({ customer }) => ratio(customer.priceSum, customer.n),
  },
  {
    name: 'c_days_since_first',
    scope: 'customer',
    writes: 'customer.lua: {u}:state first',
    read: ({ customer, now }) => since(customer.first, now),
  },
  {
    name: 'c_days_since_last',
    scope: 'customer',
    writes: 'customer.lua: {u}:state last',
    read: ({ customer, now }) => since(customer.last, now),
  },
  {
    name: 'c_channel2_share',
    scope: 'customer',
    writes: 'customer.lua: {u}:state ch:<id>',
    read: ({ customer }) => ratio(customer.channels['2'] ?? 0, customer.n),
  },
  {
    name: 'c_articles',
    scope: 'customer',
    writes: 'customer.lua: {u}:state a:<article> (distinct articles bought, within the items cap)',
    read: ({ customer }) => customer.items.size,
  },
  {
    name: 'c_age',
    scope: 'customer',
    writes: 'metadata.lua: {u}:meta age',
    read: ({ customer }) => (customer.meta.age ? Number(customer.meta.age) : NaN),
  },
  // article
  {
    name: 'a_purchases',
    scope: 'article',
    writes: 'article.lua: {a}:stats n',
    read: ({ article }) => article.n,
  },
  {
    name: 'a_buyers',
    scope: 'article',
    writes: 'article.lua: {a}:buyers (HyperLogLog)',
    read: ({ article }) => article.buyers,
  },
  {
    name: 'a_avg_price',
    scope: 'article',
    writes: 'article.lua: {a}:stats price_sum / n',
    read: ({ article }) => ratio(article.priceSum, article.n),
  },
  {
    name: 'a_days_since_first_sold',
    scope: 'article',
    writes: 'article.lua: {a}:stats first',
    read: ({ article, now }) => since(article.first, now),
  },
  {
    name: 'a_days_since_last_sold',
    scope: 'article',
    writes: 'article.lua: {a}:stats last',
    read: ({ article, now }) => since(article.last, now),
  },
  popularity('1d'),
  popularity('7d'),
  popularity('30d'),
  // customer x article
  {
    name: 'p_units_bought',
    scope: 'pair',
    writes: 'customer.lua: {u}:state a:<article> (units)',
    read: ({ customer, article }) => customer.bought[article.articleId] ?? 0,
  },
  {
    name: 'p_price_ratio',
    scope: 'pair',
    writes: 'article.lua / customer.lua: price_sum / n of each',
    read: ({ customer, article }) =>
      ratio(ratio(article.priceSum, article.n), ratio(customer.priceSum, customer.n)),
  },
  {
    name: 'p_days_since_bought',
    scope: 'pair',
    writes: 'customer.lua: {u}:recent (latest purchases)',
    read: ({ customer, article, now }) =>
      since(recentOf(customer, article.articleId)?.last ?? null, now),
  },
  {
    name: 'p_recent_rank',
    scope: 'pair',
    writes: 'customer.lua: {u}:recent (latest purchases)',
    read: ({ customer, article }) => recentOf(customer, article.articleId)?.rank ?? NaN,
  },
  {
    name: 'p_recent_count',
    scope: 'pair',
    writes: 'customer.lua: {u}:recent (latest purchases)',
    read: ({ customer, article }) => recentOf(customer, article.articleId)?.n ?? 0,
  },
  {
    name: 's_copurchase',
    scope: 'pair',
    writes: 'copurchase.lua: {a}:co of the seeds (candidate generation sums them)',
    read: ({ candidate, now }) => {
      if (candidate === undefined) return NaN;
      const co = candidate.copurchase;
      return co === null ? 0 : decayedValue(co.logScore, now, HALF_LIVES[COPURCHASE_HALF_LIFE]);
    },
  },
  {
    name: 's_segment',
    scope: 'pair',
    writes: 'trending.lua: segment sets (candidate generation weights them)',
    read: ({ candidate }) => (candidate === undefined ? NaN : (candidate.segment?.score ?? 0)),
  },
  {
    name: 's_sources',
    scope: 'pair',
    writes: 'candidate generation: how many sources proposed the article',
    read: ({ candidate }) => (candidate === undefined ? NaN : candidate.sources.length),
  },
  ...itemFeatures('a'),
  ...itemFeatures('p'),
  {
    name: 'p_prod_other_n',
    scope: 'pair',
    writes:
      'customer.lua: {u}:state p:<code> (purchases of the product code minus those of the article)',
    read: (ctx) => (itemOf(ctx, 'p')?.n ?? 0) - (itemOf(ctx, 'a')?.n ?? 0),
  },
  {
    name: 'p_item_share',
    scope: 'pair',
    writes: `customer.lua: {u}:state a:<article> (log-space count, over the customer's largest)`,
    read: (ctx) => itemShare(ctx, 'a'),
  },
  {
    name: 'p_prod_share',
    scope: 'pair',
    writes: `customer.lua: {u}:state p:<product code> (log-space count, over the customer's largest)`,
    read: (ctx) => itemShare(ctx, 'p'),
  },
  {
    name: 's_copurchase_share',
    scope: 'pair',
    writes:
      "copurchase.lua: {a}:co of the seeds (share of each seed's neighbours, mean over seeds)",
    read: ({ candidate }) => candidate?.copurchaseShare ?? NaN,
  },
  {
    // The strong heuristic's repurchase and co-purchase scores with its grid's middle weights (1, 1);
    // s_ like every feature that reads the candidate's evidence.
    name: 's_strong',
    scope: 'pair',
    writes: 'p_item_share + s_copurchase_share',
    read: (ctx) => {
      if (ctx.candidate === undefined) return NaN;
      const repurchase = itemShare(ctx, 'a');
      return (Number.isNaN(repurchase) ? 0 : repurchase) + ctx.candidate.copurchaseShare;
    },
  },
  sourceRank('repurchase'),
  sourceRank('siblings'),
  sourceRank('copurchase'),
  sourceRank('trending_segment'),
  sourceRank('trending_global'),
  affinity('pg', 'product_group_name'),
  affinity('pt', 'product_type_no'),
  affinity('col', 'colour_group_code'),
  affinity('dep', 'department_no'),
  affinity('idx', 'index_code'),
  affinity('sec', 'section_no'),
  {
    name: 'p_cobuy_mean',
    scope: 'pair',
    writes:
      'co-buyers.ts: {a}:sum cb (neighbours) with customer.lua {u}:state a:<article> (last), weighted mean',
    read: (ctx) => coBuyerScore(ctx, 'mean'),
  },
  {
    name: 'p_cobuy_max',
    scope: 'pair',
    writes:
      'co-buyers.ts: {a}:sum cb (neighbours) with customer.lua {u}:state a:<article> (last), weighted max',
    read: (ctx) => coBuyerScore(ctx, 'max'),
  },
  // The customer's stock of the candidate article: how much of the latest purchase is used up at
  // the customer's rate, that purchase's size against the customer's usual, and the article's share
  // of every unit the customer bought (a wholesaler restocks what runs out).
  {
    name: 'p_item_stock_used',
    scope: 'pair',
    writes:
      'customer.lua: {u}:state a:<article> ((units - lu) / (last - first) x days since last / lu)',
    read: stockUsed,
  },
  {
    name: 'p_item_last_units_rel',
    scope: 'pair',
    writes: 'customer.lua: {u}:state a:<article> (lu) over units / n',
    read: ({ customer, article }) =>
      ratio(
        customer.items.get(article.articleId)?.lastUnits ?? NaN,
        ratio(customer.units, customer.n),
      ),
  },
  {
    name: 'p_item_units_share',
    scope: 'pair',
    writes: 'customer.lua: {u}:state a:<article> (units) over units',
    read: ({ customer, article }) => ratio(customer.bought[article.articleId] ?? 0, customer.units),
  },
];

/**
 * The customer's stock of the candidate article (the last three pair features above). The
 * recipe's models use them only from a data size on (training/recipe.ts `large`): they
 * help online-retail-dev's larger trainings and cost hm-sample's small ones.
 */
export const STOCK_FEATURES = [
  'p_item_stock_used',
  'p_item_last_units_rel',
  'p_item_units_share',
] as const;

/** The features an instance computes, in column order, and their names. */
export interface FeatureSet {
  readonly definitions: readonly FeatureDefinition[];
  readonly names: readonly string[];
}

const setOf = (definitions: readonly FeatureDefinition[]): FeatureSet =>
  Object.freeze({ definitions, names: Object.freeze(definitions.map((f) => f.name)) });
const WITHOUT_EMBEDDINGS = setOf(BASE_FEATURES);
// p_emb_taste_cos, p_emb_recent_max (embedding-state.ts) last, so columns only ever append.
const WITH_EMBEDDINGS = setOf([...BASE_FEATURES, ...EMBEDDING_FEATURES]);

/**
 * The feature set of an instance: every base feature, plus the embedding features when
 * embeddings are on (config `embeddings.enabled`). A model needing any other feature is refused.
 */
export function featureSet(embeddings: boolean): FeatureSet {
  return embeddings ? WITH_EMBEDDINGS : WITHOUT_EMBEDDINGS;
}

/** The names of `featureSet(embeddings)`, in column order. */
export function featureNames(embeddings: boolean): readonly string[] {
  return featureSet(embeddings).names;
}

const BY_NAME = new Map(WITH_EMBEDDINGS.definitions.map((f) => [f.name, f]));

/** Features in `names` that are not in `available` (an instance's `featureNames`). */
export function missingFeatures(names: readonly string[], available: readonly string[]): string[] {
  const known = new Set(available);
  return names.filter((n) => !known.has(n));
}

/** The definitions of each list of names asked for (the model's list is one array). */
const definitionsByNames = new WeakMap<readonly string[], readonly FeatureDefinition[]>();

function definitionsOf(names: readonly string[]): readonly FeatureDefinition[] {
  let defs = definitionsByNames.get(names);
  if (defs === undefined) {
    defs = names.map((n) => {
      const f = BY_NAME.get(n);
      if (!f) throw new Error(`unknown feature "${n}"`);
      return f;
    });
    definitionsByNames.set(names, defs);
  }
  return defs;
}

/** Feature vector in the order of `names` (throws on an unknown name). */
export function featureVector(names: readonly string[], ctx: FeatureContext): number[] {
  return definitionsOf(names).map((f) => f.read(ctx));
}

/**
 * The feature vector of `ctx` in the order of `names`, written into `out` from `offset`: the
 * values of `featureVector`, stored as `out` stores them (a Float32Array row of the model's input
 * holds what `Float32Array.set(featureVector(…))` would), without an array per row.
 */
export function writeFeatureVector(
  names: readonly string[],
  ctx: FeatureContext,
  out: Float32Array | Float64Array,
  offset: number,
): void {
  const defs = definitionsOf(names);
  for (let j = 0; j < defs.length; j++) out[offset + j] = (defs[j] as FeatureDefinition).read(ctx);
}
