/**
 * One model by the recipe (training/recipe.ts), trained and judged. The rows of a cycle's weeks go
 * to the Python trainer (training/trainer/, run as `python -m training.trainer`): an Optuna search
 * with early stopping on the validation week chooses the parameters and number of trees; then, for
 * each gate week, those are trained on the recipe's `fitWeeks` weeks before it (the history weeks
 * included) and score that week (rolling origin: what the recipe would have shipped at the start
 * of the week, judged on a week it never saw, as fresh as the shipped model will be and trained on
 * as many weeks); last, the refit on the `fitWeeks` weeks before the cycle's end is the model
 * shipped. The gate judges the rolling scores against the baselines (training/judge.ts) and the
 * active model, customer-weeks pooled, with paired bootstrap intervals. The production cycle
 * (cycle.ts) calls `fitAndGate`; the backtest (evaluation/backtest/backtest.ts) calls its two
 * halves, `fitModel` (the trainer), started ahead for several cycles, and `judgeFit` (the gate),
 * in cutoff order.
 */
import { mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModel, type LoadedModel, type ModelMeta } from '../models/model-meta.ts';
import type { PurchaseLog } from '../evaluation/purchase-log.ts';
import { BASELINES, addRanked, labelWeek, pooledAp, type Week } from './judge.ts';
import { WEEK_MS, type CycleWeeks, type Recipe } from './recipe.ts';
import { writeRows, type RowTable } from './rows.ts';
import {
  mean,
  pairedRatio,
  standardError,
  type BootstrapOptions,
  type RatioInterval,
  formatRatio,
} from '../evaluation/stats.ts';
import { filterTable, runPython, scoreOnnx } from './steps.ts';

/** What the gate saw and decided; stored with the model (`gate` in its metadata). */
export interface GateResult {
  readonly promoted: boolean;
  readonly reason: string;
  /** Gate weeks (cutoff days) and customer-weeks judged. */
  readonly weeks: string[];
  /** Per gate week, what scored it: `rolling` (fitted on the weeks before it) or a model version. */
  readonly scoredBy: Record<string, string>;
  readonly units: number;
  /** Pooled MAP@k and its standard error per method (`candidate`, the baselines, `active`). */
  readonly map: Record<string, { mean: number; se: number }>;
  /** Candidate's MAP ratio to each baseline and to the active model, with its interval. */
  readonly vs: Record<string, RatioInterval>;
  readonly bestBaseline: string;
  /** The active model compared, on the gate weeks it had not trained on (null: none compared). */
  readonly active: { version: string; weeks: string[]; units: number } | null;
  readonly confidence: number;
}

const day = (t: number) => new Date(t).toISOString().slice(0, 10);

/**
 * The decision, from the intervals: promote when the candidate beats the best baseline with the
 * stated confidence (the lower bound of its ratio is above 1) and the active model is not better
 * with that confidence (the upper bound of the ratio to it is at least 1).
 */
export function gateDecision(
  vsBest: { name: string; interval: RatioInterval },
  vsActive: { version: string; interval: RatioInterval } | null,
): { promoted: boolean; reason: string } {
  const { name, interval } = vsBest;
  const level = `${Math.round(interval.confidence * 100)} %`;
  if (!(interval.low > 1)) {
    return {
      promoted: false,
      reason: `MAP@12 ${formatRatio(interval)} of the best baseline (${name}): not above it with ${level} confidence`,
    };
  }
  if (vsActive !== null && vsActive.interval.high < 1) {
    return {
      promoted: false,
      reason: `MAP@12 ${formatRatio(vsActive.interval)} of the active model ${vsActive.version}: worse with ${level} confidence`,
    };
  }
  return {
    promoted: true,
    reason:
      `MAP@12 ${formatRatio(interval)} of the best baseline (${name})` +
      (vsActive === null
        ? ''
        : `, ${formatRatio(vsActive.interval)} of the active model ${vsActive.version}`),
  };
}

