/**
 * Candidate generation for one customer, read from the online feature store in at most three
 * sequential Redis round trips (each round trip may carry several pipelines sent together):
 *
 *  1. the customer's state (stats, recent purchases, bought, items, affinities, meta — the shared
 *     `readCustomers`) and the global trending set;
 *  2. what depends on the customer: the segment trending sets (age bucket × index group, and the
 *     customer's dominant sales channel), the co-purchase neighbours of the last few purchases,
 *     the sold articles of the customer's product codes and the index groups and names of the
 *     recent purchases — together with the article states (`readArticles`) of the candidates
 *     already known (repurchase and global trending);
 *  3. the article states of the candidates discovered in 2 (siblings, segment and co-purchase),
 *     if any.
 *
 * Two round trips are not enough without a cross-slot Lua script (which would break the
 * Cluster-safe key layout): co-purchase neighbours and the customer's segments are known only
 * after a read. An unknown customer costs 2 round trips (customer + global, then article states).
 * With `EMBEDDINGS=on` the similar lists of the seeds, the taste vector and the article vectors
 * ride along in round trips 2 and 3 (embedding-candidates.ts): the counts are the same.
 *
 * Sources, each with a quota (`CandidateConfig.quotas`):
 *  - `repurchase`: every article the customer bought, by time-weighted purchase count (`items`,
 *    30-day half-life: frequency and recency in one number), only with `allow_repurchase`
 *    (otherwise every bought article is excluded anyway);
 *  - `siblings`: the articles that have sold of the customer's product codes (other colours and
 *    sizes of what they bought), the most-bought product first, its latest articles first;
 *  - `copurchase`: top neighbours (decayed co-purchase counts summed over seeds) of the customer's
 *    last `copurchaseSeeds` distinct articles;
 *  - `trending_segment`: the 7-day trending sets of the customer's age bucket × index group
 *    (groups weighted by the customer's recent purchases, Laplace-smoothed; the filter's group only
 *    when `index_group` is given; only when the age is known from the customer record) and of the
 *    customer's dominant sales channel;
 *  - `similar` (EMBEDDINGS=on): text-embedding neighbours of the last distinct purchases, only
 *    articles that have sold before now;
 *  - `trending_global`: the global 7-day trending set.
 * An article from several sources is kept once with all of them. Already-bought articles are
 * excluded unless allowed; filters apply to the article metadata (case-insensitive equality); with
 * filters the trending reads fetch `filterOverfetch` times their quota, as filtering discards most.
 * Cold start (unknown customer or no history) is the same path with no repurchase or co-purchase
 * seeds: segment (when the customer record gives an age) and global trending.
 */
import type { ChainableCommander, Redis } from 'ioredis';
import { ageBucket, SEGMENT_HALF_LIFE, type HalfLife, type KeySpace } from '../features/keys.ts';
import { logAdd } from '../features/decay.ts';
import { segmentValue } from '../features/segments.ts';
import {
  readArticles,
  readCustomers,
  type ArticleState,
  type CustomerState,
  type ItemStat,
} from '../features/state.ts';
import { storeRead } from './http-errors.ts';
import * as emb from './embedding-candidates.ts'; // EMBEDDINGS=on only (issue 7)

/** Half-life of the global trending set used for candidates, the trending route and the cache. */
export const GLOBAL_TRENDING_HL: HalfLife = '7d';

export type Source =
  'repurchase' | 'siblings' | 'copurchase' | 'similar' | 'trending_segment' | 'trending_global';
/** Source priority: the order candidates are kept in when the pool is capped. */
export const SOURCES: readonly Source[] = [
  'repurchase',
  'siblings',
  'copurchase',
  ...(emb.EMBEDDINGS_ON ? (['similar'] as const) : []),
  'trending_segment',
  'trending_global',
];

export interface CandidateConfig {
  /** Most candidates taken from each source. */
  readonly quotas: {
    readonly repurchase: number;
    /** Other articles (colours, variants) of the customer's product codes that have sold. */
    readonly siblings: number;
    readonly copurchase: number;
    readonly segment: number;
    readonly global: number;
    /** `similar` (text-embedding neighbours of the seeds), EMBEDDINGS=on only. */
    readonly similar?: number;
  };
  /** Cap of the de-duplicated, filtered pool (kept in source priority order). */
  readonly maxCandidates: number;
  /** Latest distinct purchased articles whose co-purchase neighbours are read. */
  readonly copurchaseSeeds: number;
  /** Neighbours read per seed. */
  readonly copurchasePerSeed: number;
  /** The customer's product codes (most time-weighted purchases first) whose articles are read. */
  readonly siblingProducts: number;
  /** Articles read per product code (the latest to start selling first). */
  readonly siblingsPerProduct: number;
  /** Index groups whose age-bucket segment sets are read (H&M's `index_group_name` values). */
  readonly indexGroups: readonly string[];
  /** Trending reads fetch this many times their quota when filters are given. */
  readonly filterOverfetch: number;
  /** Namespace of the article vectors and similar lists (default: the request's). */
  readonly embeddingNamespace?: string;
}

