/**
 * Replay to a file, for analysts: the decoded events of one topic whose event time lies in
 * [from, to), written as Parquet (hyparquet-writer) or CSV, chosen by the file's extension.
 *
 * - Columns are the Avro fields of the topic's schema, in schema order. Purchases get two more,
 *   so a replayed file can be fed back to the loader as `transactions_train.<ext>`: `t_dat` (the
 *   UTC day of `event_time`) and `ts` (the same instant as `event_time`; the loader takes the
 *   exact event time from it, so reloading gives the same event ids).
 * - Timestamps (`timestamp-millis` fields and `ts`): Parquet `INT64 TIMESTAMP_MILLIS` (UTC), read
 *   back as dates by hyparquet, pandas, DuckDB; in CSV ISO 8601 UTC with milliseconds
 *   (`2020-09-01T10:15:00.000Z`). `t_dat`: Parquet `DATE`, CSV `YYYY-MM-DD`.
 * - Nulls: Parquet nulls; empty CSV fields. CSV is RFC 4180 (comma, `"` quoting, `\n` lines).
 * - CSV text cells that a spreadsheet would run as a formula (beginning with `=`, `+`, `-`, `@`,
 *   tab or carriage return, and not a plain number like `-1.5`) are written with a leading `'`
 *   (OWASP CSV injection); the loader's CSV reader removes it again (`escapeFormula` and
 *   `unescapeFormula` in streams/loader/csv.ts). Parquet cells are written as they are.
 * - Each event once: on a topic with an `event_id` (purchases), a record whose event id was
 *   already written is a re-published copy and is dropped, the first copy in topic order kept
 *   (copies share the record key, so they sit in one partition, in offset order). The count is
 *   reported; `keepDuplicates` writes every record instead (the raw log). The ids seen are kept
 *   in memory for the whole replay: about 70 bytes per event in [from, to) with the loader's
 *   32-hex ids (~90 MB for a month of H&M's 1.3M purchases, ~2.2 GB for all 31.8M); replay a
 *   shorter interval, or keep the duplicates, when that is too much. Articles and customers have
 *   no event id and are written as read (later versions of one id are separate events).
 * - Rows are in the order the replay hands them over: per partition in offset order (each
 *   partition in publication order, which is event-time order for loaded data), the partitions
 *   interleaved; sort by the time column for one global order.
 * - The file is written under a temporary name in the same folder and renamed at the end, so a
 *   failed or interrupted run leaves no partial file behind.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { constants as fsConstants, createWriteStream, type WriteStream } from 'node:fs';
import { access, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileWriter, ParquetWriter, type SchemaElement } from 'hyparquet-writer';
import type { Kafka } from 'kafkajs';
import type { AvroCodec } from '../streams/avro.ts';
import type { Codecs } from '../streams/bootstrap.ts';
import type { AvroRecordSchema } from '../schemas/events.ts';
import type { Logger } from '../common/logger.ts';
import { progress as makeProgress, type Progress } from '../common/progress.ts';
import { replay, type ReplayResult } from '../streams/replay.ts';
import type { TopicDescriptor, Topics } from '../streams/topics.ts';
import { escapeFormula } from '../streams/loader/csv.ts';
import { UsageError } from '../common/errors.ts';

export const TOPIC_NAMES = ['purchases', 'articles', 'customers'] as const;
export type TopicName = (typeof TOPIC_NAMES)[number];
export type FileFormat = 'parquet' | 'csv';

export { UsageError } from '../common/errors.ts';

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME_RE =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?$/i;
const INSTANT_HELP =
  'expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.mmm]][Z|±HH:MM] (UTC unless an offset is given)';

/**
 * An instant given on the command line, as ms since the epoch: an ISO date (its 00:00 UTC) or
 * date-time (UTC unless it names an offset). Impossible dates (2021-02-30, 24:00) are refused.
 */
