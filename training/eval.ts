/**
 * Backtest: for each evaluated weekly cutoff c, train a ranker exactly as production does (rows
 * from replaying the topics into an isolated namespace through the processors' code, candidates
 * and features through serving's code, training/train.py with early stopping on the week before
 * c) on the weeks before c, and score the customers who bought in [c, c + 7 days) against the
 * heuristic baselines (training/baselines.ts) on the same customers.
 *
 * Cutoffs, for `trainWeeks` = W: the model for c trains on the W weekly cutoffs
 * c − 14d, …, c − 7(W + 1)d (labels up to c − 7d) and stops early on the cutoff c − 7d (labels
 * [c − 7d, c)); nothing at or after c is seen. All rows (every cutoff of every model) come from one
 * replay in ascending cutoff order. Cutoffs whose label week has no purchase, or before which there
 * is no purchase, are skipped (a model then has fewer training weeks; the report says so).
 *
 * Users scored at c: every customer with a purchase in [c, c + 7d) (including customers without
 * history, who get the cold-start candidates). The ranker's list is its top k candidates, filled
 * with `popular` when it has fewer than k; the heuristics are filled the same way.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { DAY_MS } from '../streams/features/decay.ts';
import { FEATURE_NAMES } from '../streams/features/definitions.ts';
import { keySpace } from '../streams/features/keys.ts';
import { deleteNamespace } from '../streams/features/state.ts';
import { replay } from '../streams/replay.ts';
import { SOURCES, type CandidateConfig } from '../serving/candidates.ts';
import { loadModel } from '../serving/model/metadata.ts';
import {
  HeuristicState,
  PurchaseLog,
  fillTo,
  popularBetween,
  repurchasePopular,
  tuneWeights,
  type HeuristicWeights,
  type PurchaseEvent,
} from './baselines.ts';
import { filterTable, rankByQuery, runPython, scoreOnnx } from './steps.ts';
import { apAtK, ndcgAtK, recallAtK } from './metrics.ts';
import type { EvalReport } from './report.ts';
import { buildTrainingRows, writeRows, type RowsDeps } from './rows.ts';
import { ensurePythonEnv } from './venv.ts';

export const METHODS = ['ranker', 'popular', 'repurchase_popular', 'strong_heuristic'] as const;
export type Method = (typeof METHODS)[number];

export interface EvalOptions {
  /** Dataset name for the report. */
  readonly dataset: string;
  /** Evaluate the last N weeks with purchases after them (default 6). */
  readonly cutoffs?: number;
  /** Or exactly these cutoffs (ms, UTC midnight). */
  readonly cutoffDates?: readonly number[];
  readonly k?: number;
  readonly trials?: number;
  readonly seed?: number;
  /** Training weeks per model (default 26; fewer when the data starts later). */
  readonly trainWeeks?: number;
  /** Least trees per model when early stopping stops sooner (default 300, see train.py). */
  readonly minRounds?: number;
  /** Retrain on the training and early-stopping weeks together after the search (default on). */
  readonly refit?: boolean;
  /** Overrides of serving's candidate configuration. */
  readonly candidateConfig?: Partial<CandidateConfig>;
  /** Keep rows and models there (default: a temporary folder, removed after). */
  readonly workDir?: string;
  readonly onProgress?: (line: string) => void;
  readonly onRowsProgress?: (stage: string, done: number, total: number) => void;
}

export interface CutoffResult {
  cutoff: string;
  usersScored: number;
  coldUsers: number;
  trainCutoffs: string[];
  validationCutoff: string;
  /** MAP@k for k = 1..K per method. */
  mapAtK: Record<Method, number[]>;
  recall: Record<Method, number>;
  ndcg: Record<Method, number>;
  candidateRecall: Record<string, number>;
  heuristicWeights: HeuristicWeights;
  model: { version: string; validMap: number; trees: number; trainSeconds: number };
}

