/**
 * Replay: read a topic's records whose timestamps (event time, as our producer stamps them) lie in
 * [from, to). Start offsets come from the broker's offsets-by-timestamp lookup; the end is the set
 * of end offsets recorded when the replay starts, so a replay terminates even while producers keep
 * writing. Records in range that arrived late (after later-stamped ones) are still found, because
 * every record with timestamp >= from sits at or after the looked-up offset; filtering by timestamp
 * then gives exactly the interval. A caller that knows where the interval's records lie (an index
 * built on an earlier pass, streams/offset-index.ts) gives the offsets to read instead (`ranges`).
 * Read-only: records that fail to decode are counted and skipped.
 */
import { randomUUID } from 'node:crypto';
import type { Batch, Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import type { AvroCodec } from './avro.ts';
import type { DecodedRecord } from './consumer.ts';
import { RecError, errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { TopicDescriptor } from './topics.ts';
import { EventTimeMerge } from './merge.ts';

export interface ReplayOptions<T> {
  kafka: Kafka;
  topic: TopicDescriptor<T>;
  codec: AvroCodec<T>;
  /** Inclusive lower bound, ms since the epoch. */
  from: number;
  /** Exclusive upper bound, ms since the epoch. */
  to: number;
  logger: Logger;
  /**
   * Receives records in range, batch by batch (per partition, in offset order); with
   * `eventTimeChunk`, in chunks of the partitions merged by event time instead.
   */
  onRecords: (records: readonly DecodedRecord<T>[]) => Promise<void> | void;
  /**
   * Hand records over as one sequence that does not depend on fetch timing: the partitions merged
   * on (timestamp, partition), each in offset order, in chunks of exactly this many records (the
   * last one shorter); see streams/merge.ts. Replays that build state use it, so that two runs
   * build the same state.
   */
  eventTimeChunk?: number;
  /**
   * With `eventTimeChunk`: also end a chunk where a later period of this many ms starts (the count
   * starting again), so a replay stopping at such a boundary cuts the records as one running
   * through it does (streams/merge.ts).
   */
  eventTimePeriod?: number;
  /**
   * Read exactly these offsets, [start, end) per partition, instead of [the first offset stamped
   * at or after `from`, the end offset when the replay starts): e.g. where an earlier pass found
   * the interval's records (streams/offset-index.ts). Records are still filtered by [from, to).
   */
  ranges?: readonly PartitionRange[];
  /**
   * Sees every record read, in range or not, by partition, offset and timestamp (e.g. to index);
   * a batch fetched again after a failure is seen again.
   */
  onRead?: (partition: number, offset: string, timestamp: number) => void;
  /** Progress: records read (in or out of range) and total records to read. */
  onProgress?: (read: number, total: number) => void;
  /** Give up when no progress is made for this long (ms). */
  idleTimeoutMs?: number;
}

export interface ReplayResult {
  /** Records in range handed to `onRecords`. */
  records: number;
  /** Records read but outside [from, to). */
  skipped: number;
  /** Records that failed to decode or validate. */
  invalid: number;
  /**
   * Records fetched from partitions this replay does not read (nothing to read there, or read to
   * their end) and dropped: 0 when every such partition sits at its end (`seekPositions`).
   */
  unread: number;
  /** Per partition: [start offset, end offset) that was read. */
  ranges: { partition: number; start: string; end: string }[];
}

/** A partition's [start, end) offsets. */
export type PartitionRange = ReplayResult['ranges'][number];

/** Where a running replay stands; shared by the batch handler, the seeks and the watchdog. */
interface ReplayState {
  /** Partitions not yet read to their end offset. */
  readonly pending: Map<number, PartitionRange>;
  /** Next offset to hand over, per pending partition. */
  readonly position: Map<number, bigint>;
  /** Records to read in all (in or out of range). */
  readonly total: number;
  readonly result: ReplayResult;
  /** Records read so far (in or out of range), for `onProgress`. */
  read: number;
  /** When the last batch was done (ms since the epoch), for the watchdog. */
  lastProgress: number;
  /** Set when `onRecords` failed or the watchdog gave up; thrown once the consumer is closed. */
  failure: unknown;
  /** Every partition reached its end, or a failure was set. */
  readonly done: Promise<void>;
  readonly finish: () => void;
}

/** Replay `topic` between two instants; resolves when every partition reached its end offset. */
export async function replay<T>(opts: ReplayOptions<T>): Promise<ReplayResult> {
  if (!(opts.from < opts.to)) {
    throw new RecError('REC_ERR_REPLAY', `replay needs from < to (got ${opts.from} .. ${opts.to})`);
  }
  const log = opts.logger.child({ module: 'replay', topic: opts.topic.name });
  const ranges = opts.ranges
    ? opts.ranges.map((r) => ({ ...r }))
    : await partitionRanges(opts.kafka, opts.topic.name, opts.from);
  const pending = new Map(
    ranges.filter((r) => BigInt(r.start) < BigInt(r.end)).map((r) => [r.partition, r]),
  );
  const total = ranges.reduce((n, r) => n + Number(BigInt(r.end) - BigInt(r.start)), 0);
  const result: ReplayResult = { records: 0, skipped: 0, invalid: 0, unread: 0, ranges };
  if (pending.size === 0) return result;

  const groupId = `replay-${randomUUID()}`;
  const consumer = opts.kafka.consumer({ groupId, allowAutoTopicCreation: false });
  const merge =
    opts.eventTimeChunk === undefined
      ? null
      : new EventTimeMerge<DecodedRecord<T>>(
          pending.keys(),
          opts.eventTimeChunk,
          opts.onRecords,
          opts.eventTimePeriod,
        );
  const state = replayState(pending, total, result);
  const seekAll = () => {
    seekPositions(consumer, opts.topic.name, state, ranges, log);
  };
  consumer.on(consumer.events.GROUP_JOIN, seekAll);

  await consumer.connect();
  try {
    await consumer.subscribe({ topic: opts.topic.name, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => handOver(opts, log, state, merge, payload),
    });
    // Seek each partition to where this replay stands. kafkajs applies a seek only while the
    // consumer is in its group, and forgets it when the consumer restarts after an error, so the
    // same seek is repeated on every group join (from the position reached, not the start: a
    // rejoin must not hand over records twice).
    seekAll();
    const watchdog = watchIdle(opts.topic.name, opts.idleTimeoutMs ?? 60_000, state);
    await state.done;
    clearInterval(watchdog);
  } finally {
    await consumer.disconnect();
    await deleteGroup(opts.kafka, groupId, log);
  }
  const { failure } = state;
  if (failure !== null) throw failure instanceof Error ? failure : new Error(errorMessage(failure));
  log.info(result, 'replay finished');
  return result;
}

/**
 * Per partition, [first offset with a timestamp >= from, end offset now): the broker's
 * offsets-by-timestamp lookup and the end offsets, fetched together.
 */
async function partitionRanges(
  kafka: Kafka,
  topic: string,
  from: number,
): Promise<PartitionRange[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [starts, ends] = await Promise.all([
      admin.fetchTopicOffsetsByTimestamp(topic, from),
      admin.fetchTopicOffsets(topic),
    ]);
    return ends.map((e) => {
      const s = starts.find((x) => x.partition === e.partition);
      // -1 means no record at or after `from`: nothing to read in that partition.
      const start = s === undefined || BigInt(s.offset) < 0n ? e.high : s.offset;
      return { partition: e.partition, start, end: e.high };
    });
  } finally {
    await admin.disconnect();
  }
}

/** A replay about to start: every pending partition at its start offset, nothing counted yet. */
function replayState(
  pending: Map<number, PartitionRange>,
  total: number,
  result: ReplayResult,
): ReplayState {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    pending,
    position: new Map([...pending.values()].map((r) => [r.partition, BigInt(r.start)])),
    total,
    result,
    read: 0,
    lastProgress: Date.now(),
    failure: null,
    done,
    finish,
  };
}

