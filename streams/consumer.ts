/**
 * Consumer runner on kafkajs `eachBatch`. Per batch: decode and validate every record; route the
 * ones that fail to `<topic>.dlq` with the reason in headers (or, in a group that does not own
 * the DLQ, count and skip them: `poison`); hand the rest to the handler; and only when the
 * handler (and the DLQ write) succeeded, commit the batch's offsets. A failing handler, or a
 * decode that needs the schema registry while it is down, is retried with backoff while the
 * consumer keeps heartbeating, so a transient outage (Redis or the registry restarting) neither
 * loses records, nor dead-letters valid ones, nor turns into a crash loop; a consumer crashed
 * by a broker restart is started again.
 */
import type {
  Batch,
  Consumer,
  EachBatchPayload,
  Kafka,
  KafkaMessage,
  Producer,
  IHeaders,
} from 'kafkajs';
import type { AvroCodec } from './avro.ts';
import { RecError, errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { isTransient } from './retriable.ts';
import type { TopicDescriptor } from './topics.ts';

/** A decoded, validated record handed to a handler. */
export interface DecodedRecord<T> {
  readonly value: T;
  readonly key: string | null;
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  /** Kafka record timestamp (ms); the event time for records written by our producer. */
  readonly timestamp: number;
}

/** A record the handler refuses as poison (not retriable); it goes to the DLQ. */
export interface Rejection<T> {
  readonly record: DecodedRecord<T>;
  readonly reason: RecError;
}

export interface BatchContext {
  readonly topic: string;
  readonly partition: number;
  /** Kafka high watermark of the partition when the batch was fetched. */
  readonly highWatermark: string;
  /** Extend the session while a long handler runs. */
  readonly heartbeat: () => Promise<void>;
}

export type BatchHandler<T> = (
  records: readonly DecodedRecord<T>[],
  ctx: BatchContext,
) => Promise<{ rejected?: readonly Rejection<T>[] } | undefined>;

/** Hooks for metrics; all optional. */
export interface RunnerHooks {
  onBatch?: (info: {
    topic: string;
    partition: number;
    records: number;
    dlq: number;
    durationMs: number;
    lastOffset: string;
    highWatermark: string;
    lastTimestamp: number | null;
  }) => void;
  onDlq?: (info: { topic: string; code: string; reason: string }) => void;
  /** A record skipped without a DLQ write (`poison: 'skip'`). */
  onSkip?: (info: { topic: string; code: string; reason: string }) => void;
  onRetry?: (info: { topic: string; partition: number; attempt: number; error: string }) => void;
  /** A record the handler failed on deterministically, isolated and dead-lettered. */
  onIsolated?: (info: { topic: string; partition: number; offset: string; error: string }) => void;
}

export interface ConsumerRunnerOptions<T> {
  kafka: Kafka;
  groupId: string;
  topic: TopicDescriptor<T>;
  codec: AvroCodec<T>;
  /** Producer used for DLQ writes (shared; the runner does not own it). */
  dlqProducer: Producer;
  /**
   * What happens to records that fail decoding/validation or that the handler rejects: `dlq`
   * (default) writes them to `<topic>.dlq`; `skip` only logs and counts them (`hooks.onSkip`),
   * for a secondary group on a topic whose DLQ another group owns, so that each bad record is
   * dead-lettered once, not once per group.
   */
  poison?: 'dlq' | 'skip';
  handler: BatchHandler<T>;
  logger: Logger;
  fromBeginning?: boolean;
  hooks?: RunnerHooks;
  /** Backoff bounds for handler retries (ms). */
  retry?: { initialMs?: number; maxMs?: number };
  /** Max bytes fetched per partition per request (caps batch size). */
  maxBytesPerPartition?: number;
  partitionsConsumedConcurrently?: number;
  /** Group session timeout (ms): how long a crashed member holds its partitions. */
  sessionTimeoutMs?: number;
  /**
   * Where the handler's effects live keeps, per partition, the last offset whose effects it holds
   * (`PositionStore`). Each batch is checked against it first: when the store holds less than
   * the batch starts from (a store restored from older persistence, a failover to a replica that
   * missed writes, a store emptied), the consumer seeks back to what the store holds and
   * re-processes from there instead of applying the batch; the handler's guards make the
   * records already applied count once. The position is written after each batch's handler.
   */
  positions?: PositionStore;
  /**
   * With `positions`: how often (ms) the partitions this consumer holds are checked against the
   * store between batches (default 5 000; 0: never), and once right after each assignment. The
   * check per batch above only runs when a record arrives; a store that fell behind on a partition
   * that receives nothing more would keep what it lost until then. The check compares the
   * group's committed offset with the store's position and seeks back the same way.
   */
  positionsCheckMs?: number;
  /**
   * Whether a handler error is deterministic (the same records will fail the same way: a script
   * error, not an outage). After `isolateAfter` attempts (default 5) failing with such an error,
   * the batch is split in halves until the failing records are alone; those go to the DLQ
   * (`REC_ERR_APPLY`, with the error) and the rest is applied. Without it every failure is retried.
   */
  isDeterministic?: (err: unknown) => boolean;
  isolateAfter?: number;
}

/** The last offset per partition whose effects a store holds (see `ConsumerRunnerOptions`). */
export interface PositionStore {
  /** The last offset held for the partition, or null when the store holds none. */
  read(topic: string, partition: number): Promise<bigint | null>;
  write(topic: string, partition: number, lastOffset: string): Promise<void>;
}

export interface RunningConsumer {
  readonly consumer: Consumer;
  stop(): Promise<void>;
}

/** Header names written on DLQ records. */
export const DLQ_HEADERS = {
  code: 'dlq.error.code',
  reason: 'dlq.error.reason',
  topic: 'dlq.source.topic',
  partition: 'dlq.source.partition',
  offset: 'dlq.source.offset',
  timestamp: 'dlq.source.timestamp',
  failedAt: 'dlq.failed.at',
  group: 'dlq.consumer.group',
} as const;

function dlqMessage(
  groupId: string,
  topic: string,
  partition: number,
  message: KafkaMessage,
  err: RecError,
) {
  const headers: IHeaders = {
    ...message.headers,
    [DLQ_HEADERS.code]: err.code,
    [DLQ_HEADERS.reason]: err.message,
    [DLQ_HEADERS.topic]: topic,
    [DLQ_HEADERS.partition]: String(partition),
    [DLQ_HEADERS.offset]: message.offset,
    [DLQ_HEADERS.timestamp]: message.timestamp,
    [DLQ_HEADERS.failedAt]: new Date().toISOString(),
    [DLQ_HEADERS.group]: groupId,
  };
  return { key: message.key, value: message.value, headers };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Bytes of dead letters per produce request. A batch's dead letters are its records plus headers
 * (the reason, a few hundred bytes), so thousands of them from one fetch exceed what the broker
 * accepts in one request (`message.max.bytes`, 1 MiB by default): they are sent in parts.
 */
const DLQ_SEND_BYTES = 256 * 1024;

/** `messages` in consecutive parts of about `maxBytes` each (a larger message alone). */
function bySize(messages: readonly ReturnType<typeof dlqMessage>[], maxBytes: number) {
  const parts: ReturnType<typeof dlqMessage>[][] = [];
  let part: ReturnType<typeof dlqMessage>[] = [];
  let bytes = 0;
  for (const m of messages) {
    let size = 64 + (m.key?.length ?? 0) + (m.value?.length ?? 0);
    for (const [name, v] of Object.entries(m.headers)) size += name.length + String(v).length;
    if (part.length > 0 && bytes + size > maxBytes) {
      parts.push(part);
      part = [];
      bytes = 0;
    }
    part.push(m);
    bytes += size;
  }
  if (part.length > 0) parts.push(part);
  return parts;
}

/** A record that failed decoding/validation or that the handler rejected, with the reason. */
interface Poison {
  readonly message: KafkaMessage;
  readonly err: RecError;
}

/** What the steps of a batch share: the options, the logger, the consumer, the retry bounds. */
interface Runner<T> {
  readonly opts: ConsumerRunnerOptions<T>;
  readonly log: Logger;
  readonly consumer: Consumer;
  readonly retry: { readonly initialMs: number; readonly maxMs: number };
  /** True once `stop()` was called. */
  readonly stopping: () => boolean;
  /** Per `topic:partition`: where the runner last sought to after finding the store behind. */
  readonly sought: Map<string, bigint>;
  /** The `topic:partition`s whose batch is being processed. */
  readonly busy: Set<string>;
}

/** Start consuming `topic` in group `groupId`; resolves once the consumer is running. */
export async function runConsumer<T>(opts: ConsumerRunnerOptions<T>): Promise<RunningConsumer> {
  const log = opts.logger.child({
    module: 'consumer',
    topic: opts.topic.name,
    group: opts.groupId,
  });
  const consumer = opts.kafka.consumer({
    groupId: opts.groupId,
    allowAutoTopicCreation: false,
    maxBytesPerPartition: opts.maxBytesPerPartition ?? 1_048_576,
    sessionTimeout: opts.sessionTimeoutMs ?? 30_000,
    heartbeatInterval: Math.min(3_000, Math.floor((opts.sessionTimeoutMs ?? 30_000) / 3)),
  });
  const retry = { initialMs: opts.retry?.initialMs ?? 200, maxMs: opts.retry?.maxMs ?? 10_000 };
  let stopping = false;
  const runner: Runner<T> = {
    opts,
    log,
    consumer,
    retry,
    stopping: () => stopping,
    sought: new Map(),
    busy: new Set(),
  };

  const run = () =>
    consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: opts.partitionsConsumedConcurrently ?? 1,
      eachBatch: (payload) => processBatch(runner, payload),
    });
  let restart: NodeJS.Timeout | undefined;
  // kafkajs restarts a crashed consumer only when the crash's innermost cause is marked
  // retriable; a broker restart also crashes it with errors that are not (no group coordinator
  // yet), and it would then stay stopped, silently. Those are restarted here, with backoff.
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (payload.restart || stopping) return;
    if (!isTransient(payload.error)) {
      log.error({ err: errorMessage(payload.error) }, 'consumer crashed; not restarting it');
      return;
    }
    const again = (attempt: number) => {
      const delay = Math.min(retry.maxMs, retry.initialMs * 2 ** attempt);
      log.warn(
        { attempt, delay, err: errorMessage(payload.error) },
        'consumer crashed; restarting',
      );
      restart = setTimeout(() => {
        if (stopping) return;
        // A crash of the new run emits CRASH again; a failed connect is retried here.
        consumer
          .connect()
          .then(run)
          .catch(() => {
            again(attempt + 1);
          });
      }, delay);
    };
    again(1);
  });

  await consumer.connect();
  await consumer.subscribe({ topic: opts.topic.name, fromBeginning: opts.fromBeginning ?? true });
  // Before `run`: the first assignment may come before it resolves.
  const stopChecks = watchPositions(runner);
  try {
    await run();
  } catch (err) {
    await stopChecks();
    throw err;
  }
  log.info('consumer running');
  return {
    consumer,
    async stop() {
      stopping = true;
      clearTimeout(restart);
      await stopChecks();
      await consumer.disconnect();
    },
  };
}