export interface EvalResult {
  dataset: string;
  k: number;
  cutoffs: string[];
  perCutoff: CutoffResult[];
  usersScored: number;
  map: Record<Method, { mean: number; spread: number }>;
  recall: Record<Method, number>;
  ndcg: Record<Method, number>;
  /** Ranker's mean MAP@k over each baseline's. */
  ratios: Record<string, number>;
  /** Pooled over the evaluated cutoffs (label pairs among the candidates). */
  candidateRecall: Record<string, number>;
  featureImportance: { feature: string; gain: number }[];
  timings: Record<string, number>;
}

const iso = (t: number) => new Date(t).toISOString().slice(0, 10);
const WEEK = 7 * DAY_MS;

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : xs.reduce((s, x) => s + x, 0) / xs.length;
}

/** Sample standard deviation (n − 1); 0 for a single value. */
export function spread(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1));
}

/** Read every purchase of the topic (customer, article, event time). */
export async function readPurchases(
  deps: RowsDeps,
  onProgress?: (read: number, total: number) => void,
): Promise<PurchaseLog> {
  const events: PurchaseEvent[] = [];
  // By event id, as the processors do: a folder published twice counts once here too.
  const seen = new Set<string>();
  await replay({
    kafka: deps.kafka,
    topic: deps.topics.purchases,
    codec: deps.codecs.purchases,
    from: 0,
    to: Number.MAX_SAFE_INTEGER,
    logger: deps.logger,
    onRecords: (records) => {
      for (const r of records) {
        if (seen.has(r.value.event_id)) continue;
        seen.add(r.value.event_id);
        events.push({
          customer: r.value.customer_id,
          article: r.value.article_id,
          time: r.timestamp,
        });
      }
    },
    ...(onProgress ? { onProgress } : {}),
  });
  return new PurchaseLog(events);
}

/**
 * The evaluated cutoffs: the given dates, or the last `n` weekly cutoffs (weeks ending at the end
 * of the last day with purchases) whose week has purchases.
 */
