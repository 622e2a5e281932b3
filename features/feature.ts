/**
 * The shape of a feature: what it reads (a customer's and an article's state, the candidate's
 * evidence, an explicit "now") and how it is described. The definitions themselves live in
 * definitions.ts (and embedding-state.ts for the embedding features).
 */
import type { ArticleState, CustomerState } from './state.ts';

/** What candidate generation found about a candidate (serving/candidates.ts `Candidate`). */
export interface CandidateEvidence {
  readonly sources: readonly string[];
  /** Log-space co-purchase count summed over the seeds (at the epoch, see decay.ts). */
  readonly copurchase: { readonly logScore: number } | null;
  /**
   * Mean over the co-purchase seeds of the candidate's share of the seed's neighbours (a
   * conditional frequency, as the strong heuristic's), whatever source proposed it.
   */
  readonly copurchaseShare: number;
  /** Segment score in [0, 1]. */
  readonly segment: { readonly score: number } | null;
  /** Position (0 = first) of the article in the ordering of each source that proposed it. */
  readonly ranks: Readonly<Partial<Record<string, number>>>;
}

export interface FeatureContext {
  readonly customer: CustomerState;
  readonly article: ArticleState;
  /** Event-time "now" (ms). */
  readonly now: number;
  /** The candidate's evidence; its features are NaN without it. */
  readonly candidate?: CandidateEvidence;
}

export interface FeatureDefinition {
  readonly name: string;
  readonly scope: 'customer' | 'article' | 'pair';
  /** Where the state comes from (which script writes which key / field). */
  readonly writes: string;
  read(ctx: FeatureContext): number;
}
