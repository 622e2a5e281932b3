/**
 * Ranking the candidates: with the model when one is loaded (the `Ranker` the ONNX pool is adapted
 * to), else with a documented heuristic. Feature values come from `featureVector` of the shared
 * definitions — the code training calls — at the request's event-time "now".
 *
 * A failing ranker (it throws, times out, returns the wrong number of scores or non-finite ones,
 * or asks for features this build cannot compute) does not fail the request: it is ranked with the
 * heuristic instead, and the outcome says so (`fallback`), for the response (`degraded: true`,
 * `model_version: heuristic-v1`) and the metrics (`rec_serving_ranker_errors_total`).
 */
import { FEATURE_NAMES, featureVector, missingFeatures } from '../streams/features/definitions.ts';
import { DAY_MS } from '../streams/features/decay.ts';
import {
  emptyArticleState,
  type ArticleState,
  type CustomerState,
} from '../streams/features/state.ts';
import { SOURCES, type Candidate } from './candidates.ts';

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

export const HEURISTIC_VERSION = 'heuristic-v1';

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
 * Weights of the heuristic `heuristic-v1` (they sum to 1, so scores are in [0, 1]):
 *
 *   score = 0.30 · copurchase + 0.20 · segment + 0.20 · popularity + 0.20 · affinity
 *         + 0.10 · repurchase
 *
 * with every signal in [0, 1]:
 * - `copurchase`: the candidate's decayed co-purchase count with the customer's recent purchases
 *   (summed over seeds), divided by the largest among the candidates (0 when not a neighbour);
 * - `segment`: its score in the customer's segment trending sets, normalised by each set's top and
 *   weighted by the customer's share of purchases in the set's index group (see candidates.ts);
 * - `popularity`: 0.7 · `a_pop_7d` / max + 0.3 · `a_pop_1d` / max over the candidates (global
 *   trending, with a push for what sells today);
 * - `affinity`: the mean of the finite `p_aff_*` features (product group, type, colour,
 *   department, index, section shares of the customer's decayed purchases), 0 if none;
 * - `repurchase`: 2^(−days since the customer last bought it / 30) for repurchase candidates
 *   (only present with `allow_repurchase`), else 0.
 * Ties go to the higher-priority source, then the smaller article id.
 */
export const HEURISTIC_WEIGHTS = {
  copurchase: 0.3,
  segment: 0.2,
  popularity: 0.2,
  affinity: 0.2,
  repurchase: 0.1,
} as const;

const AFFINITY_FEATURES = [
  'p_aff_pg',
  'p_aff_pt',
  'p_aff_col',
  'p_aff_dep',
  'p_aff_idx',
  'p_aff_sec',
];
/** Features the heuristic reads (all part of FEATURE_NAMES). */
export const HEURISTIC_FEATURES: readonly string[] = ['a_pop_7d', 'a_pop_1d', ...AFFINITY_FEATURES];
const REPURCHASE_HALF_LIFE_DAYS = 30;

export type FallbackReason = 'ranker_error' | 'ranker_timeout' | 'ranker_incompatible';

export class RankerFailure extends Error {
  override readonly name = 'RankerFailure';
  constructor(
    readonly reason: FallbackReason,
    message: string,
    opts: { cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
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
}

export interface HeuristicSignals {
  readonly copurchase: number;
  readonly segment: number;
  readonly popularity: number;
  readonly affinity: number;
  readonly repurchase: number;
}

/** Feature rows (names order) of every candidate, as plain doubles. */
function featureRows(names: readonly string[], input: RankInput): number[][] {
  return input.candidates.map((c) =>
    featureVector(names, {
      customer: input.customer,
      article: input.articles.get(c.articleId) ?? emptyArticleState(c.articleId),
      now: input.now,
      candidate: c,
    }),
  );
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
  now: number,
): HeuristicSignals[] {
  const col = (name: string): number => {
    const i = names.indexOf(name);
    if (i < 0) throw new Error(`heuristic needs feature "${name}"`);
    return i;
  };
  const pop7 = col('a_pop_7d');
  const pop1 = col('a_pop_1d');
  const aff = AFFINITY_FEATURES.map(col);
  const max = (f: (i: number) => number): number =>
    candidates.reduce((m, _, i) => Math.max(m, f(i)), 0);
  const maxPop7 = max((i) => finiteOr0(rows[i]?.[pop7]));
  const maxPop1 = max((i) => finiteOr0(rows[i]?.[pop1]));
  const maxCo = candidates.reduce(
    (m, c) => (c.copurchase ? Math.max(m, c.copurchase.logScore) : m),
    -Infinity,
  );
  return candidates.map((c, i) => {
    const row = rows[i] ?? [];
    const p7 = maxPop7 > 0 ? finiteOr0(row[pop7]) / maxPop7 : 0;
    const p1 = maxPop1 > 0 ? finiteOr0(row[pop1]) / maxPop1 : 0;
    const affs = aff.map((j) => row[j]).filter((v): v is number => Number.isFinite(v));
    const days = c.repurchase ? Math.max(0, now - c.repurchase.lastBought) / DAY_MS : 0;
    return {
      copurchase: c.copurchase ? Math.exp(c.copurchase.logScore - maxCo) : 0,
      segment: c.segment?.score ?? 0,
      popularity: 0.7 * p7 + 0.3 * p1,
      affinity: affs.length > 0 ? affs.reduce((s, v) => s + v, 0) / affs.length : 0,
      repurchase: c.repurchase ? 2 ** (-days / REPURCHASE_HALF_LIFE_DAYS) : 0,
    };
  });
}

/** The heuristic score of one candidate's signals. */
export function heuristicScore(s: HeuristicSignals): number {
  const w = HEURISTIC_WEIGHTS;
  return (
    w.copurchase * s.copurchase +
    w.segment * s.segment +
    w.popularity * s.popularity +
    w.affinity * s.affinity +
    w.repurchase * s.repurchase
  );
}

/** `heuristic-v1` scores of the candidates from their feature rows (`names` order). */
export function heuristicScores(
  candidates: readonly Candidate[],
  names: readonly string[],
  rows: readonly (readonly number[])[],
  now: number,
): number[] {
  return heuristicSignals(candidates, names, rows, now).map(heuristicScore);
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

function rankHeuristic(input: RankInput): RankedItem[] {
  const names = FEATURE_NAMES;
  const rows = featureRows(names, input);
  const scores = heuristicScores(input.candidates, names, rows, input.now);
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
  timeoutMs: number,
): Promise<{ items: RankedItem[]; version: string }> {
  const names = ranker.features;
  const missing = missingFeatures(names);
  if (missing.length > 0) {
    throw new RankerFailure(
      'ranker_incompatible',
      `model ${ranker.version} needs features this build cannot compute: ${missing.join(', ')}`,
    );
  }
  const rows = featureRows(names, input);
  const width = names.length;
  const matrix = new Float32Array(rows.length * width);
  rows.forEach((row, i) => {
    matrix.set(row, i * width);
  });
  let result: { scores: Float32Array; version: string };
  try {
    result = await withTimeout(ranker.score(matrix, rows.length), timeoutMs);
  } catch (err) {
    if (err instanceof RankerFailure) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new RankerFailure('ranker_error', `ranker failed: ${message}`, { cause: err });
  }
  const { scores } = result;
  if (scores.length !== rows.length) {
    throw new RankerFailure(
      'ranker_error',
      `ranker returned ${scores.length} scores for ${rows.length} rows`,
    );
  }
  const items = input.candidates.map((candidate, i) => {
    const score = scores[i] ?? NaN;
    if (!Number.isFinite(score)) {
      throw new RankerFailure('ranker_error', `ranker returned a non-finite score (${score})`);
    }
    return {
      candidate,
      article: input.articles.get(candidate.articleId) ?? emptyArticleState(candidate.articleId),
      score,
      ...(input.explain ? { features: named(names, rows[i] ?? []) } : {}),
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
  opts: { timeoutMs: number },
): Promise<RankOutcome> {
  if (ranker !== null && input.candidates.length > 0) {
    try {
      const { items, version } = await rankWithModel(ranker, input, opts.timeoutMs);
      return { items, modelVersion: version, fallback: null };
    } catch (err) {
      if (!(err instanceof RankerFailure)) throw err;
      return { items: rankHeuristic(input), modelVersion: HEURISTIC_VERSION, fallback: err };
    }
  }
  return {
    items: rankHeuristic(input),
    modelVersion: ranker?.version ?? HEURISTIC_VERSION,
    fallback: null,
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