export function chooseCutoffs(log: PurchaseLog, n: number, dates?: readonly number[]): number[] {
  const first = log.all[0]?.time;
  const last = log.all.at(-1)?.time;
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
      if (c <= first) throw new Error(`too little data: no purchases before the cutoff ${iso(c)}`);
    }
    return sorted;
  }
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--cutoffs must be a positive integer (got ${n})`);
  const lastDayEnd = Math.floor(last / DAY_MS) * DAY_MS + DAY_MS;
  const out: number[] = [];
  // A cutoff needs a week of history for early stopping and one more to train on.
  for (let c = lastDayEnd - WEEK; c > first + 2 * WEEK && out.length < n; c -= WEEK) {
    if (hasWeek(c)) out.unshift(c);
  }
  if (out.length === 0) {
    throw new Error(
      `too little data: purchases span ${iso(first)}..${iso(last)}; a backtest needs a week of history and a week to score`,
    );
  }
  return out;
}

/** Run the backtest; see the module comment. */
export async function runEval(deps: RowsDeps, opts: EvalOptions): Promise<EvalResult> {
  const t0 = performance.now();
  const say = opts.onProgress ?? (() => undefined);
  const k = opts.k ?? 12;
  const W = opts.trainWeeks ?? 26;
  const log = await readPurchases(deps, (read, total) =>
    opts.onRowsProgress?.('events', read, total),
  );
  const first = log.all[0]?.time ?? 0;
  const evalCutoffs = chooseCutoffs(log, opts.cutoffs ?? 6, opts.cutoffDates);
  const hasWeek = (c: number) => log.indexAt(c + WEEK) > log.indexAt(c);
  const usable = (c: number) => c > first && hasWeek(c);
  const plan = evalCutoffs.map((c) => {
    const validation = c - WEEK;
    if (!usable(validation)) {
      throw new Error(
        `too little data: the week before ${iso(c)} (early stopping) has no purchases or no history before it`,
      );
    }
    const train = Array.from({ length: W }, (_, j) => c - (j + 2) * WEEK)
      .filter(usable)
      .reverse();
    if (train.length === 0) {
      throw new Error(`too little data: no training week with history before ${iso(validation)}`);
    }
    return { cutoff: c, validation, train };
  });
  const rowCutoffs = [...new Set(plan.flatMap((p) => [...p.train, p.validation, p.cutoff]))].sort(
    (a, b) => a - b,
  );
  say(
    `evaluating ${evalCutoffs.map(iso).join(', ')}; rows at ${rowCutoffs.length} weekly cutoffs from ${iso(rowCutoffs[0] ?? 0)}`,
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
      ...(opts.candidateConfig ? { candidateConfig: opts.candidateConfig } : {}),
      ...(opts.onRowsProgress ? { onProgress: opts.onRowsProgress } : {}),
    });
    timings.rows_s = (performance.now() - t1) / 1000;
    say(`rows: ${rows.rows} over ${rows.queries} queries in ${timings.rows_s.toFixed(1)} s`);

    const python = ensurePythonEnv(say);
    const perCutoff: CutoffResult[] = [];
    let featureImportance: EvalResult['featureImportance'] = [];
    let trainSeconds = 0;
    const recallPairs = { pairs: 0, hits: {} as Record<string, number> };
    for (const [i, p] of plan.entries()) {
      const dir = join(work, iso(p.cutoff));
      mkdirSync(dir, { recursive: true });
      const trainSet = new Set(p.train);
      const trainTable = filterTable(rows.table, (c) => trainSet.has(c));
      const validTable = filterTable(rows.table, (c) => c === p.validation);
      const testTable = filterTable(rows.table, (c) => c === p.cutoff);
      await writeRows(join(dir, 'train.arrow'), trainTable, { cutoffs: p.train });
      await writeRows(join(dir, 'valid.arrow'), validTable, { cutoffs: [p.validation] });
      await writeRows(join(dir, 'test.arrow'), testTable, { cutoffs: [p.cutoff] });
      const t2 = performance.now();
      say(`cutoff ${i + 1}/${plan.length} ${iso(p.cutoff)}: training on ${p.train.length} weeks`);
      await runPython(
        python,
        [
          'training/train.py',
          '--rows',
          join(dir, 'train.arrow'),
          '--valid',
          join(dir, 'valid.arrow'),
          '--out',
          join(dir, 'model'),
          '--trials',
          String(opts.trials ?? 3),
          '--seed',
          String(opts.seed ?? 42),
          '--min-rounds',
          String(opts.minRounds ?? 300),
          ...(opts.refit === false ? [] : ['--refit']),
        ],
        (l) => {
          say(`  ${l}`);
        },
      );
      const seconds = (performance.now() - t2) / 1000;
      trainSeconds += seconds;
      const model = await loadModel(
        join(dir, 'model', 'model.onnx'),
        join(dir, 'model', 'model.json'),
        FEATURE_NAMES,
      );
      const meta = JSON.parse(await readFile(join(dir, 'model', 'model.json'), 'utf8')) as {
        metrics?: { valid_map12?: number };
        feature_importance?: { feature: string; gain: number }[];
      };
      featureImportance = meta.feature_importance ?? [];
      const scores = await scoreOnnx(testTable, model.bytes, model.meta.features);
      // One query per customer at a cutoff: their ranked candidates by customer id.
      const ranked = new Map(
        [...rankByQuery(testTable, scores).values()].map((q) => [q.customerId, q]),
      );

      // Baselines and the ranker on the same customers.
      const labels = log.labels(p.cutoff, p.cutoff + WEEK);
      const customers = [...labels.keys()].sort();
      const popular = popularBetween(log, p.cutoff - WEEK, p.cutoff, k);
      const tuned = tuneWeights(log, p.validation, k);
      const heuristic = new HeuristicState(log, p.cutoff);
      const lists: Record<Method, string[][]> = {
        ranker: [],
        popular: [],
        repurchase_popular: [],
        strong_heuristic: [],
      };
      let cold = 0;
      for (const c of customers) {
        const history = log.historyBefore(c, p.cutoff);
        if (history.length === 0) cold++;
        lists.ranker.push(fillTo(ranked.get(c)?.articles ?? [], popular, k));
        lists.popular.push(popular);
        lists.repurchase_popular.push(repurchasePopular(history, popular, k));
        lists.strong_heuristic.push(heuristic.recommend(c, tuned.weights, k));
      }
      const relevant = customers.map((c) => labels.get(c) as Set<string>);
      const metric = (
        f: (r: readonly string[], rel: ReadonlySet<string>, k: number) => number,
        m: Method,
        kk: number,
      ) => mean(lists[m].map((r, j) => f(r, relevant[j] as Set<string>, kk)));
      const summary = rows.perCutoff.find((s) => s.cutoff === p.cutoff);
      const cr: Record<string, number> = { ...(summary?.candidateRecall ?? { overall: NaN }) };
      if (summary) {
        recallPairs.pairs += summary.labelPairs;
        for (const [s, v] of Object.entries(summary.candidateRecall)) {
          recallPairs.hits[s] = (recallPairs.hits[s] ?? 0) + v * summary.labelPairs;
        }
      }
      const result: CutoffResult = {
        cutoff: iso(p.cutoff),
        usersScored: customers.length,
        coldUsers: cold,
        trainCutoffs: p.train.map(iso),
        validationCutoff: iso(p.validation),
        mapAtK: Object.fromEntries(
          METHODS.map((m) => [m, Array.from({ length: k }, (_, j) => metric(apAtK, m, j + 1))]),
        ) as Record<Method, number[]>,
        recall: Object.fromEntries(METHODS.map((m) => [m, metric(recallAtK, m, k)])) as Record<
          Method,
          number
        >,
        ndcg: Object.fromEntries(METHODS.map((m) => [m, metric(ndcgAtK, m, k)])) as Record<
          Method,
          number
        >,
        candidateRecall: cr,
        heuristicWeights: tuned.weights,
        model: {
          version: model.meta.version,
          validMap: meta.metrics?.valid_map12 ?? NaN,
          trees: model.meta.trees,
          trainSeconds: seconds,
        },
      };
      perCutoff.push(result);
      say(
        `cutoff ${iso(p.cutoff)}: ${customers.length} users, MAP@${k} ` +
          METHODS.map((m) => `${m} ${(result.mapAtK[m][k - 1] ?? NaN).toFixed(5)}`).join(', '),
      );
    }
    timings.train_s = trainSeconds;

    const mapK = (m: Method) => perCutoff.map((r) => r.mapAtK[m][k - 1] ?? NaN);
    const map = Object.fromEntries(
      METHODS.map((m) => [m, { mean: mean(mapK(m)), spread: spread(mapK(m)) }]),
    ) as Record<Method, { mean: number; spread: number }>;
    const ratios = Object.fromEntries(
      METHODS.filter((m) => m !== 'ranker').map((m) => [m, map.ranker.mean / map[m].mean]),
    );
    const candidateRecall = Object.fromEntries(
      ['overall', ...SOURCES].map((s) => [
        s,
        recallPairs.pairs === 0 ? NaN : (recallPairs.hits[s] ?? 0) / recallPairs.pairs,
      ]),
    );
    timings.total_s = (performance.now() - t0) / 1000;
    return {
      dataset: opts.dataset,
      k,
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
      ratios,
      candidateRecall,
      featureImportance: featureImportance.map(({ feature, gain }) => ({ feature, gain })),
      timings,
    };
  } finally {
    await deleteNamespace(deps.redis, keySpace(namespace)).catch(() => undefined);
    if (opts.workDir === undefined) rmSync(work, { recursive: true, force: true });
  }
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
    [`recall${r.k}`]: per((m) => r.recall[m]),
    [`ndcg${r.k}`]: per((m) => r.ndcg[m]),
    ratio_to: Object.fromEntries(Object.entries(r.ratios).map(([m, v]) => [m, round(v, 3)])),
    candidate_recall: Object.fromEntries(
      Object.entries(r.candidateRecall).map(([s, v]) => [s, round(v, 4)]),
    ),
    seconds: Object.fromEntries(Object.entries(r.timings).map(([s, v]) => [s, round(v, 1)])),
  };
}

/** The report's input (training/report.ts). */
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
      ratios: r.ratios,
      candidateRecall: r.candidateRecall,
      usersScored: r.usersScored,
    },
    featureImportance: r.featureImportance,
    notes,
    timings: r.timings,
  };
}