export const DEFAULT_CANDIDATE_CONFIG: CandidateConfig = {
  quotas: {
    // Repurchase first and generously: a third of next week's purchases in a wholesale-like shop
    // (online-retail-dev) are of articles the customer bought before, and 50 cut that recall in half.
    repurchase: 100,
    siblings: 40,
    copurchase: 30,
    segment: 30,
    global: 30,
    similar: emb.DEFAULT_SIMILAR_QUOTA,
  },
  maxCandidates: 150,
  copurchaseSeeds: 5,
  copurchasePerSeed: 20,
  siblingProducts: 10,
  siblingsPerProduct: 20,
  indexGroups: ['Ladieswear', 'Menswear', 'Divided', 'Sport', 'Baby/Children'],
  filterOverfetch: 3,
};

/**
 * The default configuration capped at `max` candidates: every personal quota keeps its share of
 * the default cap, global trending may fill up to `max` (what the personal sources leave), so a
 * request holds `max` candidates whenever the store has that many to offer. `max` = the default
 * cap gives the defaults' personal quotas (the ones training uses).
 */
export function scaledCandidateConfig(max: number): CandidateConfig {
  const d = DEFAULT_CANDIDATE_CONFIG;
  const share = (q: number) => (q > 0 ? Math.max(1, Math.round((q * max) / d.maxCandidates)) : 0);
  return {
    ...d,
    maxCandidates: max,
    quotas: {
      repurchase: share(d.quotas.repurchase),
      siblings: share(d.quotas.siblings),
      copurchase: share(d.quotas.copurchase),
      segment: share(d.quotas.segment),
      global: max,
      similar: share(d.quotas.similar ?? 0),
    },
  };
}

export interface Filters {
  readonly indexGroup?: string | undefined;
  readonly section?: string | undefined;
  readonly productGroup?: string | undefined;
}

export interface CandidateRequest {
  readonly customerId: string;
  readonly filters: Filters;
  readonly allowRepurchase: boolean;
}

/** A raw entry of a sorted set: log-space decayed score, read at no particular "now". */
export interface LogScored {
  readonly articleId: string;
  readonly logScore: number;
}

export interface Candidate {
  readonly articleId: string;
  /** Every source the article came from, in source priority order. */
  sources: Source[];
  /** Most recent purchase of it by the customer (repurchase). */
  repurchase: { lastBought: number } | null;
  /** Log-space co-purchase count summed over seeds, and the seed contributing most. */
  copurchase: { logScore: number; seed: string } | null;
  /** Segment score in [0, 1] (normalised in its set, times the group weight) and its segment. */
  segment: { score: number; segment: string } | null;
  /** Log-space score in the global 7-day trending set. */
  global: { logScore: number } | null;
  /** Log-space time-weighted count of the customer's purchases of the candidate's product code. */
  sibling: { logCount: number; product: string } | null;
  /** Position (0 = first) of the article in each source's own ordering that proposed it. */
  ranks: Partial<Record<Source, number>>;
  /** Best cosine to a seed and that seed (the `similar` source, EMBEDDINGS=on). */
  similar?: { score: number; seed: string } | null;
}

export interface CandidateSet {
  readonly customer: CustomerState;
  /** No purchase history (unknown customer, or only a customer record). */
  readonly coldStart: boolean;
  /** De-duplicated, filtered, capped; in source priority order. */
  readonly candidates: Candidate[];
  /** Article state of every candidate (and of the ones filtered out). */
  readonly articles: Map<string, ArticleState>;
  /** The global trending top read in round trip 1 (for the in-process cache). */
  readonly globalTop: LogScored[];
  /** Segments used: `age_index:<bucket>|<group>` values and the channel, if any. */
  readonly segments: { readonly age: string[]; readonly channel: string | null };
  /** Names of the customer's latest distinct purchases (the co-purchase seeds among them). */
  readonly recentNames: ReadonlyMap<string, string | null>;
  /** Sequential Redis round trips taken. */
  readonly roundTrips: number;
}