/**
 * Seek every pending partition to its position, and every other one (nothing to read, or read to
 * its end) to its end offset (see the GROUP_JOIN note in `replay`): the group starts a partition
 * without a seek at its beginning, and the batches this replay leaves unresolved would be fetched
 * again and again until it ends.
 */
function seekPositions(
  consumer: Consumer,
  topic: string,
  state: ReplayState,
  ranges: readonly PartitionRange[],
  log: Logger,
) {
  for (const { partition, end } of ranges) {
    const position = state.pending.has(partition) ? state.position.get(partition) : undefined;
    const offset = position === undefined ? end : position.toString();
    try {
      consumer.seek({ topic, partition, offset });
    } catch (err) {
      // Not in the group yet (or restarting): the GROUP_JOIN listener seeks again.
      log.debug({ partition, err: errorMessage(err) }, 'seek deferred to the next group join');
    }
  }
}

/**
 * The eachBatch handler: hand the batch's records in range to `onRecords` (through `merge` when
 * the replay merges by event time: it calls `onRecords` with each full chunk, and with the rest
 * once the last partition ended), then count them, move the partition's position past the batch
 * and finish when no partition is left. A failing `onRecords` ends the replay with that failure,
 * the batch neither counted nor resolved.
 */
async function handOver<T>(
  opts: ReplayOptions<T>,
  log: Logger,
  state: ReplayState,
  merge: EventTimeMerge<DecodedRecord<T>> | null,
  payload: EachBatchPayload,
): Promise<void> {
  const { batch } = payload;
  const range = state.pending.get(batch.partition);
  if (!range) {
    state.result.unread += batch.messages.length;
    return;
  }
  const start = state.position.get(batch.partition) ?? BigInt(range.start);
  const end = BigInt(range.end);
  const { inRange, read, skipped, invalid } = await readBatch(opts, log, batch, start, end);
  const lastOffset = BigInt(batch.lastOffset());
  const ended = lastOffset + 1n >= end;
  try {
    if (merge !== null) {
      await merge.add(batch.partition, inRange, ended);
      if (ended && state.pending.size === 1) await merge.end();
    } else if (inRange.length > 0) await opts.onRecords(inRange);
  } catch (err) {
    state.failure = err;
    state.finish();
    return;
  }
  state.result.records += inRange.length;
  state.result.skipped += skipped;
  state.result.invalid += invalid;
  state.read += read;
  state.lastProgress = Date.now();
  opts.onProgress?.(state.read, state.total);
  // Mark the batch consumed, or kafkajs fetches it again (auto-resolve is off so that a
  // failed handler does not skip records).
  payload.resolveOffset(batch.lastOffset());
  state.position.set(batch.partition, lastOffset + 1n);
  if (ended) {
    state.pending.delete(batch.partition);
    if (state.pending.size === 0) state.finish();
  }
  await payload.heartbeat();
}

