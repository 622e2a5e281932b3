/**
 * Heuristic recommenders the ranker is measured against, computed straight from the purchase
 * events (not from our feature store), so they are independent of the pipeline under test:
 *
 *  - `popular` (`popularBetween(log, cutoff - 7 days, cutoff, k)`): the k articles bought most
 *    often (purchase events) in the week before the cutoff, catalogue-wide, the same list for
 *    everyone;
 *  - `repurchase_popular` (`repurchasePopular`): the customer's own purchases before the cutoff,
 *    most recent first (distinct articles), filled with `popular`;
 *  - `strong_heuristic`: a weighted sum of three normalised scores — repurchase (the customer's
 *    own purchases, decayed with a 30-day half-life), co-purchase (how often the customer's last
 *    distinct purchases were bought together with the article by the same customer within 14 days
 *    over the last 180 days, as a conditional frequency) and time-decayed popularity (7-day
 *    half-life over the last 30 days) — with weights tuned on the week before (see `tuneWeights`).
 *    Its own popularity list (`HeuristicState.decayedPopular`, decayed over 30 days) is not the
 *    `popular` baseline (counts over 7 days), and is named apart from it.
 *
 * These are the only definitions of the baselines: training/judge.ts builds every label week's
 * lists from them (`labelWeek`), for the promotion gate (training/fit.ts) and the backtest
 * (evaluation/backtest/backtest.ts) alike, and fills every method's list with `popular`.
 *
 * All lists are deterministic: ties are broken by article id.
 */
import { DAY_MS } from '../features/decay.ts';
import { labelSample } from './label-sample.ts';
import { PurchaseLog, type PurchaseEvent } from './purchase-log.ts';
import { mapAtK } from './ranking-metrics.ts';

const byScoreThenId = (a: [string, number], b: [string, number]): number =>
  b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/** The `n` articles with the most purchases in [from, to) (ties by article id). */
export function popularBetween(log: PurchaseLog, from: number, to: number, n: number): string[] {
  const counts = new Map<string, number>();
  log.forEachBetween(from, to, (_customer, article) => {
    counts.set(article, (counts.get(article) ?? 0) + 1);
  });
  return [...counts]
    .sort(byScoreThenId)
    .slice(0, n)
    .map(([a]) => a);
}

/** `list` followed by `fill` entries not already in it, cut at `k`. */
export function fillTo(list: readonly string[], fill: readonly string[], k: number): string[] {
  const out = list.slice(0, k);
  const seen = new Set(out);
  for (const a of fill) {
    if (out.length >= k) break;
    if (seen.has(a)) continue;
    seen.add(a);
    out.push(a);
  }
  return out;
}