export function parseInstant(text: string, option: string): number {
  const s = text.trim();
  const bad = () => new UsageError(`${option} "${text}" is not a valid time: ${INSTANT_HELP}`);
  const d = DATE_RE.exec(s);
  const m = d ?? DATETIME_RE.exec(s);
  if (!m) throw bad();
  const [y, mo, da, h, mi, se] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const ms = m[7] === undefined || d ? 0 : Math.floor(Number(`0.${m[7]}`) * 1000);
  const t = Date.UTC(y, mo - 1, da, h, mi, se, ms);
  const back = new Date(t);
  const valid =
    back.getUTCFullYear() === y &&
    back.getUTCMonth() === mo - 1 &&
    back.getUTCDate() === da &&
    back.getUTCHours() === h &&
    back.getUTCMinutes() === mi &&
    back.getUTCSeconds() === se;
  if (!valid) throw bad();
  const zone = d ? undefined : m[8];
  if (zone === undefined || zone.toUpperCase() === 'Z') return t;
  const digits = zone.slice(1).replace(':', '');
  const offset = (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4))) * 60_000;
  if (Number(digits.slice(2, 4)) > 59 || Number(digits.slice(0, 2)) > 23) throw bad();
  return zone.startsWith('-') ? t + offset : t - offset;
}

export interface ReplayFileOptions {
  topic: TopicName;
  /** Inclusive, ms since the epoch. */
  from: number;
  /** Exclusive, ms since the epoch. */
  to: number;
  /** Output path, as given (resolved against the working directory). */
  out: string;
  format: FileFormat;
  /** Show progress on stderr. */
  progress: boolean;
  /** Write every record, re-published copies of an event included (default: each event once). */
  keepDuplicates?: boolean;
}

export const REPLAY_USAGE =
  'usage: npm run replay -- --topic purchases|articles|customers --from <time> --to <time> --out <file.parquet|file.csv> [--keep-duplicates] [--no-progress]\n' +
  '  each event once (purchases: the first record of each event_id; --keep-duplicates writes every record);\n' +
  "  CSV text cells starting with = + - @ tab or CR (not numbers) get a leading ' (the loader removes it)";

/** Check the parsed command-line values; every problem is a UsageError with one clear line. */
export function replayOptions(values: {
  topic?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
  out?: string | undefined;
  progress?: boolean | undefined;
  keepDuplicates?: boolean | undefined;
}): ReplayFileOptions {
  const missing = (['topic', 'from', 'to', 'out'] as const).filter(
    (k) => values[k] === undefined || values[k] === '',
  );
  if (missing.length > 0) {
    throw new UsageError(`missing ${missing.map((k) => `--${k}`).join(', ')}\n${REPLAY_USAGE}`);
  }
  const topic = values.topic as string;
  if (!(TOPIC_NAMES as readonly string[]).includes(topic)) {
    throw new UsageError(
      `unknown topic "${topic}": use ${TOPIC_NAMES.join(', ')} (the short name; TOPIC_PREFIX is added)`,
    );
  }
  const from = parseInstant(values.from as string, '--from');
  const to = parseInstant(values.to as string, '--to');
  if (!(from < to)) {
    throw new UsageError(
      `--from (${new Date(from).toISOString()}) must be before --to (${new Date(to).toISOString()}): the interval is [from, to)`,
    );
  }
  const out = values.out as string;
  const ext = extname(out).toLowerCase();
  const format: FileFormat | undefined =
    ext === '.parquet' ? 'parquet' : ext === '.csv' ? 'csv' : undefined;
  if (format === undefined) {
    throw new UsageError(`--out "${out}" must end in .parquet or .csv (the format follows it)`);
  }
  return {
    topic: topic as TopicName,
    from,
    to,
    out,
    format,
    progress: values.progress ?? true,
    keepDuplicates: values.keepDuplicates ?? false,
  };
}

/** Fail early, before any connection, when the output cannot be written where asked. */
export async function checkWritable(out: string): Promise<string> {
  const path = resolve(out);
  const dir = dirname(path);
  const dirStat = await stat(dir).catch(() => null);
  if (dirStat === null) throw new UsageError(`cannot write ${out}: folder ${dir} does not exist`);
  if (!dirStat.isDirectory()) throw new UsageError(`cannot write ${out}: ${dir} is not a folder`);
  try {
    await access(dir, fsConstants.W_OK);
  } catch {
    throw new UsageError(`cannot write ${out}: folder ${dir} is not writable`);
  }
  const existing = await stat(path).catch(() => null);
  if (existing?.isDirectory()) throw new UsageError(`cannot write ${out}: it is a folder`);
  return path;
}

