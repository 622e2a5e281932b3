/**
 * The online read-out's arithmetic (`npm run eval:online`): served lists joined with what their
 * customers bought afterwards, per-list hit@k and AP@k, a summary per variant with intervals from
 * a bootstrap over customers, and the unpaired bootstrap difference of each variant to a
 * baseline. Pure: no Kafka, no clock. The definitions are in docs/evaluation.md ("Online
 * read-out"); in short:
 *
 * - a list is one served answer (records with the same request id count once), its time t is
 *   `served_at` or, with `time: 'features'`, `features_now`; its relevant set is the distinct
 *   articles its customer bought in (t, t + window];
 * - hit@k = 1 when one of its first k articles is relevant; AP@k as in ranking-metrics.ts; a list
 *   followed by no purchase counts with 0 in both (every list counts, as every list was shown);
 * - a variant's hit rate and MAP are means over its lists, all of them, the fallback ones
 *   (degraded, or from the trending cache) included; those are also summarised on their own;
 * - coverage = distinct catalogue articles among the first k of the variant's lists / catalogue
 *   size; it grows with traffic, so it is also given rarefied: the mean coverage of m customers
 *   drawn without replacement, m the smallest variant's customer count;
 * - intervals: percentile bootstrap resampling customers (a customer's lists are correlated);
 *   differences: each variant's and the baseline's resamples drawn independently (they hold
 *   different customers, so no pairing), the interval of the difference of their statistics.
 *   Coverage counts distinct articles, and a resample holds only ~63 % distinct customers, so
 *   its resampled values sit below the observed one: its interval is the percentile interval
 *   moved by (observed − mean of the resamples), keeping the spread, centred on the observation
 *   (and widened to hold it).
 */
import type { Served } from '../../schemas/events.ts';
import { apAtK } from '../ranking-metrics.ts';
import { rng } from '../stats.ts';

/** One served answer, reduced to what the read-out needs. */
export interface ServedList {
  requestId: string;
  customerId: string;
  /** Serving time t, ms since the epoch: served_at, or features_now with `--time features`. */
  time: number;
  experiment: string | null;
  variant: string;
  rankedBy: string;
  degraded: boolean;
  coldStart: boolean;
  /** Article ids in rank order. */
  articles: string[];
}

/** One purchase: who bought what, when (event time, ms). */
export interface Bought {
  customerId: string;
  articleId: string;
  time: number;
}

export type TimeBase = 'served' | 'features';

/** A served record as a list, its items put in rank order, its time chosen by `time`. */
export function toServedList(s: Served, time: TimeBase): ServedList {
  return {
    requestId: s.request_id,
    customerId: s.customer_id,
    time: time === 'served' ? s.served_at : s.features_now,
    experiment: s.experiment,
    variant: s.variant,
    rankedBy: s.ranked_by,
    degraded: s.degraded,
    coldStart: s.cold_start,
    articles: [...s.items].sort((a, b) => a.rank - b.rank).map((i) => i.article_id),
  };
}

/** A list served from a fallback path: degraded, or answered from the trending cache. */
export const isFallback = (l: ServedList): boolean => l.degraded || l.rankedBy === 'trending_cache';

/** A list scored against its customer's purchases. */
export interface ListOutcome {
  list: ServedList;
  /** Distinct articles bought in (t, t + window]. */
  relevant: number;
  /** One of the first k articles was bought. */
  hit: boolean;
  /** AP@k. */
  ap: number;
  /** AP@1..k (index j holds AP@(j+1)); null when nothing was bought (all 0). */
  apAtEachK: Float64Array | null;
}

/** Purchases per customer, in time order. */
class PurchaseIndex {
  private readonly byCustomer = new Map<string, { times: number[]; articles: string[] }>();

  constructor(purchases: readonly Bought[]) {
    const sorted = [...purchases].sort((a, b) => a.time - b.time);
    for (const p of sorted) {
      let c = this.byCustomer.get(p.customerId);
      if (!c) {
        c = { times: [], articles: [] };
        this.byCustomer.set(p.customerId, c);
      }
      c.times.push(p.time);
      c.articles.push(p.articleId);
    }
  }

