/**
 * Ranking metrics at a cutoff k (default 12, the H&M competition's), with binary relevance.
 *
 * Conventions, shared by every metric here:
 *  - the top k are the first k entries of `ranked` as given;
 *  - an article repeated in `ranked` counts once: a later occurrence still takes its position but
 *    is never a hit (the Kaggle `apk` convention, so a ranker cannot gain by repeating a hit);
 *  - nothing relevant gives 0 (the query cannot be scored, and is counted as a miss when averaged).
 */

function checkK(k: number): void {
  if (!Number.isInteger(k) || k < 1)
    throw new RangeError(`k must be a positive integer (got ${k})`);
}

/** 1-based positions (within the top k) of the hits, duplicates skipped. */
function hitPositions(
  ranked: readonly string[],
  relevant: ReadonlySet<string>,
  k: number,
): number[] {
  checkK(k);
  const seen = new Set<string>();
  const hits: number[] = [];
  const n = Math.min(k, ranked.length);
  for (let i = 0; i < n; i++) {
    const id = ranked[i] as string;
    if (seen.has(id)) continue;
    seen.add(id);
    if (relevant.has(id)) hits.push(i + 1);
  }
  return hits;
}

/**
 * Average precision at k: Σ_{i≤k} P(i)·rel(i) / min(|relevant|, k), where P(i) is the precision
 * of the first i entries.
 */
export function apAtK(ranked: readonly string[], relevant: ReadonlySet<string>, k = 12): number {
  const hits = hitPositions(ranked, relevant, k);
  if (relevant.size === 0) return 0;
  let sum = 0;
  hits.forEach((pos, j) => {
    sum += (j + 1) / pos;
  });
  return sum / Math.min(relevant.size, k);
}

/** Share of the relevant items found in the top k: hits / |relevant|. */
export function recallAtK(
  ranked: readonly string[],
  relevant: ReadonlySet<string>,
  k = 12,
): number {
  const hits = hitPositions(ranked, relevant, k);
  return relevant.size === 0 ? 0 : hits.length / relevant.size;
}

/**
 * Normalised discounted cumulative gain at k with binary gains: DCG = Σ_{hits} 1 / log2(pos + 1),
 * divided by the ideal DCG of min(|relevant|, k) hits at the top.
 */
export function ndcgAtK(ranked: readonly string[], relevant: ReadonlySet<string>, k = 12): number {
  const hits = hitPositions(ranked, relevant, k);
  if (relevant.size === 0) return 0;
  const dcg = hits.reduce((s, pos) => s + 1 / Math.log2(pos + 1), 0);
  let ideal = 0;
  for (let pos = 1; pos <= Math.min(relevant.size, k); pos++) ideal += 1 / Math.log2(pos + 1);
  return dcg / ideal;
}

function meanOver(
  metric: (ranked: readonly string[], relevant: ReadonlySet<string>, k: number) => number,
  ranked: readonly (readonly string[])[],
  relevant: readonly ReadonlySet<string>[],
  k: number,
): number {
  if (ranked.length !== relevant.length) {
    throw new RangeError(
      `one ranking per query: got ${ranked.length} rankings for ${relevant.length} relevant sets`,
    );
  }
  checkK(k);
  if (ranked.length === 0) return NaN;
  let sum = 0;
  ranked.forEach((r, i) => {
    sum += metric(r, relevant[i] as ReadonlySet<string>, k);
  });
  return sum / ranked.length;
}

/**
 * Mean average precision at k over queries (`ranked[i]` scored against `relevant[i]`). Every query
 * counts, including those with nothing relevant (0): pass only the queries to be evaluated (for
 * H&M-style evaluation, the customers who bought in the label week). NaN for no queries.
 */
export function mapAtK(
  ranked: readonly (readonly string[])[],
  relevant: readonly ReadonlySet<string>[],
  k = 12,
): number {
  return meanOver(apAtK, ranked, relevant, k);
}

/** Mean recall at k over queries (see `mapAtK` for which queries count). NaN for no queries. */
export function meanRecallAtK(
  ranked: readonly (readonly string[])[],
  relevant: readonly ReadonlySet<string>[],
  k = 12,
): number {
  return meanOver(recallAtK, ranked, relevant, k);
}

/** Mean NDCG at k over queries (see `mapAtK` for which queries count). NaN for no queries. */
export function meanNdcgAtK(
  ranked: readonly (readonly string[])[],
  relevant: readonly ReadonlySet<string>[],
  k = 12,
): number {
  return meanOver(ndcgAtK, ranked, relevant, k);
}