/**
 * The batch's records in [start, end) by offset, decoded when in [from, to) by timestamp. Counted
 * here and merged by the caller only when the batch is done: a retried batch counts once.
 */
async function readBatch<T>(
  opts: ReplayOptions<T>,
  log: Logger,
  batch: Batch,
  start: bigint,
  end: bigint,
): Promise<{ inRange: DecodedRecord<T>[]; read: number; skipped: number; invalid: number }> {
  const inRange: DecodedRecord<T>[] = [];
  let read = 0;
  let skipped = 0;
  let invalid = 0;
  for (const m of batch.messages) {
    const offset = BigInt(m.offset);
    if (offset < start) continue;
    if (offset >= end) break;
    read++;
    const ts = Number(m.timestamp);
    opts.onRead?.(batch.partition, m.offset, ts);
    if (ts < opts.from || ts >= opts.to) {
      skipped++;
      continue;
    }
    try {
      inRange.push({
        value: await opts.codec.decodeValid(m.value),
        key: m.key?.toString('utf8') ?? null,
        topic: batch.topic,
        partition: batch.partition,
        offset: m.offset,
        timestamp: ts,
      });
    } catch (err) {
      if (err instanceof RecError && !err.retriable) {
        invalid++;
        log.warn({ partition: batch.partition, offset: m.offset, err: err.message }, 'skipped');
      } else throw err;
    }
  }
  return { inRange, read, skipped, invalid };
}

/**
 * Fail the replay (retriable `REC_ERR_REPLAY`) when no batch of a pending partition was done for
 * `idleMs`; checked every second.
 */
function watchIdle(topic: string, idleMs: number, state: ReplayState) {
  return setInterval(() => {
    if (Date.now() - state.lastProgress > idleMs) {
      state.failure = new RecError(
        'REC_ERR_REPLAY',
        `replay of ${topic} made no progress for ${idleMs} ms (partitions left: ${[...state.pending.keys()].join(',')})`,
        { retriable: true },
      );
      state.finish();
    }
  }, 1_000);
}

/** Delete the replay's throwaway consumer group (best effort: a failure is only logged). */
async function deleteGroup(kafka: Kafka, groupId: string, log: Logger): Promise<void> {
  const cleanup = kafka.admin();
  await cleanup.connect();
  await cleanup.deleteGroups([groupId]).catch((err: unknown) => {
    log.debug({ err: errorMessage(err) }, 'could not delete replay group');
  });
  await cleanup.disconnect();
}