/** The last cutoff a model's training labels reached (its cutoffs' latest + one week). */
export function trainedThrough(meta: ModelMeta): number | null {
  const c = (meta as { cutoffs?: { train?: unknown; valid?: unknown; refit?: unknown } }).cutoffs;
  const all = [c?.train, c?.valid, c?.refit].flatMap((x): unknown[] =>
    Array.isArray(x) ? (x as unknown[]) : [],
  );
  const nums = all.filter((x): x is number => typeof x === 'number');
  return nums.length === 0 ? null : Math.max(...nums) + WEEK_MS;
}

export interface FitInput {
  readonly python: string;
  readonly recipe: Recipe;
  readonly weeks: CycleWeeks;
  /** Rows holding (at least) every cutoff of `weeks`. */
  readonly rows: RowTable;
  readonly log: PurchaseLog;
  readonly workDir: string;
  /** The model in service, compared on the gate weeks it did not train on. */
  readonly active: LoadedModel | null;
  /**
   * Models the recipe shipped at the start of some gate weeks (a backtest's earlier cutoffs): they
   * score those weeks instead of a rolling fit. Weeks without one are fitted.
   */
  readonly shippedAt?: ReadonlyMap<number, LoadedModel>;
  /** Lines of the trainer and the gate. */
  readonly say: (line: string) => void;
  /**
   * A Dask scheduler address: the trainer trains with `lightgbm.dask` on its workers
   * (training/trainer/distributed.py) instead of in its own process.
   */
  readonly dask?: string;
  /**
   * A folder where the trainer keeps each rolling fit under a hash of its inputs and reads it back
   * when asked for the same fit (training/trainer/refit.py): a backtest's cycles fit the same gate
   * weeks before its first cutoff, and only the first trains them.
   */
  readonly fitCache?: string;
  /** LightGBM's threads in the trainer (default 2; the model does not depend on them). */
  readonly threads?: number;
}

export interface FitResult {
  /** The model to ship: retrained on every week (the searched one without refit). */
  readonly shipped: LoadedModel;
  readonly gate: GateResult;
  /** The trainer's summary line. */
  readonly trainer: Record<string, unknown>;
  readonly seconds: { train: number; gate: number };
}

/** Train by the recipe on `weeks` and judge the result at the gate (see the module comment). */
export async function fitAndGate(input: FitInput): Promise<FitResult> {
  return judgeFit(input, await fitModel(input));
}

/** A cycle's model trained, before the gate: what `judgeFit` judges. */
export interface Fitted {
  readonly shipped: LoadedModel;
  /** The trainer's summary line. */
  readonly trainer: Record<string, unknown>;
  /** Gate weeks scored by rolling fits (the others by `shippedAt`'s models). */
  readonly rolling: readonly number[];
  readonly gateTable: RowTable;
  /** The trainer's output folder. */
  readonly out: string;
  readonly seconds: number;
}

/**
 * The gate weeks a cycle fits itself: those without a model in `shippedAt`. None without a refit:
 * rolling fits need the gate rows as refit rows, and the gate judges the shipped (searched) model
 * itself, which is as old as the validation week.
 */
export function rollingWeeks(
  recipe: Pick<Recipe, 'refit'>,
  weeks: Pick<CycleWeeks, 'gate'>,
  shipped: (week: number) => boolean,
): number[] {
  return recipe.refit ? weeks.gate.filter((g) => !shipped(g)) : [];
}

/**
 * The trainer's part of `fitAndGate`: the rows to files, the trainer, the shipped model loaded.
 * `rolling` (default: the gate weeks without a model in `shippedAt` now) lets a backtest start a
 * cycle's trainer before the earlier cycles have shipped the models its gate will read.
 */
