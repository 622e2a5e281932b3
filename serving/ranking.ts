/**
 * Ranking the candidates: with the model when one is loaded (the `Ranker` the ONNX pool is adapted
 * to), else with a documented heuristic. Feature values come from `featureVector` of the shared
 * definitions — the code training calls — at the request's event-time "now".
 *
 * A failing ranker (it throws, times out, returns the wrong number of scores or non-finite ones,
 * or asks for features this build cannot compute) does not fail the request: it is ranked with the
 * heuristic instead, and the outcome says so (`fallback`), for the response (`degraded: true`,
 * `model_version: heuristic-v2`) and the metrics (`rec_serving_ranker_errors_total`).
 */
import {
  featureVector,
  missingFeatures,
  writeFeatureVector,
  type FeatureContext,
} from '../features/definitions.ts';
import { DAY_MS } from '../features/decay.ts';
import { emptyArticleState, type ArticleState, type CustomerState } from '../features/state.ts';
import { RecError } from '../common/errors.ts';
import { SOURCES, type Candidate } from './candidates/index.ts';

/** A loaded model, as the scoring pool exposes it. */
export interface Ranker {
  /** Version of the loaded model. */
  readonly version: string;
  /** Feature names of the model's input columns, in order. */
  readonly features: readonly string[];
  /**
   * Score `rows` rows of `features.length` values each, row-major. Resolves with one score per row
   * and the version that actually scored (a hot swap may happen between `version` and the call).
   */
  score(features: Float32Array, rows: number): Promise<{ scores: Float32Array; version: string }>;
}

export const HEURISTIC_VERSION = 'heuristic-v2';

/**
 * Why no model ranks and the heuristic does (`ranker()` is null): `no_model` when no version is
 * active, `model_refused` when the active one was refused by this instance (an untrained fixture
 * without the opt-in, or a model that failed its checks). Answers carry it in `ranker`.
 */
export interface NoModel {
  readonly reason: 'no_model' | 'model_refused';
  readonly message: string;
}

/** The `NoModel` of an instance whose registry has no active version (or of an app given none). */
export const NO_MODEL: NoModel = {
  reason: 'no_model',
  message: `no promoted model (the model registry has no active version); ranking with ${HEURISTIC_VERSION}`,
};

/**
 * Weights of the heuristic `heuristic-v2` (scores are divided by their sum, so they are in [0, 1]):
 *
 *   score = (1 · repurchase + 0.3 · product + 0.1 · copurchase + 0.1 · popularity
 *            + 0.1 · segment) / 1.6
 *
 * with every signal in [0, 1], each divided by its largest value among the candidates:
 * - `repurchase`: the customer's time-weighted purchases of the article (`p_item_weighted`,
 *   30-day half-life: how often and how lately; 0 when never bought);
 * - `product`: the same for any article of its product code (`p_prod_weighted`: other colours and
 *   sizes of what the customer bought);
 * - `copurchase`: the candidate's decayed co-purchase count with the customer's recent purchases
 *   (summed over seeds; 0 when not a neighbour);
 * - `popularity`: 0.7 · `a_pop_7d` + 0.3 · `a_pop_1d` (global trending, with a push for what sells
 *   today), each divided by its largest value;
 * - `segment`: its score in the customer's segment trending sets, normalised by each set's top and
 *   weighted by the customer's share of purchases in the set's index group (see
 *   candidates/trending-segment.ts).
 * Ties go to the higher-priority source, then the smaller article id.
 *
 * The weights were chosen from a small grid on the 20 weeks before the backtest's last 12, on both
 * development datasets; on those 12 weeks `heuristic-v2` scores about twice the MAP@12 of
 * `heuristic-v1` (docs/evaluation.md), whose weights put 0.3 on co-purchase and only 0.1 on
 * repurchase. On weeks within those 20 (hm-sample 2020-01-15 to 05-27) its figures are in-sample.
 */
export const HEURISTIC_WEIGHTS = {
  repurchase: 1,
  product: 0.3,
  copurchase: 0.1,
  popularity: 0.1,
  segment: 0.1,
} as const;

