/**
 * Reading the online state back from Redis into plain typed objects, in pipelined round trips.
 * Feature values are computed from these objects (definitions.ts) at an explicit "now".
 */
import type { Redis } from 'ioredis';
import { decayedValue } from './decay.ts';
import {
  COPURCHASE_HALF_LIFE,
  HALF_LIVES,
  POPULARITY_HALF_LIVES,
  productCodeOf,
  type HalfLife,
  type KeySpace,
  type SegmentKind,
} from './keys.ts';

export interface RecentPurchase {
  eventId: string;
  articleId: string;
  time: number;
  price: number;
  channel: number;
  quantity: number;
}

/** A customer's purchases of one article or product code (customer.lua `items`). */
export interface ItemStat {
  /** Purchase events. */
  readonly n: number;
  /** Latest event time (ms). */
  readonly last: number;
  /** Log-space decayed count (ITEM_HALF_LIFE, see decay.ts). */
  readonly logCount: number;
}

export interface CustomerState {
  customerId: string;
  /** Purchase events applied. */
  n: number;
  units: number;
  spend: number;
  priceSum: number;
  first: number | null;
  last: number | null;
  /** Purchase events per sales channel id. */
  channels: Record<string, number>;
  /** Latest purchases, newest first. */
  recent: RecentPurchase[];
  /** Units bought per article. */
  bought: Record<string, number>;
  /** Log-space decayed counts per `<kind>:<value>`, and `_total`. */
  affinity: Record<string, number>;
  /** Purchases per article id. */
  items: Map<string, ItemStat>;
  /** Purchases per product code (the article id for articles without one). */
  products: Map<string, ItemStat>;
  meta: Record<string, string>;
}

export interface ArticleState {
  articleId: string;
  n: number;
  units: number;
  revenue: number;
  priceSum: number;
  first: number | null;
  last: number | null;
  /** Log-space decayed purchase counts per half-life. */
  popularity: Partial<Record<HalfLife, number>>;
  /** Approximate distinct buyers (HyperLogLog). */
  buyers: number;
  meta: Record<string, string>;
}

type Hash = Record<string, string>;

function metaOf(values: readonly (string | null)[]): Hash {
  const out: Hash = {};
  ARTICLE_META_FIELDS.forEach((f, i) => {
    const v = values[i];
    if (v !== null && v !== undefined) out[f] = v;
  });
  return out;
}
const num = (v: string | undefined): number => (v === undefined ? 0 : Number(v));
const opt = (v: string | undefined): number | null => (v === undefined ? null : Number(v));

function pipelineValues(results: [Error | null, unknown][] | null): unknown[] {
  if (results === null) throw new Error('redis pipeline aborted');
  return results.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}

function parseRecent(members: string[]): RecentPurchase[] {
  return members.map((m) => {
    const [t = '0', eventId = '', articleId = '', price = '0', channel = '0', qty = '1'] =
      m.split('|');
    return {
      eventId,
      articleId,
      time: Number(t),
      price: Number(price),
      channel: Number(channel),
      quantity: Number(qty),
    };
  });
}

/** Parse the `items` hash (`a:<article>` / `p:<product>` -> `n|last|L`). */
export function parseItems(h: Hash): {
  items: Map<string, ItemStat>;
  products: Map<string, ItemStat>;
} {
  const items = new Map<string, ItemStat>();
  const products = new Map<string, ItemStat>();
  for (const [field, value] of Object.entries(h)) {
    const [n = '0', last = '0', logCount = '-Infinity'] = value.split('|');
    const stat = { n: Number(n), last: Number(last), logCount: Number(logCount) };
    if (field.startsWith('a:')) items.set(field.slice(2), stat);
    else if (field.startsWith('p:')) products.set(field.slice(2), stat);
  }
  return { items, products };
}

/** The product key of an article: its usable product code, else its own id (as customer.lua). */
export function productKey(article: { articleId: string; meta: Record<string, string> }): string {
  return productCodeOf(article.meta.product_code) ?? article.articleId;
}

