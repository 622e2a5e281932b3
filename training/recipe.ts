/**
 * The one training recipe: what a production cycle (`npm run train`) runs and the backtest
 * (`npm run eval`) measures, cutoff by cutoff. Every setting lives here and is recorded in the
 * model's metadata (`recipe`).
 *
 * The weeks of a cycle that ends at E (the end of the last day with purchases, or a backtest's
 * cutoff; nothing at or after E is read), all weekly cutoffs with 7-day label windows:
 *
 *   ... t_W ... t_1 | v | g_G ... g_1 | E
 *
 *  - training weeks t_1..t_W (labels end at v);
 *  - v, the early-stopping week: LightGBM stops and Optuna chooses its trial there;
 *  - g_1..g_G, the gate weeks (labels end at E): never seen by the searched model, they judge it
 *    against the baselines and the active model, customers pooled, with a paired bootstrap;
 *  - the shipped model is the searched one retrained (`refit`) with the same parameters and trees
 *    on every week, v and the gate weeks included, so it knows the latest purchases.
 */
import { DAY_MS } from '../features/decay.ts';
import { DEFAULT_CANDIDATE_CONFIG, type CandidateConfig } from '../serving/candidates/index.ts';

export const WEEK_MS = 7 * DAY_MS;

export interface Recipe {
  /** Training weeks before the early-stopping week (fewer when the data starts later). */
  readonly trainWeeks: number;
  /** Weeks held out for the gate, pooled. */
  readonly gateWeeks: number;
  /**
   * Optuna trials of the search (the first one is the trainer's default parameters). One by
   * default: a search chooses on the early-stopping week alone (~70-100 customers with a purchase
   * on hm-sample), which picks noise; larger deployments search (the Helm chart's large values).
   */
  readonly trials: number;
  /** Least trees per model when early stopping stops sooner. */
  readonly minRounds: number;
  /** Most trees per model. */
  readonly maxRounds: number;
  /** Rounds without improvement on the early-stopping week before LightGBM stops. */
  readonly earlyStopping: number;
  /**
   * Negative thinning: from `fromQueries` training queries with a purchase on, each fit (search,
   * refit, rolling fits) trains on every purchase and `share` of the other candidates (each kept
   * with that probability, seeded). The early-stopping week, the gate and the backtest score every
   * candidate. Measured (docs/evaluation.md, "Half the negatives"): online-retail-dev (about 2,900
   * such queries) keeps its MAP@12 at about 60 % of the boosting time; hm-sample (130-190) loses
   * about 5 %, so below the threshold every row is kept. The trainer's larger trees start at the
   * same size (training/trainer/search.py LARGE_TREES_FROM).
   */
  readonly negatives: { readonly share: number; readonly fromQueries: number };
  /** Retrain the searched model on every week up to the cycle's end before shipping it. */
  readonly refit: boolean;
  readonly seed: number;
  /** List length judged (MAP@k). */
  readonly k: number;
  readonly gate: {
    /** Central mass of the bootstrap intervals (two-sided). */
    readonly confidence: number;
    readonly iterations: number;
  };
  /** Candidate generation (serving's configuration). */
  readonly candidates: CandidateConfig;
}

export const RECIPE: Recipe = {
  trainWeeks: 12,
  gateWeeks: 4,
  trials: 1,
  minRounds: 300,
  maxRounds: 500,
  earlyStopping: 30,
  negatives: { share: 0.5, fromQueries: 1000 },
  refit: true,
  seed: 42,
  k: 12,
  gate: { confidence: 0.9, iterations: 2000 },
  candidates: DEFAULT_CANDIDATE_CONFIG,
};

/** The weekly cutoffs of a cycle ending at `end` (see the module comment), oldest first. */
export interface CycleWeeks {
  readonly end: number;
  readonly train: number[];
  readonly validation: number;
  readonly gate: number[];
}

/**
 * The cycle's weeks for data ending at `end`; training weeks before `first` (the first purchase)
 * are dropped, since they would have no history.
 */
export function cycleWeeks(
  end: number,
  recipe: Pick<Recipe, 'trainWeeks' | 'gateWeeks'>,
  first = -Infinity,
): CycleWeeks {
  const gate = Array.from(
    { length: recipe.gateWeeks },
    (_, j) => end - (j + 1) * WEEK_MS,
  ).reverse();
  const validation = end - (recipe.gateWeeks + 1) * WEEK_MS;
  const train = Array.from({ length: recipe.trainWeeks }, (_, i) => validation - (i + 1) * WEEK_MS)
    .filter((c) => c > first)
    .reverse();
  return { end, train, validation, gate };
}

/** The recipe as recorded in a model's metadata (plain JSON). */
export function recipeRecord(recipe: Recipe): Record<string, unknown> {
  return JSON.parse(JSON.stringify(recipe)) as Record<string, unknown>;
}