/** Features the heuristic reads (all part of every feature set, `featureNames`). */
export const HEURISTIC_FEATURES: readonly string[] = [
  'p_item_weighted',
  'p_prod_weighted',
  'a_pop_7d',
  'a_pop_1d',
];

export type FallbackReason = 'ranker_error' | 'ranker_timeout' | 'ranker_incompatible';

/** The ranker could not rank a request: the heuristic answers it, saying why. */
export class RankerFailure extends RecError {
  override readonly name: string = 'RankerFailure';
  constructor(
    readonly reason: FallbackReason,
    message: string,
    opts: { cause?: unknown } = {},
  ) {
    super('REC_ERR_RANKER', message, opts);
  }
}

export interface RankInput {
  readonly candidates: readonly Candidate[];
  readonly customer: CustomerState;
  readonly articles: ReadonlyMap<string, ArticleState>;
  /** Event-time "now" (ms) of the features. */
  readonly now: number;
  /** Return each item's feature values. */
  readonly explain: boolean;
}

export interface RankOptions {
  /** A ranker taking longer falls back to the heuristic (ms; 0 = no limit). */
  readonly timeoutMs: number;
  /** The features this instance computes (`featureNames(embeddings)`); a model needing others is refused. */
  readonly features: readonly string[];
}

export interface RankedItem {
  readonly candidate: Candidate;
  readonly article: ArticleState;
  readonly score: number;
  /** Feature values by name (explain only), NaN = missing. */
  readonly features?: Readonly<Record<string, number>>;
}

export interface RankOutcome {
  /** Best first. */
  readonly items: RankedItem[];
  readonly modelVersion: string;
  /** Set when a ranker was available but failed and the heuristic ranked instead. */
  readonly fallback: RankerFailure | null;
  /** Milliseconds spent building feature rows (the rest of the ranking is scoring). */
  readonly featuresMs: number;
}

/** Feature-row time of one ranking (ms), added to by each ranker tried. */
interface RankTiming {
  featuresMs: number;
}

export interface HeuristicSignals {
  readonly repurchase: number;
  readonly product: number;
  readonly copurchase: number;
  readonly popularity: number;
  readonly segment: number;
}

/** The feature context of each candidate, in order. */
function contexts(input: RankInput): FeatureContext[] {
  return input.candidates.map((c) => ({
    customer: input.customer,
    article: input.articles.get(c.articleId) ?? emptyArticleState(c.articleId),
    now: input.now,
    candidate: c,
  }));
}

/** Feature rows (names order) of every candidate, as plain doubles. */
function featureRows(names: readonly string[], input: RankInput): number[][] {
  return contexts(input).map((ctx) => featureVector(names, ctx));
}

/**
 * The model's input: every candidate's feature row (names order) in one row-major Float32Array,
 * written in place (the values `featureRows` gives, as float32); it is transferred to the scorer
 * worker, not copied.
 */
function featureMatrix(names: readonly string[], ctxs: readonly FeatureContext[]): Float32Array {
  const width = names.length;
  const matrix = new Float32Array(ctxs.length * width);
  ctxs.forEach((ctx, i) => {
    writeFeatureVector(names, ctx, matrix, i * width);
  });
  return matrix;
}

const finiteOr0 = (v: number | undefined): number =>
  v !== undefined && Number.isFinite(v) ? v : 0;

/**
 * The heuristic's signals for each candidate (see `HEURISTIC_WEIGHTS`); `rows` are feature rows
 * in the order of `names`, which must include `HEURISTIC_FEATURES`.
 */
