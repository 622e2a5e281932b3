/**
 * Judging rankers on a label week, the same way for the promotion gate and the backtest: the
 * customers are everyone who bought in [c, c + 7 days) (cold ones included; beyond the recipe's
 * `labelCustomers`, the sample of evaluation/label-sample.ts, the one the rows were built for),
 * relevant = the distinct articles they bought, every list is cut at k and filled with `popular`.
 *
 * Methods: `ranker` (a model's scores over the week's candidate rows) and the baselines —
 * `popular`, `repurchase_popular`, `strong_heuristic` (evaluation/baselines.ts, computed from the
 * raw purchase log) and `heuristic` (serving's `heuristic-v2` over the same candidates, what the
 * API serves without a promoted model).
 *
 * `popular` and `repurchase_popular` have one definition each (evaluation/baselines.ts:
 * `popularBetween` over the week before the cutoff, `repurchasePopular`), taken here for the
 * promotion gate (training/fit.ts) and the backtest (evaluation/backtest/backtest.ts) alike.
 */
import { DAY_MS } from '../features/decay.ts';
import {
  fillTo,
  heuristicStateAt,
  popularBetween,
  repurchasePopular,
  tuneWeights,
  type HeuristicWeights,
} from '../evaluation/baselines.ts';
import type { PurchaseLog } from '../evaluation/purchase-log.ts';
import { labelSample } from '../evaluation/label-sample.ts';
import { apAtK, ndcgAtK, recallAtK } from '../evaluation/ranking-metrics.ts';
import type { RowTable } from './rows.ts';
import { rankByQuery } from './steps.ts';

export const BASELINES = [
  'popular',
  'repurchase_popular',
  'strong_heuristic',
  'heuristic',
] as const;
export type Baseline = (typeof BASELINES)[number];

const WEEK = 7 * DAY_MS;

/** One label week: who is judged, on what, and every method's lists. */
export interface Week {
  readonly cutoff: number;
  /** Customers who bought in the week (at most the recipe's `labelCustomers`), sorted. */
  readonly customers: readonly string[];
  readonly relevant: readonly ReadonlySet<string>[];
  /** Customers without a purchase before the cutoff. */
  readonly cold: number;
  readonly popular: readonly string[];
  readonly heuristicWeights: HeuristicWeights;
  /** Per method: one list per customer (in `customers` order). */
  readonly lists: Map<string, string[][]>;
}

/** Baseline weeks already computed, per log: a backtest judges each week in up to 5 cycles. */
const computed = new WeakMap<PurchaseLog, Map<string, Week>>();

/**
 * The week at `cutoff` with the log-based baselines' lists (computed once per log, cutoff, k and
 * sample size; each call gets its own `lists` map to add methods to). Its customers are the
 * week's buyers, at most `maxCustomers` of them: the recipe's `labelCustomers`, the sample the
 * rows were built for (evaluation/label-sample.ts).
 */
export function labelWeek(log: PurchaseLog, cutoff: number, k: number, maxCustomers: number): Week {
  let byKey = computed.get(log);
  if (!byKey) {
    byKey = new Map();
    computed.set(log, byKey);
  }
  const key = `${cutoff}:${k}:${maxCustomers}`;
  let week = byKey.get(key);
  if (!week) {
    week = baselineWeek(log, cutoff, k, maxCustomers);
    byKey.set(key, week);
  }
  return { ...week, lists: new Map(week.lists) };
}

function baselineWeek(log: PurchaseLog, cutoff: number, k: number, maxCustomers: number): Week {
  const labels = log.labels(cutoff, cutoff + WEEK);
  const customers = labelSample(labels.keys(), cutoff, maxCustomers);
  const popular = popularBetween(log, cutoff - WEEK, cutoff, k);
  // Weights tuned on the week before the cutoff, from what was known at the cutoff.
  const tuned = tuneWeights(log, cutoff - WEEK, k, maxCustomers);
  const heuristic = heuristicStateAt(log, cutoff);
  const lists = new Map<string, string[][]>([
    ['popular', []],
    ['repurchase_popular', []],
    ['strong_heuristic', []],
  ]);
  let cold = 0;
  for (const c of customers) {
    const history = log.historyBefore(c, cutoff);
    if (history.length === 0) cold++;
    lists.get('popular')?.push([...popular]);
    lists.get('repurchase_popular')?.push(repurchasePopular(history, popular, k));
    lists.get('strong_heuristic')?.push(heuristic.recommend(c, tuned.weights, k));
  }
  return {
    cutoff,
    customers,
    relevant: customers.map((c) => labels.get(c) as Set<string>),
    cold,
    popular,
    heuristicWeights: tuned.weights,
    lists,
  };
}

/**
 * Add a method ranked from row scores: each customer's candidates of `rows` (this week's rows
 * only) by score, the top k filled with the week's popular list (a customer without rows gets
 * popular alone).
 */
export function addRanked(
  week: Week,
  method: string,
  rows: RowTable,
  scores: ArrayLike<number>,
  k: number,
): void {
  const ranked = new Map([...rankByQuery(rows, scores).values()].map((q) => [q.customerId, q]));
  week.lists.set(
    method,
    week.customers.map((c) => fillTo(ranked.get(c)?.articles ?? [], week.popular, k)),
  );
}

type Metric = (ranked: readonly string[], relevant: ReadonlySet<string>, k: number) => number;

/** One value per customer of the week for `method`. */
export function perCustomer(week: Week, method: string, metric: Metric, k: number): number[] {
  const lists = week.lists.get(method);
  if (!lists) throw new Error(`no lists of ${method} at ${new Date(week.cutoff).toISOString()}`);
  return lists.map((l, i) => metric(l, week.relevant[i] as ReadonlySet<string>, k));
}

/** AP@k per customer, pooled over weeks (customer-weeks in week order). */
export function pooledAp(weeks: readonly Week[], method: string, k: number): number[] {
  return weeks.flatMap((w) => perCustomer(w, method, apAtK, k));
}

export { apAtK, ndcgAtK, recallAtK };
