/**
 * `gatherCandidates`: the candidates of one customer, read from the online feature store in at
 * most three sequential Redis round trips (each round trip may carry several pipelines sent
 * together):
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
 * ride along in round trips 2 and 3 (similar.ts): the counts are the same.
 *
 * With `shared` (the server's `SharedReads`, shared.ts), article states and trending sets read
 * by a recent request are taken from it instead (at most its `maxAgeMs` old), so those reads
 * shrink to the articles and sets it does not hold (an unknown customer then often costs one
 * round trip); the customer's state and personal lists are always read. Without it (training
 * rows, the benchmark's in-process reads) everything is read.
 *
 * Each source has a quota (`CandidateConfig.quotas`) and its own module. An article from several
 * sources is kept once with all of them. Already-bought articles are excluded unless allowed;
 * filters apply to the article metadata (case-insensitive equality); with filters the reads
 * fetch `filterOverfetch` times their quota, as filtering discards most. Cold start (unknown
 * customer or no history) is the same path with no repurchase or co-purchase seeds: segment
 * (when the customer record gives an age) and global trending.
 */
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from '../../common/redis.ts';
import type { EmbeddingKeys } from '../../features/embedding-keys.ts';
import type { KeySpace } from '../../features/keys.ts';
import {
  readArticles,
  readCustomers,
  type ArticleState,
  type CustomerState,
} from '../../features/state.ts';
import { storeRead } from '../http-errors.ts';
import type { CandidateConfig } from './config.ts';
import {
  addCopurchase,
  copurchaseReplies,
  queueCopurchaseReads,
  setCopurchaseShares,
} from './copurchase.ts';
import { latestDistinct, queueRecentReads, recentReplies } from './customer.ts';
import { hasFilters } from './filters.ts';
import { CandidatePool } from './pool.ts';
import { execPipeline, parseScored, Replies, type LogScored } from './replies.ts';
import type { SharedReads } from './shared.ts';
import { addRepurchase } from './repurchase.ts';
import {
  addSiblings,
  queueSiblingReads,
  siblingProducts,
  siblingReplies,
  type Product,
} from './siblings.ts';
import {
  EmbeddingReads,
  addSimilar,
  articleVectorKeys,
  queueSimilarReads,
  similarReplies,
} from './similar.ts';
import { addGlobalTrending, readGlobalTrending } from './trending-global.ts';
import {
  addSegmentTrending,
  customerSegments,
  groupWeights,
  segmentKeys,
  segmentSets,
  type Segments,
} from './trending-segment.ts';
import type { CandidateRequest, CandidateSet, Excluded, Filters } from './types.ts';

/**
 * Read the candidates of one request (see the module comment for the round trips and `shared`).
 */
export async function gatherCandidates(
  redis: RedisClient,
  keys: KeySpace,
  config: CandidateConfig,
  req: CandidateRequest,
  shared: SharedReads | null = null,
): Promise<CandidateSet> {
  const reads: Reads = { redis, keys, shared };
  const over = hasFilters(req.filters) ? Math.max(1, config.filterOverfetch) : 1;
  const { customer, globalTop } = await readCustomerAndGlobal(
    reads,
    req.customerId,
    config.quotas.global * over,
  );
  const bought = new Set(Object.keys(customer.bought));
  const excluded: Excluded = (id) => !req.allowRepurchase && bought.has(id);
  const pool = new CandidatePool();
  if (req.allowRepurchase) addRepurchase(pool, customer, config.quotas.repurchase);
  addGlobalTrending(pool, globalTop, excluded);

  const plan = personalReads(customer, config, req.filters, over);
  const ekeys = articleVectorKeys(keys, config.embeddingNamespace);
  // EMBEDDINGS=on: the taste and the vectors of the known and recent articles go along.
  const embReads = config.embeddings ? new EmbeddingReads(redis, keys, ekeys, customer) : null;
  const round2 = await readPersonal(reads, ekeys, config, plan, [...pool.byId.keys()], embReads);
  const articles = new Map<string, ArticleState>(round2.states.map((a) => [a.articleId, a]));
  const recentNames = addPersonalSources(pool, plan, round2, excluded, config, over);
  const round3 = await readNewArticles(reads, pool, articles, embReads);

  const candidates = pool.select(articles, config, req.filters);
  embReads?.attach(articles);
  return {
    customer,
    coldStart: customer.n === 0,
    candidates,
    articles,
    globalTop,
    segments: { age: plan.segments.age.map((s) => s.value), channel: plan.segments.channel },
    recentNames,
    roundTrips: 1 + (round2.sent ? 1 : 0) + (round3 ? 1 : 0),
  };
}