/** Distinct articles of `history` (oldest first), most recently bought first. */
export function recentDistinct(history: readonly PurchaseEvent[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (let i = history.length - 1; i >= 0; i--) {
    const a = (history[i] as PurchaseEvent).article;
    if (seen.has(a)) continue;
    seen.add(a);
    out.push(a);
  }
  return out;
}

export function repurchasePopular(
  history: readonly PurchaseEvent[],
  popular: readonly string[],
  k: number,
): string[] {
  return fillTo(recentDistinct(history), popular, k);
}

// ---- strong heuristic ---------------------------------------------------------------------------

export interface HeuristicWeights {
  readonly repurchase: number;
  readonly copurchase: number;
  readonly popularity: number;
}

export const HEURISTIC_GRID: readonly HeuristicWeights[] = [0, 0.3, 1, 3].flatMap((copurchase) =>
  [0.1, 0.3, 1, 3].map((popularity) => ({ repurchase: 1, copurchase, popularity })),
);

const REPURCHASE_HALF_LIFE = 30 * DAY_MS;
const POPULARITY_HALF_LIFE = 7 * DAY_MS;
const POPULARITY_WINDOW = 30 * DAY_MS;
const COPURCHASE_LOOKBACK = 180 * DAY_MS;
const COPURCHASE_WINDOW = 14 * DAY_MS;
/** Partners per purchase (nearest in time first), as the co-purchase processor bounds fan-out. */
const COPURCHASE_FANOUT = 20;
const SEEDS = 5;
const NEIGHBOURS_PER_SEED = 20;
const POPULAR_CANDIDATES = 50;

/** What the strong heuristic knows at one cutoff (built once, used for every customer). */
export class HeuristicState {
  readonly cutoff: number;
  private readonly popularity = new Map<string, number>();
  /** The articles by decayed popularity (the `popularity` component), the top 50. */
  private readonly decayedPopularList: string[];
  private readonly cooc = new Map<string, Map<string, number>>();
  private readonly coocTotal = new Map<string, number>();

  constructor(
    private readonly log: PurchaseLog,
    cutoff: number,
  ) {
    this.cutoff = cutoff;
    let max = 0;
    log.forEachBetween(cutoff - POPULARITY_WINDOW, cutoff, (_customer, article, time) => {
      const v =
        (this.popularity.get(article) ?? 0) + Math.pow(0.5, (cutoff - time) / POPULARITY_HALF_LIFE);
      this.popularity.set(article, v);
      max = Math.max(max, v);
    });
    if (max > 0) for (const [a, v] of this.popularity) this.popularity.set(a, v / max);
    this.decayedPopularList = [...this.popularity]
      .sort(byScoreThenId)
      .slice(0, POPULAR_CANDIDATES)
      .map(([a]) => a);

    // Co-purchase counts over the lookback: per customer, each purchase with its nearest partners.
    const recent = new Map<string, PurchaseEvent[]>();
    log.forEachBetween(cutoff - COPURCHASE_LOOKBACK, cutoff, (customer, article, time) => {
      const e = { customer, article, time };
      const list = recent.get(customer);
      if (list) list.push(e);
      else recent.set(customer, [e]);
    });
    for (const list of recent.values()) {
      for (let i = 0; i < list.length; i++) {
        const e = list[i] as PurchaseEvent;
        let lo = i - 1;
        let hi = i + 1;
        let taken = 0;
        while (taken < COPURCHASE_FANOUT) {
          const l = lo >= 0 ? (list[lo] as PurchaseEvent) : undefined;
          const h = hi < list.length ? (list[hi] as PurchaseEvent) : undefined;
          const dl = l ? e.time - l.time : Infinity;
          const dh = h ? h.time - e.time : Infinity;
          const d = Math.min(dl, dh);
          if (d > COPURCHASE_WINDOW) break;
          const partner = dl <= dh ? (l as PurchaseEvent) : (h as PurchaseEvent);
          if (dl <= dh) lo--;
          else hi++;
          if (partner.article === e.article) continue;
          taken++;
          let m = this.cooc.get(e.article);
          if (!m) {
            m = new Map();
            this.cooc.set(e.article, m);
          }
          m.set(partner.article, (m.get(partner.article) ?? 0) + 1);
          this.coocTotal.set(e.article, (this.coocTotal.get(e.article) ?? 0) + 1);
        }
      }
    }
  }

  /** Candidate scores of one customer, as the three normalised components. */
  components(customer: string): Map<string, [number, number, number]> {
    const history = this.log.historyBefore(customer, this.cutoff);
    const out = new Map<string, [number, number, number]>();
    const get = (a: string) => {
      let v = out.get(a);
      if (!v) {
        v = [0, 0, this.popularity.get(a) ?? 0];
        out.set(a, v);
      }
      return v;
    };
    let maxRep = 0;
    for (const e of history) {
      const v = get(e.article);
      v[0] += Math.pow(0.5, (this.cutoff - e.time) / REPURCHASE_HALF_LIFE);
      maxRep = Math.max(maxRep, v[0]);
    }
    if (maxRep > 0) for (const v of out.values()) v[0] /= maxRep;
    for (const seed of recentDistinct(history).slice(0, SEEDS)) {
      const m = this.cooc.get(seed);
      const total = this.coocTotal.get(seed) ?? 0;
      if (!m || total === 0) continue;
      const top = [...m].sort(byScoreThenId).slice(0, NEIGHBOURS_PER_SEED);
      for (const [a, c] of top) get(a)[1] += c / total / SEEDS;
    }
    for (const a of this.decayedPopularList) get(a);
    return out;
  }

  /**
   * The top k by decayed popularity (7-day half-life over 30 days): the strong heuristic's own
   * fill, not the `popular` baseline (`popularBetween`, counts over the week before).
   */
  decayedPopular(k: number): string[] {
    return this.decayedPopularList.slice(0, k);
  }

  recommend(customer: string, w: HeuristicWeights, k: number): string[] {
    return this.rank(this.components(customer), w, k);
  }

  rank(components: Map<string, [number, number, number]>, w: HeuristicWeights, k: number) {
    const scored: [string, number][] = [];
    for (const [a, [r, c, p]] of components) {
      scored.push([a, w.repurchase * r + w.copurchase * c + w.popularity * p]);
    }
    return fillTo(
      scored
        .sort(byScoreThenId)
        .slice(0, k)
        .map(([a]) => a),
      this.decayedPopularList,
      k,
    );
  }
}

/** The last state built per log: judging weeks in order builds the state at a cutoff twice. */
const lastState = new WeakMap<PurchaseLog, HeuristicState>();

/**
 * The strong heuristic's state at `cutoff`, built once for consecutive uses: a week's baselines
 * (training/judge.ts) tune their weights at the week before, whose own baselines were built at
 * that same cutoff just before.
 */
export function heuristicStateAt(log: PurchaseLog, cutoff: number): HeuristicState {
  const last = lastState.get(log);
  if (last?.cutoff === cutoff) return last;
  const state = new HeuristicState(log, cutoff);
  lastState.set(log, state);
  return state;
}

/**
 * Weights of the strong heuristic that maximise MAP@k on the week starting at `cutoff` from what
 * was known at `cutoff` (the backtest passes the week before the evaluated one, so the evaluated
 * week is never looked at), over that week's buyers, at most `maxCustomers` of them (the sample
 * of evaluation/label-sample.ts). Ties keep the first grid entry.
 */
export function tuneWeights(
  log: PurchaseLog,
  cutoff: number,
  k: number,
  maxCustomers = Infinity,
  grid: readonly HeuristicWeights[] = HEURISTIC_GRID,
): { weights: HeuristicWeights; map: number } {
  const state = heuristicStateAt(log, cutoff);
  const labels = log.labels(cutoff, cutoff + 7 * DAY_MS);
  const customers = labelSample(labels.keys(), cutoff, maxCustomers);
  const comps = customers.map((c) => state.components(c));
  const relevant = customers.map((c) => labels.get(c) as Set<string>);
  let best: { weights: HeuristicWeights; map: number } = {
    weights: grid[0] ?? { repurchase: 1, copurchase: 1, popularity: 1 },
    map: -1,
  };
  for (const w of grid) {
    const map = mapAtK(
      comps.map((m) => state.rank(m, w, k)),
      relevant,
      k,
    );
    if (map > best.map) best = { weights: w, map };
  }
  return best;
}
