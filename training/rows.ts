/**
 * Point-in-time training rows: for each cutoff, the candidates serving would have generated for a
 * customer at that instant, the feature vectors serving would have scored, and a label saying
 * whether the customer bought the article in the week after.
 *
 * State at a cutoff is rebuilt by REPLAYING the topics through the processors' own writers
 * (processors/writers.ts: metadata upserts, `PurchaseProcessor`, the taste processor) into an
 * isolated Redis namespace, never the live one; candidates come from serving's
 * `gatherCandidates` and features from the shared `featureVector` at now = cutoff, so a row is
 * what `explain=true` would have shown.
 *
 * Intervals (all event time, ms; half-open like `replay`):
 *  - state at cutoff c = purchases with event_time < c, metadata records with updated_at <= c;
 *  - labels of c       = purchases with event_time in [c, c + labelWindowMs) (default 7 days).
 *  The label window starts AT the cutoff so that every purchase is either history or label:
 *  the H&M loader stamps the first purchase of a day at exactly 00:00:00.000, and with a midnight
 *  cutoff a window (c, c + 7d] would drop it from both sides and take the next week's first
 *  purchase instead. A cutoff at D+1 00:00 UTC = "history up to and including day D, labels the
 *  7 days from D+1" (the Kaggle split).
 *
 * Incremental replay over ascending cutoffs c_0 < c_1 < ...: the namespace is deleted, then for
 * each c_i the metadata records with updated_at in (c_{i-1}, c_i] and the purchases with
 * event_time in [c_{i-1}, c_i) (from 0 for i = 0) are replayed and applied with their Kafka
 * partition and offset, then the customers of c_i are scored. Purchases are applied in chunks of
 * the partitions merged by event time (`replay`'s `eventTimeChunk`, streams/merge.ts): each UTC
 * day's purchases cut into chunks of 10,000 from the day's start. Each partition stays in offset
 * order, so the processor's guards see what a live consumer would, and the order and the chunks
 * depend neither on fetch timing nor on the other cutoffs (a cutoff at midnight is a chunk boundary
 * anyway), so the state at a midnight cutoff, and its rows, are the same whichever other cutoffs a
 * build stops at (the trimmed co-purchase and trending sets depend on the chunks). Caveats:
 *  - Late events: the article, co-purchase and trending scripts skip offsets at or below the
 *    highest offset they applied per partition. Purchases are published in event-time order, so an
 *    event of [c_{i-1}, c_i) always sits after every event applied for earlier cutoffs and the
 *    incremental state equals a from-scratch replay. An event published late (after an event of a
 *    later interval on the same partition) is applied to its customer but skipped by those slot
 *    scripts; such events are counted (`lateEvents`) and logged. A from-scratch replay per cutoff
 *    would be exact, at a cost growing with the number of cutoffs. One published more than the
 *    dedup horizon after later events of its customer is dead-lettered by the live processors
 *    (REC_ERR_LATE_EVENT) but applied here, in its interval, before those later events.
 *  - Re-published copies (the same dataset loaded twice): each event is applied once, its first
 *    record; the others are dropped and counted (`duplicates`). All copies of an event share its
 *    event time, so they fall in one interval and the ids of one interval suffice.
 *  - Metadata of an interval is applied before its purchases (as the live processors catch up on
 *    metadata first): a purchase made before a catalogue update in the same interval sees the
 *    updated categories. With the loader's metadata (updated_at = the first purchase's time) there
 *    is nothing in between.
 *  - The first purchases replay reads the topic from its start to its end offsets and indexes
 *    where each later interval's purchases lie (streams/offset-index.ts); each later replay reads
 *    only that span of each partition, skipping records of other intervals in it. So the build
 *    reads the purchases topic about once, not its tail once per cutoff, and applies the
 *    purchases the topic held when the first replay began (later ones are another build's).
 *
 * Customers scored at a cutoff: everyone with a purchase in its label window (cold customers
 * included: serving answers them with trending; beyond `labelCustomers`, the sample the judge
 * keeps, evaluation/label-sample.ts), plus, optionally, a deterministic sample of other customers
 * with history before the cutoff and no purchase in the window (negatives only). One query id per
 * (customer, cutoff); the rows of a query are contiguous, in serving's candidate order.
 */
