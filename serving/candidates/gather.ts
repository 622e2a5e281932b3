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
 * Each source has a quota (`CandidateConfig.quotas`) and its own module. An article from several
 * sources is kept once with all of them. Already-bought articles are excluded unless allowed;
 * filters apply to the article metadata (case-insensitive equality); with filters the reads
 * fetch `filterOverfetch` times their quota, as filtering discards most. Cold start (unknown
 * customer or no history) is the same path with no repurchase or co-purchase seeds: segment
 * (when the customer record gives an age) and global trending.
 */
import type { Redis } from 'ioredis';
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
import { addCopurchase, copurchaseReplies, queueCopurchaseReads } from './copurchase.ts';
import { latestDistinct, queueRecentReads, recentReplies } from './customer.ts';
import { hasFilters } from './filters.ts';
import { CandidatePool } from './pool.ts';
import { execPipeline, parseScored, Replies, type LogScored } from './replies.ts';
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
  queueSegmentReads,
  segmentReplies,
  type Segments,
} from './trending-segment.ts';
import type { CandidateRequest, CandidateSet, Excluded, Filters } from './types.ts';

/** Read the candidates of one request (see the module comment for the round trips). */
export async function gatherCandidates(
  redis: Redis,
  keys: KeySpace,
  config: CandidateConfig,
  req: CandidateRequest,
): Promise<CandidateSet> {
  const over = hasFilters(req.filters) ? Math.max(1, config.filterOverfetch) : 1;
  const { customer, globalTop } = await readCustomerAndGlobal(
    redis,
    keys,
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
  const round2 = await readPersonal(
    redis,
    keys,
    ekeys,
    config,
    plan,
    [...pool.byId.keys()],
    embReads,
  );
  const articles = new Map<string, ArticleState>(round2.states.map((a) => [a.articleId, a]));
  const recentNames = addPersonalSources(pool, plan, round2.replies, excluded, config, over);
  const round3 = await readNewArticles(redis, keys, pool, articles, embReads);

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

/** Round trip 1: the customer's state and the global trending top, sent together. */
async function readCustomerAndGlobal(
  redis: Redis,
  keys: KeySpace,
  customerId: string,
  globalN: number,
): Promise<{ customer: CustomerState; globalTop: LogScored[] }> {
  const [customers, globalFlat] = await storeRead('customer and global trending', () =>
    Promise.all([
      readCustomers(redis, keys, [customerId]),
      readGlobalTrending(redis, keys, globalN),
    ]),
  );
  const customer = customers[0];
  if (!customer) throw new Error('readCustomers returned no state');
  return { customer, globalTop: parseScored(globalFlat) };
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

/**
 * Round trip 2: one pipeline with the reads of every personal source, sent together with the
 * states of the candidates known so far (and the embedding reads); whether anything was sent.
 */
async function readPersonal(
  redis: Redis,
  keys: KeySpace,
  ekeys: EmbeddingKeys,
  config: CandidateConfig,
  plan: PersonalReads,
  knownIds: readonly string[],
  embReads: EmbeddingReads | null,
): Promise<{ replies: Replies; states: ArticleState[]; sent: boolean }> {
  const pipe = redis.pipeline();
  queueSegmentReads(pipe, keys, plan.segments, plan.segmentN);
  queueCopurchaseReads(pipe, keys, plan.copurchaseSeeds, config.copurchasePerSeed);
  queueSiblingReads(pipe, keys, plan.products, config.siblingsPerProduct);
  queueRecentReads(pipe, keys, plan.recent);
  queueSimilarReads(pipe, ekeys, plan.similarSeeds);
  const pipeLength = pipe.length;
  const [replies, states, embSent] = await storeRead('segments, co-purchases and articles', () =>
    Promise.all([
      pipeLength > 0 ? execPipeline(pipe) : Promise.resolve([]),
      knownIds.length > 0 ? readArticles(redis, keys, knownIds) : Promise.resolve([]),
      embReads ? embReads.read([...knownIds, ...embReads.recentIds]) : Promise.resolve(false),
    ]),
  );
  const sent = pipeLength > 0 || knownIds.length > 0 || embSent;
  return { replies: new Replies(replies), states, sent };
}

/**
 * Take round trip 2's replies in the order `readPersonal` queued them, and add each source's
 * picks to the pool in source priority order; the names of the recent purchases.
 */
function addPersonalSources(
  pool: CandidatePool,
  plan: PersonalReads,
  replies: Replies,
  excluded: Excluded,
  config: CandidateConfig,
  over: number,
): Map<string, string | null> {
  const { quotas } = config;
  const segmentSets = segmentReplies(replies, plan.segments);
  const seedSets = copurchaseReplies(replies, plan.copurchaseSeeds);
  const siblingSets = siblingReplies(replies, plan.products);
  const recent = recentReplies(replies, plan.recent);
  const similarLists = similarReplies(replies, plan.similarSeeds);

  addSiblings(pool, siblingSets, excluded, quotas.siblings * over);
  addCopurchase(pool, seedSets, excluded, quotas.copurchase * over);
  addSimilar(pool, plan.similarSeeds, similarLists, excluded, (quotas.similar ?? 0) * over);
  const weight = groupWeights(recent.groups);
  addSegmentTrending(pool, plan.segments, segmentSets, weight, excluded, plan.segmentN);
  return recent.names;
}

/** Round trip 3: the states of the candidates round trip 2 found; whether it was needed. */
async function readNewArticles(
  redis: Redis,
  keys: KeySpace,
  pool: CandidatePool,
  articles: Map<string, ArticleState>,
  embReads: EmbeddingReads | null,
): Promise<boolean> {
  const newIds = [...pool.byId.keys()].filter((id) => !articles.has(id));
  if (newIds.length === 0) return false;
  const [states] = await storeRead('candidate articles', () =>
    Promise.all([
      readArticles(redis, keys, newIds),
      embReads ? embReads.read(newIds) : Promise.resolve(false),
    ]),
  );
  for (const a of states) articles.set(a.articleId, a);
  return true;
}
