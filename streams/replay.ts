/**
 * Replay: read a topic's records whose timestamps (event time, as our producer stamps them) lie in
 * [from, to). Start offsets come from the broker's offsets-by-timestamp lookup; the end is the set
 * of end offsets recorded when the replay starts, so a replay terminates even while producers keep
 * writing. Records in range that arrived late (after later-stamped ones) are still found, because
 * every record with timestamp >= from sits at or after the looked-up offset; filtering by timestamp
 * then gives exactly the interval. Read-only: records that fail to decode are counted and skipped.
 */
import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import type { AvroCodec } from './avro.ts';
import type { DecodedRecord } from './consumer.ts';
import { RecError, errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { TopicDescriptor } from './topics.ts';

export interface ReplayOptions<T> {
  kafka: Kafka;
  topic: TopicDescriptor<T>;
  codec: AvroCodec<T>;
  /** Inclusive lower bound, ms since the epoch. */
  from: number;
  /** Exclusive upper bound, ms since the epoch. */
  to: number;
  logger: Logger;
  /** Receives records in range, batch by batch (per partition, in offset order). */
  onRecords: (records: readonly DecodedRecord<T>[]) => Promise<void> | void;
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
  /** Per partition: [start offset, end offset) that was read. */
  ranges: { partition: number; start: string; end: string }[];
}

/** Replay `topic` between two instants; resolves when every partition reached its end offset. */
export async function replay<T>(opts: ReplayOptions<T>): Promise<ReplayResult> {
  if (!(opts.from < opts.to)) {
    throw new RecError('REC_ERR_REPLAY', `replay needs from < to (got ${opts.from} .. ${opts.to})`);
  }
  const log = opts.logger.child({ module: 'replay', topic: opts.topic.name });
  const admin = opts.kafka.admin();
  await admin.connect();
  let ranges: ReplayResult['ranges'];
  try {
    const [starts, ends] = await Promise.all([
      admin.fetchTopicOffsetsByTimestamp(opts.topic.name, opts.from),
      admin.fetchTopicOffsets(opts.topic.name),
    ]);
    ranges = ends.map((e) => {
      const s = starts.find((x) => x.partition === e.partition);
      // -1 means no record at or after `from`: nothing to read in that partition.
      const start = s === undefined || BigInt(s.offset) < 0n ? e.high : s.offset;
      return { partition: e.partition, start, end: e.high };
    });
  } finally {
    await admin.disconnect();
  }

  const pending = new Map(
    ranges.filter((r) => BigInt(r.start) < BigInt(r.end)).map((r) => [r.partition, r]),
  );
  const total = ranges.reduce((n, r) => n + Number(BigInt(r.end) - BigInt(r.start)), 0);
  const result: ReplayResult = { records: 0, skipped: 0, invalid: 0, ranges };
  if (pending.size === 0) return result;

  const groupId = `replay-${randomUUID()}`;
  const consumer = opts.kafka.consumer({ groupId, allowAutoTopicCreation: false });
  let read = 0;
  let lastProgress = Date.now();
  let failure: unknown = null;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));

  // Next offset to hand over, per pending partition.
  const position = new Map([...pending.values()].map((r) => [r.partition, BigInt(r.start)]));
  const seekAll = () => {
    for (const [partition, offset] of position) {
      if (!pending.has(partition)) continue;
      try {
        consumer.seek({ topic: opts.topic.name, partition, offset: offset.toString() });
      } catch (err) {
        // Not in the group yet (or restarting): the GROUP_JOIN listener seeks again.
        log.debug({ partition, err: errorMessage(err) }, 'seek deferred to the next group join');
      }
    }
  };
  consumer.on(consumer.events.GROUP_JOIN, seekAll);

  await consumer.connect();
  try {
    await consumer.subscribe({ topic: opts.topic.name, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async (payload) => {
        const { batch } = payload;
        const range = pending.get(batch.partition);
        if (!range) return;
        const start = position.get(batch.partition) ?? BigInt(range.start);
        const end = BigInt(range.end);
        const inRange: DecodedRecord<T>[] = [];
        // Counted locally and merged only when the batch is done: a retried batch counts once.
        let batchRead = 0;
        let batchSkipped = 0;
        let batchInvalid = 0;
        for (const m of batch.messages) {
          const offset = BigInt(m.offset);
          if (offset < start) continue;
          if (offset >= end) break;
          batchRead++;
          const ts = Number(m.timestamp);
          if (ts < opts.from || ts >= opts.to) {
            batchSkipped++;
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
              batchInvalid++;
              log.warn(
                { partition: batch.partition, offset: m.offset, err: err.message },
                'skipped',
              );
            } else throw err;
          }
        }
        try {
          if (inRange.length > 0) await opts.onRecords(inRange);
        } catch (err) {
          failure = err;
          finish();
          return;
        }
        result.records += inRange.length;
        result.skipped += batchSkipped;
        result.invalid += batchInvalid;
        read += batchRead;
        lastProgress = Date.now();
        opts.onProgress?.(read, total);
        // Mark the batch consumed, or kafkajs fetches it again (auto-resolve is off so that a
        // failed handler does not skip records).
        payload.resolveOffset(batch.lastOffset());
        const lastOffset = BigInt(batch.lastOffset());
        position.set(batch.partition, lastOffset + 1n);
        if (lastOffset + 1n >= end) {
          pending.delete(batch.partition);
          if (pending.size === 0) finish();
        }
        await payload.heartbeat();
      },
    });
    // Seek each partition to where this replay stands. kafkajs applies a seek only while the
    // consumer is in its group, and forgets it when the consumer restarts after an error, so the
    // same seek is repeated on every group join (from the position reached, not the start: a
    // rejoin must not hand over records twice).
    seekAll();
    const idle = opts.idleTimeoutMs ?? 60_000;
    const watchdog = setInterval(() => {
      if (Date.now() - lastProgress > idle) {
        failure = new RecError(
          'REC_ERR_REPLAY',
          `replay of ${opts.topic.name} made no progress for ${idle} ms (partitions left: ${[...pending.keys()].join(',')})`,
          { retriable: true },
        );
        finish();
      }
    }, 1_000);
    await done;
    clearInterval(watchdog);
  } finally {
    await consumer.disconnect();
    const cleanup = opts.kafka.admin();
    await cleanup.connect();
    await cleanup.deleteGroups([groupId]).catch((err: unknown) => {
      log.debug({ err: errorMessage(err) }, 'could not delete replay group');
    });
    await cleanup.disconnect();
  }
  if (failure !== null) throw failure instanceof Error ? failure : new Error(errorMessage(failure));
  log.info(result, 'replay finished');
  return result;
}
