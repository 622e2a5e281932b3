/**
 * One training cycle by the recipe (training/recipe.ts): choose the cycle's weeks from the
 * purchases topic, build point-in-time rows by replaying the topics into an isolated namespace,
 * build the live namespace's co-buyer lists at the cycle's end (processors/co-buyers.ts), train
 * and judge (training/fit.ts: Optuna search, the gate on held-out weeks against the
 * baselines and the active model with paired bootstrap intervals, a refit on every week), register
 * the shipped model with the recipe and the gate's evidence, and activate it only when the gate
 * promoted it (or, with PROMOTE_AS=experiment, start an A/B experiment of it against the active
 * model: training/promote.ts). Every candidate is registered; a refused one stays listed with the
 * reason.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kafka } from 'kafkajs';
import type { RedisClient } from '../common/redis.ts';
import type { Codecs } from '../streams/bootstrap.ts';
import { DAY_MS } from '../features/decay.ts';
import { keySpace, type KeySpace } from '../features/keys.ts';
import { deleteNamespace } from '../features/state.ts';
import type { Logger } from '../common/logger.ts';
import type { Topics } from '../streams/topics.ts';
import { featureNames } from '../features/definitions.ts';
import type { EmbeddingsSwitch, ModelRegistryConfig, PromotionConfig } from '../common/config.ts';
import { UNSIGNED_TRUST } from '../models/signing.ts';
import { checkModel, type LoadedModel } from '../models/model-meta.ts';
import { activeVersion, readModel, registerModel, rejectModel } from '../models/registry.ts';
import { fitAndGate, type FitResult, type GateResult } from './fit.ts';
import {
  RECIPE,
  WEEK_MS,
  cycleWeeks,
  recipeRecord,
  type CycleWeeks,
  type Recipe,
} from './recipe.ts';
import {
  buildTrainingRows,
  describeLabelSample,
  describeRowTimings,
  type CandidateRecall,
  type RowsResult,
  type RowsStage,
} from './rows.ts';
import type { PurchaseLog } from '../evaluation/purchase-log.ts';
import { buildCoBuyers } from '../processors/co-buyers.ts';
import { promoteModel, type PromotionOutcome } from './promote.ts';
import { readPurchases } from './steps.ts';
import { ensurePythonEnv } from './venv.ts';

export interface CycleDeps {
  kafka: Kafka;
  /** The live Redis: the registry, the active model, the live co-buyer lists. */
  redis: RedisClient;
  /**
   * The Redis the rows are rebuilt in (`TRAINING_REDIS_URL`, training/rows-redis.ts); default
   * `redis`, in a namespace of the cycle's own either way.
   */
  rowsRedis?: RedisClient;
  codecs: Codecs;
  topics: Topics;
  /** The live key space: its model registry receives the candidate. */
  keys: KeySpace;
  logger: Logger;
  /** The deployment's embeddings switch (config `embeddings`; default off), see `RowsDeps`. */
  embeddings?: EmbeddingsSwitch;
  /**
   * Config `models`: the candidate is signed with `trust.key` (when set) and verified under
   * `trust` before activation; registration keeps `keepVersions`. Default: unsigned, 10.
   */
  models?: Pick<ModelRegistryConfig, 'trust' | 'keepVersions'>;
  /**
   * Config `promotion` (PROMOTE_AS, PROMOTE_EXPERIMENT_WEIGHT): a promoted model becomes active
   * (default) or starts an A/B experiment against the active one.
   */
  promotion?: PromotionConfig;
}

export interface CycleOptions {
  /** Overrides of the recipe (recorded in the model's metadata); default `RECIPE`. */
  recipe?: Partial<Recipe>;
  /** The cycle's end (ms, a UTC midnight): data at or after it is not used. Default: the end of the last day with purchases. */
  end?: number;
  /** Other customers with history scored per training cutoff (negatives only). */
  sampleOthers?: number;
  /** Where to keep rows and model files (default: a temporary folder, removed after). */
  workDir?: string;
  /** A Dask scheduler address to train on (`--dask`, TRAIN_DASK_SCHEDULER); default in process. */
  dask?: string;
  onProgress?: (line: string) => void;
  /** Counts per stage, for progress bars (`onProgress` gets the same as lines, less often). */
  onStep?: (step: CycleStep) => void;
}

/** Structured progress of a cycle: one counter per (stage, label), `done` up to `total`. */
export interface CycleStep {
  /** `replay`: topics into the training namespace; `rows`: candidates, features; `train`: trials. */
  readonly stage: 'replay' | 'rows' | 'train';
  /** What is counted, e.g. `purchases < 2020-07-06`, `customers at 2020-07-06`, `optuna trials`. */
  readonly label: string;
  readonly done: number;
  readonly total: number;
}

