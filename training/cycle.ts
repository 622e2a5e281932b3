/**
 * One training cycle: choose weekly cutoffs from the purchases topic, build point-in-time rows by
 * replaying the topics into an isolated namespace, train LightGBM LambdaRank in Python
 * (training/train.py: Optuna search, ONNX export, parity check), evaluate the candidate, the
 * active model and the baselines on the same validation rows, and promote only a candidate that
 * is at least as good as the active model and better than the best baseline. Every candidate is
 * registered; a refused one stays listed with the reason.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kafka } from 'kafkajs';
import type { Redis } from 'ioredis';
import type { Codecs } from '../streams/bootstrap.ts';
import { DAY_MS } from '../streams/features/decay.ts';
import { keySpace, type KeySpace } from '../streams/features/keys.ts';
import { deleteNamespace } from '../streams/features/state.ts';
import type { Logger } from '../streams/logger.ts';
import type { Topics } from '../streams/topics.ts';
import { FEATURE_NAMES } from '../streams/features/definitions.ts';
import { checkModel, loadModel } from '../serving/model/metadata.ts';
import {
  activateModel,
  activeVersion,
  readModel,
  registerModel,
  rejectModel,
} from '../serving/model/registry.ts';
import { mapAtK } from './metrics.ts';
import { buildTrainingRows, writeRows, type CandidateRecall, type RowTable } from './rows.ts';
import { filterTable, rankByQuery, runPython, scoreOnnx } from './steps.ts';
import { ensurePythonEnv } from './venv.ts';

/** Weekly training cutoffs before the validation week (measured in the backtest, README). */
export const DEFAULT_TRAIN_WEEKS = 12;
/**
 * Least trees per model: early stopping on one validation week of a small shop often stops after
 * a few trees (the backtest on the H&M sample measured better MAP@12 with a floor).
 */
export const DEFAULT_MIN_ROUNDS = 300;

export interface CycleDeps {
  kafka: Kafka;
  redis: Redis;
  codecs: Codecs;
  topics: Topics;
  /** The live key space: its model registry receives the candidate. */
  keys: KeySpace;
  logger: Logger;
}

export interface CycleOptions {
  /** Weekly training cutoffs before the validation cutoff (default `DEFAULT_TRAIN_WEEKS`). */
  trainWeeks?: number;
  /** Validation cutoff (ms); default: the last full week of the topic. */
  validationCutoff?: number;
  trials?: number;
  seed?: number;
  /** Least trees when early stopping stops sooner (default 300; see train.py `--min-rounds`). */
  minRounds?: number;
  /** Other customers with history scored per training cutoff (negatives only). */
  sampleOthers?: number;
  /** Where to keep rows and model files (default: a temporary folder, removed after). */
  workDir?: string;
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
  reason: string;
  cutoffs: { train: number[]; validation: number };
  map12: Record<string, number>;
  candidateRecall: CandidateRecall;
  rows: { train: number; validation: number; validationQueries: number };
  timings: { rowsMs: number; trainMs: number; evaluateMs: number; totalMs: number };
}

/**
 * The promotion gate: a candidate is promoted only if its validation MAP@12 is above the best
 * baseline's and at least the active model's on the same rows (when there is one to compare).
 */