// ---------------------------------------------------------------------------------------------
// Columns
// ---------------------------------------------------------------------------------------------

type Kind = 'string' | 'int' | 'long' | 'double' | 'boolean' | 'timestamp' | 'date' | 'json';

export interface OutColumn {
  name: string;
  kind: Kind;
  nullable: boolean;
  get: (value: Record<string, unknown>) => unknown;
}

const DAY_MS = 86_400_000;

function kindOf(type: unknown): { kind: Kind; nullable: boolean } {
  if (Array.isArray(type)) {
    const rest = type.filter((t) => t !== 'null');
    const inner: { kind: Kind; nullable: boolean } =
      rest.length === 1 ? kindOf(rest[0]) : { kind: 'json', nullable: true };
    return { kind: inner.kind, nullable: inner.nullable || rest.length < type.length };
  }
  if (typeof type === 'object' && type !== null) {
    const t = type as { type?: unknown; logicalType?: unknown };
    if (t.type === 'long' && t.logicalType === 'timestamp-millis') {
      return { kind: 'timestamp', nullable: false };
    }
    return kindOf(t.type);
  }
  switch (type) {
    case 'string':
    case 'enum':
      return { kind: 'string', nullable: false };
    case 'int':
      return { kind: 'int', nullable: false };
    case 'long':
      return { kind: 'long', nullable: false };
    case 'float':
    case 'double':
      return { kind: 'double', nullable: false };
    case 'boolean':
      return { kind: 'boolean', nullable: false };
    default:
      return { kind: 'json', nullable: true };
  }
}

/**
 * Output columns of a topic: its Avro fields in schema order; for purchases also `t_dat` and `ts`
 * (see the module comment).
 */
export function columnsFor(name: TopicName, avro: AvroRecordSchema): OutColumn[] {
  const cols: OutColumn[] = avro.fields.map((f) => ({
    name: f.name,
    ...kindOf(f.type),
    get: (v) => v[f.name] ?? null,
  }));
  if (name === 'purchases') {
    cols.push(
      {
        name: 't_dat',
        kind: 'date',
        nullable: false,
        get: (v) => Math.floor(Number(v.event_time) / DAY_MS),
      },
      { name: 'ts', kind: 'timestamp', nullable: false, get: (v) => v.event_time },
    );
  }
  return cols;
}

// ---------------------------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------------------------

interface TableWriter {
  /** Append rows (decoded event values). */
  write(rows: readonly Record<string, unknown>[]): Promise<void>;
  /** Complete the file. */
  close(): Promise<void>;
  /** Release resources after a failure (the caller removes the file). */
  abort(): Promise<void>;
}

function csvField(col: OutColumn, v: unknown): string {
  if (v === null || v === undefined) return '';
  switch (col.kind) {
    case 'timestamp':
      return new Date(Number(v)).toISOString();
    case 'date':
      return new Date(Number(v) * DAY_MS).toISOString().slice(0, 10);
    case 'json':
      return csvQuote(escapeFormula(JSON.stringify(v)));
    case 'string':
      return csvQuote(escapeFormula(scalarText(v)));
    default:
      return csvQuote(scalarText(v));
  }
}

function scalarText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v);
}

function csvQuote(s: string): string {
  return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replaceAll('"', '""')}"` : s;
}

class CsvWriter implements TableWriter {
  private readonly stream: WriteStream;
  private failure: Error | null = null;

  constructor(
    path: string,
    private readonly columns: readonly OutColumn[],
  ) {
    this.stream = createWriteStream(path, { flags: 'wx' });
    this.stream.on('error', (err) => {
      this.failure = err;
    });
    this.stream.write(`${columns.map((c) => csvQuote(c.name)).join(',')}\n`);
  }