export async function fitModel(
  input: FitInput,
  rolling: readonly number[] = rollingWeeks(input.recipe, input.weeks, (g) =>
    Boolean(input.shippedAt?.has(g)),
  ),
): Promise<Fitted> {
  const { recipe, weeks, workDir, say } = input;
  mkdirSync(workDir, { recursive: true });
  // The history weeks are read by the rolling fits, and by the refit when its window reaches them.
  const refitStart = weeks.end - recipe.fitWeeks * WEEK_MS;
  const historyRead = rolling.length > 0 || weeks.history.some((h) => h >= refitStart);
  const { paths, gateTable } = await writeWeekRows(input, historyRead);

  const t0 = performance.now();
  const out = join(workDir, 'model');
  const args = [
    ...trainerArgs(recipe, paths, out, rolling),
    ...daskArgs(input.dask),
    ...(input.threads !== undefined ? ['--threads', String(input.threads)] : []),
    ...(input.fitCache !== undefined && rolling.length > 0 ? ['--fit-cache', input.fitCache] : []),
  ];
  const stdout = await runPython(input.python, args, say);
  const seconds = (performance.now() - t0) / 1000;
  const trainer = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
  const shipped = await loadModel(
    join(out, 'model.onnx'),
    join(out, 'model.json'),
    input.rows.features,
  );
  return { shipped, trainer, rolling, gateTable, out, seconds };
}

/**
 * The gate's part of `fitAndGate`: the gate weeks scored (rolling fits, else `shippedAt`'s
 * models) and judged. Every gate week the trainer did not fit must have its model in
 * `shippedAt` by now.
 */
export async function judgeFit(input: FitInput, fitted: Fitted): Promise<FitResult> {
  const { recipe, weeks, say } = input;
  const { shipped, rolling, gateTable, out } = fitted;
  const missing = rollingWeeks(recipe, weeks, (g) => Boolean(input.shippedAt?.has(g))).filter(
    (g) => !rolling.includes(g),
  );
  if (missing.length > 0) {
    throw new Error(`gate: no model shipped at ${missing.map(day).join(', ')} and no rolling fit`);
  }
  const t1 = performance.now();
  const scores = await gateScores(input, gateTable, out, rolling, shipped);
  const scoredBy = Object.fromEntries(
    weeks.gate.map((g) => [
      day(g),
      rolling.includes(g)
        ? 'rolling'
        : ((recipe.refit ? input.shippedAt?.get(g) : shipped)?.meta.version ?? 'none'),
    ]),
  );
  const gate = { ...(await judgeAtGate(input, gateTable, scores, scoredBy)), scoredBy };
  say(`gate: ${gate.promoted ? 'promote' : 'refuse'}: ${gate.reason}`);
  return {
    shipped,
    gate,
    trainer: fitted.trainer,
    seconds: { train: fitted.seconds, gate: (performance.now() - t1) / 1000 },
  };
}

interface WeekPaths {
  readonly train: string;
  readonly valid: string;
  readonly gate: string;
  /** The history weeks' rows (null without any). */
  readonly history: string | null;
}

/**
 * The rows of the training, validation and gate weeks, each to its Arrow file in `workDir`, and
 * those of the history weeks when a fit reads them (`withHistory`).
 */
async function writeWeekRows(
  input: FitInput,
  withHistory: boolean,
): Promise<{ paths: WeekPaths; gateTable: RowTable }> {
  const { weeks, rows, workDir } = input;
  const trainSet = new Set(weeks.train);
  const gateSet = new Set(weeks.gate);
  const historySet = new Set(withHistory ? weeks.history : []);
  const trainTable = filterTable(rows, (c) => trainSet.has(c));
  const validTable = filterTable(rows, (c) => c === weeks.validation);
  const gateTable = filterTable(rows, (c) => gateSet.has(c));
  const historyTable = filterTable(rows, (c) => historySet.has(c));
  const paths = {
    train: join(workDir, 'train.arrow'),
    valid: join(workDir, 'valid.arrow'),
    gate: join(workDir, 'gate.arrow'),
    history: historyTable.length > 0 ? join(workDir, 'history.arrow') : null,
  };
  await writeRows(paths.train, trainTable, { cutoffs: weeks.train });
  await writeRows(paths.valid, validTable, { cutoffs: [weeks.validation] });
  await writeRows(paths.gate, gateTable, { cutoffs: weeks.gate });
  if (paths.history !== null) {
    await writeRows(paths.history, historyTable, { cutoffs: weeks.history });
  }
  return { paths, gateTable };
}