/**
 * The idle check of `positionsCheckMs`: on every assignment and then periodically, each partition
 * held and not in a batch whose store position is behind the group's committed offset is sought
 * back to what the store holds (as `storeBehind` does for a batch). Errors (Kafka or the store
 * unreachable) are logged and the next check tries again. Returns a function ending the checks.
 */
function watchPositions<T>(runner: Runner<T>): () => Promise<void> {
  const { opts, consumer, log } = runner;
  const everyMs = opts.positionsCheckMs ?? 5_000;
  const positions = opts.positions;
  if (!positions || everyMs <= 0) return () => Promise.resolve();
  const topic = opts.topic.name;
  const admin = opts.kafka.admin();
  let connected: Promise<void> | null = null;
  let held: number[] = [];
  let running: Promise<void> | null = null;

  const checkOnce = async () => {
    connected ??= admin.connect();
    await connected;
    const [offsets] = await admin.fetchOffsets({ groupId: opts.groupId, topics: [topic] });
    for (const { partition, offset } of offsets?.partitions ?? []) {
      const id = `${topic}:${partition}`;
      if (!held.includes(partition) || runner.busy.has(id) || runner.stopping()) continue;
      const committed = BigInt(offset);
      if (committed <= 0n) continue; // nothing committed yet (-1) or nothing consumed
      const inStore = await positions.read(topic, partition);
      const target = inStore === null ? 0n : inStore + 1n;
      if (target >= committed || runner.sought.get(id) === target) continue;
      // A batch may have started meanwhile: it checks the store itself.
      if (runner.busy.has(id) || !held.includes(partition)) continue;
      log.warn(
        { partition, held: inStore?.toString() ?? null, committed: offset },
        'the store holds less than the committed offsets of an idle partition (restored, failed over or emptied): re-processing from what it holds',
      );
      runner.sought.set(id, target);
      consumer.seek({ topic, partition, offset: target.toString() });
    }
  };
  const check = () => {
    running ??= checkOnce()
      .catch((err: unknown) => {
        if (connected !== null) connected = connected.catch(() => null).then(() => undefined);
        log.debug({ err: errorMessage(err) }, 'position check failed; retried at the next one');
      })
      .finally(() => {
        running = null;
      });
    return running;
  };

  const removeListener = consumer.on(consumer.events.GROUP_JOIN, (e) => {
    held = [...(e.payload.memberAssignment[topic] ?? [])];
    void check();
  });
  const timer = setInterval(() => void check(), everyMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    removeListener();
    await running;
    if (connected) await admin.disconnect().catch(() => undefined);
  };
}

