/**
 * What candidate generation takes and gives: the sources and their priority, a request, a
 * candidate (with what each source found about it) and the set returned for a request.
 */
import type { ArticleState, CustomerState } from '../../features/state.ts';
import type { LogScored } from './replies.ts';

export type Source =
  'repurchase' | 'siblings' | 'copurchase' | 'similar' | 'trending_segment' | 'trending_global';
/** Source priority: the order candidates are kept in when the pool is capped. */
export const SOURCES: readonly Source[] = [
  'repurchase',
  'siblings',
  'copurchase',
  'similar',
  'trending_segment',
  'trending_global',
];

const WITHOUT_SIMILAR = SOURCES.filter((s) => s !== 'similar');

/** The sources that take part with embeddings on or off (`similar` only when on). */
export function activeSources(embeddings: boolean): readonly Source[] {
  return embeddings ? SOURCES : WITHOUT_SIMILAR;
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

export interface Candidate {
  readonly articleId: string;
  /** Every source the article came from, in source priority order. */
  sources: Source[];
  /** Most recent purchase of it by the customer (repurchase). */
  repurchase: { lastBought: number } | null;
  /** Log-space co-purchase count summed over seeds, and the seed contributing most. */
  copurchase: { logScore: number; seed: string } | null;
  /**
   * Mean over the co-purchase seeds of the candidate's share of each seed's neighbours read (in
   * [0, 1]; 0 when it is no seed's neighbour), whatever source proposed it.
   */
  copurchaseShare: number;
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
  readonly globalTop: readonly LogScored[];
  /** Segments used: `age_index:<bucket>|<group>` values and the channel, if any. */
  readonly segments: { readonly age: string[]; readonly channel: string | null };
  /** Names of the customer's latest distinct purchases (the co-purchase seeds among them). */
  readonly recentNames: ReadonlyMap<string, string | null>;
  /** Sequential Redis round trips taken. */
  readonly roundTrips: number;
}

/** Whether an article is left out: already bought, unless the request allows repurchase. */
export type Excluded = (articleId: string) => boolean;