/** Where a request reads: the store, its key space and the shared reads, if any. */
interface Reads {
  readonly redis: RedisClient;
  readonly keys: KeySpace;
  readonly shared: SharedReads | null;
}

/** Round trip 1: the customer's state and the global trending top, sent together. */
async function readCustomerAndGlobal(
  { redis, keys, shared }: Reads,
  customerId: string,
  globalN: number,
): Promise<{ customer: CustomerState; globalTop: readonly LogScored[] }> {
  const [customers, globalTop] = await storeRead('customer and global trending', () =>
    Promise.all([
      readCustomers(redis, keys, [customerId]),
      readGlobalTrending(redis, keys, globalN, shared),
    ]),
  );
  const customer = customers[0];
  if (!customer) throw new Error('readCustomers returned no state');
  return { customer, globalTop };
}

/**
 * The states of `ids` (in order): the shared reads' fresh ones, the others read (one pipeline)
 * and kept there; whether anything was read.
 */
async function articleStates(
  { redis, keys, shared }: Reads,
  ids: readonly string[],
): Promise<{ states: ArticleState[]; sent: boolean }> {
  if (shared === null) {
    return { states: await readArticles(redis, keys, ids), sent: ids.length > 0 };
  }
  const states: (ArticleState | undefined)[] = ids.map((id) => shared.article(id));
  const missing = ids.filter((_, i) => states[i] === undefined);
  if (missing.length > 0) {
    const at = shared.now();
    const read = await readArticles(redis, keys, missing);
    shared.keepArticles(read, at);
    let j = 0;
    for (let i = 0; i < states.length; i++) states[i] ??= read[j++];
  }
  return { states: states as ArticleState[], sent: missing.length > 0 };
}

/**
 * The top `n` of each set of `setKeys`: the shared reads' fresh ones; the others are queued on
 * `pipe` (ZREVRANGE … WITHSCORES). The returned function takes their replies, in order, and gives
 * every top (in `setKeys` order), keeping the new ones.
 */
function queueTops(
  pipe: ChainableCommander,
  shared: SharedReads | null,
  setKeys: readonly string[],
  n: number,
): (replies: Replies) => (readonly LogScored[])[] {
  const tops = setKeys.map((key) => shared?.top(key, n));
  const at = shared?.now() ?? 0;
  setKeys.forEach((key, i) => {
    if (tops[i] === undefined) pipe.zrevrange(key, 0, n - 1, 'WITHSCORES');
  });
  return (replies) =>
    setKeys.map((key, i) => {
      const cached = tops[i];
      if (cached !== undefined) return cached;
      const top = parseScored(replies.next() as string[]);
      shared?.keepTop(key, n, top, at);
      return top;
    });
}

/** What round trip 2 reads for the customer (empty lists where a quota is 0). */
interface PersonalReads {
  readonly segments: Segments;
  /** Entries read of each segment set, and segment candidates kept. */
  readonly segmentN: number;
  readonly copurchaseSeeds: readonly string[];
  readonly products: readonly Product[];
  /** Latest distinct purchases whose index groups (segment weights) and names are read. */
  readonly recent: readonly string[];
  readonly similarSeeds: readonly string[];
}

function personalReads(
  customer: CustomerState,
  config: CandidateConfig,
  filters: Filters,
  over: number,
): PersonalReads {
  const { quotas } = config;
  const latest = latestDistinct(customer);
  const seeds = latest.slice(0, config.copurchaseSeeds);
  return {
    segments: customerSegments(customer, config, filters),
    segmentN: quotas.segment * over,
    copurchaseSeeds: quotas.copurchase > 0 ? seeds : [],
    products: siblingProducts(customer, config),
    recent: latest.slice(0, Math.max(10, config.copurchaseSeeds)),
    similarSeeds: config.embeddings && (quotas.similar ?? 0) > 0 ? seeds : [],
  };
}

