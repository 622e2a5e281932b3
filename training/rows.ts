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
 * event_time in [c_{i-1}, c_i) (from 0 for i = 0) are replayed and applied batch by batch with
 * their Kafka partition and offset, then the customers of c_i are scored. `replay` hands over the
 * records of each partition in offset order, so the processor's guards see what a live consumer
 * would. Caveats:
 *  - Late events: the article, co-purchase and trending scripts skip offsets at or below the
 *    highest offset they applied per partition. Purchases are published in event-time order, so an
 *    event of [c_{i-1}, c_i) always sits after every event applied for earlier cutoffs and the
 *    incremental state equals a from-scratch replay. An event published late (after an event of a
 *    later interval on the same partition) is applied to its customer but skipped by those slot
 *    scripts; such events are counted (`lateEvents`) and logged. A from-scratch replay per cutoff
 *    would be exact, at a cost growing with the number of cutoffs.
 *  - Metadata of an interval is applied before its purchases (as the live processors catch up on
 *    metadata first): a purchase made before a catalogue update in the same interval sees the
 *    updated categories. With the loader's metadata (updated_at = the first purchase's time) there
 *    is nothing in between.
 *  - Each replay reads from the first record at or after its start time to the end offsets at
 *    its start, skipping records past its end time: cutoffs far before the end of a large topic
 *    re-read the tail once per cutoff.
 *
 * Customers scored at a cutoff: everyone with a purchase in its label window (cold customers
 * included: serving answers them with trending), plus, optionally, a deterministic sample of other
 * customers with history before the cutoff (negatives only). One query id per (customer, cutoff);
 * the rows of a query are contiguous, in serving's candidate order.
 */
