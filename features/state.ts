/**
 * Reading the online state back from Redis into plain typed objects, in pipelined round trips.
 * Feature values are computed from these objects (definitions.ts) at an explicit "now".
 *
 * An article's state is read from its summary (`{a:<id>}:sum`, one command per article: the sales
 * state and the metadata fields in use, packed by the scripts that write them, see
 * processors/lua/include/summary.lua); articles whose summary lacks a part — written before the
 * summary existed, or never seen — are read from the hashes it summarises, in one more round trip.
 */
import { createHash } from 'node:crypto';
import { deleteMatching, isCluster, shardTags, type RedisClient } from '../common/redis.ts';
import { RecError } from '../common/errors.ts';
import { CO_BUYER_FIELD, parseCoBuyers, type CoBuyers } from './co-buyers.ts';
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

/** A customer's purchases of one article: an item, and when and how much of it they bought. */
export interface ArticleStat extends ItemStat {
  /** Earliest event time (ms). */
  readonly first: number;
  /** Units bought at the latest event time (the latest purchase's quantity). */
  readonly lastUnits: number;
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
  /** Log-space decayed counts of the category affinities (`f:<kind>:<value>`): kind -> value. */
  affinity: ReadonlyMap<string, ReadonlyMap<string, number>>;
  /** Their log-space decayed total (`f:_total`), null when the customer has none. */
  affinityTotal: number | null;
  /** Purchases per article id. */
  items: Map<string, ArticleStat>;
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
  /** Log-space decayed purchase counts per half-life (shared between reads: do not modify). */
  popularity: Readonly<Partial<Record<HalfLife, number>>>;
  /** Approximate distinct buyers (HyperLogLog). */
  buyers: number;
  /** The record's `ARTICLE_META_FIELDS` (shared between reads: do not modify). */
  meta: Readonly<Record<string, string>>;
  /** Its co-buyer neighbours (co-buyers.ts; shared between reads), null before a build has any. */
  coBuyers: CoBuyers | null;
}

type Hash = Record<string, string>;

/** The record fields `fields` from their values in order (null or '' for a missing one). */
function metaOf(fields: readonly string[], values: readonly (string | null)[]): Hash {
  const out: Hash = {};
  for (let i = 0; i < fields.length; i++) {
    const v = values[i];
    // A stored field is never empty (metadata.lua deletes a field set to '').
    if (v !== null && v !== undefined && v !== '') out[fields[i] as string] = v;
  }
  return out;
}

const num = (v: string | undefined): number => (v === undefined ? 0 : Number(v));
const opt = (v: string | undefined): number | null => (v === undefined ? null : Number(v));