  async write(rows: readonly Record<string, unknown>[]): Promise<void> {
    if (this.failure) throw this.failure;
    const lines = rows.map((r) => this.columns.map((c) => csvField(c, c.get(r))).join(','));
    // `once` rejects on 'error' and removes its listeners either way.
    if (!this.stream.write(`${lines.join('\n')}\n`)) await once(this.stream, 'drain');
  }

  async close(): Promise<void> {
    if (this.failure) throw this.failure;
    await new Promise<void>((res, rej) => {
      this.stream.once('error', rej);
      this.stream.end(res);
    });
  }

  async abort(): Promise<void> {
    if (this.stream.closed) return;
    await new Promise<void>((res) => {
      this.stream.once('close', () => {
        res();
      });
      this.stream.destroy();
    });
  }
}

const PARQUET_TYPE: Record<Kind, Omit<SchemaElement, 'name' | 'repetition_type'>> = {
  string: { type: 'BYTE_ARRAY', converted_type: 'UTF8' },
  json: { type: 'BYTE_ARRAY', converted_type: 'JSON' },
  int: { type: 'INT32' },
  long: { type: 'INT64' },
  double: { type: 'DOUBLE' },
  boolean: { type: 'BOOLEAN' },
  timestamp: { type: 'INT64', converted_type: 'TIMESTAMP_MILLIS' },
  date: { type: 'INT32', converted_type: 'DATE' },
};

/** Rows per Parquet row group (and per write). */
const ROW_GROUP = 100_000;

class ParquetFileWriter implements TableWriter {
  private readonly writer: ParquetWriter;
  private buffered: unknown[][];
  private count = 0;

  constructor(
    path: string,
    private readonly columns: readonly OutColumn[],
  ) {
    const schema: SchemaElement[] = [
      { name: 'root', num_children: columns.length },
      ...columns.map((c): SchemaElement => ({
        name: c.name,
        ...PARQUET_TYPE[c.kind],
        repetition_type: c.nullable ? 'OPTIONAL' : 'REQUIRED',
      })),
    ];
    this.writer = new ParquetWriter({
      writer: fileWriter(path),
      schema,
      codec: 'SNAPPY',
      createdBy: 'fashion-recsys replay',
    });
    this.buffered = columns.map(() => []);
  }

  async write(rows: readonly Record<string, unknown>[]): Promise<void> {
    for (const r of rows) {
      this.columns.forEach((c, i) => {
        const v = c.get(r);
        this.buffered[i]?.push(c.kind === 'long' && typeof v === 'number' ? BigInt(v) : v);
      });
    }
    this.count += rows.length;
    if (this.count >= ROW_GROUP) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.count === 0) return;
    const columnData = this.columns.map((c, i) => ({ name: c.name, data: this.buffered[i] ?? [] }));
    this.buffered = this.columns.map(() => []);
    this.count = 0;
    await this.writer.write({ columnData, rowGroupSize: ROW_GROUP });
  }

  async close(): Promise<void> {
    await this.flush();
    await this.writer.finish();
  }

  async abort(): Promise<void> {
    // fileWriter writes synchronously and holds no open descriptor: nothing to release.
  }
}

function openWriter(format: FileFormat, path: string, columns: readonly OutColumn[]): TableWriter {
  return format === 'parquet' ? new ParquetFileWriter(path, columns) : new CsvWriter(path, columns);
}

// ---------------------------------------------------------------------------------------------
// Replay to a file
// ---------------------------------------------------------------------------------------------

/**
 * The event ids written so far. Sharded because one V8 Set holds at most 2^24 (16.7M) entries,
 * fewer than a full H&M replay's 31.8M purchases.
 */
class SeenIds {
  private readonly shards = Array.from({ length: 64 }, () => new Set<string>());

  /** Adds `id`; false when it was already there. */
  add(id: string): boolean {
    const n = id.length;
    const h = (id.charCodeAt(n - 1) * 31 + id.charCodeAt(n - 2)) * 31 + id.charCodeAt(n - 3);
    const shard = this.shards[(h >>> 0) & 63] as Set<string>;
    if (shard.has(id)) return false;
    shard.add(id);
    return true;
  }
}