import { createHash } from 'node:crypto';
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
import type { Redis } from 'ioredis';
import type { Kafka } from 'kafkajs';
import type { Codecs } from '../streams/bootstrap.ts';
import type { DecodedRecord } from '../streams/consumer.ts';
import { DAY_MS } from '../features/decay.ts';
import { FEATURE_NAMES, featureVector } from '../features/definitions.ts';
import { keySpace, type KeySpace } from '../features/keys.ts';
import { deleteNamespace, emptyArticleState } from '../features/state.ts';
import { RecError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { replay } from '../streams/replay.ts';
import type { Topics } from '../streams/topics.ts';
import type { Purchase } from '../schemas/events.ts';
import type { PurchaseProcessorOptions } from '../processors/purchases.ts';
import { createWriters } from '../processors/writers.ts';
import { articleEmbeddingKeys } from '../embeddings/job.ts';
import { embeddingKeys } from '../features/embedding-keys.ts';
import {
  DEFAULT_CANDIDATE_CONFIG,
  SOURCES,
  gatherCandidates,
  type Candidate,
  type CandidateConfig,
  type Source,
} from '../serving/candidates.ts';
import { heuristicScores } from '../serving/ranking.ts';

export const DEFAULT_LABEL_WINDOW_MS = 7 * DAY_MS;
/** The live namespace's default; always refused as a training namespace. */
export const LIVE_NAMESPACE = 'rec';

export interface RowsDeps {
  readonly kafka: Kafka;
  readonly redis: Redis;
  readonly codecs: Codecs;
  readonly topics: Topics;
  readonly logger: Logger;
}

export type RowsStage = 'labels' | 'articles' | 'customers' | 'purchases' | 'queries' | 'write';

/** What `onQuery` receives: one query's candidates and their features as doubles (before float32). */
export interface QueryInfo {
  readonly qid: number;
  readonly cutoff: number;
  readonly customerId: string;
  readonly candidates: readonly Candidate[];
  /** One vector per candidate, in `FEATURE_NAMES` order, as `featureVector` returned it. */
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
  /** Score this many other customers with history before each cutoff (default none). */
  readonly customerSample?: { readonly others: number; readonly seed: number };
  /** Overrides of serving's candidate configuration (use the deployment's). */
  readonly candidateConfig?: Partial<CandidateConfig>;
  /** Overrides of the processors' options (use the deployment's). */
  readonly processorOptions?: Partial<PurchaseProcessorOptions>;
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
  readonly labelCustomers: number;
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
  readonly timings: {
    readonly labelsMs: number;
    readonly metadataMs: number;
    readonly purchasesMs: number;
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

  constructor(features: readonly string[] = FEATURE_NAMES, capacity = 4096) {
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
  const schema = new Schema(fields, metadata);
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

  const tmp = `${path}.tmp-${process.pid}`;
  const out = createWriteStream(tmp);
  const writer = new RecordBatchFileWriter();
  const piped = writer.toNodeStream().pipe(out);
  try {
    writer.reset(undefined, schema);
    const total = rows.length;
    const qid = rows.qid;
    const cutoff = rows.cutoff;
    const label = rows.label;
    const features = rows.features.map((f) => rows.feature(f));
    for (let start = 0; start < total || (start === 0 && total === 0); start += BATCH_ROWS) {
      const end = Math.min(total, start + BATCH_ROWS);
      const length = end - start;
      const children = [
        makeData({
          type: new Int64(),
          length,
          nullCount: 0,
          data: int64(qid.subarray(start, end)),
        }),
        utf8(rows.customerId.slice(start, end)),
        utf8(rows.articleId.slice(start, end)),
        makeData({
          type: new Int64(),
          length,
          nullCount: 0,
          data: int64(cutoff.subarray(start, end)),
        }),
        makeData({ type: new Int8(), length, nullCount: 0, data: label.slice(start, end) }),
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
      const data = makeData({ type: new Struct(fields), length, nullCount: 0, children });
      writer.write(new RecordBatch(schema, data));
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
  const others = opts.customerSample?.others ?? 0;
  if (!Number.isInteger(others) || others < 0) {
    throw configError(`customerSample.others must be a non-negative integer (got ${others})`);
  }
  return { keys, windowMs };
}

/** A deterministic sample of `n` of `ids`: the smallest hashes of seed, cutoff and id. */
export function sampleCustomers(
  ids: Iterable<string>,
  n: number,
  seed: number,
  cutoff: number,
): string[] {
  if (n <= 0) return [];
  const ranked: [string, string][] = [];
  for (const id of ids) {
    ranked.push([createHash('sha1').update(`${seed}:${cutoff}:${id}`).digest('hex'), id]);
  }
  ranked.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return ranked.slice(0, n).map(([, id]) => id);
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

  recall(): CandidateRecall {
    const r = (hits: number) => (this.pairs === 0 ? NaN : hits / this.pairs);
    return {
      overall: r(this.hits),
      repurchase: r(this.bySource.repurchase),
      siblings: r(this.bySource.siblings),
      copurchase: r(this.bySource.copurchase),
      trending_segment: r(this.bySource.trending_segment),
      trending_global: r(this.bySource.trending_global),
      ...(SOURCES.includes('similar') ? { similar: r(this.bySource.similar) } : {}),
    };
  }
}

/** Build point-in-time training rows for `opts.cutoffs` (see the module comment). */
export async function buildTrainingRows(deps: RowsDeps, opts: RowsOptions): Promise<RowsResult> {
  const started = performance.now();
  const { keys, windowMs } = validate(opts);
  const { redis, codecs, topics } = deps;
  const kafka = deps.kafka;
  const log = deps.logger.child({ module: 'training-rows', namespace: keys.ns });
  const cutoffs = [...opts.cutoffs];
  const first = cutoffs[0] as number;
  const last = cutoffs.at(-1) as number;
  const config: CandidateConfig = {
    ...DEFAULT_CANDIDATE_CONFIG,
    // Article vectors where `npm run embed` wrote them, as serving reads them: EMBEDDINGS_NAMESPACE,
    // else the live namespace.
    embeddingNamespace:
      process.env.EMBEDDINGS_NAMESPACE ?? opts.liveNamespace ?? articleEmbeddingKeys().ns,
    ...opts.candidateConfig,
  };
  const concurrency = Math.max(1, opts.concurrency ?? 8);
  const progress = opts.onProgress;
  const timings = { labelsMs: 0, metadataMs: 0, purchasesMs: 0, queriesMs: 0, writeMs: 0 };
  const timed = async <T>(what: keyof typeof timings, f: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      timings[what] += performance.now() - t0;
    }
  };

  // 1. Labels of every cutoff, in one replay: [first cutoff, last cutoff + window).
  const labelEvents: LabelEvent[] = [];
  await timed('labelsMs', () =>
    replay({
      kafka,
      topic: topics.purchases,
      codec: codecs.purchases,
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
      onProgress: (read, total) => progress?.('labels', read, total),
    }),
  );
  const latest = labelEvents.reduce((m, e) => Math.max(m, e.time), -Infinity);
  const labelsOf = cutoffs.map((c) => {
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
            : ` (there is no purchase on or after ${iso(first)} in ${topics.purchases.name})`),
      );
    }
    return byCustomer;
  });

  // 2. Clean slate.
  const deleted = await deleteNamespace(redis, keys);
  if (deleted > 0) log.info({ deleted }, 'deleted the previous state of the training namespace');
  // The live processors' writers (EMBEDDINGS=on: the taste processor too, issue 7).
  const writers = createWriters(redis, keys, {
    purchases: opts.processorOptions,
    tasteArticles: embeddingKeys(config.embeddingNamespace),
  });

  const table = new RowTable(FEATURE_NAMES);
  const perCutoff: CutoffSummary[] = [];
  const total = new RecallCounter();
  const history = new Set<string>();
  /** Highest offset applied per partition, over previous intervals. */
  const appliedUpTo = new Map<number, bigint>();
  let lateEvents = 0;
  let qid = 0;
  let metaFrom = 0;
  let purchaseFrom = 0;

  for (const [ci, cutoff] of cutoffs.entries()) {
    // 3. Metadata with updated_at in (previous cutoff, cutoff], then purchases in [previous, cutoff).
    await timed('metadataMs', () =>
      Promise.all([
        replay({
          kafka,
          topic: topics.articles,
          codec: codecs.articles,
          from: metaFrom,
          to: cutoff + 1,
          logger: deps.logger,
          onRecords: async (records) => {
            await writers.articles(records);
          },
          onProgress: (read, n) => progress?.('articles', read, n),
        }),
        replay({
          kafka,
          topic: topics.customers,
          codec: codecs.customers,
          from: metaFrom,
          to: cutoff + 1,
          logger: deps.logger,
          onRecords: async (records) => {
            await writers.customers(records);
          },
          onProgress: (read, n) => progress?.('customers', read, n),
        }),
      ]),
    );
    metaFrom = cutoff + 1;

    const before = new Map(appliedUpTo);
    let late = 0;
    const applied = await timed('purchasesMs', () =>
      replay({
        kafka,
        topic: topics.purchases,
        codec: codecs.purchases,
        from: purchaseFrom,
        to: cutoff,
        logger: deps.logger,
        onRecords: async (records: readonly DecodedRecord<Purchase>[]) => {
          await writers.purchases.apply(records);
          await writers.taste?.apply(records);
          for (const r of records) {
            history.add(r.value.customer_id);
            const offset = BigInt(r.offset);
            const prev = before.get(r.partition);
            if (prev !== undefined && offset <= prev) late++;
            const top = appliedUpTo.get(r.partition);
            if (top === undefined || offset > top) appliedUpTo.set(r.partition, offset);
          }
        },
        onProgress: (read, n) => progress?.('purchases', read, n),
      }),
    );
    purchaseFrom = cutoff;
    if (late > 0) {
      lateEvents += late;
      log.warn(
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

    // 4. Customers to score.
    const labels = labelsOf[ci] as Map<string, Set<string>>;
    const labelCustomers = [...labels.keys()].sort();
    const sample = opts.customerSample;
    const sampled =
      sample && sample.others > 0
        ? sampleCustomers(
            [...history].filter((c) => !labels.has(c)),
            sample.others,
            sample.seed,
            cutoff,
          ).sort()
        : [];
    const customers = [...labelCustomers, ...sampled];
    const coldCustomers = labelCustomers.filter((c) => !history.has(c)).length;

    // 5. Candidates and features at now = cutoff, in batches of `concurrency`.
    const recall = new RecallCounter();
    let rows = 0;
    let positives = 0;
    let queries = 0;
    await timed('queriesMs', async () => {
      for (let i = 0; i < customers.length; i += concurrency) {
        const chunk = customers.slice(i, i + concurrency);
        const sets = await Promise.all(
          chunk.map((customerId) =>
            gatherCandidates(redis, keys, config, {
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
          const features = set.candidates.map((c) =>
            featureVector(FEATURE_NAMES, {
              customer: set.customer,
              article: set.articles.get(c.articleId) ?? emptyArticleState(c.articleId),
              now: cutoff,
              candidate: c,
            }),
          );
          const heuristic = heuristicScores(set.candidates, FEATURE_NAMES, features);
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
          rows += set.candidates.length;
          queries++;
          opts.onQuery?.({
            qid,
            cutoff,
            customerId,
            candidates: set.candidates,
            features,
            labels: bought,
          });
          qid++;
        });
        progress?.('queries', Math.min(i + concurrency, customers.length), customers.length);
      }
    });
    total.merge(recall);
    const summary: CutoffSummary = {
      cutoff,
      customers: customers.length,
      labelCustomers: labelCustomers.length,
      sampledCustomers: sampled.length,
      coldCustomers,
      queries,
      rows,
      positives,
      labelPairs: recall.pairs,
      candidateRecall: recall.recall(),
      purchasesApplied: applied.records,
    };
    perCutoff.push(summary);
    log.info({ ...summary, cutoff: iso(cutoff) }, 'cutoff done');
  }

  let path: string | undefined;
  if (opts.path !== undefined) {
    const target = opts.path;
    progress?.('write', 0, table.length);
    await timed('writeMs', async () => {
      await writeRows(target, table, { cutoffs, labelWindowMs: windowMs });
    });
    progress?.('write', table.length, table.length);
    path = target;
  }

  const positives = perCutoff.reduce((s, c) => s + c.positives, 0);
  return {
    rows: table.length,
    queries: qid,
    positives,
    labelPairs: total.pairs,
    perCutoff,
    candidateRecall: total.recall(),
    lateEvents,
    timings: { ...timings, totalMs: performance.now() - started },
    table,
    ...(path === undefined ? {} : { path }),
  };
}