/** What round trip 2 gives: the segment sets' tops, the other personal replies, article states. */
interface Round2 {
  readonly segmentTops: (readonly LogScored[])[];
  /** The replies of the personal reads after the segment sets, in the order they were queued. */
  readonly replies: Replies;
  readonly states: ArticleState[];
  readonly sent: boolean;
}

/**
 * Round trip 2: one pipeline with the reads of every personal source, sent together with the
 * states of the candidates known so far (and the embedding reads); whether anything was sent.
 */
async function readPersonal(
  reads: Reads,
  ekeys: EmbeddingKeys,
  config: CandidateConfig,
  plan: PersonalReads,
  knownIds: readonly string[],
  embReads: EmbeddingReads | null,
): Promise<Round2> {
  const { redis, keys, shared } = reads;
  const pipe = redis.pipeline();
  const segmentTops = queueTops(pipe, shared, segmentKeys(keys, plan.segments), plan.segmentN);
  queueCopurchaseReads(pipe, keys, plan.copurchaseSeeds, config.copurchasePerSeed);
  queueSiblingReads(pipe, keys, plan.products, config.siblingsPerProduct);
  queueRecentReads(pipe, keys, plan.recent);
  queueSimilarReads(pipe, ekeys, plan.similarSeeds);
  const pipeLength = pipe.length;
  const [replies, known, embSent] = await storeRead('segments, co-purchases and articles', () =>
    Promise.all([
      pipeLength > 0 ? execPipeline(pipe) : Promise.resolve([]),
      articleStates(reads, knownIds),
      embReads ? embReads.read([...knownIds, ...embReads.recentIds]) : Promise.resolve(false),
    ]),
  );
  const personal = new Replies(replies);
  return {
    segmentTops: segmentTops(personal),
    replies: personal,
    states: known.states,
    sent: pipeLength > 0 || known.sent || embSent,
  };
}

/**
 * Take round trip 2's replies in the order `readPersonal` queued them, and add each source's
 * picks to the pool in source priority order; the names of the recent purchases.
 */
function addPersonalSources(
  pool: CandidatePool,
  plan: PersonalReads,
  { segmentTops, replies }: Round2,
  excluded: Excluded,
  config: CandidateConfig,
  over: number,
): Map<string, string | null> {
  const { quotas } = config;
  const sets = segmentSets(plan.segments, segmentTops);
  const seedSets = copurchaseReplies(replies, plan.copurchaseSeeds);
  const siblingSets = siblingReplies(replies, plan.products);
  const recent = recentReplies(replies, plan.recent);
  const similarLists = similarReplies(replies, plan.similarSeeds);

  addSiblings(pool, siblingSets, excluded, quotas.siblings * over);
  const shares = addCopurchase(pool, seedSets, excluded, quotas.copurchase * over);
  addSimilar(pool, plan.similarSeeds, similarLists, excluded, (quotas.similar ?? 0) * over);
  const weight = groupWeights(recent.groups);
  addSegmentTrending(pool, plan.segments, sets, weight, excluded, plan.segmentN);
  setCopurchaseShares(pool, shares);
  return recent.names;
}

/** Round trip 3: the states of the candidates round trip 2 found; whether it was needed. */
async function readNewArticles(
  reads: Reads,
  pool: CandidatePool,
  articles: Map<string, ArticleState>,
  embReads: EmbeddingReads | null,
): Promise<boolean> {
  const newIds = [...pool.byId.keys()].filter((id) => !articles.has(id));
  if (newIds.length === 0) return false;
  const [fresh, embSent] = await storeRead('candidate articles', () =>
    Promise.all([
      articleStates(reads, newIds),
      embReads ? embReads.read(newIds) : Promise.resolve(false),
    ]),
  );
  for (const a of fresh.states) articles.set(a.articleId, a);
  return fresh.sent || embSent;
}