/** The Python trainer's command line (training/trainer/cli.py) for the recipe. */
function daskArgs(address: string | undefined): string[] {
  return address === undefined ? [] : ['--dask', address];
}

/**
 * One trial of a fixed number of trees, refitted: a search model would choose nothing, so the
 * trainer trains none (`--no-search`) and the refit is the cycle's first fit.
 */
export function noSearch(recipe: Pick<Recipe, 'trials' | 'minRounds' | 'maxRounds' | 'refit'>) {
  return recipe.trials === 1 && recipe.minRounds >= recipe.maxRounds && recipe.refit;
}

function trainerArgs(
  recipe: Recipe,
  paths: WeekPaths,
  out: string,
  rolling: readonly number[],
): string[] {
  const { large } = recipe;
  return [
    ...['-m', 'training.trainer'],
    ...['--rows', paths.train, '--valid', paths.valid, '--out', out],
    ...['--trials', String(recipe.trials), '--seed', String(recipe.seed)],
    ...['--min-rounds', String(recipe.minRounds)],
    ...['--num-boost-round', String(recipe.maxRounds)],
    ...['--early-stopping', String(recipe.earlyStopping)],
    ...(noSearch(recipe) ? ['--no-search'] : []),
    ...['--large-from', String(large.fromQueries)],
    ...['--large-trees', `${large.trees.numLeaves},${large.trees.minDataInLeaf}`],
    ...['--negatives', String(large.negatives)],
    ...(large.features.length > 0 ? ['--sized-features', large.features.join(',')] : []),
    ...(recipe.refit
      ? ['--refit', '--refit-with', paths.gate, '--fit-weeks', String(recipe.fitWeeks)]
      : []),
    ...(recipe.refit && large.blend > 0 ? ['--blend', String(large.blend)] : []),
    ...(rolling.length > 0 ? ['--rolling', rolling.join(',')] : []),
    ...(paths.history !== null ? ['--history', paths.history] : []),
  ];
}

/**
 * The candidate's score of every gate row: the trainer's rolling scores for the `rolling` weeks;
 * with a refit, the model shipped at the start of a week (`shippedAt`) for the others; without,
 * the shipped model. NaN where nothing scored.
 */
async function gateScores(
  input: FitInput,
  gateTable: RowTable,
  out: string,
  rolling: readonly number[],
  shipped: LoadedModel,
): Promise<Float32Array> {
  const { recipe, weeks } = input;
  const scores = new Float32Array(gateTable.length).fill(NaN);
  if (rolling.length > 0) {
    const buf = await readFile(join(out, 'rolling_scores.f32'));
    const fitted = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    if (fitted.length !== gateTable.length) {
      throw new Error(`rolling scores: ${fitted.length} for ${gateTable.length} gate rows`);
    }
    scores.set(fitted);
  }
  for (const g of weeks.gate) {
    if (rolling.includes(g)) continue;
    const model = recipe.refit ? input.shippedAt?.get(g) : shipped;
    if (model === undefined) continue;
    const week = filterTable(gateTable, (c) => c === g);
    const s = await scoreOnnx(week, model.bytes, model.meta.features);
    rowsOf(gateTable, g).forEach((row, j) => (scores[row] = s[j] ?? NaN));
  }
  return scores;
}

/** Indexes of the rows of `table` at `cutoff`, in order. */
function rowsOf(table: RowTable, cutoff: number): number[] {
  const idx: number[] = [];
  for (let i = 0; i < table.length; i++) if (table.cutoff[i] === cutoff) idx.push(i);
  return idx;
}

/** Scores of `model` on `rows`, or null when its features are not among the rows' columns. */
async function scoreIfPossible(rows: RowTable, model: LoadedModel): Promise<Float32Array | null> {
  if (model.meta.features.some((f) => !rows.features.includes(f))) return null;
  return scoreOnnx(rows, model.bytes, model.meta.features);
}

/**
 * The gate's evidence and decision: the candidate's pooled MAP@k on the gate weeks against each
 * baseline's and, on the weeks it had not trained on, the active model's.
 */