export function heuristicSignals(
  candidates: readonly Candidate[],
  names: readonly string[],
  rows: readonly (readonly number[])[],
): HeuristicSignals[] {
  const col = (name: string): number => {
    const i = names.indexOf(name);
    if (i < 0) throw new Error(`heuristic needs feature "${name}"`);
    return i;
  };
  /** Column j of every row, missing values as 0, divided by the largest (all 0 when none > 0). */
  const scaled = (j: number): number[] => {
    const v = candidates.map((_, i) => finiteOr0(rows[i]?.[j]));
    const top = Math.max(0, ...v);
    return v.map((x) => (top > 0 ? x / top : 0));
  };
  const item = scaled(col('p_item_weighted'));
  const prod = scaled(col('p_prod_weighted'));
  const pop7 = scaled(col('a_pop_7d'));
  const pop1 = scaled(col('a_pop_1d'));
  const maxCo = candidates.reduce(
    (m, c) => (c.copurchase ? Math.max(m, c.copurchase.logScore) : m),
    -Infinity,
  );
  return candidates.map((c, i) => ({
    repurchase: item[i] ?? 0,
    product: prod[i] ?? 0,
    copurchase: c.copurchase ? Math.exp(c.copurchase.logScore - maxCo) : 0,
    popularity: 0.7 * (pop7[i] ?? 0) + 0.3 * (pop1[i] ?? 0),
    segment: c.segment?.score ?? 0,
  }));
}

/** The heuristic score of one candidate's signals. */
export function heuristicScore(s: HeuristicSignals): number {
  const w = HEURISTIC_WEIGHTS;
  const total = w.repurchase + w.product + w.copurchase + w.popularity + w.segment;
  return (
    (w.repurchase * s.repurchase +
      w.product * s.product +
      w.copurchase * s.copurchase +
      w.popularity * s.popularity +
      w.segment * s.segment) /
    total
  );
}

/** `heuristic-v2` scores of the candidates from their feature rows (`names` order). */
export function heuristicScores(
  candidates: readonly Candidate[],
  names: readonly string[],
  rows: readonly (readonly number[])[],
): number[] {
  return heuristicSignals(candidates, names, rows).map(heuristicScore);
}

function sortItems(items: RankedItem[]): RankedItem[] {
  const prio = (c: Candidate) => SOURCES.indexOf(c.sources[0] ?? 'trending_global');
  return items.sort(
    (a, b) =>
      b.score - a.score ||
      prio(a.candidate) - prio(b.candidate) ||
      (a.candidate.articleId < b.candidate.articleId ? -1 : 1),
  );
}

function named(names: readonly string[], row: readonly number[]): Record<string, number> {
  return Object.fromEntries(names.map((n, i) => [n, row[i] ?? NaN]));
}