  /** Distinct articles `customer` bought in (after, until]. */
  bought(customer: string, after: number, until: number): Set<string> {
    const out = new Set<string>();
    const c = this.byCustomer.get(customer);
    if (!c) return out;
    // First purchase strictly after `after`.
    let lo = 0;
    let hi = c.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((c.times[mid] as number) <= after) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < c.times.length && (c.times[i] as number) <= until; i++) {
      out.add(c.articles[i] as string);
    }
    return out;
  }
}

/** Score each list against the purchases of its customer in (t, t + windowMs]. */
export function scoreLists(
  lists: readonly ServedList[],
  purchases: readonly Bought[],
  opts: { windowMs: number; k: number },
): ListOutcome[] {
  const index = new PurchaseIndex(purchases);
  const { k } = opts;
  return lists.map((list) => {
    const relevant = index.bought(list.customerId, list.time, list.time + opts.windowMs);
    if (relevant.size === 0) return { list, relevant: 0, hit: false, ap: 0, apAtEachK: null };
    const top = list.articles.slice(0, k);
    const apAtEachK = new Float64Array(k);
    for (let j = 1; j <= k; j++) apAtEachK[j - 1] = apAtK(top, relevant, j);
    return {
      list,
      relevant: relevant.size,
      hit: top.some((a) => relevant.has(a)),
      ap: apAtEachK[k - 1] as number,
      apAtEachK,
    };
  });
}

/** Lists counted once per request id (the first record kept); returns them and the copies. */
export function distinctRequests(lists: readonly ServedList[]): {
  lists: ServedList[];
  copies: number;
} {
  const seen = new Set<string>();
  const out = lists.filter((l) => {
    if (seen.has(l.requestId)) return false;
    seen.add(l.requestId);
    return true;
  });
  return { lists: out, copies: lists.length - out.length };
}

/**
 * The name each list is reported under: its variant; `experiment/variant` for all lists when one
 * variant name is used by two experiments (no experiment counting as one) in the lists read.
 */
export function variantLabeller(lists: readonly ServedList[]): (l: ServedList) => string {
  const experiments = new Map<string, Set<string | null>>();
  for (const l of lists) {
    const set = experiments.get(l.variant) ?? new Set<string | null>();
    set.add(l.experiment);
    experiments.set(l.variant, set);
  }
  const clash = [...experiments.values()].some((s) => s.size > 1);
  return clash ? (l) => `${l.experiment ?? '-'}/${l.variant}` : (l) => l.variant;
}

// ---------------------------------------------------------------------------------------------
// Summaries and the bootstrap
// ---------------------------------------------------------------------------------------------

/** A statistic with its bootstrap percentile interval (NaN when it cannot be computed). */
export interface Estimate {
  value: number;
  low: number;
  high: number;
}

/** A difference (variant − baseline) with its interval and the share of resamples above 0. */
export interface Difference extends Estimate {
  above: number;
}

export interface GroupSummary {
  lists: number;
  customers: number;
  /** Lists followed by at least one purchase in their window. */
  listsWithPurchase: number;
  hitRate: Estimate;
  map: Estimate;
  /** MAP@k over the lists followed by a purchase (the offline backtest's population). */
  mapBuyers: Estimate;
  /** Null when the catalogue size is unknown (no articles read). */
  coverage: Estimate | null;
  /**
   * Rarefied coverage: the mean coverage of `matchedCustomers` customers drawn without
   * replacement, comparable between variants of unequal traffic (no interval). Null for slices
   * and without a catalogue.
   */
  coverageMatched: number | null;
  /** Distinct articles among the first k of the lists (in the catalogue or not). */
  articlesServed: number;
  /** MAP@j for j = 1..k. */
  mapAtK: number[];
}

export interface VariantSummary extends GroupSummary {
  variant: string;
  /** Lists per ranked_by value. */
  rankedBy: Record<string, number>;
  degraded: number;
  coldStart: number;
  /** The lists ranked as intended (neither degraded nor from the trending cache); null if none. */
  asRanked: GroupSummary | null;
  /** The degraded or trending-cache lists; null if none. */
  fallback: GroupSummary | null;
  /** Lists per UTC day of their time t ('YYYY-MM-DD'). */
  listsPerDay: Record<string, number>;
}