import { createWriteStream, renameSync, rmSync, statSync } from 'node:fs';
import { once } from 'node:events';
import {
  Field,
  Float32,
  Int64,
  Int8,
  RecordBatch,
  RecordBatchFileWriter,
  Schema,
  Struct,
  Utf8,
  makeData,
  vectorFromArray,
} from 'apache-arrow';
import type { Kafka } from 'kafkajs';
import type { RedisClient } from '../common/redis.ts';
import type { Codecs } from '../streams/bootstrap.ts';
import type { DecodedRecord } from '../streams/consumer.ts';
import { DAY_MS } from '../features/decay.ts';
import { featureNames, featureVector } from '../features/definitions.ts';
import { keySpace, type KeySpace } from '../features/keys.ts';
import { deleteNamespace, emptyArticleState } from '../features/state.ts';
import { RecError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { buildCoBuyers } from '../processors/co-buyers.ts';
import { replay, type PartitionRange, type ReplayResult } from '../streams/replay.ts';
import { OffsetIndex } from '../streams/offset-index.ts';
import type { TopicDescriptor, Topics } from '../streams/topics.ts';
import type { AvroCodec } from '../streams/avro.ts';
import { OverlappedWrites } from '../common/overlapped.ts';
import type { Purchase } from '../schemas/events.ts';
import type { AppliedSteps, PurchaseProcessorOptions } from '../processors/purchases.ts';
import { createWriters, type Writers } from '../processors/writers.ts';
import { EMBEDDINGS_OFF, type EmbeddingsSwitch } from '../common/config.ts';
import { embeddingKeys } from '../features/embedding-keys.ts';
import {
  DEFAULT_CANDIDATE_CONFIG,
  SOURCES,
  withEmbeddings,
  gatherCandidates,
  type Candidate,
  type CandidateConfig,
  type CandidateSet,
  type Source,
} from '../serving/candidates/index.ts';
import { heuristicScores } from '../serving/ranking.ts';
import { labelSample, smallestHashes } from '../evaluation/label-sample.ts';
import { SeenEventIds } from '../streams/seen-ids.ts';

export const DEFAULT_LABEL_WINDOW_MS = 7 * DAY_MS;
/**
 * Purchases applied per processor call during the replay (about one kafkajs fetch of a partition),
 * at most: chunks also end at every UTC midnight.
 */
const PURCHASE_CHUNK = 10_000;
/** The live namespace's default; always refused as a training namespace. */
export const LIVE_NAMESPACE = 'rec';

export interface RowsDeps {
  readonly kafka: Kafka;
  readonly redis: RedisClient;
  readonly codecs: Codecs;
  readonly topics: Topics;
  readonly logger: Logger;
  /**
   * The deployment's embeddings switch (config `embeddings`; default off): on, the taste processor
   * replays too, the rows carry the embedding features and the `similar` source takes part.
   * Article vectors are read from `embeddings.namespace`, else `liveNamespace`, else `rec`.
   */
  readonly embeddings?: EmbeddingsSwitch;
}

export type RowsStage = 'labels' | 'articles' | 'customers' | 'purchases' | 'queries' | 'write';

/** What `onQuery` receives: one query's candidates and their features as doubles (before float32). */
export interface QueryInfo {
  readonly qid: number;
  readonly cutoff: number;
  readonly customerId: string;
  readonly candidates: readonly Candidate[];
  /** One vector per candidate, in the row table's feature order, as `featureVector` returned it. */
  readonly features: readonly (readonly number[])[];
  /** Articles the customer bought in the label window. */
  readonly labels: ReadonlySet<string>;
}

export interface RowsOptions {
  /** Cutoffs (ms since the epoch), strictly ascending. */
  readonly cutoffs: readonly number[];
  /** Isolated Redis key namespace for the rebuilt state (deleted first); never the live one. */
  readonly namespace: string;
  /** Also refused as `namespace` (besides `rec`): the deployment's live namespace. */
  readonly liveNamespace?: string;
  /**
   * Most buyers of a label week scored (default all): beyond it, the sample of
   * evaluation/label-sample.ts, the one the judge keeps (the recipe's `labelCustomers`).
   */
  readonly labelCustomers?: number;
  /** Score this many other customers with history before each cutoff (default none). */
  readonly customerSample?: { readonly others: number; readonly seed: number };
  /** Overrides of serving's candidate configuration (use the deployment's). */
  readonly candidateConfig?: Partial<CandidateConfig>;
  /** Overrides of the processors' options (use the deployment's). */
  readonly processorOptions?: Partial<PurchaseProcessorOptions>;
  /**
   * Purchase batches applied at once during the replays (default `PURCHASE_BATCHES_IN_FLIGHT`;
   * one with embeddings on); `npm run bench:replay` measures 1 against the default.
   */
  readonly purchaseBatchesInFlight?: number;
  /** Label window after each cutoff (ms, default 7 days). */
  readonly labelWindowMs?: number;
  /** Write the rows there (Arrow IPC file, see `writeRows`). */
  readonly path?: string;
  /** Queries gathered concurrently (default 8). */
  readonly concurrency?: number;
  readonly onProgress?: (stage: RowsStage, done: number, total: number) => void;
  /** Called for every query with rows, in qid order (analysis, tests). */
  readonly onQuery?: (q: QueryInfo) => void;
}

/** Candidate recall: share of label (customer, article) pairs among the candidates, per source. */
export type CandidateRecall = { overall: number } & Record<Exclude<Source, 'similar'>, number> & {
    similar?: number; // EMBEDDINGS=on only
  };

export interface CutoffSummary {
  readonly cutoff: number;
  /** Customers scored: label-window customers plus the sampled others. */
  readonly customers: number;
  /** Label-window customers scored (at most `labelCustomers`). */
  readonly labelCustomers: number;
  /** Label-window customers left out by the sample (`labelCustomers`). */
  readonly labelCustomersLeftOut: number;
  readonly sampledCustomers: number;
  /** Label-window customers without any purchase before the cutoff. */
  readonly coldCustomers: number;
  /** Queries with at least one row. */
  readonly queries: number;
  readonly rows: number;
  readonly positives: number;
  /** Distinct (customer, article) pairs bought in the label window. */
  readonly labelPairs: number;
  readonly candidateRecall: CandidateRecall;
  /** Purchases applied to reach this cutoff's state (this interval only). */
  readonly purchasesApplied: number;
}

export interface RowsResult {
  readonly rows: number;
  readonly queries: number;
  readonly positives: number;
  readonly labelPairs: number;
  readonly perCutoff: readonly CutoffSummary[];
  /** Over every cutoff (pooled pairs). */
  readonly candidateRecall: CandidateRecall;
  /** Events applied out of per-partition offset order across intervals (see the module comment). */
  readonly lateEvents: number;
  /** Re-published copies of purchases dropped (each event applied once, its first record). */
  readonly duplicates: number;
  readonly timings: {
    readonly labelsMs: number;
    readonly metadataMs: number;
    readonly purchasesMs: number;
    /** The co-buyer build at each cutoff (processors/co-buyers.ts). */
    readonly coBuyersMs: number;
    readonly queriesMs: number;
    readonly writeMs: number;
    readonly totalMs: number;
  };
  /** The rows themselves (columnar). */
  readonly table: RowTable;
  readonly path?: string;
}

// ---- columnar rows --------------------------------------------------------------------------------

export interface Row {
  readonly qid: number;
  readonly customerId: string;
  readonly articleId: string;
  readonly cutoff: number;
  readonly label: 0 | 1;
  /** Comma-joined candidate sources. */
  readonly sources: string;
  /** In the table's feature order; stored as float32 (NaN = missing). */
  readonly values: readonly number[];
  /** Serving's `heuristic-v2` score of the candidate (not a feature: the baseline it is judged against). */
  readonly heuristic?: number;
}

/** Training rows held column by column (a Float32Array per feature), growing by doubling. */
export class RowTable {
  readonly features: readonly string[];
  length = 0;
  private capacity: number;
  private qids: Float64Array;
  private cutoffs: Float64Array;
  private labels: Int8Array;
  private heuristics: Float32Array;
  private readonly customers: string[] = [];
  private readonly articles: string[] = [];
  private readonly sourceList: string[] = [];
  private values: Float32Array[];

  constructor(features: readonly string[], capacity = 4096) {
    this.features = [...features];
    this.capacity = Math.max(1, capacity);
    this.qids = new Float64Array(this.capacity);
    this.cutoffs = new Float64Array(this.capacity);
    this.labels = new Int8Array(this.capacity);
    this.heuristics = new Float32Array(this.capacity);
    this.values = this.features.map(() => new Float32Array(this.capacity));
  }

  push(row: Row): void {
    if (row.values.length !== this.features.length) {
      throw new Error(`row has ${row.values.length} values for ${this.features.length} features`);
    }
    if (this.length === this.capacity) this.grow();
    const i = this.length++;
    this.qids[i] = row.qid;
    this.cutoffs[i] = row.cutoff;
    this.labels[i] = row.label;
    this.heuristics[i] = row.heuristic ?? NaN;
    this.customers.push(row.customerId);
    this.articles.push(row.articleId);
    this.sourceList.push(row.sources);
    row.values.forEach((v, j) => {
      (this.values[j] as Float32Array)[i] = v;
    });
  }

  private grow(): void {
    this.capacity *= 2;
    const bigger = <A extends Float64Array | Int8Array | Float32Array>(a: A, make: () => A): A => {
      const b = make();
      b.set(a);
      return b;
    };
    this.qids = bigger(this.qids, () => new Float64Array(this.capacity));
    this.cutoffs = bigger(this.cutoffs, () => new Float64Array(this.capacity));
    this.labels = bigger(this.labels, () => new Int8Array(this.capacity));
    this.heuristics = bigger(this.heuristics, () => new Float32Array(this.capacity));
    this.values = this.values.map((v) => bigger(v, () => new Float32Array(this.capacity)));
  }

  get qid(): Float64Array {
    return this.qids.subarray(0, this.length);
  }
  get cutoff(): Float64Array {
    return this.cutoffs.subarray(0, this.length);
  }
  get label(): Int8Array {
    return this.labels.subarray(0, this.length);
  }
  /** Serving's heuristic score per row (NaN where none was computed). */
  get heuristic(): Float32Array {
    return this.heuristics.subarray(0, this.length);
  }
  get customerId(): readonly string[] {
    return this.customers;
  }
  get articleId(): readonly string[] {
    return this.articles;
  }
  get sources(): readonly string[] {
    return this.sourceList;
  }
  /** The float32 column of one feature (a view, `length` long). */
  feature(name: string): Float32Array {
    const j = this.features.indexOf(name);
    if (j < 0) throw new Error(`unknown feature column "${name}"`);
    return (this.values[j] as Float32Array).subarray(0, this.length);
  }
}

export interface RowsMeta {
  readonly cutoffs: readonly number[];
  readonly labelWindowMs?: number;
  /** More schema metadata (string values). */
  readonly extra?: Readonly<Record<string, string>>;
}

const BATCH_ROWS = 65_536;

/**
 * Write rows to an Arrow IPC file (Feather v2): `qid` int64, `customer_id` utf8, `article_id` utf8,
 * `cutoff` int64 (ms), `label` int8, one float32 column per feature (NaN = missing), `sources` utf8,
 * `heuristic` float32 (serving's heuristic score, not a feature);
 * schema metadata `features` and `cutoffs` (JSON arrays), `label_window_ms`. Record batches of at
 * most 65,536 rows, streamed to a temporary file renamed into place when complete.
 */
export async function writeRows(
  path: string,
  rows: RowTable,
  meta: RowsMeta,
): Promise<{ path: string; rows: number; bytes: number }> {
  const schema = rowsSchema(rows, meta);
  const tmp = `${path}.tmp-${process.pid}`;
  const out = createWriteStream(tmp);
  const writer = new RecordBatchFileWriter();
  const piped = writer.toNodeStream().pipe(out);
  try {
    writer.reset(undefined, schema);
    const total = rows.length;
    const features = rows.features.map((f) => rows.feature(f));
    // An empty table still gets one (empty) batch.
    for (let start = 0; start < total || (start === 0 && total === 0); start += BATCH_ROWS) {
      const end = Math.min(total, start + BATCH_ROWS);
      writer.write(recordBatch(schema, rows, features, start, end));
      if (total === 0) break;
    }
    writer.finish();
    await once(piped, 'finish');
    renameSync(tmp, path);
  } catch (err) {
    out.destroy();
    rmSync(tmp, { force: true });
    throw err;
  }
  return { path, rows: rows.length, bytes: statSync(path).size };
}

/** The Arrow schema of `writeRows`: its columns, in order, and its metadata. */
function rowsSchema(rows: RowTable, meta: RowsMeta): Schema {
  const fields = [
    new Field('qid', new Int64(), false),
    new Field('customer_id', new Utf8(), false),
    new Field('article_id', new Utf8(), false),
    new Field('cutoff', new Int64(), false),
    new Field('label', new Int8(), false),
    ...rows.features.map((f) => new Field(f, new Float32(), false)),
    new Field('sources', new Utf8(), false),
    new Field('heuristic', new Float32(), false),
  ];
  const metadata = new Map<string, string>([
    ['features', JSON.stringify(rows.features)],
    ['cutoffs', JSON.stringify(meta.cutoffs)],
    ['label_window_ms', String(meta.labelWindowMs ?? DEFAULT_LABEL_WINDOW_MS)],
    ...Object.entries(meta.extra ?? {}),
  ]);
  return new Schema(fields, metadata);
}

/** Rows [start, end) of `rows` as one record batch of `schema` (`features`: the float32 columns). */
function recordBatch(
  schema: Schema,
  rows: RowTable,
  features: readonly Float32Array[],
  start: number,
  end: number,
): RecordBatch {
  const length = end - start;
  const int64 = (src: Float64Array) => {
    const out = new BigInt64Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = BigInt(src[i] as number);
    return out;
  };
  const utf8 = (values: readonly string[]) => {
    const d = vectorFromArray(values, new Utf8()).data;
    if (d.length !== 1 || !d[0]) throw new Error('unexpected chunking of a utf8 column');
    return d[0];
  };
  const children = [
    makeData({
      type: new Int64(),
      length,
      nullCount: 0,
      data: int64(rows.qid.subarray(start, end)),
    }),
    utf8(rows.customerId.slice(start, end)),
    utf8(rows.articleId.slice(start, end)),
    makeData({
      type: new Int64(),
      length,
      nullCount: 0,
      data: int64(rows.cutoff.subarray(start, end)),
    }),
    makeData({ type: new Int8(), length, nullCount: 0, data: rows.label.slice(start, end) }),
    ...features.map((col) =>
      makeData({ type: new Float32(), length, nullCount: 0, data: col.slice(start, end) }),
    ),
    utf8(rows.sources.slice(start, end)),
    makeData({
      type: new Float32(),
      length,
      nullCount: 0,
      data: rows.heuristic.slice(start, end),
    }),
  ];
  const data = makeData({ type: new Struct(schema.fields), length, nullCount: 0, children });
  return new RecordBatch(schema, data);
}

// ---- building rows ----------------------------------------------------------------------------

interface LabelEvent {
  readonly customer: string;
  readonly article: string;
  readonly time: number;
}

const iso = (t: number): string => new Date(t).toISOString();

function configError(message: string): RecError {
  return new RecError('REC_ERR_CONFIG', message);
}

function validate(opts: RowsOptions): { keys: KeySpace; windowMs: number } {
  const ns = opts.namespace;
  if (ns === LIVE_NAMESPACE || (opts.liveNamespace !== undefined && ns === opts.liveNamespace)) {
    throw configError(
      `namespace "${ns}" is the live feature store: training rebuilds state in an isolated namespace (e.g. "train-<id>") and deletes it first`,
    );
  }
  let keys: KeySpace;
  try {
    keys = keySpace(ns);
  } catch (err) {
    throw configError(
      `invalid training namespace "${ns}" (letters, digits, _ . - only): ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const { cutoffs } = opts;
  if (cutoffs.length === 0) throw configError('at least one cutoff is needed');
  cutoffs.forEach((c, i) => {
    if (!Number.isSafeInteger(c) || c <= 0) {
      throw configError(`cutoff ${i} must be a positive integer in ms (got ${c})`);
    }
    const prev = cutoffs[i - 1];
    if (prev !== undefined && c <= prev) {
      throw configError(`cutoffs must be strictly ascending (${iso(prev)} then ${iso(c)})`);
    }
  });
  const windowMs = opts.labelWindowMs ?? DEFAULT_LABEL_WINDOW_MS;
  if (!Number.isSafeInteger(windowMs) || windowMs <= 0) {
    throw configError(`labelWindowMs must be a positive integer (got ${windowMs})`);
  }
  const max = opts.labelCustomers;
  if (max !== undefined && !(Number.isInteger(max) && max >= 1)) {
    throw configError(`labelCustomers must be a positive integer (got ${max})`);
  }
  const others = opts.customerSample?.others ?? 0;
  if (!Number.isInteger(others) || others < 0) {
    throw configError(`customerSample.others must be a non-negative integer (got ${others})`);
  }
  return { keys, windowMs };
}

class RecallCounter {
  pairs = 0;
  hits = 0;
  readonly bySource: Record<Source, number> = {
    repurchase: 0,
    siblings: 0,
    copurchase: 0,
    similar: 0,
    trending_segment: 0,
    trending_global: 0,
  };

  add(labels: ReadonlySet<string>, candidates: readonly Candidate[]): void {
    this.pairs += labels.size;
    for (const c of candidates) {
      if (!labels.has(c.articleId)) continue;
      this.hits++;
      for (const s of c.sources) this.bySource[s]++;
    }
  }

  merge(o: RecallCounter): void {
    this.pairs += o.pairs;
    this.hits += o.hits;
    for (const s of SOURCES) this.bySource[s] += o.bySource[s];
  }

  /** Recall overall and per source (`similar` only with embeddings on). */
  recall(embeddings: boolean): CandidateRecall {
    const r = (hits: number) => (this.pairs === 0 ? NaN : hits / this.pairs);
    return {
      overall: r(this.hits),
      repurchase: r(this.bySource.repurchase),
      siblings: r(this.bySource.siblings),
      copurchase: r(this.bySource.copurchase),
      trending_segment: r(this.bySource.trending_segment),
      trending_global: r(this.bySource.trending_global),
      ...(embeddings ? { similar: r(this.bySource.similar) } : {}),
    };
  }
}

/** The timings of `RowsResult`, but the total. */
type StepTimings = Omit<RowsResult['timings'], 'totalMs'>;

/** What every step of one `buildTrainingRows` call shares. */
interface RowsRun {
  readonly deps: RowsDeps;
  readonly opts: RowsOptions;
  readonly keys: KeySpace;
  readonly windowMs: number;
  /** `opts.cutoffs`, ascending. */
  readonly cutoffs: readonly number[];
  readonly config: CandidateConfig;
  readonly log: Logger;
  readonly timings: { -readonly [K in keyof StepTimings]: number };
  /** Run `f`, adding its wall time to `timings[what]`. */
  timed<T>(what: keyof StepTimings, f: () => Promise<T>): Promise<T>;
}

const seconds = (ms: number): string => (ms / 1000).toFixed(1);

/** Where the rows' time went, step by step, as the cycle and the backtest print it. */
export function describeRowTimings(t: RowsResult['timings']): string {
  return (
    `labels ${seconds(t.labelsMs)}, metadata ${seconds(t.metadataMs)}, ` +
    `purchases ${seconds(t.purchasesMs)}, co-buyer lists ${seconds(t.coBuyersMs)}, ` +
    `queries ${seconds(t.queriesMs)}, write ${seconds(t.writeMs)} s`
  );
}

/**
 * What the label weeks' sample left out, as the cycle and the backtest print it after the rows
 * (empty when every buyer was scored).
 */
export function describeLabelSample(perCutoff: readonly CutoffSummary[]): string {
  const sampled = perCutoff.filter((c) => c.labelCustomersLeftOut > 0);
  if (sampled.length === 0) return '';
  const kept = sampled.reduce((s, c) => s + c.labelCustomers, 0);
  const all = kept + sampled.reduce((s, c) => s + c.labelCustomersLeftOut, 0);
  return (
    `; ${sampled.length} of ${perCutoff.length} label weeks sampled (recipe labelCustomers): ` +
    `${kept} of their ${all} buyers scored`
  );
}

/** Build point-in-time training rows for `opts.cutoffs` (see the module comment). */
export async function buildTrainingRows(deps: RowsDeps, opts: RowsOptions): Promise<RowsResult> {
  const started = performance.now();
  const run = startRun(deps, opts);
  const labelsOf = await readLabels(run);

  // Clean slate.
  const deleted = await deleteNamespace(deps.redis, run.keys);
  if (deleted > 0) {
    run.log.info({ deleted }, 'deleted the previous state of the training namespace');
  }
  // The live processors' writers (EMBEDDINGS=on: the taste processor too, issue 7).
  const writers = createWriters(deps.redis, run.keys, {
    purchases: opts.processorOptions,
    tasteArticles: run.config.embeddings ? embeddingKeys(run.config.embeddingNamespace) : null,
    // The namespace is this run's alone (deleted above).
    soleWriter: true,
  });

  const table = new RowTable(featureNames(run.config.embeddings));
  const perCutoff: CutoffSummary[] = [];
  const total = new RecallCounter();
  const replayed = new ReplayState();
  for (const [ci, cutoff] of run.cutoffs.entries()) {
    await replayMetadata(run, writers, replayed, cutoff);
    const applied = await replayPurchases(run, writers, replayed, cutoff);
    // The co-buyer lists serving would have read at this instant (built from the state at it).
    await run.timed('coBuyersMs', () =>
      buildCoBuyers(deps.redis, run.keys, { now: cutoff, customers: replayed.history }),
    );
    const labels = labelsOf[ci] as Map<string, Set<string>>;
    const scored = customersToScore(labels, replayed.history, opts, cutoff);
    const queries = await addQueries(run, table, scored.customers, labels, cutoff);
    total.merge(queries.recall);
    const summary: CutoffSummary = {
      cutoff,
      customers: scored.customers.length,
      labelCustomers: scored.labelCustomers,
      labelCustomersLeftOut: labels.size - scored.labelCustomers,
      sampledCustomers: scored.sampledCustomers,
      coldCustomers: scored.coldCustomers,
      queries: queries.queries,
      rows: queries.rows,
      positives: queries.positives,
      labelPairs: queries.recall.pairs,
      candidateRecall: queries.recall.recall(run.config.embeddings),
      purchasesApplied: applied,
    };
    perCutoff.push(summary);
    run.log.info({ ...summary, cutoff: iso(cutoff) }, 'cutoff done');
  }

  const path = await writeIfAsked(run, table);
  const positives = perCutoff.reduce((s, c) => s + c.positives, 0);
  return {
    rows: table.length,
    queries: perCutoff.reduce((s, c) => s + c.queries, 0),
    positives,
    labelPairs: total.pairs,
    perCutoff,
    candidateRecall: total.recall(run.config.embeddings),
    lateEvents: replayed.lateEvents,
    duplicates: replayed.duplicates,
    timings: { ...run.timings, totalMs: performance.now() - started },
    table,
    ...(path === undefined ? {} : { path }),
  };
}

/** The checked options, serving's candidate configuration, the logger and the timers of a run. */
function startRun(deps: RowsDeps, opts: RowsOptions): RowsRun {
  const { keys, windowMs } = validate(opts);
  const embeddings = deps.embeddings ?? EMBEDDINGS_OFF;
  const config = withEmbeddings(
    {
      ...DEFAULT_CANDIDATE_CONFIG,
      // Article vectors where `npm run embed` wrote them, as serving reads them:
      // EMBEDDINGS_NAMESPACE, else the live namespace.
      embeddingNamespace: embeddings.namespace ?? opts.liveNamespace ?? LIVE_NAMESPACE,
      ...opts.candidateConfig,
    },
    embeddings.enabled,
  );
  const timings = {
    labelsMs: 0,
    metadataMs: 0,
    purchasesMs: 0,
    coBuyersMs: 0,
    queriesMs: 0,
    writeMs: 0,
  };
  return {
    deps,
    opts,
    keys,
    windowMs,
    cutoffs: [...opts.cutoffs],
    config,
    log: deps.logger.child({ module: 'training-rows', namespace: keys.ns }),
    timings,
    async timed(what, f) {
      const t0 = performance.now();
      try {
        return await f();
      } finally {
        timings[what] += performance.now() - t0;
      }
    },
  };
}

/**
 * The labels of every cutoff (customer -> articles bought in [c, c + window)), from one replay of
 * [first cutoff, last cutoff + window); a configuration error for a cutoff without any.
 */
async function readLabels(run: RowsRun): Promise<Map<string, Set<string>>[]> {
  const { deps, cutoffs, windowMs } = run;
  const first = cutoffs[0] as number;
  const last = cutoffs.at(-1) as number;
  const labelEvents: LabelEvent[] = [];
  await run.timed('labelsMs', () =>
    replay({
      kafka: deps.kafka,
      topic: deps.topics.purchases,
      codec: deps.codecs.purchases,
      from: first,
      to: last + windowMs,
      logger: deps.logger,
      onRecords: (records) => {
        for (const r of records) {
          // The record timestamp, as the state replays select by it (our producer stamps the
          // event time), so every purchase is either history or label of a cutoff.
          labelEvents.push({
            customer: r.value.customer_id,
            article: r.value.article_id,
            time: r.timestamp,
          });
        }
      },
      onProgress: (read, total) => run.opts.onProgress?.('labels', read, total),
    }),
  );
  const latest = labelEvents.reduce((m, e) => Math.max(m, e.time), -Infinity);
  return cutoffs.map((c) => {
    const byCustomer = new Map<string, Set<string>>();
    for (const e of labelEvents) {
      if (e.time < c || e.time >= c + windowMs) continue;
      const s = byCustomer.get(e.customer);
      if (s) s.add(e.article);
      else byCustomer.set(e.customer, new Set([e.article]));
    }
    if (byCustomer.size === 0) {
      throw configError(
        `no purchases in [${iso(c)}, ${iso(c + windowMs)}) to label cutoff ${iso(c)}: choose an earlier cutoff` +
          (Number.isFinite(latest)
            ? ` (the latest purchase on or after ${iso(first)} is at ${iso(latest)})`
            : ` (there is no purchase on or after ${iso(first)} in ${deps.topics.purchases.name})`),
      );
    }
    return byCustomer;
  });
}

/** What the incremental replay carries from one cutoff to the next (see the module comment). */
class ReplayState {
  /** Customers with a purchase applied so far (before the current cutoff). */
  readonly history = new Set<string>();
  /** Highest offset applied per partition, over previous intervals. */
  readonly appliedUpTo = new Map<number, bigint>();
  /** Purchases applied out of per-partition offset order across intervals. */
  lateEvents = 0;
  /** Re-published copies of a purchase (same event_id) dropped: the first record applies. */
  duplicates = 0;
  /** Start of the next metadata interval (updated_at), and of the next purchases interval. */
  metaFrom = 0;
  purchaseFrom = 0;
  /**
   * Where the first purchases replay, which reads the whole topic, found each later interval's
   * purchases, and the offsets it read: the later replays read only those spans.
   */
  index: { readonly offsets: OffsetIndex; readonly read: readonly PartitionRange[] } | null = null;
}

/** Metadata writes in flight per topic during a replay (measured on hm-sample's catalogue). */
const METADATA_WRITES_IN_FLIGHT = 4;
/**
 * Purchase batches in flight during a replay (docs/training.md, "At full size": three were no
 * faster than two).
 */
export const PURCHASE_BATCHES_IN_FLIGHT = 2;

/** Article and customer records with updated_at in (previous cutoff, cutoff], concurrently. */
async function replayMetadata(
  run: RowsRun,
  writers: Writers,
  replayed: ReplayState,
  cutoff: number,
): Promise<void> {
  const { deps } = run;
  const progress = run.opts.onProgress;
  const replayTopic = async <T>(
    label: 'articles' | 'customers',
    topic: TopicDescriptor<T>,
    codec: AvroCodec<T>,
    write: (records: readonly DecodedRecord<T>[]) => Promise<unknown>,
  ): Promise<void> => {
    const writes = new OverlappedWrites(METADATA_WRITES_IN_FLIGHT);
    try {
      await replay({
        kafka: deps.kafka,
        topic,
        codec,
        from: replayed.metaFrom,
        to: cutoff + 1,
        logger: deps.logger,
        onRecords: (records) => writes.add(() => write(records)),
        onProgress: (read, n) => progress?.(label, read, n),
      });
    } catch (err) {
      // Report the replay's failure, once its writes have settled.
      await writes.drain().catch(() => undefined);
      throw err;
    }
    await writes.drain();
  };
  await run.timed('metadataMs', () =>
    Promise.all([
      replayTopic('articles', deps.topics.articles, deps.codecs.articles, (r) =>
        writers.articles(r),
      ),
      replayTopic('customers', deps.topics.customers, deps.codecs.customers, (r) =>
        writers.customers(r),
      ),
    ]),
  );
  replayed.metaFrom = cutoff + 1;
}

/**
 * Purchases with event_time in [previous cutoff, cutoff), through the purchases (and taste)
 * processors; counts the late ones (see the module comment). Returns the purchases applied;
 * a configuration error when no purchase at all precedes the cutoff.
 */
async function replayPurchases(
  run: RowsRun,
  writers: Writers,
  replayed: ReplayState,
  cutoff: number,
): Promise<number> {
  const { deps } = run;
  const { history, appliedUpTo } = replayed;
  const before = new Map(appliedUpTo);
  let late = 0;
  // Every copy of an event has its event time, so all copies fall in the same interval: the ids
  // of this interval are enough to apply each event once (first record wins), as `npm run
  // replay` does. Applying a later copy would count it again and, since its offsets lie beyond
  // the next interval's first copies, make the customer's offset guard refuse those.
  const ids = new SeenEventIds();
  let applied = 0;
  // The first replay reads the topic from its start to its end and indexes the later intervals.
  const indexing = replayed.index === null ? new OffsetIndex(run.cutoffs) : null;
  const ranges = replayed.index?.offsets.ranges(replayed.purchaseFrom, cutoff, replayed.index.read);
  // Two batches in flight: the next one's scripts are built while Redis applies the last one's,
  // and each waits on the one before (`applyAfter`), so Redis runs them in the replay's order.
  // With embeddings on, one at a time.
  const writes = new OverlappedWrites(
    writers.taste ? 1 : (run.opts.purchaseBatchesInFlight ?? PURCHASE_BATCHES_IN_FLIGHT),
  );
  let steps: AppliedSteps | null = null;
  const write = (records: readonly DecodedRecord<Purchase>[]): Promise<unknown> => {
    const started = writers.purchases.applyAfter(records, steps);
    steps = started.steps;
    const { taste } = writers;
    return taste ? started.done.then(() => taste.apply(records)) : started.done;
  };
  const result = await run.timed('purchasesMs', async () => {
    let read: ReplayResult;
    try {
      read = await replay({
        kafka: deps.kafka,
        topic: deps.topics.purchases,
        codec: deps.codecs.purchases,
        from: replayed.purchaseFrom,
        to: cutoff,
        ...(ranges ? { ranges } : {}),
        ...(indexing ? { onRead: indexing.observe.bind(indexing) } : {}),
        logger: deps.logger,
        // One order and one cut whatever the fetch timing and the other cutoffs, so the state at
        // a (midnight) cutoff does not depend on how the build got there.
        eventTimeChunk: PURCHASE_CHUNK,
        eventTimePeriod: DAY_MS,
        onRecords: async (batch: readonly DecodedRecord<Purchase>[]) => {
          const records = batch.filter((r) => ids.add(r.value.event_id));
          replayed.duplicates += batch.length - records.length;
          if (records.length === 0) return;
          applied += records.length;
          for (const r of records) {
            history.add(r.value.customer_id);
            const offset = BigInt(r.offset);
            const prev = before.get(r.partition);
            if (prev !== undefined && offset <= prev) late++;
            const top = appliedUpTo.get(r.partition);
            if (top === undefined || offset > top) appliedUpTo.set(r.partition, offset);
          }
          await writes.add(() => write(records));
        },
        onProgress: (read, n) => run.opts.onProgress?.('purchases', read, n),
      });
    } catch (err) {
      // Report the replay's failure, once its writes have settled.
      await writes.drain().catch(() => undefined);
      throw err;
    }
    await writes.drain();
    return read;
  });
  if (indexing) replayed.index = { offsets: indexing, read: result.ranges };
  replayed.purchaseFrom = cutoff;
  if (late > 0) {
    replayed.lateEvents += late;
    run.log.warn(
      { cutoff: iso(cutoff), late },
      'purchases published after later events of their partition: applied to their customers, ' +
        'skipped by the article, co-purchase and trending scripts (offset guards)',
    );
  }
  if (history.size === 0) {
    throw configError(
      `no purchases before ${iso(cutoff)}: nothing to build features from; choose a later cutoff`,
    );
  }
  return applied;
}

/**
 * The customers scored at a cutoff: the label week's (sorted; at most `labelCustomers`, sampled as
 * the judge samples them), then the sampled others (sorted), who bought nothing that week.
 */
function customersToScore(
  labels: ReadonlyMap<string, ReadonlySet<string>>,
  history: ReadonlySet<string>,
  opts: Pick<RowsOptions, 'labelCustomers' | 'customerSample'>,
  cutoff: number,
): {
  customers: string[];
  labelCustomers: number;
  sampledCustomers: number;
  coldCustomers: number;
} {
  const labelCustomers = labelSample(labels.keys(), cutoff, opts.labelCustomers ?? Infinity);
  const sample = opts.customerSample;
  const sampled =
    sample && sample.others > 0
      ? smallestHashes(
          [...history].filter((c) => !labels.has(c)),
          sample.others,
          `${sample.seed}:${cutoff}`,
        ).sort()
      : [];
  return {
    customers: [...labelCustomers, ...sampled],
    labelCustomers: labelCustomers.length,
    sampledCustomers: sampled.length,
    coldCustomers: labelCustomers.filter((c) => !history.has(c)).length,
  };
}

/** The qid of the next query: one more than the table's last (0 for an empty table). */
function nextQid(table: RowTable): number {
  return table.length === 0 ? 0 : (table.qid[table.length - 1] as number) + 1;
}

/**
 * The rows of `customers` at `cutoff` into `table`: candidates and features at now = cutoff, in
 * batches of `opts.concurrency` customers; one query per customer with candidates.
 */
async function addQueries(
  run: RowsRun,
  table: RowTable,
  customers: readonly string[],
  labels: ReadonlyMap<string, ReadonlySet<string>>,
  cutoff: number,
): Promise<{ recall: RecallCounter; rows: number; positives: number; queries: number }> {
  const { redis } = run.deps;
  const concurrency = Math.max(1, run.opts.concurrency ?? 8);
  const recall = new RecallCounter();
  const counts = { rows: 0, positives: 0, queries: 0 };
  await run.timed('queriesMs', async () => {
    for (let i = 0; i < customers.length; i += concurrency) {
      const chunk = customers.slice(i, i + concurrency);
      const sets = await Promise.all(
        chunk.map((customerId) =>
          gatherCandidates(redis, run.keys, run.config, {
            customerId,
            filters: {},
            allowRepurchase: true,
          }),
        ),
      );
      chunk.forEach((customerId, j) => {
        const set = sets[j];
        if (!set) throw new Error('gatherCandidates returned nothing');
        const bought = labels.get(customerId) ?? new Set<string>();
        recall.add(bought, set.candidates);
        if (set.candidates.length === 0) return;
        const positives = addQuery(run, table, { customerId, cutoff, set, bought });
        counts.rows += set.candidates.length;
        counts.positives += positives;
        counts.queries++;
      });
      run.opts.onProgress?.(
        'queries',
        Math.min(i + concurrency, customers.length),
        customers.length,
      );
    }
  });
  return { recall, ...counts };
}

/**
 * One query's rows (one per candidate, in serving's order, the next qid) into `table`: the
 * features serving would score at now = cutoff, serving's heuristic score, the label. Returns the
 * positives.
 */
function addQuery(
  run: RowsRun,
  table: RowTable,
  q: {
    customerId: string;
    cutoff: number;
    set: CandidateSet;
    bought: ReadonlySet<string>;
  },
): number {
  const { customerId, cutoff, set, bought } = q;
  const qid = nextQid(table);
  const features = set.candidates.map((c) =>
    featureVector(table.features, {
      customer: set.customer,
      article: set.articles.get(c.articleId) ?? emptyArticleState(c.articleId),
      now: cutoff,
      candidate: c,
    }),
  );
  const heuristic = heuristicScores(set.candidates, table.features, features);
  let positives = 0;
  set.candidates.forEach((c, k) => {
    const label = bought.has(c.articleId) ? 1 : 0;
    table.push({
      qid,
      customerId,
      articleId: c.articleId,
      cutoff,
      label,
      sources: c.sources.join(','),
      values: features[k] as number[],
      heuristic: heuristic[k] ?? NaN,
    });
    positives += label;
  });
  run.opts.onQuery?.({
    qid,
    cutoff,
    customerId,
    candidates: set.candidates,
    features,
    labels: bought,
  });
  return positives;
}

/** With `opts.path`, the rows written there (`writeRows`); the path, else undefined. */
async function writeIfAsked(run: RowsRun, table: RowTable): Promise<string | undefined> {
  const target = run.opts.path;
  if (target === undefined) return undefined;
  const progress = run.opts.onProgress;
  progress?.('write', 0, table.length);
  await run.timed('writeMs', async () => {
    await writeRows(target, table, { cutoffs: run.cutoffs, labelWindowMs: run.windowMs });
  });
  progress?.('write', table.length, table.length);
  return target;
}