export function promotionDecision(
  map12: Readonly<Record<string, number>>,
  activeVersionName: string | null = null,
): { promoted: boolean; reason: string } {
  const ranker = map12.ranker ?? NaN;
  const baselines = Object.entries(map12).filter(([k]) => k !== 'ranker' && k !== 'active');
  const [bestName, best] = baselines.reduce<[string, number]>(
    (acc, [k, v]) => (v > acc[1] ? [k, v] : acc),
    ['none', -Infinity],
  );
  if (!(ranker > best)) {
    return {
      promoted: false,
      reason: `MAP@12 ${ranker.toFixed(5)} is not above the best baseline (${bestName}) ${best.toFixed(5)}`,
    };
  }
  const active = map12.active;
  if (active !== undefined && ranker < active) {
    return {
      promoted: false,
      reason: `MAP@12 ${ranker.toFixed(5)} is below the active model ${activeVersionName ?? ''}'s ${active.toFixed(5)} on the same rows`,
    };
  }
  return {
    promoted: true,
    reason: `MAP@12 ${ranker.toFixed(5)} >= active ${active?.toFixed(5) ?? '(none)'} and > best baseline (${bestName}) ${best.toFixed(5)}`,
  };
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

/** MAP@12 of a per-row score over the queries of `table`; relevant sets are full label weeks. */
function mapOf(
  table: RowTable,
  scores: ArrayLike<number>,
  relevantByQid: Map<number, ReadonlySet<string>>,
): number {
  const ranked: string[][] = [];
  const relevant: ReadonlySet<string>[] = [];
  for (const [q, { articles }] of rankByQuery(table, scores)) {
    ranked.push(articles);
    relevant.push(relevantByQid.get(q) ?? new Set());
  }
  return mapAtK(ranked, relevant, 12);
}

/** Run one cycle; resolves with what was trained and whether it was promoted. */
export async function runCycle(deps: CycleDeps, opts: CycleOptions = {}): Promise<CycleResult> {
  const t0 = performance.now();
  const say = opts.onProgress ?? (() => undefined);
  const latest = await latestEventTime(deps.kafka, deps.topics.purchases.name);
  if (latest === null) {
    throw new Error(`too little data: ${deps.topics.purchases.name} holds no purchases`);
  }
  // Validation = the last full week: [V, V + 7d) ends at the end of the last day with data.
  const lastDayEnd = Math.floor(latest / DAY_MS) * DAY_MS + DAY_MS;
  const validation = opts.validationCutoff ?? lastDayEnd - 7 * DAY_MS;
  const weeks = opts.trainWeeks ?? DEFAULT_TRAIN_WEEKS;
  const train = Array.from({ length: weeks }, (_, i) => validation - (weeks - i) * 7 * DAY_MS);
  if (validation + 7 * DAY_MS > lastDayEnd) {
    throw new Error(
      `too little data: no full week of purchases after the validation cutoff ${new Date(validation).toISOString()}`,
    );
  }
  const work = opts.workDir ?? join(tmpdir(), `rec-train-${randomUUID().slice(0, 8)}`);
  mkdirSync(work, { recursive: true });
  const namespace = `train-${randomUUID().slice(0, 8)}`;
  const relevantByQid = new Map<number, ReadonlySet<string>>();
  try {
    say(
      `cutoffs: train ${train.map((c) => new Date(c).toISOString().slice(0, 10)).join(', ')}; validation ${new Date(validation).toISOString().slice(0, 10)}`,
    );
    let lastStage = '';
    const step = opts.onStep ?? (() => undefined);
    const day = (i: number) => new Date([...train, validation][i] ?? 0).toISOString().slice(0, 10);
    let cutoffIndex = 0; // the cutoff being built: advanced when its queries are done
    const metaRead = new Map<string, readonly [number, number]>(); // articles, customers: read, total
    const rows = await buildTrainingRows(deps, {
      cutoffs: [...train, validation],
      namespace,
      liveNamespace: deps.keys.ns,
      ...(opts.sampleOthers
        ? { customerSample: { others: opts.sampleOthers, seed: opts.seed ?? 42 } }
        : {}),
      onProgress: (stage, done, total) => {
        if (stage !== lastStage || done === total) say(`rows: ${stage} ${done}/${total}`);
        lastStage = stage;
        if (stage === 'labels') step({ stage: 'replay', label: 'label weeks', done, total });
        else if (stage === 'articles' || stage === 'customers') {
          // Replayed concurrently: one counter for both.
          metaRead.set(stage, [done, total]);
          const sum = [...metaRead.values()].reduce((a, [d, t]) => [a[0] + d, a[1] + t], [0, 0]);
          step({
            stage: 'replay',
            label: `metadata <= ${day(cutoffIndex)}`,
            done: sum[0],
            total: sum[1],
          });
        } else if (stage === 'purchases') {
          step({ stage: 'replay', label: `purchases < ${day(cutoffIndex)}`, done, total });
        } else if (stage === 'queries') {
          step({ stage: 'rows', label: `customers at ${day(cutoffIndex)}`, done, total });
          if (done === total) {
            cutoffIndex++;
            metaRead.clear();
          }
        }
      },
      onQuery: (q) => relevantByQid.set(q.qid, q.labels),
    }).catch((err: unknown) => {
      // A training week before the data starts: the advice is fewer weeks, not another cutoff.
      const msg = err instanceof Error ? err.message : String(err);
      if (/no purchases (in \[|before )/.test(msg) && train.length > 1) {
        throw new Error(
          `too little data for ${weeks} training weeks before ${new Date(validation).toISOString().slice(0, 10)}: ${msg.replace(/: choose an? (earlier|later) cutoff/, '')}; use fewer --weeks`,
          { cause: err },
        );
      }
      throw err;
    });
    const rowsMs = performance.now() - t0;
    const trainTable = filterTable(rows.table, (c) => c < validation);
    const validTable = filterTable(rows.table, (c) => c === validation);
    const trainPath = join(work, 'train.arrow');
    const validPath = join(work, 'valid.arrow');
    await writeRows(trainPath, trainTable, { cutoffs: train });
    await writeRows(validPath, validTable, { cutoffs: [validation] });
    say(
      `rows: ${trainTable.length} training, ${validTable.length} validation (candidate recall ${rows.candidateRecall.overall.toFixed(3)})`,
    );

    const t1 = performance.now();
    const python = ensurePythonEnv(say);
    const outDir = join(work, 'model');
    const trials = opts.trials ?? 10;
    step({ stage: 'train', label: 'optuna trials', done: 0, total: trials });
    const stdout = await runPython(
      python,
      [
        'training/train.py',
        '--rows',
        trainPath,
        '--valid',
        validPath,
        '--out',
        outDir,
        '--trials',
        String(trials),
        '--seed',
        String(opts.seed ?? 42),
        '--min-rounds',
        String(opts.minRounds ?? DEFAULT_MIN_ROUNDS),
      ],
      (l) => {
        say(l);
        const trial = /\btrial (\d+)\/(\d+)/.exec(l); // train.py: "trial 3/10: map@12=..."
        if (trial) {
          step({
            stage: 'train',
            label: 'optuna trials',
            done: Number(trial[1]),
            total: Number(trial[2]),
          });
        }
      },
    );
    const trainMs = performance.now() - t1;
    const model = await loadModel(
      join(outDir, 'model.onnx'),
      join(outDir, 'model.json'),
      FEATURE_NAMES,
    );
    const version = model.meta.version;

    // Evaluate everything on the same validation rows.
    const t2 = performance.now();
    const map12: Record<string, number> = {};
    map12.ranker = mapOf(
      validTable,
      await scoreOnnx(validTable, model.bytes, model.meta.features),
      relevantByQid,
    );
    const pop = validTable.feature('a_pop_7d');
    map12.popular = mapOf(
      validTable,
      Array.from(pop, (v) => (Number.isNaN(v) ? 0 : v)),
      relevantByQid,
    );
    const bought = validTable.feature('p_units_bought');
    map12.repurchase_popular = mapOf(
      validTable,
      Array.from(
        pop,
        (v, i) => ((bought[i] ?? 0) > 0 ? 1e9 + (bought[i] ?? 0) : 0) + (Number.isNaN(v) ? 0 : v),
      ),
      relevantByQid,
    );
    const activeV = await activeVersion(deps.redis, deps.keys);
    if (activeV !== null && activeV !== version) {
      const active = await readModel(deps.redis, deps.keys, activeV);
      if (active !== null) {
        try {
          const checked = await checkModel(active.meta, active.bytes, FEATURE_NAMES);
          map12.active = mapOf(
            validTable,
            await scoreOnnx(validTable, checked.bytes, checked.meta.features),
            relevantByQid,
          );
        } catch (err) {
          say(
            `active model ${activeV} cannot be scored on these rows (${err instanceof Error ? err.message : String(err)}); it does not gate`,
          );
        }
      }
    }
    const evaluateMs = performance.now() - t2;

    // Promotion gate.
    const { promoted, reason } = promotionDecision(map12, activeV);
    const meta = {
      ...model.meta,
      gate: {
        map12,
        promoted,
        reason,
        trainer: JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as unknown,
      },
    };
    await registerModel(deps.redis, deps.keys, { meta, bytes: model.bytes });
    if (promoted) await activateModel(deps.redis, deps.keys, version);
    else await rejectModel(deps.redis, deps.keys, version, reason);
    say(`${promoted ? 'promoted' : 'refused'} ${version}: ${reason}`);
    return {
      version,
      promoted,
      reason,
      cutoffs: { train, validation },
      map12,
      candidateRecall: rows.perCutoff.at(-1)?.candidateRecall ?? rows.candidateRecall,
      rows: {
        train: trainTable.length,
        validation: validTable.length,
        validationQueries: new Set(validTable.qid).size,
      },
      timings: { rowsMs, trainMs, evaluateMs, totalMs: performance.now() - t0 },
    };
  } finally {
    await deleteNamespace(deps.redis, keySpace(namespace)).catch(() => undefined);
    if (opts.workDir === undefined) rmSync(work, { recursive: true, force: true });
  }
}