export interface CycleResult {
  version: string;
  promoted: boolean;
  /**
   * What promotion did: `active` (it is the active model) or `experiment` (the experiment it
   * started, by name); null when the gate refused it.
   */
  promotedAs: 'active' | 'experiment' | null;
  experiment: string | null;
  reason: string;
  weeks: CycleWeeks;
  gate: GateResult;
  /** Over the gate weeks, pooled. */
  candidateRecall: CandidateRecall;
  rows: { train: number; validation: number; gate: number; gateQueries: number };
  timings: { rowsMs: number; trainMs: number; evaluateMs: number; totalMs: number };
}

/** Latest record timestamp (event time) of a topic, reading the last record of each partition. */
export async function latestEventTime(kafka: Kafka, topic: string): Promise<number | null> {
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const wanted = offsets.filter((o) => BigInt(o.high) > BigInt(o.low));
  if (wanted.length === 0) return null;
  const groupId = `latest-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId });
  let latest = -Infinity;
  const seen = new Set<number>();
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: false });
    const done = new Promise<void>((resolve) => {
      void consumer.run({
        autoCommit: false,
        eachMessage: ({ partition, message }) => {
          latest = Math.max(latest, Number(message.timestamp));
          seen.add(partition);
          if (seen.size === wanted.length) resolve();
          return Promise.resolve();
        },
      });
    });
    // Seek on every group join: kafkajs forgets seeks when the consumer restarts.
    const seekLast = () => {
      for (const o of wanted) {
        try {
          consumer.seek({
            topic,
            partition: o.partition,
            offset: (BigInt(o.high) - 1n).toString(),
          });
        } catch {
          // not in the group yet: the GROUP_JOIN listener seeks
        }
      }
    };
    consumer.on(consumer.events.GROUP_JOIN, seekLast);
    seekLast();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        done,
        new Promise((_, reject) => {
          timer = setTimeout(() => {
            reject(new Error(`could not read the last records of ${topic} within 60 s`));
          }, 60_000);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await consumer.disconnect();
    const a = kafka.admin();
    await a.connect();
    await a.deleteGroups([groupId]).catch(() => undefined);
    await a.disconnect();
  }
  return latest;
}

/** The active model, if it can be judged on rows of this build's features; else null (said why). */
async function activeModel(
  deps: CycleDeps,
  say: (line: string) => void,
): Promise<LoadedModel | null> {
  const v = await activeVersion(deps.redis, deps.keys);
  if (v === null) return null;
  const entry = await readModel(deps.redis, deps.keys, v);
  if (entry === null) return null;
  try {
    return await checkModel(
      entry.meta,
      entry.bytes,
      featureNames(deps.embeddings?.enabled ?? false),
    );
  } catch (err) {
    say(
      `active model ${v} cannot be scored on these rows (${err instanceof Error ? err.message : String(err)}); it does not gate`,
    );
    return null;
  }
}

const day = (t: number) => new Date(t).toISOString().slice(0, 10);

/** The history weeks as the cycle's weeks line says them (empty without any). */
function historyLine(weeks: CycleWeeks, recipe: Recipe): string {
  const h = weeks.history;
  if (h.length === 0) return '';
  return `history ${day(h[0] ?? 0)}..${day(h.at(-1) ?? 0)} (for the fits of ${recipe.fitWeeks} weeks); `;
}

/** Run one cycle; resolves with what was trained and whether it was promoted. */
export async function runCycle(deps: CycleDeps, opts: CycleOptions = {}): Promise<CycleResult> {
  const t0 = performance.now();
  const say = opts.onProgress ?? (() => undefined);
  const step = opts.onStep ?? (() => undefined);
  const recipe: Recipe = { ...RECIPE, ...opts.recipe };
  const { log, end, weeks } = await chooseWeeks(deps, recipe, opts.end);
  const cutoffs = [...weeks.history, ...weeks.train, weeks.validation, ...weeks.gate];
  const work = opts.workDir ?? join(tmpdir(), `rec-train-${randomUUID().slice(0, 8)}`);
  mkdirSync(work, { recursive: true });
  const namespace = `train-${randomUUID().slice(0, 8)}`;
  const rowsDeps = { ...deps, redis: deps.rowsRedis ?? deps.redis };
  try {
    say(
      `weeks: ${historyLine(weeks, recipe)}train ${weeks.train.map(day).join(', ')}; early stopping ${day(weeks.validation)}; ` +
        `gate ${weeks.gate.map(day).join(', ')}; end ${day(end)}`,
    );
    const rows = await buildTrainingRows(rowsDeps, {
      cutoffs,
      namespace,
      liveNamespace: deps.keys.ns,
      candidateConfig: recipe.candidates,
      labelCustomers: recipe.labelCustomers,
      ...(opts.sampleOthers
        ? { customerSample: { others: opts.sampleOthers, seed: recipe.seed } }
        : {}),
      onProgress: rowsProgress(cutoffs, say, step),
    });
    const rowsMs = performance.now() - t0;
    say(
      `rows: ${rows.rows} over ${rows.queries} queries (candidate recall ${rows.candidateRecall.overall.toFixed(3)}) ` +
        `in ${(rowsMs / 1000).toFixed(1)} s (${describeRowTimings(rows.timings)})` +
        describeLabelSample(rows.perCutoff),
    );
    // The live co-buyer lists, as the rows' were built at each cutoff: serving reads them.
    const coBuyers = await buildCoBuyers(deps.redis, deps.keys, { now: end });
    say(
      `co-buyers: ${coBuyers.written} articles given neighbours from ${coBuyers.customers} customers (${(coBuyers.ms / 1000).toFixed(1)} s)`,
    );

    const python = await ensurePythonEnv(say);
    const active = await activeModel(deps, say);
    step({ stage: 'train', label: 'optuna trials', done: 0, total: recipe.trials });
    const fit = await fitAndGate({
      python,
      recipe,
      weeks,
      rows: rows.table,
      log,
      workDir: work,
      active,
      say: trainerLines(say, step),
      ...(opts.dask === undefined ? {} : { dask: opts.dask }),
    });
    say(`fit: training ${fit.seconds.train.toFixed(1)} s, gate ${fit.seconds.gate.toFixed(1)} s`);
    const { version, promotion } = await registerCandidate(deps, fit, recipe, end);
    say(`${fit.gate.promoted ? 'promoted' : 'refused'} ${version}: ${fit.gate.reason}`);
    if (promotion?.as === 'experiment') {
      say(
        `started experiment ${promotion.experiment.name}: ${promotion.experiment.variants.map((v) => `${v.name}=${v.model}:${v.weight}`).join(', ')}`,
      );
    }
    return cycleResult(version, promotion, weeks, rows, fit, {
      rowsMs,
      trainMs: fit.seconds.train * 1000,
      evaluateMs: fit.seconds.gate * 1000,
      totalMs: performance.now() - t0,
    });
  } finally {
    await deleteNamespace(rowsDeps.redis, keySpace(namespace)).catch(() => undefined);
    if (opts.workDir === undefined) rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The purchase log and the cycle's weeks by the recipe, ending at `end` (default: the end of the
 * last day with purchases); "too little data" when the purchases cannot fill them.
 */
async function chooseWeeks(
  deps: CycleDeps,
  recipe: Recipe,
  endOption: number | undefined,
): Promise<{ log: PurchaseLog; end: number; weeks: CycleWeeks }> {
  const [latest, log] = await Promise.all([
    latestEventTime(deps.kafka, deps.topics.purchases.name),
    readPurchases(deps),
  ]);
  if (latest === null) {
    throw new Error(`too little data: ${deps.topics.purchases.name} holds no purchases`);
  }
  const lastDayEnd = Math.floor(latest / DAY_MS) * DAY_MS + DAY_MS;
  const end = endOption ?? lastDayEnd;
  if (end > lastDayEnd) {
    throw new Error(
      `too little data: the cycle ends ${day(end)}, after the last purchase (${day(latest)}): its gate weeks would hold no purchases; choose an end on or before ${day(lastDayEnd)}`,
    );
  }
  const first = log.firstTime ?? end;
  const weeks = cycleWeeks(end, recipe, first, (c) => log.labels(c, c + WEEK_MS).size);
  if (weeks.train.length === 0 || weeks.validation <= first) {
    throw new Error(
      `too little data: purchases from ${day(first)} to ${day(end)} leave no training week before ` +
        `the early-stopping week ${day(weeks.validation)} and ${recipe.gateWeeks} gate week(s); ` +
        `a cycle needs ${recipe.gateWeeks + 2} weeks of data at least`,
    );
  }
  return { log, end, weeks };
}

/**
 * The row builder's progress as cycle lines (a stage's first and last count) and steps: the
 * replays of each cutoff (label weeks, metadata, purchases), then its customers.
 */
function rowsProgress(
  cutoffs: readonly number[],
  say: (line: string) => void,
  step: (s: CycleStep) => void,
): (stage: RowsStage, done: number, total: number) => void {
  let lastStage = '';
  let cutoffIndex = 0; // the cutoff being built: advanced when its queries are done
  const metaRead = new Map<string, readonly [number, number]>(); // articles, customers: read, total
  return (stage, done, total) => {
    if (stage !== lastStage || done === total) say(`rows: ${stage} ${done}/${total}`);
    lastStage = stage;
    const at = day(cutoffs[cutoffIndex] ?? 0);
    if (stage === 'labels') step({ stage: 'replay', label: 'label weeks', done, total });
    else if (stage === 'articles' || stage === 'customers') {
      // Replayed concurrently: one counter for both.
      metaRead.set(stage, [done, total]);
      const sum = [...metaRead.values()].reduce((a, [d, t]) => [a[0] + d, a[1] + t], [0, 0]);
      step({ stage: 'replay', label: `metadata <= ${at}`, done: sum[0], total: sum[1] });
    } else if (stage === 'purchases') {
      step({ stage: 'replay', label: `purchases < ${at}`, done, total });
    } else if (stage === 'queries') {
      step({ stage: 'rows', label: `customers at ${at}`, done, total });
      if (done === total) {
        cutoffIndex++;
        metaRead.clear();
      }
    }
  };
}

/** The trainer's log lines to `say`, its "trial 3/10: ..." lines also as steps. */
function trainerLines(
  say: (line: string) => void,
  step: (s: CycleStep) => void,
): (line: string) => void {
  return (l) => {
    say(l);
    const trial = /\btrial (\d+)\/(\d+)/.exec(l); // the trainer: "trial 3/10: map@12=..."
    if (trial) {
      step({
        stage: 'train',
        label: 'optuna trials',
        done: Number(trial[1]),
        total: Number(trial[2]),
      });
    }
  };
}

/**
 * Register the shipped model with the recipe and the gate's evidence (every candidate is
 * registered), and promote it (training/promote.ts: activate it, or start an experiment) when the
 * gate passed it, else mark it refused with the reason. Returns its version and the promotion.
 */
async function registerCandidate(
  deps: CycleDeps,
  fit: FitResult,
  recipe: Recipe,
  end: number,
): Promise<{ version: string; promotion: PromotionOutcome | null }> {
  const { shipped, gate } = fit;
  const version = shipped.meta.version;
  const meta = {
    ...shipped.meta,
    recipe: recipeRecord(recipe),
    trained_through: new Date(end).toISOString(),
    gate: { ...gate, trainer: fit.trainer },
  };
  const trust = deps.models?.trust ?? UNSIGNED_TRUST;
  await registerModel(
    deps.redis,
    deps.keys,
    { meta, bytes: shipped.bytes },
    { trust, ...(deps.models ? { keep: deps.models.keepVersions } : {}) },
  );
  if (gate.promoted) {
    // Verified before `active` moves (or the experiment starts): a candidate failing a check is
    // rejected, the cycle fails.
    const promotion = await promoteModel(deps.redis, deps.keys, version, {
      available: featureNames(deps.embeddings?.enabled ?? false),
      trust,
      ...(deps.promotion === undefined ? {} : { promotion: deps.promotion }),
    });
    return { version, promotion };
  }
  await rejectModel(deps.redis, deps.keys, version, gate.reason);
  return { version, promotion: null };
}

/** The cycle's result: the gate's decision, rows per part of the cycle, recall over the gate weeks. */
function cycleResult(
  version: string,
  promotion: PromotionOutcome | null,
  weeks: CycleWeeks,
  rows: RowsResult,
  fit: FitResult,
  timings: CycleResult['timings'],
): CycleResult {
  const { gate } = fit;
  const count = (keep: (c: number) => boolean) => rows.table.cutoff.filter(keep).length;
  const gateSet = new Set(weeks.gate);
  const trainSet = new Set(weeks.train);
  const gateSummaries = rows.perCutoff.filter((c) => gateSet.has(c.cutoff));
  return {
    version,
    promoted: gate.promoted,
    promotedAs: promotion?.as ?? null,
    experiment: promotion?.as === 'experiment' ? promotion.experiment.name : null,
    reason: gate.reason,
    weeks,
    gate,
    candidateRecall: pooledRecall(gateSummaries) ?? rows.candidateRecall,
    rows: {
      train: count((c) => trainSet.has(c)),
      validation: count((c) => c === weeks.validation),
      gate: count((c) => gateSet.has(c)),
      gateQueries: gateSummaries.reduce((n, c) => n + c.queries, 0),
    },
    timings,
  };
}

/** Candidate recall pooled over cutoffs (label pairs weighted); null for none. */
export function pooledRecall(
  summaries: readonly { labelPairs: number; candidateRecall: CandidateRecall }[],
): CandidateRecall | null {
  const pairs = summaries.reduce((n, s) => n + s.labelPairs, 0);
  if (pairs === 0) return null;
  const out: Record<string, number> = {};
  for (const s of summaries) {
    for (const [k, v] of Object.entries(s.candidateRecall)) {
      out[k] = (out[k] ?? 0) + (v * s.labelPairs) / pairs;
    }
  }
  return out as CandidateRecall;
}
