/**
 * The candidate pool of one request: each article once, with every source that proposed it (in
 * source priority order) and its rank in each; then filtered and capped in source priority order
 * with the per-source quotas.
 */
import type { ArticleState } from '../../features/state.ts';
import type { CandidateConfig } from './config.ts';
import { passesFilters } from './filters.ts';
import { SOURCES, type Candidate, type Filters, type Source } from './types.ts';

export class CandidatePool {
  readonly byId = new Map<string, Candidate>();

  /** The article's candidate, added from `source` at `rank` (0 = that source's first). */
  add(articleId: string, source: Source, rank: number): Candidate {
    let c = this.byId.get(articleId);
    if (!c) {
      c = {
        articleId,
        sources: [],
        repurchase: null,
        copurchase: null,
        copurchaseShare: 0,
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

  /**
   * The candidates passing the filters, in source priority order (of each one's first source),
   * at most each source's quota after filtering and `maxCandidates` in all.
   */
  select(
    articles: ReadonlyMap<string, ArticleState>,
    config: CandidateConfig,
    filters: Filters,
  ): Candidate[] {
    const { quotas } = config;
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
    return (
      [...this.byId.values()]
        .filter((c) => passesFilters(articles.get(c.articleId)?.meta ?? {}, filters))
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
        .slice(0, config.maxCandidates)
    );
  }
}