/**
 * One batch: decode, hand the good records to the handler (retrying), dead-letter the poison ones
 * (undecodable or invalid, and those the handler rejected), and only then commit. A step that
 * throws commits nothing.
 */
async function processBatch<T>(runner: Runner<T>, payload: EachBatchPayload): Promise<void> {
  const { batch } = payload;
  if (batch.messages.length === 0) return;
  const id = `${batch.topic}:${batch.partition}`;
  runner.busy.add(id);
  try {
    await processNonEmptyBatch(runner, payload);
  } finally {
    runner.busy.delete(id);
  }
}

async function processNonEmptyBatch<T>(runner: Runner<T>, payload: EachBatchPayload) {
  const { batch } = payload;
  const started = performance.now();
  const handled = await handleWithRetry(runner, payload);
  if (handled === SOUGHT) return;
  const { good, poison, rejected } = handled;
  const bad: Poison[] = [
    ...poison,
    ...rejected.map((r) => ({
      message: batch.messages.find((m) => m.offset === r.record.offset) as KafkaMessage,
      err: r.reason,
    })),
  ];
  const dlq = await deadLetter(runner, batch, bad);
  const last = await commitBatch(runner.consumer, payload);
  const lastMessage = batch.messages[batch.messages.length - 1];
  runner.opts.hooks?.onBatch?.({
    topic: batch.topic,
    partition: batch.partition,
    records: good.length,
    dlq,
    durationMs: performance.now() - started,
    lastOffset: last,
    highWatermark: batch.highWatermark,
    lastTimestamp: lastMessage ? Number(lastMessage.timestamp) : null,
  });
}

