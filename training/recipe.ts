/**
 * The one training recipe: what a production cycle (`npm run train`) runs and the backtest
 * (`npm run eval`) measures, cutoff by cutoff. Every setting lives here and is recorded in the
 * model's metadata (`recipe`).
 *
 * The weeks of a cycle that ends at E (the end of the last day with purchases, or a backtest's
 * cutoff; nothing at or after E is read), all weekly cutoffs with 7-day label windows:
 *
 *   ... h ... | t_W ... t_1 | v | g_G ... g_1 | E
 *
 *  - training weeks t_1..t_W (labels end at v);
 *  - v, the early-stopping week: LightGBM stops and Optuna chooses its trial there;
 *  - g_1..g_G, the gate weeks (labels end at E): never seen by the searched model, they judge it
 *    against the baselines and the active model, customers pooled, with a paired bootstrap. At
 *    least `gateWeeks` of them, more (up to `gate.maxWeeks`) until the customers who bought in
 *    them reach `gate.customerWeeks`: a gate of few customers cannot tell a better model apart;
 *  - the shipped model is the searched one retrained (`refit`) with the same parameters and trees
 *    on the `fitWeeks` weeks before E, the gate weeks included, so it knows the latest purchases;
 *    each gate week g is scored by the same retrained on the `fitWeeks` weeks before g: what the
 *    recipe would have shipped at g. Those reach back before t_W: the history weeks h, read by
 *    those fits (and by the refit, when `fitWeeks` exceeds the weeks from t_W to E).
 */
import { DAY_MS } from '../features/decay.ts';
import { STOCK_FEATURES } from '../features/definitions.ts';
import { DEFAULT_CANDIDATE_CONFIG, type CandidateConfig } from '../serving/candidates/index.ts';

export const WEEK_MS = 7 * DAY_MS;

export interface Recipe {
  /**
   * Training weeks of the search, before the early-stopping week (fewer when the data starts
   * later).
   */
  readonly trainWeeks: number;
  /**
   * Weeks the shipped model learns from: the refit's, ending at the cycle's end; each gate week's
   * fit, the same number ending at that week (fewer when the data starts later).
   */
  readonly fitWeeks: number;
  /** Least weeks held out for the gate, pooled (more with `gate.customerWeeks`). */
  readonly gateWeeks: number;
  /**
   * Optuna trials of the search (the first one is the trainer's default parameters). One by
   * default: a search chooses on the early-stopping week alone (~70-100 customers with a purchase
   * on hm-sample), which picks noise; larger deployments search (the Helm chart's large values).
   */
  readonly trials: number;
  /** Least trees per model when early stopping stops sooner. */
  readonly minRounds: number;
  /**
   * Most trees per model. The recipe's 300, the same as `minRounds`, fixes the trees: in all 180
   * search fits of one day's backtests on both datasets (up to 500 allowed) early stopping kept
   * exactly the floor of 300, and 500 trees did not rank better (docs/evaluation.md, "What does
   * not move the ranker"). With one trial and a refit as well there is nothing to search, so the
   * trainer trains no search model (`--no-search`, training/fit.ts `noSearch`).
   */
  readonly maxRounds: number;
  /** Rounds without improvement on the early-stopping week before LightGBM stops. */
  readonly earlyStopping: number;
  /**
   * What changes with the data's size. From `fromQueries` training queries with a purchase on
   * (each fit's training set; about 2,900 on online-retail-dev's 12 weeks, 130-190 on
   * hm-sample's) every fit (search, refit, rolling fits) grows larger `trees`, trains on every
   * purchase and the `negatives` share of the other candidates (each kept with that probability,
   * seeded), uses the sized `features` and, with a refit, ships one model of LambdaRank and a
   * binary booster weighed `blend` (training/trainer/blend.py); below it, the small trees of the
   * trainer's default trial (7 leaves, at least 100 rows each), every row, none of those features,
   * LambdaRank alone. The early-stopping week, the gate and the backtest score every candidate.
   * Measured (docs/evaluation.md, "Half the negatives", "A quarter of the negatives", "The stock
   * columns and the blend, from a data size"): online-retail-dev gains with the larger trees once
   * the co-buyer features are in, keeps its MAP@12 with a quarter of the negatives (77 % of half's
   * training time; 0.15 loses 1.5 %) and gains with the customer's stock columns and the blend;
   * hm-sample loses with each (the larger trees, half the negatives about 5 %, the stock columns
   * 4.5 %, the blend 10 % offline).
   */
  readonly large: {
    readonly fromQueries: number;
    /** Leaves and least rows per leaf of the first trial (the one trained without a search). */
    readonly trees: { readonly numLeaves: number; readonly minDataInLeaf: number };
    /** Share of the candidates without a purchase trained on; 1 keeps every row. */
    readonly negatives: number;
    /** Weight of the blended binary model; 0 turns it off. */
    readonly blend: number;
    /**
     * Features the model uses only on large data; below, the trainer leaves them out of the
     * model, and serving, which computes a model's own feature list, does not compute them.
     */
    readonly features: readonly string[];
  };
  /**
   * Most buyers of one label week that its rows are built for and that the gate and the backtest
   * judge; beyond it, a sample keyed by the cutoff (evaluation/label-sample.ts), the same
   * customers in the rows, the judge and the strong heuristic's tuning. Above every week of the
   * bundled data (hm-sample at most 117 a week, online-retail-dev 427), so there it keeps
   * everyone; a week of H&M's full size holds about 70,000, whose rows (~110 candidates each, at
   * each of the ~25 cutoffs a cycle reads) would not fit one machine (docs/training.md).
   */
  readonly labelCustomers: number;
  /** Retrain the searched model on the `fitWeeks` weeks up to the cycle's end, then ship it. */
  readonly refit: boolean;
  readonly seed: number;
  /** List length judged (MAP@k). */
  readonly k: number;
  readonly gate: {
    /**
     * Gate weeks are added, from `gateWeeks` up to `maxWeeks`, until the customers who bought in
     * them (customer-weeks, each judged) reach this many. About 75 a week on hm-sample: 4 weeks
     * give a 90 % interval of about +-25 % around the ratio, 8 weeks about +-17 %; online-retail-dev
     * has about 290 a week and keeps 4 (docs/training.md, "Gate on evidence").
     */
    readonly customerWeeks: number;
    readonly maxWeeks: number;
    /** Central mass of the bootstrap intervals (two-sided). */
    readonly confidence: number;
    readonly iterations: number;
  };
  /** Candidate generation (serving's configuration). */
  readonly candidates: CandidateConfig;
}