/** Parse a `ZREVRANGE … WITHSCORES` reply. */
export function parseScored(flat: readonly string[]): LogScored[] {
  const out: LogScored[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    out.push({ articleId: flat[i] as string, logScore: Number(flat[i + 1]) });
  }
  return out;
}

type PipelineResult = [Error | null, unknown][] | null;

function values(results: PipelineResult): unknown[] {
  if (results === null) throw new Error('redis pipeline aborted');
  return results.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}

async function execPipeline(pipe: ChainableCommander): Promise<unknown[]> {
  return values(await pipe.exec());
}

/** The sales channel the customer bought through most (lowest id on ties); null without history. */
export function dominantChannel(customer: CustomerState): string | null {
  let best: string | null = null;
  let bestN = 0;
  for (const [ch, n] of Object.entries(customer.channels)) {
    if (n > bestN || (n === bestN && best !== null && Number(ch) < Number(best))) {
      best = ch;
      bestN = n;
    }
  }
  return best;
}

/** The customer's age from the customer record, or null. */
export function customerAge(customer: CustomerState): number | null {
  const raw = customer.meta.age;
  if (raw === undefined || raw === '') return null;
  const age = Number(raw);
  return Number.isFinite(age) ? age : null;
}

const same = (a: string | undefined, b: string): boolean =>
  a !== undefined && a.localeCompare(b, undefined, { sensitivity: 'accent' }) === 0;

/** Whether an article's metadata passes the filters (case-insensitive equality). */
export function passesFilters(meta: Record<string, string>, f: Filters): boolean {
  if (f.indexGroup !== undefined && !same(meta.index_group_name, f.indexGroup)) return false;
  if (f.section !== undefined && !same(meta.section_name, f.section)) return false;
  if (f.productGroup !== undefined && !same(meta.product_group_name, f.productGroup)) return false;
  return true;
}

const hasFilters = (f: Filters): boolean =>
  f.indexGroup !== undefined || f.section !== undefined || f.productGroup !== undefined;

class Pool {
  readonly byId = new Map<string, Candidate>();

  add(articleId: string, source: Source, rank: number): Candidate {
    let c = this.byId.get(articleId);
    if (!c) {
      c = {
        articleId,
        sources: [],
        repurchase: null,
        copurchase: null,
        segment: null,
        global: null,
        sibling: null,
        ranks: {},
      };
      this.byId.set(articleId, c);
    }
    if (!c.sources.includes(source)) {
      c.sources.push(source);
      c.sources.sort((a, b) => SOURCES.indexOf(a) - SOURCES.indexOf(b));
      c.ranks[source] = rank;
    }
    return c;
  }
}

/** Entries of a customer's item map, most time-weighted purchases first (then latest, then id). */
export function byWeight(m: ReadonlyMap<string, ItemStat>): [string, ItemStat][] {
  return [...m].sort(
    (a, b) =>
      b[1].logCount - a[1].logCount ||
      b[1].last - a[1].last ||
      (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0),
  );
}