/** The replies of a pipeline's `exec()`, throwing its first error (or on an aborted pipeline). */
export function pipelineValues(results: [Error | null, unknown][] | null): unknown[] {
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

/** A customer's `state` hash (features/keys.ts `CustomerKeys.state`), parsed. */
export function parseCustomerState(h: Hash): Omit<CustomerState, 'customerId' | 'recent' | 'meta'> {
  const channels: Record<string, number> = {};
  const bought: Record<string, number> = {};
  const affinity = new Map<string, Map<string, number>>();
  let affinityTotal: number | null = null;
  const items = new Map<string, ArticleStat>();
  const products = new Map<string, ItemStat>();
  for (const field in h) {
    const value = h[field] as string;
    const kind = field.slice(0, 2);
    if (kind === 'a:' || kind === 'p:') {
      // `a:` n|last|L|units|first|lu, `p:` n|last|L (customer.lua).
      const [n = '0', last = '0', logCount = '-Infinity', units, first, lastUnits] =
        value.split('|');
      const stat = { n: Number(n), last: Number(last), logCount: Number(logCount) };
      if (kind === 'a:') {
        items.set(field.slice(2), {
          ...stat,
          first: first === undefined ? NaN : Number(first),
          lastUnits: lastUnits === undefined ? NaN : Number(lastUnits),
        });
        if (units !== undefined) bought[field.slice(2)] = Number(units);
      } else products.set(field.slice(2), stat);
    } else if (kind === 'f:') {
      if (field === 'f:_total') affinityTotal = Number(value);
      else addAffinity(affinity, field, Number(value));
    } else if (field.startsWith('ch:')) channels[field.slice(3)] = Number(value);
  }
  return {
    n: num(h.n),
    units: num(h.units),
    spend: num(h.spend),
    priceSum: num(h.price_sum),
    first: opt(h.first),
    last: opt(h.last),
    channels,
    bought,
    affinity,
    affinityTotal,
    items,
    products,
  };
}

/** File `f:<kind>:<value>` under its kind (the value may hold colons; the kind does not). */
function addAffinity(into: Map<string, Map<string, number>>, field: string, stored: number): void {
  const colon = field.indexOf(':', 2);
  if (colon < 0) return;
  const kind = field.slice(2, colon);
  let values = into.get(kind);
  if (values === undefined) {
    values = new Map<string, number>();
    into.set(kind, values);
  }
  values.set(field.slice(colon + 1), stored);
}

/** The product key of an article: its usable product code, else its own id (as customer.lua). */
export function productKey(article: { articleId: string; meta: Record<string, string> }): string {
  return productCodeOf(article.meta.product_code) ?? article.articleId;
}

/** Read customers' state; unknown customers come back with zero counts and empty lists. */
export async function readCustomers(
  redis: RedisClient,
  keys: KeySpace,
  ids: readonly string[],
): Promise<CustomerState[]> {
  const pipe = redis.pipeline();
  for (const id of ids) {
    const k = keys.customer(id);
    pipe.hgetall(k.state);
    pipe.zrevrange(k.recent, 0, -1);
    pipe.hmget(k.meta, ...CUSTOMER_META_FIELDS);
  }
  const v = pipelineValues(await pipe.exec());
  const W = 3; // replies per customer
  return ids.map((customerId, i) => ({
    customerId,
    ...parseCustomerState(v[i * W] as Hash),
    recent: parseRecent(v[i * W + 1] as string[]),
    meta: metaOf(CUSTOMER_META_FIELDS, v[i * W + 2] as (string | null)[]),
  }));
}

/** Customer record fields read back: the ones the features and candidate generation use. */
export const CUSTOMER_META_FIELDS = ['age'] as const;

/**
 * Article metadata fields read back for features and answers (the metadata part of the article
 * summary). A full HGETALL would also parse the long description and a dozen unused columns for
 * every candidate (the serving benchmark found reply parsing to be most of a request's CPU).
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

/**
 * The `{a}:stats` fields of the sales part of the article summary, in the order article.lua packs
 * them (its `names`: the counts, then `pop:<hl>` in POPULARITY_HALF_LIVES order); the buyers'
 * count follows them.
 */
export const ARTICLE_SALES_FIELDS: readonly string[] = [
  'n',
  'units',
  'revenue',
  'price_sum',
  'first',
  'last',
  ...POPULARITY_HALF_LIVES.map((hl) => `pop:${hl}`),
];

const signature = (fields: readonly string[]): string =>
  createHash('sha256').update(fields.join(',')).digest('hex').slice(0, 8);

/**
 * The fields of the article summary hash: `s:<sig>` the sales part (`ARTICLE_SALES_FIELDS`'
 * values and the buyers' count, joined by `|`), `m:<sig>` the metadata part (a JSON array of the
 * `ARTICLE_META_FIELDS` values, '' for a missing one). The signature names the layout, so a build
 * packing other fields never reads a summary packed by another: it reads the hashes instead.
 */
export const ARTICLE_SUMMARY_FIELDS = {
  sales: `s:${signature([...ARTICLE_SALES_FIELDS, 'buyers'])}`,
  meta: `m:${signature(ARTICLE_META_FIELDS)}`,
} as const;

/**
 * The summary arguments of metadata.lua for an article record: the metadata and sales fields of
 * the summary, the metadata fields it packs (count first), then the stats fields of the sales part.
 */
export function articleSummaryArgs(): string[] {
  return [
    ARTICLE_SUMMARY_FIELDS.meta,
    ARTICLE_SUMMARY_FIELDS.sales,
    String(ARTICLE_META_FIELDS.length),
    ...ARTICLE_META_FIELDS,
    ...ARTICLE_SALES_FIELDS,
  ];
}

const POP_AT = ARTICLE_SALES_FIELDS.indexOf('pop:' + (POPULARITY_HALF_LIVES[0] ?? ''));
const SALES_PARTS = ARTICLE_SALES_FIELDS.length + 1;

interface Sales {
  readonly n: number;
  readonly units: number;
  readonly revenue: number;
  readonly priceSum: number;
  readonly first: number | null;
  readonly last: number | null;
  readonly popularity: Partial<Record<HalfLife, number>>;
  readonly buyers: number;
}

/**
 * The latest parsed summary part of each article, with the text it was parsed from, so that the
 * many requests reading an unchanged article parse it once (exact: a changed text is parsed
 * again). Bounded; emptied when full.
 */
class Parsed<T> {
  readonly #byId = new Map<string, { text: string; value: T }>();
  constructor(
    private readonly parse: (text: string) => T,
    private readonly max: number,
  ) {}

  get(id: string, text: string): T {
    const hit = this.#byId.get(id);
    if (hit !== undefined && hit.text === text) return hit.value;
    const value = this.parse(text);
    if (hit !== undefined) {
      hit.text = text;
      hit.value = value;
    } else {
      if (this.#byId.size >= this.max) this.#byId.clear();
      this.#byId.set(id, { text, value });
    }
    return value;
  }
}

/** The sales part of a summary, or null when it is not in the layout this build packs. */
function parseSales(packed: string): Sales | null {
  const p = packed.split('|');
  if (p.length !== SALES_PARTS) return null;
  const at = (i: number): string | undefined => (p[i] === '' ? undefined : p[i]);
  const popularity: Partial<Record<HalfLife, number>> = {};
  POPULARITY_HALF_LIVES.forEach((hl, j) => {
    const v = at(POP_AT + j);
    if (v !== undefined) popularity[hl] = Number(v);
  });
  return {
    n: num(at(0)),
    units: num(at(1)),
    revenue: num(at(2)),
    priceSum: num(at(3)),
    first: opt(at(4)),
    last: opt(at(5)),
    popularity,
    buyers: Number(p[SALES_PARTS - 1]),
  };
}

/** The sales state from the `{a}:stats` hash and the buyers' count. */
function salesOf(stats: Hash, buyers: number): Sales {
  const popularity: Partial<Record<HalfLife, number>> = {};
  for (const hl of POPULARITY_HALF_LIVES) {
    const p = stats[`pop:${hl}`];
    if (p !== undefined) popularity[hl] = Number(p);
  }
  return {
    n: num(stats.n),
    units: num(stats.units),
    revenue: num(stats.revenue),
    priceSum: num(stats.price_sum),
    first: opt(stats.first),
    last: opt(stats.last),
    popularity,
    buyers,
  };
}

/** The metadata part of a summary, or null when it is not in the layout this build packs. */
function parseMeta(packed: string): Hash | null {
  const values = JSON.parse(packed) as unknown;
  return Array.isArray(values) && values.length === ARTICLE_META_FIELDS.length
    ? metaOf(ARTICLE_META_FIELDS, values as string[])
    : null;
}

const parsedSales = new Parsed(parseSales, 20_000);
const parsedMeta = new Parsed(parseMeta, 20_000);
const parsedCoBuyers = new Parsed(parseCoBuyers, 20_000);

function articleState(
  articleId: string,
  sales: Sales,
  meta: Hash,
  coBuyers: CoBuyers | null,
): ArticleState {
  return {
    articleId,
    n: sales.n,
    units: sales.units,
    revenue: sales.revenue,
    priceSum: sales.priceSum,
    first: sales.first,
    last: sales.last,
    popularity: sales.popularity,
    buyers: sales.buyers,
    meta,
    coBuyers,
  };
}

/**
 * Read articles' state, one command per article (the summary); unknown articles come back with
 * zero counts. Articles whose summary lacks a part are read from the hashes in one more round trip
 * (see the module comment): the same values either way.
 */
export async function readArticles(
  redis: RedisClient,
  keys: KeySpace,
  ids: readonly string[],
): Promise<ArticleState[]> {
  if (ids.length === 0) return [];
  const { sales: salesField, meta: metaField } = ARTICLE_SUMMARY_FIELDS;
  const pipe = redis.pipeline();
  for (const id of ids) {
    pipe.hmget(keys.article(id).summary, salesField, metaField, CO_BUYER_FIELD);
  }
  const v = pipelineValues(await pipe.exec());
  const sales: (Sales | null)[] = [];
  const metas: (Hash | null)[] = [];
  const coBuyers: (CoBuyers | null)[] = [];
  for (let i = 0; i < ids.length; i++) {
    const [s = null, m = null, cb = null] = v[i] as (string | null)[];
    const id = ids[i] as string;
    sales.push(s === null ? null : parsedSales.get(id, s));
    metas.push(m === null ? null : parsedMeta.get(id, m));
    coBuyers.push(cb === null ? null : parsedCoBuyers.get(id, cb));
  }
  const missing = ids.flatMap((_, i) => (sales[i] === null || metas[i] === null ? [i] : []));
  if (missing.length > 0) await readFromHashes(redis, keys, ids, missing, sales, metas);
  return ids.map((articleId, i) =>
    articleState(articleId, sales[i] as Sales, metas[i] as Hash, coBuyers[i] ?? null),
  );
}

/** Fill the missing sales and metadata parts of `ids[i]`, `i` in `missing`, from the hashes. */
async function readFromHashes(
  redis: RedisClient,
  keys: KeySpace,
  ids: readonly string[],
  missing: readonly number[],
  sales: (Sales | null)[],
  metas: (Hash | null)[],
): Promise<void> {
  const pipe = redis.pipeline();
  for (const i of missing) {
    const k = keys.article(ids[i] as string);
    if (sales[i] === null) pipe.hgetall(k.stats).pfcount(k.buyers);
    if (metas[i] === null) pipe.hmget(k.meta, ...ARTICLE_META_FIELDS);
  }
  const v = pipelineValues(await pipe.exec());
  let at = 0;
  for (const i of missing) {
    if (sales[i] === null) {
      sales[i] = salesOf(v[at] as Hash, v[at + 1] as number);
      at += 2;
    }
    if (metas[i] === null) metas[i] = metaOf(ARTICLE_META_FIELDS, v[at++] as (string | null)[]);
  }
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
  redis: RedisClient,
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
  redis: RedisClient,
  keys: KeySpace,
  articleId: string,
  n: number,
  now: number,
): Promise<Scored[]> {
  const flat = await redis.zrevrange(keys.article(articleId).copurchase, 0, n - 1, 'WITHSCORES');
  return scored(flat, now, COPURCHASE_HALF_LIFE);
}

/** Delete every key of a namespace (tests, benchmarks, training rebuilds); returns the count. */
export async function deleteNamespace(redis: RedisClient, keys: KeySpace): Promise<number> {
  return deleteMatching(redis, keys.pattern);
}

/**
 * The key layout this build's processors write (`keys.layout`). 2: a customer's stats, affinities,
 * items, units bought and bookkeeping in one `state` hash, the event-id guard bounded. 3: each
 * article also keeps its earliest event time and the units bought at its latest
 * (`n|last|L|units|first|lu`).
 */
export const STORE_LAYOUT = '3';

/** A namespace holds state in another key layout than this build reads and writes. */
export class StoreLayoutError extends RecError {
  override readonly name: string = 'StoreLayoutError';
  constructor(message: string) {
    super('REC_ERR_STORE_LAYOUT', message);
  }
}

/**
 * Before processing into a namespace: records STORE_LAYOUT in a new one; refuses (StoreLayoutError)
 * one written by a build with another layout, or before layouts were recorded (purchases applied
 * but no layout key), since reading or adding to it would give wrong features.
 */
export async function claimStoreLayout(redis: RedisClient, keys: KeySpace): Promise<void> {
  const found = await redis.get(keys.layout);
  if (found === STORE_LAYOUT) return;
  const used = found !== null || (await redis.exists(keys.trending.offsets)) === 1;
  if (used) {
    throw new StoreLayoutError(
      `Redis namespace "${keys.ns}" holds state in key layout ${found ?? '1 (before layouts were recorded)'}, this build uses ${STORE_LAYOUT}: ` +
        'the processors rebuild a namespace from the topics: set a new REDIS_NAMESPACE and a new PROCESSOR_GROUP ' +
        `(consumer groups reading from the start), or delete the keys ${keys.pattern} and the processors' consumer groups`,
    );
  }
  await redis.set(keys.layout, STORE_LAYOUT);
}

/**
 * The consumers' position store in this namespace (`keys.positions`, streams/consumer.ts
 * `PositionStore`) for consumer group `group`. On a Redis Cluster each master keeps its own copy
 * (`keys.positionsOn`, written after the batch's effects on every master were acknowledged) and
 * a read answers the lowest: a master that failed over to a replica behind it (replication is
 * asynchronous) holds a lower position, and the consumer re-processes from there; a master
 * without the field at all (new, or emptied) reads as nothing held.
 */
export function positionStore(
  redis: RedisClient,
  keys: KeySpace,
  group: string,
): {
  read(topic: string, partition: number): Promise<bigint | null>;
  write(topic: string, partition: number, lastOffset: string): Promise<void>;
} {
  const field = (topic: string, partition: number) => `${group}|${topic}|${partition}`;
  if (!isCluster(redis)) {
    return {
      async read(topic, partition) {
        const v = await redis.hget(keys.positions, field(topic, partition));
        return v === null ? null : BigInt(v);
      },
      async write(topic, partition, lastOffset) {
        await redis.hset(keys.positions, field(topic, partition), lastOffset);
      },
    };
  }
  const shardKeys = async (): Promise<string[]> => {
    let tags = shardTags(redis);
    if (tags === undefined) {
      await redis.ping(); // connects and learns the slots
      tags = shardTags(redis);
    }
    if (tags === undefined) throw new Error('redis cluster: no slot map yet');
    return tags.map((t) => keys.positionsOn(t));
  };
  return {
    async read(topic, partition) {
      const f = field(topic, partition);
      const values = await Promise.all((await shardKeys()).map((k) => redis.hget(k, f)));
      let low: bigint | null = null;
      for (const v of values) {
        if (v === null) return null;
        const n = BigInt(v);
        if (low === null || n < low) low = n;
      }
      return low;
    },
    async write(topic, partition, lastOffset) {
      const f = field(topic, partition);
      await Promise.all((await shardKeys()).map((k) => redis.hset(k, f, lastOffset)));
    },
  };
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
    coBuyers: null,
  };
}