export interface VariantDifference {
  variant: string;
  baseline: string;
  hitRate: Difference;
  map: Difference;
  mapBuyers: Difference;
  coverage: Difference | null;
  /** Difference of the rarefied coverages (no interval). */
  coverageMatched: number | null;
}

export interface Readout {
  k: number;
  windowMs: number;
  confidence: number;
  iterations: number;
  /** Distinct article ids in the catalogue (0: unknown). */
  catalogueSize: number;
  lists: number;
  customers: number;
  /** Customers with lists in more than one variant (they are resampled in each). */
  customersInSeveralVariants: number;
  /** Lists whose window (t, t + window] reaches past the horizon: purchases may still come. */
  openWindows: number;
  /** Served articles (first k) not in the catalogue; not counted in coverage. */
  articlesOutsideCatalogue: number;
  /** Customers per draw of the rarefied coverage: the smallest variant's customer count. */
  matchedCustomers: number;
  baseline: string | null;
  variants: VariantSummary[];
  differences: VariantDifference[];
}

export interface ReadoutOptions {
  k: number;
  windowMs: number;
  /** Central interval mass (default 0.95). */
  confidence?: number;
  /** Bootstrap resamples (default 2000). */
  iterations?: number;
  seed?: number;
  /** The catalogue's article ids (from the articles topic); empty: coverage unknown. */
  catalogue: ReadonlySet<string>;
  /** Instant up to which purchases are known (windows ending later are reported as open). */
  horizon: number;
  /** The variant the others are compared with; default `control`, else `default`, else the largest. */
  baseline?: string;
}

/** One customer's lists in a group: the bootstrap's unit. */
interface Cluster {
  lists: number;
  hits: number;
  ap: number;
  buyerLists: number;
  buyerAp: number;
  /** Indices of the catalogue articles among the first k of the customer's lists. */
  articles: Int32Array;
}

/** The statistics of each bootstrap resample (index r: resample r). */
interface Resamples {
  hitRate: Float64Array;
  map: Float64Array;
  mapBuyers: Float64Array;
  coverage: Float64Array | null;
  coverageMatched: Float64Array | null;
}

interface Group {
  outcomes: ListOutcome[];
  summary: GroupSummary;
  resamples: Resamples;
}

/** Percentile interval of `samples` (NaNs left out; all NaN gives NaN). */
function percentile(samples: Float64Array, confidence: number): { low: number; high: number } {
  const xs = samples.filter((x) => !Number.isNaN(x)).sort();
  if (xs.length === 0) return { low: NaN, high: NaN };
  const tail = (1 - confidence) / 2;
  const at = (q: number) =>
    xs[Math.min(xs.length - 1, Math.max(0, Math.floor(q * xs.length)))] as number;
  return { low: at(tail), high: at(1 - tail) };
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);

/** Mean of the values that are not NaN (NaN when none). */
function meanOf(xs: Float64Array): number {
  let s = 0;
  let n = 0;
  for (const x of xs) {
    if (Number.isNaN(x)) continue;
    s += x;
    n++;
  }
  return n === 0 ? NaN : s / n;
}

/**
 * The percentile interval moved by (value − mean of the samples): for a statistic whose
 * resamples are biased (coverage, see the module comment), its spread centred on the observation.
 */
function recentred(value: number, samples: Float64Array, confidence: number): Estimate {
  const p = percentile(samples, confidence);
  const shift = value - meanOf(samples);
  // A skewed resample distribution (all resamples at the ceiling but a few) could move the
  // interval off the value: it is widened to hold it.
  return { value, low: Math.min(value, p.low + shift), high: Math.max(value, p.high + shift) };
}