export const RECIPE: Recipe = {
  trainWeeks: 12,
  fitWeeks: 17,
  gateWeeks: 4,
  trials: 1,
  minRounds: 300,
  maxRounds: 300,
  earlyStopping: 30,
  large: {
    fromQueries: 1000,
    trees: { numLeaves: 31, minDataInLeaf: 50 },
    negatives: 0.25,
    blend: 0.6,
    features: STOCK_FEATURES,
  },
  labelCustomers: 2000,
  refit: true,
  seed: 42,
  k: 12,
  gate: { customerWeeks: 600, maxWeeks: 8, confidence: 0.9, iterations: 2000 },
  candidates: DEFAULT_CANDIDATE_CONFIG,
};

/** The weekly cutoffs of a cycle ending at `end` (see the module comment), oldest first. */
export interface CycleWeeks {
  readonly end: number;
  /**
   * Weeks before `train` that the gate weeks' fits learn from, and the refit when its `fitWeeks`
   * reach them (oldest first); never the search.
   */
  readonly history: number[];
  readonly train: number[];
  readonly validation: number;
  readonly gate: number[];
}

/** What `cycleWeeks` reads of the recipe. */
export type WeeksRecipe = Pick<
  Recipe,
  'trainWeeks' | 'gateWeeks' | 'fitWeeks' | 'refit' | 'labelCustomers'
> & {
  readonly gate: Pick<Recipe['gate'], 'customerWeeks' | 'maxWeeks'>;
};

/**
 * The cycle's weeks for data ending at `end`; weeks before `first` (the first purchase) are
 * dropped, since they would have no history. `weekBuyers(c)` is the number of customers who
 * bought in the week from cutoff c: gate weeks are added from `gateWeeks` up to `gate.maxWeeks`
 * until the customers they judge (at most `labelCustomers` a week) reach `gate.customerWeeks`
 * (without it, `gateWeeks` exactly).
 */
export function cycleWeeks(
  end: number,
  recipe: WeeksRecipe,
  first = -Infinity,
  weekBuyers?: (cutoff: number) => number,
): CycleWeeks {
  let gateCount = recipe.gateWeeks;
  if (weekBuyers !== undefined) {
    const buyers = (c: number) => Math.min(weekBuyers(c), recipe.labelCustomers);
    let held = 0;
    for (let j = 1; j <= gateCount; j++) held += buyers(end - j * WEEK_MS);
    while (gateCount < recipe.gate.maxWeeks && held < recipe.gate.customerWeeks) {
      const next = end - (gateCount + 1) * WEEK_MS;
      if (next - 2 * WEEK_MS <= first) break; // leave the early-stopping and a training week
      gateCount++;
      held += buyers(next);
    }
  }
  const weeksBefore = (t: number, n: number) =>
    Array.from({ length: n }, (_, i) => t - (n - i) * WEEK_MS).filter((c) => c > first);
  const gate = Array.from({ length: gateCount }, (_, j) => end - (gateCount - j) * WEEK_MS);
  const validation = end - (gateCount + 1) * WEEK_MS;
  const train = weeksBefore(validation, recipe.trainWeeks);
  // Without a refit the gate judges the searched model itself: no fit reads further back.
  const oldest = recipe.refit ? end - (gateCount + recipe.fitWeeks) * WEEK_MS : Infinity;
  const trainStart = validation - recipe.trainWeeks * WEEK_MS;
  const history = weeksBefore(trainStart, Math.max(0, (trainStart - oldest) / WEEK_MS));
  return { end, history, train, validation, gate };
}

/** The most weeks a cycle's rows reach back from its end (its first row cutoff's label week on). */
export function weeksRead(recipe: WeeksRecipe): number {
  const gate = Math.max(recipe.gateWeeks, recipe.gate.maxWeeks);
  return gate + Math.max(recipe.trainWeeks + 1, recipe.refit ? recipe.fitWeeks : 0);
}

/** The recipe as recorded in a model's metadata (plain JSON). */
export function recipeRecord(recipe: Recipe): Record<string, unknown> {
  return JSON.parse(JSON.stringify(recipe)) as Record<string, unknown>;
}
