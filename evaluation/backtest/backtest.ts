/**
 * Backtest of the one training recipe (training/recipe.ts): for each evaluated weekly cutoff c,
 * run what a production cycle ending at c would run (training/fit.ts: rows from replaying the
 * topics through the processors' code and serving's candidates, the Optuna search, the gate on
 * held-out weeks, the refit on every week before c) and score the shipped model on the customers
 * who bought in [c, c + 7 days), against the baselines on the same customers. Nothing at or after
 * c is seen by the model or the gate.
 *
 * Methods: `ranker` (the shipped model of the cycle ending at c, promoted or not); `served` (what
 * production would have served that week: this model if the gate promoted it, else the model
 * promoted at an earlier cutoff of the backtest, else serving's heuristic); the baselines of
 * training/judge.ts. All rows (every cutoff of every cycle) come from one replay in ascending
 * cutoff order. A cycle's gate judges, on its gate weeks, the models the backtest shipped at those
 * weeks (earlier cutoffs), or rolling fits where there was none: the same evidence production's
 * gate computes, without fitting the same models twice.
 *
 * Reported: MAP@12 per method as the mean over cutoffs with its spread over weeks, the standard
 * error over the customer-weeks pooled, and the ranker's ratio to each baseline with a paired
 * bootstrap 90 % interval (customer-weeks pooled), plus the weeks the ranker wins. With several
 * LightGBM seeds (`seeds`), the cycles run once per seed over the same rows and the ranker's
 * figures per seed and their spread are reported too (./seeds.ts); the first seed's run is the
 * main result.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { availableParallelism, tmpdir } from 'node:os';
import { DAY_MS } from '../../features/decay.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { activeSources } from '../../serving/candidates/index.ts';
import type { LoadedModel } from '../../models/model-meta.ts';
import type { HeuristicWeights } from '../baselines.ts';
import type { PurchaseLog } from '../purchase-log.ts';
import {
  fitModel,
  judgeFit,
  rollingWeeks,
  type FitInput,
  type FitResult,
} from '../../training/fit.ts';
import {
  BASELINES,
  addRanked,
  apAtK,
  labelWeek,
  ndcgAtK,
  perCustomer,
  recallAtK,
  type Week,
} from '../../training/judge.ts';
import { RECIPE, cycleWeeks, type CycleWeeks, type Recipe } from '../../training/recipe.ts';
import type { EvalReport } from './report.ts';
import {
  buildTrainingRows,
  describeLabelSample,
  describeRowTimings,
  type CutoffSummary,
  type RowsDeps,
  type RowsResult,
} from '../../training/rows.ts';
import { mean, pairedRatio, sampleSd, standardError, type RatioInterval } from '../stats.ts';
import { filterTable, readPurchases, scoreOnnx } from '../../training/steps.ts';
import { ensurePythonEnv } from '../../training/venv.ts';
import { startAhead } from '../../common/overlapped.ts';
import { seedLines, seedSpread, seedsJson, type SeedRun, type SeedSpread } from './seeds.ts';

export const METHODS = ['ranker', 'served', ...BASELINES] as const;
export type Method = (typeof METHODS)[number];

export interface EvalOptions {
  /** Dataset name for the report. */
  readonly dataset: string;
  /** Evaluate the last N weeks with purchases after them (default 6). */
  readonly cutoffs?: number;
  /** Or exactly these cutoffs (ms, UTC midnight). */
  readonly cutoffDates?: readonly number[];
  /** Overrides of the recipe (default: exactly what production trains). */
  readonly recipe?: Partial<Recipe>;
  /** Keep rows and models there (default: a temporary folder, removed after). */
  readonly workDir?: string;
  /**
   * LightGBM seeds: every cycle runs once per seed over the same rows, the first seed's run is the
   * main result and, with two or more, `seeds` holds the spread (default: the recipe's seed).
   */
  readonly seeds?: readonly number[];
  /**
   * Cycles whose trainers run side by side (default: the cores, at most 4); the cores are shared
   * out among them as LightGBM threads. The figures do not depend on it.
   */
  readonly trainers?: number;
  readonly onProgress?: (line: string) => void;
  readonly onRowsProgress?: (stage: string, done: number, total: number) => void;
}