/** Summarise a group of list outcomes and resample it by customer. */
function group(
  outcomes: ListOutcome[],
  ctx: {
    k: number;
    confidence: number;
    iterations: number;
    seed: number;
    articleIndex: Map<string, number>;
    catalogueSize: number;
    matched: number | null;
  },
): Group {
  const byCustomer = new Map<string, ListOutcome[]>();
  for (const o of outcomes) {
    const c = byCustomer.get(o.list.customerId);
    if (c) c.push(o);
    else byCustomer.set(o.list.customerId, [o]);
  }
  const served = new Set<string>();
  const clusters: Cluster[] = [...byCustomer.values()].map((os) => {
    const articles = new Set<number>();
    const c: Cluster = {
      lists: 0,
      hits: 0,
      ap: 0,
      buyerLists: 0,
      buyerAp: 0,
      articles: new Int32Array(),
    };
    for (const o of os) {
      c.lists++;
      c.hits += o.hit ? 1 : 0;
      c.ap += o.ap;
      if (o.relevant > 0) {
        c.buyerLists++;
        c.buyerAp += o.ap;
      }
      for (const a of o.list.articles.slice(0, ctx.k)) {
        served.add(a);
        const i = ctx.articleIndex.get(a);
        if (i !== undefined) articles.add(i);
      }
    }
    c.articles = Int32Array.from(articles);
    return c;
  });

  const sum = (f: (c: Cluster) => number) => clusters.reduce((s, c) => s + f(c), 0);
  const lists = sum((c) => c.lists);
  const buyerLists = sum((c) => c.buyerLists);
  const withCatalogue = ctx.catalogueSize > 0;
  const coveredAll = new Set<number>();
  for (const c of clusters) for (const a of c.articles) coveredAll.add(a);

  const resamples = resample(clusters, ctx);
  const estimate = (value: number, samples: Float64Array): Estimate => ({
    value,
    ...percentile(samples, ctx.confidence),
  });
  const mapAtK = Array.from({ length: ctx.k }, (_, j) =>
    ratio(
      outcomes.reduce((s, o) => s + (o.apAtEachK?.[j] ?? 0), 0),
      lists,
    ),
  );
  return {
    outcomes,
    resamples,
    summary: {
      lists,
      customers: clusters.length,
      listsWithPurchase: buyerLists,
      hitRate: estimate(
        ratio(
          sum((c) => c.hits),
          lists,
        ),
        resamples.hitRate,
      ),
      map: estimate(
        ratio(
          sum((c) => c.ap),
          lists,
        ),
        resamples.map,
      ),
      mapBuyers: estimate(
        ratio(
          sum((c) => c.buyerAp),
          buyerLists,
        ),
        resamples.mapBuyers,
      ),
      coverage:
        withCatalogue && resamples.coverage
          ? clip01(
              recentred(coveredAll.size / ctx.catalogueSize, resamples.coverage, ctx.confidence),
            )
          : null,
      coverageMatched: resamples.coverageMatched ? meanOf(resamples.coverageMatched) : null,
      articlesServed: served.size,
      mapAtK,
    },
  };
}

const clip01 = (e: Estimate): Estimate => ({
  value: e.value,
  low: Math.max(0, e.low),
  high: Math.min(1, e.high),
});

/**
 * Bootstrap over customers: each resample draws as many customers as the group has, with
 * replacement, and computes the ratio-of-sums statistics over their lists. Coverage marks the
 * drawn customers' articles in a stamp array (no clearing between resamples). The rarefied
 * coverage draws `matched` distinct customers per resample (a partial Fisher–Yates shuffle of a
 * permutation kept between resamples).
 */