function rankHeuristic(
  input: RankInput,
  names: readonly string[],
  timing: RankTiming,
): RankedItem[] {
  const t0 = performance.now();
  const rows = featureRows(names, input);
  timing.featuresMs += performance.now() - t0;
  const scores = heuristicScores(input.candidates, names, rows);
  return sortItems(
    input.candidates.map((candidate, i) => {
      const row = rows[i] ?? [];
      return {
        candidate,
        article: input.articles.get(candidate.articleId) ?? emptyArticleState(candidate.articleId),
        score: scores[i] ?? 0,
        ...(input.explain ? { features: named(names, row) } : {}),
      };
    }),
  );
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  if (!Number.isFinite(ms) || ms <= 0) return p;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new RankerFailure('ranker_timeout', `ranker did not answer within ${ms} ms`));
    }, ms);
  });
  return Promise.race([p, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

async function rankWithModel(
  ranker: Ranker,
  input: RankInput,
  opts: RankOptions,
  timing: RankTiming,
): Promise<{ items: RankedItem[]; version: string }> {
  const names = ranker.features;
  const missing = missingFeatures(names, opts.features);
  if (missing.length > 0) {
    throw new RankerFailure(
      'ranker_incompatible',
      `model ${ranker.version} needs features this build cannot compute: ${missing.join(', ')}`,
    );
  }
  const t0 = performance.now();
  const ctxs = contexts(input);
  const n = ctxs.length;
  // Explain: the values as doubles, from the same definitions (what training rows hold).
  const explained = input.explain
    ? ctxs.map((ctx) => named(names, featureVector(names, ctx)))
    : null;
  const matrix = featureMatrix(names, ctxs);
  timing.featuresMs += performance.now() - t0;
  let result: { scores: Float32Array; version: string };
  try {
    result = await withTimeout(ranker.score(matrix, n), opts.timeoutMs);
  } catch (err) {
    if (err instanceof RankerFailure) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new RankerFailure('ranker_error', `ranker failed: ${message}`, { cause: err });
  }
  const { scores } = result;
  if (scores.length !== n) {
    throw new RankerFailure(
      'ranker_error',
      `ranker returned ${scores.length} scores for ${n} rows`,
    );
  }
  const items = input.candidates.map((candidate, i) => {
    const score = scores[i] ?? NaN;
    if (!Number.isFinite(score)) {
      throw new RankerFailure('ranker_error', `ranker returned a non-finite score (${score})`);
    }
    const features = explained?.[i];
    return {
      candidate,
      article: ctxs[i]?.article ?? emptyArticleState(candidate.articleId),
      score,
      ...(features ? { features } : {}),
    };
  });
  return { items: sortItems(items), version: result.version };
}

/**
 * Rank the candidates: one `ranker.score` call for all of them when a ranker is given, the
 * heuristic otherwise or when the ranker fails (see the module comment).
 */
export async function rankCandidates(
  input: RankInput,
  ranker: Ranker | null,
  opts: RankOptions,
): Promise<RankOutcome> {
  const timing: RankTiming = { featuresMs: 0 };
  if (ranker !== null && input.candidates.length > 0) {
    try {
      const { items, version } = await rankWithModel(ranker, input, opts, timing);
      return { items, modelVersion: version, fallback: null, featuresMs: timing.featuresMs };
    } catch (err) {
      if (!(err instanceof RankerFailure)) throw err;
      const items = rankHeuristic(input, opts.features, timing);
      return {
        items,
        modelVersion: HEURISTIC_VERSION,
        fallback: err,
        featuresMs: timing.featuresMs,
      };
    }
  }
  return {
    items: rankHeuristic(input, opts.features, timing),
    modelVersion: ranker?.version ?? HEURISTIC_VERSION,
    fallback: null,
    featuresMs: timing.featuresMs,
  };
}

/** Human-readable reasons for one ranked item (explain only). */
export function reasonsFor(
  item: RankedItem,
  customer: CustomerState,
  names: ReadonlyMap<string, string | null>,
  now: number,
): string[] {
  const c = item.candidate;
  const out: string[] = [];
  if (c.repurchase) {
    const units = customer.bought[c.articleId] ?? 0;
    const days = Math.max(0, Math.round((now - c.repurchase.lastBought) / DAY_MS));
    out.push(`you bought it before (${units} unit(s), last ${days} day(s) ago)`);
  } else if (c.sibling) {
    const n = customer.products.get(c.sibling.product)?.n ?? 0;
    out.push(
      `another version of product ${c.sibling.product}, which you bought ${n} time(s) (other colour or size)`,
    );
  }
  if (c.copurchase) {
    const seed = c.copurchase.seed;
    const seedName = names.get(seed) ?? null;
    out.push(`often bought together with ${seedName ? `"${seedName}" (${seed})` : seed}`);
  }
  if (c.segment) {
    const [kind, value] = splitSegment(c.segment.segment);
    if (kind === 'channel') out.push(`trending in sales channel ${value}`);
    else {
      const [bucket = '', group = ''] = value.split('|');
      out.push(`trending among customers aged ${bucket} in ${group}`);
    }
  }
  if (c.global) out.push('trending overall (7 days)');
  const group = item.article.meta.product_group_name;
  const [share = NaN] = featureVector(['p_aff_pg'], { customer, article: item.article, now });
  if (group && Number.isFinite(share) && share >= 0.25) {
    out.push(`${Math.round(share * 100)}% of your recent purchases are ${group}`);
  }
  return out;
}

function splitSegment(s: string): [string, string] {
  const i = s.indexOf(':');
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
}