export interface ReplayFileResult extends ReplayResult {
  /** Rows written: the records in range, less the dropped duplicates. */
  records: number;
  /** Re-published copies of an event already written, dropped (0 with `keepDuplicates`). */
  duplicates: number;
  /** Absolute path of the written file. */
  file: string;
  format: FileFormat;
  columns: string[];
  seconds: number;
}

/** A temporary name beside `path` (same folder, so the final rename is atomic). */
function tempPathFor(path: string): string {
  return join(
    dirname(path),
    `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`,
  );
}

/** Removes the temporary file if the process is interrupted; returns the disarming function. */
function removeOnSignal(tmp: string): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    void unlink(tmp)
      .catch(() => undefined)
      .finally(() => {
        process.stderr.write(`replay interrupted (${signal}); no file written\n`);
        process.exit(signal === 'SIGINT' ? 130 : 143);
      });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

/**
 * Replay `opts.topic` over [from, to) into `opts.out`. The caller has already checked that the
 * topic exists; `codecs` come from `connectStreams()`.
 */
export async function replayToFile(
  deps: { kafka: Kafka; topics: Topics; codecs: Codecs; logger: Logger },
  opts: ReplayFileOptions,
  onOpened?: (tmp: string) => void,
): Promise<ReplayFileResult> {
  const started = performance.now();
  const path = await checkWritable(opts.out);
  const topic = deps.topics[opts.topic] as TopicDescriptor<unknown>;
  const codec = deps.codecs[opts.topic] as unknown as AvroCodec<unknown>;
  const columns = columnsFor(opts.topic, topic.contract.avro);
  const tmp = tempPathFor(path);
  let writer: TableWriter;
  try {
    writer = openWriter(opts.format, tmp, columns);
  } catch (err) {
    throw new UsageError(
      `cannot write ${opts.out}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  onOpened?.(tmp);
  const disarm = removeOnSignal(tmp);
  const ui: { bar: Progress | null } = { bar: null };
  const dedup = opts.keepDuplicates !== true && columns.some((c) => c.name === 'event_id');
  const seen = new SeenIds();
  let duplicates = 0;
  const firstCopies = (rows: Record<string, unknown>[]): Record<string, unknown>[] => {
    if (!dedup) return rows;
    const kept = rows.filter((r) => seen.add(String(r.event_id)));
    duplicates += rows.length - kept.length;
    return kept;
  };
  try {
    const result = await replay<unknown>({
      kafka: deps.kafka,
      topic,
      codec,
      from: opts.from,
      to: opts.to,
      logger: deps.logger,
      onRecords: (records) =>
        writer.write(firstCopies(records.map((r) => r.value as Record<string, unknown>))),
      onProgress: (read, total) => {
        ui.bar ??= makeProgress(`replay ${opts.topic}`, total, opts.progress);
        ui.bar.update(read);
      },
    });
    ui.bar?.stop();
    if (dedup && opts.progress) {
      process.stderr.write(
        `replay ${opts.topic}: ${duplicates} duplicate ${duplicates === 1 ? 'copy' : 'copies'} dropped (first record of each event_id kept)\n`,
      );
    }
    await writer.close();
    await rename(tmp, path);
    return {
      ...result,
      records: result.records - duplicates,
      duplicates,
      file: path,
      format: opts.format,
      columns: columns.map((c) => c.name),
      seconds: (performance.now() - started) / 1000,
    };
  } catch (err) {
    ui.bar?.stop();
    await writer.abort().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  } finally {
    disarm();
  }
}

/** The one-line summary the CLI prints. */
export function summaryLine(topicName: string, r: ReplayFileResult): string {
  const extra = [
    r.duplicates > 0
      ? `${r.duplicates} duplicate ${r.duplicates === 1 ? 'copy' : 'copies'} dropped`
      : '',
    r.skipped > 0 ? `${r.skipped} read outside the interval` : '',
    r.invalid > 0 ? `${r.invalid} invalid skipped` : '',
  ].filter((s) => s !== '');
  return `replayed ${r.records} ${topicName} records to ${r.file} in ${r.seconds.toFixed(1)} s${extra.length > 0 ? ` (${extra.join(', ')})` : ''}`;
}