export interface CutoffResult {
  cutoff: string;
  usersScored: number;
  coldUsers: number;
  weeks: { train: string[]; validation: string; gate: string[] };
  /** MAP@k for k = 1..K per method. */
  mapAtK: Record<Method, number[]>;
  recall: Record<Method, number>;
  ndcg: Record<Method, number>;
  candidateRecall: Record<string, number>;
  heuristicWeights: HeuristicWeights;
  model: { version: string; trees: number; trainSeconds: number };
  gate: {
    promoted: boolean;
    reason: string;
    bestBaseline: string;
    vsBest: RatioInterval;
    scoredBy: Record<string, string>;
  };
  /** What `served` was that week: a model version or the heuristic. */
  served: string;
}

/** The ranker against one baseline. */
export interface Comparison {
  /** Mean over cutoffs of the ranker's MAP@k over the mean of the baseline's. */
  readonly ratio: number;
  /** Paired bootstrap interval of the ratio of means over the pooled customer-weeks. */
  readonly pooled: RatioInterval;
  /** Cutoffs where the ranker's MAP@k is above the baseline's (ties are not wins). */
  readonly weeksWon: number;
}

export interface EvalResult {
  dataset: string;
  k: number;
  recipe: Recipe;
  cutoffs: string[];
  perCutoff: CutoffResult[];
  usersScored: number;
  /** MAP@k: mean and sample sd over cutoffs, and the standard error over pooled customer-weeks. */
  map: Record<Method, { mean: number; spread: number; se: number }>;
  recall: Record<Method, number>;
  ndcg: Record<Method, number>;
  /** The ranker against each other method. */
  versus: Record<string, Comparison>;
  /** Cutoffs whose gate promoted the model. */
  promotions: number;
  /** Pooled over the evaluated cutoffs (label pairs among the candidates). */
  candidateRecall: Record<string, number>;
  featureImportance: { feature: string; gain: number }[];
  timings: Record<string, number>;
  /** With two seeds or more: the ranker's figures per seed and their spread. */
  seeds?: SeedSpread;
}

const iso = (t: number) => new Date(t).toISOString().slice(0, 10);
const WEEK = 7 * DAY_MS;

/**
 * The evaluated cutoffs: the given dates, or the last `n` weekly cutoffs (weeks ending at the end
 * of the last day with purchases) whose week has purchases and that leave room for a cycle before
 * them (`minWeeks` weeks of data: at least one training week, the early-stopping week and the
 * gate weeks).
 */