function resample(
  clusters: readonly Cluster[],
  ctx: {
    iterations: number;
    seed: number;
    articleIndex: Map<string, number>;
    catalogueSize: number;
    matched: number | null;
  },
): Resamples {
  const n = clusters.length;
  const R = ctx.iterations;
  const next = rng(ctx.seed);
  const withCatalogue = ctx.catalogueSize > 0;
  const out: Resamples = {
    hitRate: new Float64Array(R),
    map: new Float64Array(R),
    mapBuyers: new Float64Array(R),
    coverage: withCatalogue ? new Float64Array(R) : null,
    coverageMatched: withCatalogue && ctx.matched !== null ? new Float64Array(R) : null,
  };
  const stamp = new Int32Array(withCatalogue ? ctx.articleIndex.size : 0).fill(-1);
  const rareStamp = new Int32Array(out.coverageMatched ? ctx.articleIndex.size : 0).fill(-1);
  const perm = Int32Array.from({ length: out.coverageMatched ? n : 0 }, (_, i) => i);
  for (let r = 0; r < R; r++) {
    let lists = 0;
    let hits = 0;
    let ap = 0;
    let buyerLists = 0;
    let buyerAp = 0;
    let covered = 0;
    for (let i = 0; i < n; i++) {
      const c = clusters[Math.floor(next() * n)] as Cluster;
      lists += c.lists;
      hits += c.hits;
      ap += c.ap;
      buyerLists += c.buyerLists;
      buyerAp += c.buyerAp;
      if (withCatalogue) {
        for (const a of c.articles) {
          if (stamp[a] !== r) {
            stamp[a] = r;
            covered++;
          }
        }
      }
    }
    if (out.coverageMatched) {
      let rare = 0;
      for (let i = 0; i < (ctx.matched ?? 0); i++) {
        const j = i + Math.floor(next() * (n - i));
        const pick = perm[j] as number;
        perm[j] = perm[i] as number;
        perm[i] = pick;
        for (const a of (clusters[pick] as Cluster).articles) {
          if (rareStamp[a] !== r) {
            rareStamp[a] = r;
            rare++;
          }
        }
      }
      out.coverageMatched[r] = rare / ctx.catalogueSize;
    }
    out.hitRate[r] = ratio(hits, lists);
    out.map[r] = ratio(ap, lists);
    out.mapBuyers[r] = ratio(buyerAp, buyerLists);
    if (out.coverage) out.coverage[r] = covered / ctx.catalogueSize;
  }
  return out;
}

/** variant − baseline, resample by resample (the two sets of resamples are independent). */
function difference(
  value: number,
  a: Float64Array,
  b: Float64Array,
  confidence: number,
  centre: boolean,
): Difference {
  const d = a.map((x, r) => x - (b[r] as number));
  const valid = d.filter((x) => !Number.isNaN(x));
  const shift = centre ? value - meanOf(d) : 0;
  const p = percentile(d, confidence);
  return {
    value,
    low: centre ? Math.min(value, p.low + shift) : p.low,
    high: centre ? Math.max(value, p.high + shift) : p.high,
    above: valid.length === 0 ? NaN : valid.filter((x) => x + shift > 0).length / valid.length,
  };
}

/** The baseline: the one asked for, else `control`, else `default`, else the most lists. */
function pickBaseline(
  variants: readonly VariantSummary[],
  asked: string | undefined,
): string | null {
  const names = variants.map((v) => v.variant);
  if (asked !== undefined) return names.includes(asked) ? asked : null;
  if (names.includes('control')) return 'control';
  if (names.includes('default')) return 'default';
  const largest = [...variants].sort(
    (a, b) => b.lists - a.lists || a.variant.localeCompare(b.variant),
  )[0];
  return largest?.variant ?? null;
}

/**
 * The read-out: lists (already restricted to the interval and the experiment asked for, each
 * request once) scored against `purchases`, summarised per variant, compared with the baseline.
 * Throws a RangeError when `opts.baseline` names no variant of the lists.
 */