/** The batch was dropped: the consumer sought back to where the position store is. */
const SOUGHT = Symbol('sought');

/**
 * Whether the position store holds less than the batch starts from; if so, seek back to the
 * offset after what it holds (to the start when it holds nothing) and drop the batch, committing
 * nothing. After such a seek, a batch starting later than the target is accepted: the log starts
 * there (retention, compaction).
 */
async function storeBehind<T>(runner: Runner<T>, payload: EachBatchPayload): Promise<boolean> {
  const { positions } = runner.opts;
  const { batch } = payload;
  const first = batch.messages[0];
  if (!positions || !first) return false;
  // Fetched before a seek of this partition: dropped, the consumer fetches from the seek.
  if (payload.isStale()) return true;
  const held = await positions.read(batch.topic, batch.partition);
  const from = BigInt(first.offset);
  const target = held === null ? 0n : held + 1n;
  const id = `${batch.topic}:${batch.partition}`;
  const sought = runner.sought.get(id);
  runner.sought.delete(id);
  if (target >= from || (sought !== undefined && sought === target)) return false;
  runner.log.warn(
    { partition: batch.partition, held: held?.toString() ?? null, batchFrom: first.offset },
    'the store holds less than this batch starts from (restored, failed over or emptied): re-processing from what it holds',
  );
  runner.sought.set(id, target);
  runner.consumer.seek({
    topic: batch.topic,
    partition: batch.partition,
    offset: target.toString(),
  });
  return true;
}