export function chooseCutoffs(
  log: PurchaseLog,
  n: number,
  dates?: readonly number[],
  minWeeks = 2,
): number[] {
  const first = log.firstTime;
  const last = log.lastTime;
  if (first === undefined || last === undefined) {
    throw new Error(
      'too little data: the purchases topic is empty; load a dataset first (npm run eval -- --data <dir> --reload publishes it again)',
    );
  }
  const hasWeek = (c: number) => log.indexAt(c + WEEK) > log.indexAt(c);
  if (dates && dates.length > 0) {
    const sorted = [...dates].sort((a, b) => a - b);
    for (const c of sorted) {
      if (!hasWeek(c)) throw new Error(`too little data: no purchases in the week after ${iso(c)}`);
      if (c <= first + minWeeks * WEEK) {
        throw new Error(
          `too little data: a cycle before ${iso(c)} needs ${minWeeks} weeks of purchases; they start ${iso(first)}`,
        );
      }
    }
    return sorted;
  }
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--cutoffs must be a positive integer (got ${n})`);
  const lastDayEnd = Math.floor(last / DAY_MS) * DAY_MS + DAY_MS;
  const out: number[] = [];
  for (let c = lastDayEnd - WEEK; c > first + minWeeks * WEEK && out.length < n; c -= WEEK) {
    if (hasWeek(c)) out.unshift(c);
  }
  if (out.length === 0) {
    throw new Error(
      `too little data: purchases span ${iso(first)}..${iso(last)}; a backtest needs ${minWeeks} weeks of history and a week to score`,
    );
  }
  return out;
}

/** Run the backtest; see the module comment. */
export async function runEval(deps: RowsDeps, opts: EvalOptions): Promise<EvalResult> {
  const t0 = performance.now();
  const say = opts.onProgress ?? (() => undefined);
  const recipe: Recipe = { ...RECIPE, ...opts.recipe };
  const seeds = opts.seeds && opts.seeds.length > 0 ? opts.seeds : [recipe.seed];
  // Each seed's cycles work in their own folder, named after the seed.
  if (new Set(seeds).size !== seeds.length) {
    throw new Error(`--seeds: a seed is given twice (${seeds.join(',')})`);
  }
  const several = seeds.length > 1;
  const log = await readPurchases(deps, (read, total) =>
    opts.onRowsProgress?.('events', read, total),
  );
  const { plan, rowCutoffs } = planCycles(log, recipe, opts);
  say(
    `evaluating ${plan.map((p) => iso(p.cutoff)).join(', ')}; rows at ${rowCutoffs.length} weekly cutoffs from ${iso(rowCutoffs[0] ?? 0)}`,
  );

  const namespace = `eval-${randomUUID().slice(0, 8)}`;
  const work = opts.workDir ?? join(tmpdir(), `rec-eval-${randomUUID().slice(0, 8)}`);
  mkdirSync(work, { recursive: true });
  const timings: Record<string, number> = {};
  try {
    const t1 = performance.now();
    const rows = await buildTrainingRows(deps, {
      cutoffs: rowCutoffs,
      namespace,
      candidateConfig: recipe.candidates,
      labelCustomers: recipe.labelCustomers,
      ...(opts.onRowsProgress ? { onProgress: opts.onRowsProgress } : {}),
    });
    timings.rows_s = (performance.now() - t1) / 1000;
    say(
      `rows: ${rows.rows} over ${rows.queries} queries in ${timings.rows_s.toFixed(1)} s ` +
        `(${describeRowTimings(rows.timings)})${describeLabelSample(rows.perCutoff)}`,
    );

    const python = await ensurePythonEnv(say);
    const trainers = trainerShares(opts.trainers, plan.length);
    say(
      `cycles: ${trainers.trainers} trainer(s) side by side, ${trainers.threads} LightGBM thread(s) each`,
    );
    const summaries: Omit<EvalResult, 'timings'>[] = [];
    // train_s: the trainers' times summed (they overlap when side by side); cycles_s: the
    // cycles' wall time, trainers, gates and test weeks
    timings.train_s = 0;
    const t2 = performance.now();
    for (const [i, seed] of seeds.entries()) {
      const r = { ...recipe, seed };
      if (several) say(`seed ${seed} (${i + 1} of ${seeds.length})`);
      const dir = several ? join(work, `seed-${seed}`) : work;
      const cycles = await runCycles(
        { python, recipe: r, rows, log, work: dir, say, ...trainers },
        plan,
      );
      timings.train_s += cycles.trainSeconds;
      summaries.push(summarize(opts.dataset, r, cycles, deps.embeddings?.enabled ?? false));
    }
    timings.cycles_s = (performance.now() - t2) / 1000;
    const [summary] = summaries as [Omit<EvalResult, 'timings'>];
    timings.total_s = (performance.now() - t0) / 1000;
    return {
      ...summary,
      ...(several ? { seeds: seedSpread(summaries.map(seedRun)) } : {}),
      timings,
    };
  } finally {
    await deleteNamespace(deps.redis, keySpace(namespace)).catch(() => undefined);
    if (opts.workDir === undefined) rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Trainers side by side and LightGBM's threads in each: `asked` (default the cores, at most 4),
 * no more than the cycles, each with an equal share of the cores (at least one thread). On 2 cores
 * two trainers of one thread each: LightGBM gains little from a second thread on these rows
 * (online-retail-dev's first cycle: 51 s with one, 49 s with two), the trainer's other steps none.
 */
export function trainerShares(
  asked: number | undefined,
  cycles: number,
  cores = availableParallelism(),
): { trainers: number; threads: number } {
  if (asked !== undefined && (!Number.isInteger(asked) || asked < 1)) {
    throw new Error(`--trainers must be a positive integer (got ${asked})`);
  }
  const trainers = Math.max(1, Math.min(asked ?? Math.min(4, cores), cycles));
  return { trainers, threads: Math.max(1, Math.floor(cores / trainers)) };
}

/** One seed's run of the backtest, as the seed spread counts it. */
function seedRun(s: Omit<EvalResult, 'timings'>): SeedRun {
  const versus = Object.entries(s.versus);
  return {
    seed: s.recipe.seed,
    ranker: s.map.ranker.mean,
    ratios: Object.fromEntries(versus.map(([m, v]) => [m, v.ratio])),
    weeksWon: Object.fromEntries(versus.map(([m, v]) => [m, v.weeksWon])),
    promotions: s.promotions,
  };
}

/** One cycle of the backtest: the evaluated cutoff and the weeks its cycle uses. */
interface CyclePlan {
  readonly cutoff: number;
  readonly weeks: CycleWeeks;
}

/**
 * The cycles to run, one per evaluated cutoff (training weeks without purchases dropped; the
 * early-stopping and gate weeks must have some), and every cutoff rows are needed at, ascending.
 */
function planCycles(
  log: PurchaseLog,
  recipe: Recipe,
  opts: EvalOptions,
): { plan: CyclePlan[]; rowCutoffs: number[] } {
  const first = log.firstTime ?? 0;
  const hasWeek = (c: number) => log.indexAt(c + WEEK) > log.indexAt(c);
  const evalCutoffs = chooseCutoffs(log, opts.cutoffs ?? 6, opts.cutoffDates, recipe.gateWeeks + 2);
  const plan = evalCutoffs.map((c) => {
    const w = cycleWeeks(c, recipe, first, (g) => log.labels(g, g + WEEK).size);
    const weeks: CycleWeeks = {
      ...w,
      history: w.history.filter(hasWeek),
      train: w.train.filter(hasWeek),
    };
    for (const g of [weeks.validation, ...weeks.gate]) {
      if (!hasWeek(g)) {
        throw new Error(
          `too little data: the week from ${iso(g)} (early stopping or gate of the cycle before ${iso(c)}) has no purchases`,
        );
      }
    }
    if (weeks.train.length === 0) {
      throw new Error(
        `too little data: no training week with purchases before ${iso(weeks.validation)}`,
      );
    }
    return { cutoff: c, weeks };
  });
  const rowCutoffs = [
    ...new Set(
      plan.flatMap((p) => [
        ...p.weeks.history,
        ...p.weeks.train,
        p.weeks.validation,
        ...p.weeks.gate,
        p.cutoff,
      ]),
    ),
  ].sort((a, b) => a - b);
  return { plan, rowCutoffs };
}

/** What every cycle of the backtest uses: the trainer's environment, the recipe, rows and log. */
interface CycleContext {
  readonly python: string;
  readonly recipe: Recipe;
  readonly rows: RowsResult;
  readonly log: PurchaseLog;
  /** Each cycle works in a folder named after its cutoff under this one. */
  readonly work: string;
  /** Trainers side by side, and LightGBM's threads in each. */
  readonly trainers: number;
  readonly threads: number;
  readonly say: (line: string) => void;
}

/** What the cycles left for the summary. */
interface CyclesRun {
  readonly perCutoff: CutoffResult[];
  /** Each cutoff's test week with every method's lists. */
  readonly judged: Week[];
  /** Of the last cycle's shipped model. */
  readonly featureImportance: EvalResult['featureImportance'];
  readonly trainSeconds: number;
  readonly promotions: number;
  /** Label pairs over the evaluated cutoffs, and those each source's candidates held. */
  readonly recallPairs: { pairs: number; hits: Record<string, number> };
}

/**
 * Run the cycles in ascending cutoff order: fit and gate each (its gate judging the models shipped
 * at earlier cutoffs), keep the promoted model as the one production would serve, and score the
 * test week after the cutoff. The cycles' trainers run ahead, `ctx.trainers` side by side (a
 * cycle's trainer needs only the rows: which gate weeks it fits itself, those that are no earlier
 * cutoff of the backtest, is known before the earlier cycles end), each with a share of the cores;
 * the gates judge in order. LightGBM's model does not depend on its threads, so the figures are
 * those of one trainer at a time.
 */
async function runCycles(ctx: CycleContext, plan: readonly CyclePlan[]): Promise<CyclesRun> {
  const { recipe, rows, say } = ctx;
  const k = recipe.k;
  const perCutoff: CutoffResult[] = [];
  const judged: Week[] = [];
  let featureImportance: EvalResult['featureImportance'] = [];
  let trainSeconds = 0;
  let promotions = 0;
  /** The model production would be serving (the last promoted one). */
  let active: LoadedModel | null = null;
  /** What each cycle shipped, by its end: later cycles' gates judge them on their weeks. */
  const shippedAt = new Map<number, LoadedModel>();
  const recallPairs = { pairs: 0, hits: {} as Record<string, number> };
  const fitInput = (p: CyclePlan): FitInput => ({
    python: ctx.python,
    recipe,
    weeks: p.weeks,
    rows: rows.table,
    log: ctx.log,
    workDir: join(ctx.work, iso(p.cutoff)),
    fitCache: join(ctx.work, 'fits'),
    threads: ctx.threads,
    active,
    shippedAt,
    say: (l) => {
      say(`  ${iso(p.cutoff)} ${l}`);
    },
  });
  const fits = startAhead(plan.length, ctx.trainers, (i) => {
    const p = plan[i] as CyclePlan;
    say(
      `cutoff ${i + 1}/${plan.length} ${iso(p.cutoff)}: training on ${p.weeks.train.length} weeks`,
    );
    const earlier = new Set(plan.slice(0, i).map((q) => q.cutoff));
    return fitModel(
      fitInput(p),
      rollingWeeks(recipe, p.weeks, (g) => earlier.has(g)),
    );
  });
  try {
    for (const [i, p] of plan.entries()) {
      const input = fitInput(p);
      const fit = await judgeFit(input, await fits.take(i));
      trainSeconds += fit.seconds.train;
      const { shipped, gate } = fit;
      shippedAt.set(p.cutoff, shipped);
      featureImportance =
        (shipped.meta as { feature_importance?: { feature: string; gain: number }[] })
          .feature_importance ?? [];
      if (gate.promoted) {
        promotions++;
        active = shipped;
      }

      const { week, servedBy } = await scoreTestWeek(ctx, p.cutoff, shipped, active);
      judged.push(week);
      writeWeekLists(input.workDir, week);

      const summary = rows.perCutoff.find((s) => s.cutoff === p.cutoff);
      if (summary) {
        recallPairs.pairs += summary.labelPairs;
        for (const [s, v] of Object.entries(summary.candidateRecall)) {
          recallPairs.hits[s] = (recallPairs.hits[s] ?? 0) + v * summary.labelPairs;
        }
      }
      const result = cutoffResult(p, week, summary, fit, servedBy, k);
      perCutoff.push(result);
      say(
        `cutoff ${iso(p.cutoff)}: ${week.customers.length} users, MAP@${k} ` +
          METHODS.map((m) => `${m} ${(result.mapAtK[m][k - 1] ?? NaN).toFixed(5)}`).join(', ') +
          `; gate ${gate.promoted ? 'promoted' : 'refused'}`,
      );
    }
  } finally {
    // on a failure, no trainer is left running into the removed work folder
    await fits.stop();
  }
  return { perCutoff, judged, featureImportance, trainSeconds, promotions, recallPairs };
}

/**
 * The test week after `cutoff`: the shipped model's lists, the heuristic's, and what would have
 * been served (the active model's, or the heuristic's without one), with its name.
 */
async function scoreTestWeek(
  ctx: CycleContext,
  cutoff: number,
  shipped: LoadedModel,
  active: LoadedModel | null,
): Promise<{ week: Week; servedBy: string }> {
  const k = ctx.recipe.k;
  const testTable = filterTable(ctx.rows.table, (c) => c === cutoff);
  const week = labelWeek(ctx.log, cutoff, k, ctx.recipe.labelCustomers);
  addRanked(
    week,
    'ranker',
    testTable,
    await scoreOnnx(testTable, shipped.bytes, shipped.meta.features),
    k,
  );
  addRanked(week, 'heuristic', testTable, testTable.heuristic, k);
  const servedBy = active === null ? 'heuristic-v2' : active.meta.version;
  if (active === null) week.lists.set('served', week.lists.get('heuristic') ?? []);
  else if (active === shipped) week.lists.set('served', week.lists.get('ranker') ?? []);
  else {
    addRanked(
      week,
      'served',
      testTable,
      await scoreOnnx(testTable, active.bytes, active.meta.features),
      k,
    );
  }
  return { week, servedBy };
}

/**
 * The test week's lists, for analyses the summary does not make (per customer, per segment):
 * `lists.json` in the cutoff's working folder holds the customers who bought in the week, what each
 * bought and every method's list for each (same order), as scored.
 */
function writeWeekLists(dir: string, week: Week): void {
  mkdirSync(dir, { recursive: true });
  const body = {
    cutoff: iso(week.cutoff),
    customers: week.customers,
    relevant: week.relevant.map((r) => [...r]),
    lists: Object.fromEntries(week.lists),
  };
  writeFileSync(join(dir, 'lists.json'), JSON.stringify(body));
}

/** One cutoff's figures: every method's metrics on its test week, its cycle, its gate. */
function cutoffResult(
  p: CyclePlan,
  week: Week,
  summary: CutoffSummary | undefined,
  fit: FitResult,
  servedBy: string,
  k: number,
): CutoffResult {
  const { shipped, gate } = fit;
  const cr: Record<string, number> = { ...(summary?.candidateRecall ?? { overall: NaN }) };
  const per = (f: typeof apAtK, kk: number) =>
    Object.fromEntries(METHODS.map((m) => [m, mean(perCustomer(week, m, f, kk))])) as Record<
      Method,
      number
    >;
  return {
    cutoff: iso(p.cutoff),
    usersScored: week.customers.length,
    coldUsers: week.cold,
    weeks: {
      train: p.weeks.train.map(iso),
      validation: iso(p.weeks.validation),
      gate: p.weeks.gate.map(iso),
    },
    mapAtK: Object.fromEntries(
      METHODS.map((m) => [
        m,
        Array.from({ length: k }, (_, j) => mean(perCustomer(week, m, apAtK, j + 1))),
      ]),
    ) as Record<Method, number[]>,
    recall: per(recallAtK, k),
    ndcg: per(ndcgAtK, k),
    candidateRecall: cr,
    heuristicWeights: week.heuristicWeights,
    model: {
      version: shipped.meta.version,
      trees: shipped.meta.trees,
      trainSeconds: fit.seconds.train,
    },
    gate: {
      promoted: gate.promoted,
      reason: gate.reason,
      bestBaseline: gate.bestBaseline,
      vsBest: gate.vs[gate.bestBaseline] as RatioInterval,
      scoredBy: gate.scoredBy,
    },
    served: servedBy,
  };
}

/**
 * The backtest's figures over its cutoffs: MAP@k per method (mean and spread over cutoffs, the
 * standard error over the pooled customer-weeks), the ranker against each other method, recall,
 * NDCG and candidate recall pooled over the label pairs.
 */
function summarize(
  dataset: string,
  recipe: Recipe,
  cycles: CyclesRun,
  embeddingsEnabled: boolean,
): Omit<EvalResult, 'timings'> {
  const k = recipe.k;
  const { perCutoff, judged, recallPairs } = cycles;
  const mapK = (m: Method) => perCutoff.map((r) => r.mapAtK[m][k - 1] ?? NaN);
  const pooled = (m: Method) => judged.flatMap((w) => perCustomer(w, m, apAtK, k));
  const map = Object.fromEntries(
    METHODS.map((m) => [
      m,
      { mean: mean(mapK(m)), spread: sampleSd(mapK(m)), se: standardError(pooled(m)) },
    ]),
  ) as EvalResult['map'];
  const ranker = pooled('ranker');
  const versus = Object.fromEntries(
    METHODS.filter((m) => m !== 'ranker').map((m) => [
      m,
      {
        ratio: map.ranker.mean / map[m].mean,
        pooled: pairedRatio(ranker, pooled(m), {
          confidence: recipe.gate.confidence,
          iterations: recipe.gate.iterations,
          seed: recipe.seed,
        }),
        weeksWon: perCutoff.filter((r) => (r.mapAtK.ranker[k - 1] ?? 0) > (r.mapAtK[m][k - 1] ?? 0))
          .length,
      },
    ]),
  );
  const candidateRecall = Object.fromEntries(
    ['overall', ...activeSources(embeddingsEnabled)].map((s) => [
      s,
      recallPairs.pairs === 0 ? NaN : (recallPairs.hits[s] ?? 0) / recallPairs.pairs,
    ]),
  );
  return {
    dataset,
    k,
    recipe,
    cutoffs: perCutoff.map((r) => r.cutoff),
    perCutoff,
    usersScored: perCutoff.reduce((s, r) => s + r.usersScored, 0),
    map,
    recall: Object.fromEntries(
      METHODS.map((m) => [m, mean(perCutoff.map((r) => r.recall[m]))]),
    ) as Record<Method, number>,
    ndcg: Object.fromEntries(
      METHODS.map((m) => [m, mean(perCutoff.map((r) => r.ndcg[m]))]),
    ) as Record<Method, number>,
    versus,
    promotions: cycles.promotions,
    candidateRecall,
    featureImportance: cycles.featureImportance.map(({ feature, gain }) => ({ feature, gain })),
  };
}

const round = (x: number, d = 6) => (Number.isFinite(x) ? Number(x.toFixed(d)) : null);

/** The one-line JSON summary the CLI prints last. */
export function summaryLine(r: EvalResult): Record<string, unknown> {
  const per = (f: (m: Method) => number) =>
    Object.fromEntries(METHODS.map((m) => [m, round(f(m))]));
  return {
    dataset: r.dataset,
    cutoffs: r.cutoffs,
    users_scored: r.usersScored,
    [`map${r.k}`]: per((m) => r.map[m].mean),
    [`map${r.k}_spread`]: per((m) => r.map[m].spread),
    [`map${r.k}_se`]: per((m) => r.map[m].se),
    [`recall${r.k}`]: per((m) => r.recall[m]),
    [`ndcg${r.k}`]: per((m) => r.ndcg[m]),
    ratio_to: Object.fromEntries(Object.entries(r.versus).map(([m, v]) => [m, round(v.ratio, 3)])),
    ratio_interval: Object.fromEntries(
      Object.entries(r.versus).map(([m, v]) => [
        m,
        [round(v.pooled.ratio, 3), round(v.pooled.low, 3), round(v.pooled.high, 3)],
      ]),
    ),
    weeks_won: Object.fromEntries(Object.entries(r.versus).map(([m, v]) => [m, v.weeksWon])),
    promotions: r.promotions,
    candidate_recall: Object.fromEntries(
      Object.entries(r.candidateRecall).map(([s, v]) => [s, round(v, 4)]),
    ),
    seconds: Object.fromEntries(Object.entries(r.timings).map(([s, v]) => [s, round(v, 1)])),
    ...(r.seeds ? { seeds: seedsJson(r.seeds, r.k) } : {}),
  };
}

/** The report's input (evaluation/backtest/report.ts). */
export function toReport(r: EvalResult, notes: string[] = []): EvalReport {
  return {
    dataset: r.dataset,
    generatedAt: new Date().toISOString(),
    k: r.k,
    methods: [...METHODS],
    cutoffs: r.cutoffs,
    perCutoff: r.perCutoff.map((c) => ({
      cutoff: c.cutoff,
      usersScored: c.usersScored,
      mapAtK: c.mapAtK,
      recall: c.recall,
      ndcg: c.ndcg,
      candidateRecall: c.candidateRecall,
    })),
    summary: {
      map: r.map,
      recall: r.recall,
      ndcg: r.ndcg,
      ratios: Object.fromEntries(Object.entries(r.versus).map(([m, v]) => [m, v.ratio])),
      intervals: Object.fromEntries(
        Object.entries(r.versus).map(([m, v]) => [
          m,
          { ratio: v.pooled.ratio, low: v.pooled.low, high: v.pooled.high, weeksWon: v.weeksWon },
        ]),
      ),
      candidateRecall: r.candidateRecall,
      usersScored: r.usersScored,
    },
    featureImportance: r.featureImportance,
    notes: r.seeds ? [...seedLines(r.seeds, r.k), ...notes] : notes,
    timings: r.timings,
  };
}