export function readout(
  lists: readonly ServedList[],
  purchases: readonly Bought[],
  opts: ReadoutOptions,
): Readout {
  const confidence = opts.confidence ?? 0.95;
  const iterations = opts.iterations ?? 2000;
  const seed = opts.seed ?? 7;
  const { k } = opts;
  const outcomes = scoreLists(lists, purchases, opts);
  const label = variantLabeller(lists);
  const byVariant = new Map<string, ListOutcome[]>();
  for (const o of outcomes) {
    const v = label(o.list);
    const os = byVariant.get(v);
    if (os) os.push(o);
    else byVariant.set(v, [o]);
  }

  // Articles indexed once for every group: the catalogue's that were served (first k).
  const articleIndex = new Map<string, number>();
  const outside = new Set<string>();
  for (const l of lists) {
    for (const a of l.articles.slice(0, k)) {
      if (opts.catalogue.has(a)) {
        if (!articleIndex.has(a)) articleIndex.set(a, articleIndex.size);
      } else outside.add(a);
    }
  }
  const customersOf = (os: readonly ListOutcome[]) => new Set(os.map((o) => o.list.customerId));
  const names = [...byVariant.keys()].sort();
  const matched = Math.min(...names.map((v) => customersOf(byVariant.get(v) ?? []).size));
  const base = {
    k,
    confidence,
    iterations,
    articleIndex,
    catalogueSize: opts.catalogue.size,
  };

  const groups = new Map<string, Group>();
  const variants: VariantSummary[] = names.map((variant, i) => {
    const os = byVariant.get(variant) ?? [];
    const g = group(os, { ...base, seed: seed + 7919 * i, matched });
    groups.set(variant, g);
    const slice = (keep: (o: ListOutcome) => boolean, s: number): GroupSummary | null => {
      const part = os.filter(keep);
      return part.length === 0
        ? null
        : group(part, { ...base, seed: seed + 7919 * i + s, matched: null }).summary;
    };
    const count = (f: (l: ServedList) => boolean) => os.filter((o) => f(o.list)).length;
    const rankedBy: Record<string, number> = {};
    const listsPerDay: Record<string, number> = {};
    for (const o of os) {
      rankedBy[o.list.rankedBy] = (rankedBy[o.list.rankedBy] ?? 0) + 1;
      const day = new Date(o.list.time).toISOString().slice(0, 10);
      listsPerDay[day] = (listsPerDay[day] ?? 0) + 1;
    }
    return {
      variant,
      ...g.summary,
      rankedBy,
      degraded: count((l) => l.degraded),
      coldStart: count((l) => l.coldStart),
      asRanked: slice((o) => !isFallback(o.list), 1),
      fallback: slice((o) => isFallback(o.list), 2),
      listsPerDay,
    };
  });

  const baseline = pickBaseline(variants, opts.baseline);
  if (opts.baseline !== undefined && baseline === null) {
    throw new RangeError(
      `baseline "${opts.baseline}" is not a variant of the lists read (variants: ${names.join(', ') || 'none'})`,
    );
  }
  const differences: VariantDifference[] = [];
  const b = baseline === null ? undefined : groups.get(baseline);
  if (b) {
    for (const v of variants) {
      if (v.variant === baseline) continue;
      const g = groups.get(v.variant) as Group;
      const diff = (
        pick: (s: GroupSummary) => Estimate | null,
        res: (r: Resamples) => Float64Array | null,
        centre = false,
      ) => {
        const [sv, sb] = [pick(g.summary), pick(b.summary)];
        const [rv, rb] = [res(g.resamples), res(b.resamples)];
        return sv && sb && rv && rb
          ? difference(sv.value - sb.value, rv, rb, confidence, centre)
          : null;
      };
      const [rv, rb] = [g.summary.coverageMatched, b.summary.coverageMatched];
      differences.push({
        variant: v.variant,
        baseline: baseline as string,
        hitRate: diff(
          (s) => s.hitRate,
          (r) => r.hitRate,
        ) as Difference,
        map: diff(
          (s) => s.map,
          (r) => r.map,
        ) as Difference,
        mapBuyers: diff(
          (s) => s.mapBuyers,
          (r) => r.mapBuyers,
        ) as Difference,
        coverage: diff(
          (s) => s.coverage,
          (r) => r.coverage,
          true,
        ),
        coverageMatched: rv !== null && rb !== null ? rv - rb : null,
      });
    }
  }

  const variantsOf = new Map<string, Set<string>>();
  for (const o of outcomes) {
    const set = variantsOf.get(o.list.customerId) ?? new Set<string>();
    set.add(label(o.list));
    variantsOf.set(o.list.customerId, set);
  }
  return {
    k,
    windowMs: opts.windowMs,
    confidence,
    iterations,
    catalogueSize: opts.catalogue.size,
    lists: lists.length,
    customers: variantsOf.size,
    customersInSeveralVariants: [...variantsOf.values()].filter((s) => s.size > 1).length,
    openWindows: lists.filter((l) => l.time + opts.windowMs > opts.horizon).length,
    articlesOutsideCatalogue: opts.catalogue.size === 0 ? 0 : outside.size,
    matchedCustomers: names.length === 0 ? 0 : matched,
    baseline,
    variants,
    differences,
  };
}