/** A batch decoded: the records to hand to the handler, and the poison ones. */
interface Decoded<T> {
  readonly good: DecodedRecord<T>[];
  readonly poison: Poison[];
}

/**
 * Decode and validate every record of the batch. A non-retriable failure makes the record poison;
 * any other (e.g. registry unreachable) is thrown: the batch is retried, nothing committed.
 */
async function decodeBatch<T>(codec: AvroCodec<T>, batch: Batch): Promise<Decoded<T>> {
  const good: DecodedRecord<T>[] = [];
  const poison: Poison[] = [];
  for (const message of batch.messages) {
    try {
      const value = await codec.decodeValid(message.value);
      good.push({
        value,
        key: message.key?.toString('utf8') ?? null,
        topic: batch.topic,
        partition: batch.partition,
        offset: message.offset,
        timestamp: Number(message.timestamp),
      });
    } catch (err) {
      if (err instanceof RecError && !err.retriable) poison.push({ message, err });
      else throw err; // e.g. registry unreachable: retry the whole batch, commit nothing
    }
  }
  return { good, poison };
}

/**
 * Decode the batch, then hand the good records to the handler (not called when there are none);
 * what it rejects comes back with the poison. Retry decoding and the handler with backoff,
 * heartbeating, until they succeed or this consumer is stopped or loses the partition (then the
 * error is thrown and nothing is committed): a writer schema the registry must supply while it
 * is down (a new schema version, a fresh process) waits for it like a write waits for Redis,
 * and is never dead-lettered for it.
 *
 * With a position store, each attempt first checks it (`storeBehind`: SOUGHT when the batch is
 * dropped for a seek back) and records the batch's last offset after the handler, so that a
 * store that cannot be reached is retried like the handler.
 */
async function handleWithRetry<T>(
  runner: Runner<T>,
  payload: EachBatchPayload,
): Promise<(Decoded<T> & { rejected: readonly Rejection<T>[] }) | typeof SOUGHT> {
  const { opts, log, retry } = runner;
  const { batch } = payload;
  const heartbeat = () => payload.heartbeat();
  const ctx: BatchContext = {
    topic: batch.topic,
    partition: batch.partition,
    highWatermark: batch.highWatermark,
    heartbeat,
  };
  let decoded: Decoded<T> | undefined;
  let rejected: readonly Rejection<T>[] = [];
  for (let attempt = 1; ; attempt++) {
    try {
      decoded ??= await decodeBatch(opts.codec, batch);
      if (await storeBehind(runner, payload)) return SOUGHT;
      if (decoded.good.length > 0)
        rejected = (await opts.handler(decoded.good, ctx))?.rejected ?? [];
      await opts.positions?.write(batch.topic, batch.partition, batch.lastOffset());
      return { ...decoded, rejected };
    } catch (err) {
      if (runner.stopping() || !payload.isRunning() || payload.isStale()) throw err;
      let failure = err;
      if (
        decoded !== undefined &&
        attempt >= (opts.isolateAfter ?? 5) &&
        opts.isDeterministic?.(err) === true
      ) {
        log.warn({ attempt, err: errorMessage(err) }, 'batch fails deterministically; isolating');
        try {
          const isolated = await isolate(runner, decoded.good, ctx);
          await opts.positions?.write(batch.topic, batch.partition, batch.lastOffset());
          return { ...decoded, rejected: isolated };
        } catch (again) {
          failure = again; // an outage meanwhile: retry the whole batch
        }
      }
      const delay = Math.min(retry.maxMs, retry.initialMs * 2 ** (attempt - 1));
      log.warn(
        { attempt, delay, err: errorMessage(failure) },
        decoded === undefined
          ? 'batch could not be decoded; retrying'
          : 'batch handler failed; retrying',
      );
      opts.hooks?.onRetry?.({
        topic: batch.topic,
        partition: batch.partition,
        attempt,
        error: errorMessage(failure),
      });
      await sleep(delay);
      await heartbeat();
    }
  }
}