async function judgeAtGate(
  input: FitInput,
  gateTable: RowTable,
  candidateScores: Float32Array,
  scoredBy: Readonly<Record<string, string>>,
): Promise<Omit<GateResult, 'scoredBy'>> {
  const { recipe, weeks, active } = input;
  const k = recipe.k;
  const activeScores = active === null ? null : await scoreIfPossible(gateTable, active);
  const judged = judgedWeeks(input, gateTable, candidateScores, activeScores);
  const opts = {
    confidence: recipe.gate.confidence,
    iterations: recipe.gate.iterations,
    seed: recipe.seed,
  };
  const cand = pooledAp(judged, 'candidate', k);
  const map: GateResult['map'] = {};
  const vs: GateResult['vs'] = {};
  map.candidate = { mean: mean(cand), se: standardError(cand) };
  let best: { name: string; interval: RatioInterval; mean: number } | null = null;
  for (const b of BASELINES) {
    const ap = pooledAp(judged, b, k);
    const m = { mean: mean(ap), se: standardError(ap) };
    map[b] = m;
    const interval = pairedRatio(cand, ap, opts);
    vs[b] = interval;
    if (best === null || m.mean > best.mean) best = { name: b, interval, mean: m.mean };
  }
  const versus =
    active !== null && activeScores !== null
      ? compareWithActive(judged, active, scoredBy, k, opts)
      : null;
  if (versus !== null) {
    map.active = versus.map;
    vs.active = versus.interval;
  }
  if (best === null) throw new Error('no baseline to compare with');
  const decision = gateDecision(
    best,
    versus && { version: versus.compared.version, interval: versus.interval },
  );
  return {
    ...decision,
    weeks: weeks.gate.map(day),
    units: cand.length,
    map,
    vs,
    bestBaseline: best.name,
    active: versus?.compared ?? null,
    confidence: recipe.gate.confidence,
  };
}

/**
 * Each gate week with every method's lists: the baselines (judge.ts), the candidate's and the
 * active model's scores and serving's heuristic, over the week's rows.
 */
function judgedWeeks(
  input: FitInput,
  gateTable: RowTable,
  candidateScores: Float32Array,
  activeScores: Float32Array | null,
): Week[] {
  const { recipe, weeks, log } = input;
  const k = recipe.k;
  const judged: Week[] = [];
  for (const cutoff of weeks.gate) {
    const week = labelWeek(log, cutoff, k, recipe.labelCustomers);
    const idx = rowsOf(gateTable, cutoff);
    const rows = filterTable(gateTable, (c) => c === cutoff);
    const pick = (s: ArrayLike<number>) => Float32Array.from(idx, (i) => s[i] ?? NaN);
    addRanked(week, 'candidate', rows, pick(candidateScores), k);
    addRanked(week, 'heuristic', rows, rows.heuristic, k);
    if (activeScores !== null) addRanked(week, 'active', rows, pick(activeScores), k);
    judged.push(week);
  }
  return judged;
}

/**
 * The candidate against the active model, only on the weeks after the active model's own
 * training data; null when there are none.
 */
function compareWithActive(
  judged: readonly Week[],
  active: LoadedModel,
  scoredBy: Readonly<Record<string, string>>,
  k: number,
  opts: BootstrapOptions,
): {
  map: { mean: number; se: number };
  interval: RatioInterval;
  compared: NonNullable<GateResult['active']>;
} | null {
  const activeFrom = trainedThrough(active.meta);
  // Weeks the active model itself scored for the candidate (a backtest's weekly cycles) compare
  // it with itself: left out.
  const unseen = judged.filter(
    (w) =>
      activeFrom !== null &&
      w.cutoff >= activeFrom &&
      scoredBy[day(w.cutoff)] !== active.meta.version,
  );
  if (unseen.length === 0) return null;
  const a = pooledAp(unseen, 'candidate', k);
  const b = pooledAp(unseen, 'active', k);
  return {
    map: { mean: mean(b), se: standardError(b) },
    interval: pairedRatio(a, b, opts),
    compared: {
      version: active.meta.version,
      weeks: unseen.map((w) => day(w.cutoff)),
      units: a.length,
    },
  };
}
