/**
 * Candidate generation: the articles a customer's recommendations are ranked from, read from the
 * online feature store (`gatherCandidates`, gather.ts: the round trips), plus the article reads
 * the routes and the trending cache share.
 *
 * One module per source, each queuing its reads on the request's pipeline and adding its picks to
 * the pool (pool.ts): repurchase.ts, siblings.ts, copurchase.ts, similar.ts (embeddings on, with
 * the embedding reads that ride along), trending-segment.ts, trending-global.ts. config.ts holds
 * the quotas, types.ts what a request gives and gets, customer.ts what is derived from the
 * customer's state, shared.ts what the server's requests share (article states, trending sets).
 *
 * May import common/, schemas/, features/, streams/, embeddings/ and serving/http-errors.ts, and
 * nothing else of serving/. Code outside this folder imports from this file.
 */
export { gatherCandidates } from './gather.ts';
export {
  DEFAULT_CANDIDATE_CONFIG,
  defaultCandidateConfig,
  scaledCandidateConfig,
  withEmbeddings,
  type CandidateConfig,
} from './config.ts';
export {
  SOURCES,
  activeSources,
  type Candidate,
  type CandidateRequest,
  type CandidateSet,
  type Filters,
  type Source,
} from './types.ts';
export { GLOBAL_TRENDING_HL } from './trending-global.ts';
export { parseScored, type LogScored } from './replies.ts';
export { readSummaries, summaryPassesFilters, type ArticleSummary } from './summaries.ts';
export { eventTimeNow } from './event-time.ts';
export { SharedReads, type SharedReadsOptions } from './shared.ts';
