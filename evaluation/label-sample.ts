/**
 * Which of a label week's buyers are judged and trained on: all of them up to a size, a sample
 * beyond it. A label week of H&M's full size holds about 70,000 buyers, ~100 candidate rows each;
 * scoring every one of them, at every cutoff a cycle reads, does not fit one machine, and a gate
 * or a model gains little from the thousands after the first few.
 *
 * The rule is one function so that the rows (training/rows.ts), the judge (training/judge.ts), the
 * strong heuristic's tuning (evaluation/baselines.ts) and the gate's count of customer-weeks
 * (training/recipe.ts `cycleWeeks`) all keep the same customers: a customer judged without rows
 * would be given `popular` alone and sink the ranker. The sample is keyed by the cutoff and the id
 * alone, not by the trainer's seed, so `--seeds` trains and judges on the same rows.
 */
import { createHash } from 'node:crypto';

/** The `n` of `ids` with the smallest sha1 of `key:id` (in hash order); all when n >= their count. */
export function smallestHashes(ids: Iterable<string>, n: number, key: string): string[] {
  if (n <= 0) return [];
  const ranked: [string, string][] = [];
  for (const id of ids) ranked.push([createHash('sha1').update(`${key}:${id}`).digest('hex'), id]);
  ranked.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return ranked.slice(0, n).map(([, id]) => id);
}

/**
 * The buyers of the label week from `cutoff` that are judged and trained on, sorted: every one
 * when they are at most `max`, else the `max` with the smallest hashes of (cutoff, id).
 */
export function labelSample(buyers: Iterable<string>, cutoff: number, max: number): string[] {
  if (!(max >= 1)) throw new Error(`a label week keeps at least 1 customer (got ${max})`);
  const all = [...buyers];
  const kept = all.length <= max ? all : smallestHashes(all, max, `labels:${cutoff}`);
  return kept.sort();
}