/** Read customers' state; unknown customers come back with zero counts and empty lists. */
export async function readCustomers(
  redis: Redis,
  keys: KeySpace,
  ids: readonly string[],
): Promise<CustomerState[]> {
  const pipe = redis.pipeline();
  for (const id of ids) {
    const k = keys.customer(id);
    pipe.hgetall(k.stats);
    pipe.zrevrange(k.recent, 0, -1);
    pipe.hgetall(k.bought);
    pipe.hgetall(k.affinity);
    pipe.hgetall(k.items);
    pipe.hgetall(k.meta);
  }
  const v = pipelineValues(await pipe.exec());
  const W = 6; // replies per customer
  return ids.map((customerId, i) => {
    const stats = v[i * W] as Hash;
    const channels: Record<string, number> = {};
    for (const [f, val] of Object.entries(stats)) {
      if (f.startsWith('ch:')) channels[f.slice(3)] = Number(val);
    }
    const toNumbers = (h: Hash) =>
      Object.fromEntries(Object.entries(h).map(([f, val]) => [f, Number(val)]));
    return {
      customerId,
      n: num(stats.n),
      units: num(stats.units),
      spend: num(stats.spend),
      priceSum: num(stats.price_sum),
      first: opt(stats.first),
      last: opt(stats.last),
      channels,
      recent: parseRecent(v[i * W + 1] as string[]),
      bought: toNumbers(v[i * W + 2] as Hash),
      affinity: toNumbers(v[i * W + 3] as Hash),
      ...parseItems(v[i * W + 4] as Hash),
      meta: v[i * W + 5] as Hash,
    };
  });
}

/**
 * Article metadata fields read back for features and answers. A full HGETALL would also parse the
 * long description and a dozen unused columns for every candidate (the serving benchmark found
 * reply parsing to be most of a request's CPU).
 */
export const ARTICLE_META_FIELDS = [
  'prod_name',
  'product_code',
  'product_type_no',
  'product_type_name',
  'product_group_name',
  'colour_group_code',
  'colour_group_name',
  'department_no',
  'index_code',
  'index_group_name',
  'section_no',
  'section_name',
  'garment_group_name',
] as const;

/** Read articles' state; unknown articles come back with zero counts. */
export async function readArticles(
  redis: Redis,
  keys: KeySpace,
  ids: readonly string[],
): Promise<ArticleState[]> {
  const pipe = redis.pipeline();
  for (const id of ids) {
    const k = keys.article(id);
    pipe.hgetall(k.stats);
    pipe.pfcount(k.buyers);
    pipe.hmget(k.meta, ...ARTICLE_META_FIELDS);
  }
  const v = pipelineValues(await pipe.exec());
  return ids.map((articleId, i) => {
    const stats = v[i * 3] as Hash;
    const popularity: Partial<Record<HalfLife, number>> = {};
    for (const hl of POPULARITY_HALF_LIVES) {
      const p = stats[`pop:${hl}`];
      if (p !== undefined) popularity[hl] = Number(p);
    }
    return {
      articleId,
      n: num(stats.n),
      units: num(stats.units),
      revenue: num(stats.revenue),
      priceSum: num(stats.price_sum),
      first: opt(stats.first),
      last: opt(stats.last),
      popularity,
      buyers: v[i * 3 + 1] as number,
      meta: metaOf(v[i * 3 + 2] as (string | null)[]),
    };
  });
}

export interface Scored {
  articleId: string;
  /** Decayed value at the requested "now". */
  score: number;
}

function scored(flat: string[], now: number, hl: HalfLife): Scored[] {
  const out: Scored[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    out.push({
      articleId: flat[i] as string,
      score: decayedValue(Number(flat[i + 1]), now, HALF_LIVES[hl]),
    });
  }
  return out;
}

/** Top-`n` trending articles (global, or of one segment) with their decayed counts at `now`. */
export async function trendingTop(
  redis: Redis,
  keys: KeySpace,
  opts: {
    n: number;
    now: number;
    halfLife: HalfLife;
    segment?: { kind: SegmentKind; value: string };
  },
): Promise<Scored[]> {
  const key = opts.segment
    ? keys.trending.segment(opts.segment.kind, opts.segment.value, opts.halfLife)
    : keys.trending.global(opts.halfLife);
  const flat = await redis.zrevrange(key, 0, opts.n - 1, 'WITHSCORES');
  return scored(flat, opts.now, opts.halfLife);
}

/** Top-`n` co-purchased partners of `articleId` with decayed pair counts at `now`. */
export async function copurchaseTop(
  redis: Redis,
  keys: KeySpace,
  articleId: string,
  n: number,
  now: number,
): Promise<Scored[]> {
  const flat = await redis.zrevrange(keys.article(articleId).copurchase, 0, n - 1, 'WITHSCORES');
  return scored(flat, now, COPURCHASE_HALF_LIFE);
}

/** Delete every key of a namespace (tests, benchmarks, training rebuilds); returns the count. */
export async function deleteNamespace(redis: Redis, keys: KeySpace): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', keys.pattern, 'COUNT', 5000);
    cursor = next;
    if (batch.length > 0) deleted += await redis.unlink(...batch);
  } while (cursor !== '0');
  return deleted;
}

/** The state of an article the store knows nothing about (never sold, no record). */
export function emptyArticleState(articleId: string): ArticleState {
  return {
    articleId,
    n: 0,
    units: 0,
    revenue: 0,
    priceSum: 0,
    first: null,
    last: null,
    popularity: {},
    buyers: 0,
    meta: {},
  };
}