/** Read the candidates of one request (see the module comment for the round trips). */
export async function gatherCandidates(
  redis: Redis,
  keys: KeySpace,
  config: CandidateConfig,
  req: CandidateRequest,
): Promise<CandidateSet> {
  const { quotas } = config;
  const filtered = hasFilters(req.filters);
  const over = filtered ? Math.max(1, config.filterOverfetch) : 1;
  const globalKey = keys.trending.global(GLOBAL_TRENDING_HL);

  // Round trip 1: customer state and global trending, sent together.
  const [customers, globalFlat] = await storeRead('customer and global trending', () =>
    Promise.all([
      readCustomers(redis, keys, [req.customerId]),
      quotas.global > 0
        ? redis.zrevrange(globalKey, 0, quotas.global * over - 1, 'WITHSCORES')
        : Promise.resolve([]),
    ]),
  );
  let roundTrips = 1;
  const customer = customers[0];
  if (!customer) throw new Error('readCustomers returned no state');
  const coldStart = customer.n === 0;
  const bought = new Set(Object.keys(customer.bought));
  const excluded = (id: string): boolean => !req.allowRepurchase && bought.has(id);
  const globalTop = parseScored(globalFlat);

  const pool = new Pool();
  // Distinct recent articles, newest first, with their latest purchase time.
  const recentDistinct = new Map<string, number>();
  for (const r of customer.recent) {
    if (!recentDistinct.has(r.articleId)) recentDistinct.set(r.articleId, r.time);
  }
  if (req.allowRepurchase) {
    // Everything the customer bought, by time-weighted purchase count (frequency and recency in
    // one number: the same half-life for all, so the order does not depend on "now").
    const picks = byWeight(customer.items).slice(0, quotas.repurchase);
    picks.forEach(([articleId, stat], rank) => {
      const c = pool.add(articleId, 'repurchase', rank);
      c.repurchase = { lastBought: stat.last };
    });
  }
  globalTop.forEach((g, rank) => {
    if (excluded(g.articleId)) return;
    pool.add(g.articleId, 'trending_global', rank).global = { logScore: g.logScore };
  });

  // Round trip 2: segment sets, co-purchase neighbours, index groups of recent purchases, and
  // the states of the candidates known so far.
  const age = customerAge(customer);
  const groups =
    req.filters.indexGroup !== undefined ? [req.filters.indexGroup] : [...config.indexGroups];
  const ageSegments =
    age === null || quotas.segment === 0
      ? []
      : groups.map((g) => ({ group: g, value: segmentValue('age_index', ageBucket(age), g) }));
  const channel = quotas.segment > 0 ? dominantChannel(customer) : null;
  const seeds = [...recentDistinct.keys()].slice(0, config.copurchaseSeeds);
  const prefArticles = [...recentDistinct.keys()].slice(0, Math.max(10, config.copurchaseSeeds));
  const segmentN = quotas.segment * over;
  // Product codes whose sold articles are read: the customer's, by time-weighted purchases. An
  // article id standing in for a missing product code has no sold set, so it is not read.
  const products =
    quotas.siblings > 0
      ? byWeight(customer.products)
          .filter(([code]) => !customer.items.has(code))
          .slice(0, config.siblingProducts)
      : [];

  const pipe = redis.pipeline();
  for (const s of ageSegments) {
    pipe.zrevrange(
      keys.trending.segment('age_index', s.value, SEGMENT_HALF_LIFE),
      0,
      segmentN - 1,
      'WITHSCORES',
    );
  }
  if (channel !== null) {
    pipe.zrevrange(
      keys.trending.segment('channel', segmentValue('channel', channel), SEGMENT_HALF_LIFE),
      0,
      segmentN - 1,
      'WITHSCORES',
    );
  }
  if (quotas.copurchase > 0) {
    for (const seed of seeds) {
      pipe.zrevrange(keys.article(seed).copurchase, 0, config.copurchasePerSeed - 1, 'WITHSCORES');
    }
  }
  for (const [code] of products) {
    pipe.zrevrange(keys.product(code).sold, 0, config.siblingsPerProduct - 1);
  }
  for (const a of prefArticles) pipe.hmget(keys.article(a).meta, 'index_group_name', 'prod_name');
  const ekeys = emb.articleVectorKeys(keys, config.embeddingNamespace);
  const similarSeeds = emb.EMBEDDINGS_ON && (quotas.similar ?? 0) > 0 ? seeds : [];
  emb.queueSimilarReads(pipe, ekeys, similarSeeds);
  const pipeLength = pipe.length;
  const knownIds = [...pool.byId.keys()];
  // EMBEDDINGS=on: the taste and the vectors of the known and recent articles go along.
  const embReads = emb.EMBEDDINGS_ON ? new emb.EmbeddingReads(redis, keys, ekeys, customer) : null;
  const [rt2, knownStates, embSent] = await storeRead('segments, co-purchases and articles', () =>
    Promise.all([
      pipeLength > 0 ? execPipeline(pipe) : Promise.resolve([]),
      knownIds.length > 0 ? readArticles(redis, keys, knownIds) : Promise.resolve([]),
      embReads ? embReads.read([...knownIds, ...embReads.recentIds]) : Promise.resolve(false),
    ]),
  );
  if (pipeLength > 0 || knownIds.length > 0 || embSent) roundTrips++;
  const articles = new Map<string, ArticleState>(knownStates.map((a) => [a.articleId, a]));

  let pos = 0;
  const ageSets = ageSegments.map((s) => ({
    ...s,
    entries: parseScored(rt2[pos++] as string[]),
  }));
  const channelSet = channel === null ? [] : parseScored(rt2[pos++] as string[]);
  const seedSets =
    quotas.copurchase > 0
      ? seeds.map((seed) => ({ seed, entries: parseScored(rt2[pos++] as string[]) }))
      : [];
  const siblingSets = products.map(([code, stat]) => ({
    code,
    stat,
    articles: (rt2[pos++] as string[] | null) ?? [],
  }));
  const prefMeta = prefArticles.map(() => (rt2[pos++] as (string | null)[] | null) ?? []);
  const similarLists = similarSeeds.map(() => emb.similarReply(rt2[pos++]));
  const prefGroups = prefMeta.map(([group]) => group ?? null);
  const recentNames = new Map(prefArticles.map((a, i) => [a, prefMeta[i]?.[1] ?? null]));

  // Index-group weights from the recent purchases, Laplace-smoothed, the top group at 1.
  const groupCount = new Map<string, number>();
  for (const g of prefGroups) {
    if (g) groupCount.set(g.toLowerCase(), (groupCount.get(g.toLowerCase()) ?? 0) + 1);
  }
  const maxCount = Math.max(0, ...groupCount.values());
  const groupWeight = (g: string): number =>
    ((groupCount.get(g.toLowerCase()) ?? 0) + 1) / (maxCount + 1);

  // Segment candidates: normalised within their set, weighted, best set kept per article.
  const segmentScores = new Map<string, { score: number; segment: string }>();
  const offerSegment = (entries: LogScored[], weight: number, segment: string) => {
    const top = entries[0]?.logScore;
    if (top === undefined) return;
    for (const e of entries) {
      if (excluded(e.articleId)) continue;
      const score = weight * Math.exp(e.logScore - top);
      const prev = segmentScores.get(e.articleId);
      if (!prev || score > prev.score) segmentScores.set(e.articleId, { score, segment });
    }
  };
  for (const s of ageSets) offerSegment(s.entries, groupWeight(s.group), `age_index:${s.value}`);
  if (channel !== null) offerSegment(channelSet, 1, `channel:${segmentValue('channel', channel)}`);
  const segmentPicks = [...segmentScores]
    .sort((a, b) => b[1].score - a[1].score || (a[0] < b[0] ? -1 : 1))
    .slice(0, segmentN);

  // Co-purchase candidates: decayed counts summed over seeds (a log-add: the same half-life
  // everywhere, so the order does not depend on "now").
  const co = new Map<string, { logScore: number; seed: string; best: number }>();
  const seedSet = new Set(seeds);
  for (const { seed, entries } of seedSets) {
    for (const e of entries) {
      if (seedSet.has(e.articleId) || excluded(e.articleId)) continue;
      const prev = co.get(e.articleId);
      if (!prev) co.set(e.articleId, { logScore: e.logScore, seed, best: e.logScore });
      else {
        prev.logScore = logAdd(prev.logScore, e.logScore);
        if (e.logScore > prev.best) {
          prev.best = e.logScore;
          prev.seed = seed;
        }
      }
    }
  }
  const coPicks = [...co]
    .sort((a, b) => b[1].logScore - a[1].logScore || (a[0] < b[0] ? -1 : 1))
    .slice(0, quotas.copurchase * over);
  // Siblings: the sold articles of the customer's product codes, most-bought product first.
  const siblingPicks: [string, { logCount: number; product: string }][] = [];
  const siblingSeen = new Set<string>();
  for (const { code, stat, articles: ids } of siblingSets) {
    for (const id of ids) {
      if (siblingSeen.has(id) || excluded(id)) continue;
      siblingSeen.add(id);
      siblingPicks.push([id, { logCount: stat.logCount, product: code }]);
    }
  }
  siblingPicks.slice(0, quotas.siblings * over).forEach(([articleId, v], rank) => {
    pool.add(articleId, 'siblings', rank).sibling = v;
  });
  coPicks.forEach(([articleId, v], rank) => {
    pool.add(articleId, 'copurchase', rank).copurchase = { logScore: v.logScore, seed: v.seed };
  });
  const similar = emb.similarPicks(
    similarSeeds,
    similarLists,
    excluded,
    (quotas.similar ?? 0) * over,
  );
  similar.forEach(([articleId, v], rank) => {
    pool.add(articleId, 'similar', rank).similar = v;
  });
  segmentPicks.forEach(([articleId, v], rank) => {
    pool.add(articleId, 'trending_segment', rank).segment = v;
  });

  // Round trip 3: states of the new candidates.
  const newIds = [...pool.byId.keys()].filter((id) => !articles.has(id));
  if (newIds.length > 0) {
    const [states] = await storeRead('candidate articles', () =>
      Promise.all([
        readArticles(redis, keys, newIds),
        embReads ? embReads.read(newIds) : Promise.resolve(false),
      ]),
    );
    roundTrips++;
    for (const a of states) articles.set(a.articleId, a);
  }

  // Filters, then the cap in source priority order (per-source quotas after filtering).
  const taken: Record<Source, number> = {
    repurchase: 0,
    siblings: 0,
    copurchase: 0,
    similar: 0,
    trending_segment: 0,
    trending_global: 0,
  };
  const quotaOf: Record<Source, number> = {
    repurchase: quotas.repurchase,
    siblings: quotas.siblings,
    copurchase: quotas.copurchase,
    similar: quotas.similar ?? 0,
    trending_segment: quotas.segment,
    trending_global: quotas.global,
  };
  const primary = (c: Candidate): Source => c.sources[0] ?? 'trending_global';
  const candidates = [...pool.byId.values()]
    .filter((c) => passesFilters(articles.get(c.articleId)?.meta ?? {}, req.filters))
    // Text neighbours only if they have sold before now: the index may hold articles that have
    // not sold yet, and an index built from later sales (a backtest's) would otherwise tell
    // training which articles are about to sell.
    .filter((c) => !c.sources.includes('similar') || (articles.get(c.articleId)?.n ?? 0) > 0)
    .sort((a, b) => SOURCES.indexOf(primary(a)) - SOURCES.indexOf(primary(b)))
    .filter((c) => {
      const s = primary(c);
      if (taken[s] >= quotaOf[s]) return false;
      taken[s]++;
      return true;
    })
    .slice(0, config.maxCandidates);
  embReads?.attach(articles);

  return {
    customer,
    coldStart,
    candidates,
    articles,
    globalTop,
    segments: { age: ageSegments.map((s) => s.value), channel },
    recentNames,
    roundTrips,
  };
}