/**
 * Apply `records` in halves until the ones the handler fails on deterministically are alone;
 * those come back rejected (`REC_ERR_APPLY`), with what the handler itself rejected. A failure
 * that is not deterministic is thrown. Re-applying records that succeeded before is safe: the
 * handlers' guards count each once.
 */
async function isolate<T>(
  runner: Runner<T>,
  records: readonly DecodedRecord<T>[],
  ctx: BatchContext,
): Promise<Rejection<T>[]> {
  try {
    return [...((await runner.opts.handler(records, ctx))?.rejected ?? [])];
  } catch (err) {
    if (runner.opts.isDeterministic?.(err) !== true) throw err;
    const only = records.length === 1 ? records[0] : undefined;
    if (only) {
      runner.opts.hooks?.onIsolated?.({
        topic: only.topic,
        partition: only.partition,
        offset: only.offset,
        error: errorMessage(err),
      });
      return [
        {
          record: only,
          reason: new RecError('REC_ERR_APPLY', `applying it fails: ${errorMessage(err)}`, {
            cause: err,
          }),
        },
      ];
    }
    await ctx.heartbeat();
    const half = Math.ceil(records.length / 2);
    return [
      ...(await isolate(runner, records.slice(0, half), ctx)),
      ...(await isolate(runner, records.slice(half), ctx)),
    ];
  }
}

/**
 * Route the poison records: to `<topic>.dlq` with the reason in headers, or, with
 * `poison: 'skip'`, only log and count them. Returns how many were written to the DLQ. A failed
 * DLQ write throws a retriable `REC_ERR_DLQ_WRITE`: the batch is not committed.
 */
async function deadLetter<T>(runner: Runner<T>, batch: Batch, bad: readonly Poison[]) {
  const { opts, log } = runner;
  if (bad.length === 0) return 0;
  if (opts.poison === 'skip') {
    for (const p of bad) {
      log.debug(
        { offset: p.message.offset, partition: batch.partition, code: p.err.code },
        'record skipped (dead-lettered by the group owning the DLQ)',
      );
      opts.hooks?.onSkip?.({ topic: batch.topic, code: p.err.code, reason: p.err.message });
    }
    log.info(
      { partition: batch.partition, skipped: bad.length },
      'skipped malformed records (dead-lettered by the group owning the DLQ)',
    );
    return 0;
  }
  const messages = bad.map((p) =>
    dlqMessage(opts.groupId, batch.topic, batch.partition, p.message, p.err),
  );
  try {
    for (const chunk of bySize(messages, DLQ_SEND_BYTES)) {
      await opts.dlqProducer.send({ topic: opts.topic.dlq, acks: -1, messages: chunk });
    }
  } catch (err) {
    throw new RecError(
      'REC_ERR_DLQ_WRITE',
      `could not write ${bad.length} records to ${opts.topic.dlq}: ${errorMessage(err)}`,
      { retriable: true, cause: err },
    );
  }
  // One warning per code and batch (a batch can dead-letter thousands), each record at debug.
  const byCode = new Map<string, { count: number; first: Poison }>();
  for (const p of bad) {
    log.debug(
      {
        offset: p.message.offset,
        partition: batch.partition,
        code: p.err.code,
        reason: p.err.message,
      },
      'record sent to DLQ',
    );
    opts.hooks?.onDlq?.({ topic: batch.topic, code: p.err.code, reason: p.err.message });
    const seen = byCode.get(p.err.code);
    if (seen) seen.count++;
    else byCode.set(p.err.code, { count: 1, first: p });
  }
  for (const [code, { count, first }] of byCode) {
    log.warn(
      {
        partition: batch.partition,
        code,
        records: count,
        offset: first.message.offset,
        reason: first.err.message,
      },
      count === 1 ? 'record sent to DLQ' : `${count} records sent to DLQ (the first's reason)`,
    );
  }
  return bad.length;
}

/** Commit the batch's offsets (the handler and the DLQ write succeeded); returns its last offset. */
async function commitBatch(consumer: Consumer, payload: EachBatchPayload): Promise<string> {
  const { batch } = payload;
  const last = batch.lastOffset();
  payload.resolveOffset(last);
  await consumer.commitOffsets([
    { topic: batch.topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() },
  ]);
  await payload.heartbeat();
  return last;
}