/** Display and filter fields of an article, plus when it last sold. */
export interface ArticleSummary {
  readonly articleId: string;
  readonly name: string | null;
  readonly indexGroup: string | null;
  readonly section: string | null;
  readonly productGroup: string | null;
  /** Event time of its latest sale, if it sold. */
  readonly last: number | null;
}

const orNull = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

/** Summaries of articles in one round trip (HMGET meta + HGET stats last, pipelined). */
export async function readSummaries(
  redis: Redis,
  keys: KeySpace,
  ids: readonly string[],
): Promise<Map<string, ArticleSummary>> {
  if (ids.length === 0) return new Map();
  const pipe = redis.pipeline();
  for (const id of ids) {
    const k = keys.article(id);
    pipe.hmget(k.meta, 'prod_name', 'index_group_name', 'section_name', 'product_group_name');
    pipe.hget(k.stats, 'last');
  }
  const v = await storeRead('article summaries', () => execPipeline(pipe));
  return new Map(
    ids.map((articleId, i) => {
      const [name, indexGroup, section, productGroup] =
        (v[i * 2] as (string | null)[] | null) ?? [];
      const last = orNull(v[i * 2 + 1]);
      return [
        articleId,
        {
          articleId,
          name: orNull(name),
          indexGroup: orNull(indexGroup),
          section: orNull(section),
          productGroup: orNull(productGroup),
          last: last === null ? null : Number(last),
        },
      ];
    }),
  );
}

/** Whether an article summary passes the filters (for the trending cache). */
export function summaryPassesFilters(s: ArticleSummary, f: Filters): boolean {
  const meta: Record<string, string> = {};
  if (s.indexGroup !== null) meta.index_group_name = s.indexGroup;
  if (s.section !== null) meta.section_name = s.section;
  if (s.productGroup !== null) meta.product_group_name = s.productGroup;
  return passesFilters(meta, f);
}

/**
 * The "now" of a request when the caller gives none: the latest event time the store shows among
 * what the request read (the customer's last purchase, the candidates' last sales) — the store's
 * event-time clock, since the processors keep no global "last event time" — or the wall clock
 * when nothing was read. Serving ranks at event time so that replayed (historical) data and live
 * data are treated alike, and features match training rows built at a cutoff.
 */
export function eventTimeNow(
  times: Iterable<number | null | undefined>,
  wallClock: number,
): number {
  let best: number | null = null;
  for (const t of times) {
    if (t !== null && t !== undefined && Number.isFinite(t) && (best === null || t > best))
      best = t;
  }
  return best ?? wallClock;
}
