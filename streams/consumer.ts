/**
 * Consumer runner on kafkajs `eachBatch`. Per batch: decode and validate every record; route the
 * ones that fail to `<topic>.dlq` with the reason in headers (or, in a group that does not own
 * the DLQ, count and skip them: `poison`); hand the rest to the handler; and only when the
 * handler (and the DLQ write) succeeded, commit the batch's offsets. A failing handler is
 * retried with backoff while the consumer keeps heartbeating, so a transient outage (Redis
 * restarting) neither loses records nor turns into a crash loop.
 */
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage, Producer, IHeaders } from 'kafkajs';
import type { AvroCodec } from './avro.ts';
import { RecError, errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
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
  onRetry?: (info: { topic: string; attempt: number; error: string }) => void;
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
  const initialMs = opts.retry?.initialMs ?? 200;
  const maxMs = opts.retry?.maxMs ?? 10_000;
  let stopping = false;

  async function processBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const heartbeat = () => payload.heartbeat();
    const isRunning = () => payload.isRunning();
    const isStale = () => payload.isStale();
    if (batch.messages.length === 0) return;
    const started = performance.now();
    const good: DecodedRecord<T>[] = [];
    const poison: { message: KafkaMessage; err: RecError }[] = [];

    for (const message of batch.messages) {
      try {
        const value = await opts.codec.decodeValid(message.value);
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

    const ctx: BatchContext = {
      topic: batch.topic,
      partition: batch.partition,
      highWatermark: batch.highWatermark,
      heartbeat,
    };
    // Retry the handler until it succeeds or this consumer is stopped or loses the partition.
    let rejected: readonly Rejection<T>[] = [];
    for (let attempt = 1; ; attempt++) {
      try {
        if (good.length > 0) rejected = (await opts.handler(good, ctx))?.rejected ?? [];
        break;
      } catch (err) {
        if (stopping || !isRunning() || isStale()) throw err;
        const delay = Math.min(maxMs, initialMs * 2 ** (attempt - 1));
        log.warn({ attempt, delay, err: errorMessage(err) }, 'batch handler failed; retrying');
        opts.hooks?.onRetry?.({ topic: batch.topic, attempt, error: errorMessage(err) });
        await sleep(delay);
        await heartbeat();
      }
    }

    const bad = [
      ...poison,
      ...rejected.map((r) => ({
        message: batch.messages.find((m) => m.offset === r.record.offset) as KafkaMessage,
        err: r.reason,
      })),
    ];
    const toDlq = opts.poison === 'skip' ? [] : bad;
    if (opts.poison === 'skip' && bad.length > 0) {
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
    }
    if (toDlq.length > 0) {
      try {
        await opts.dlqProducer.send({
          topic: opts.topic.dlq,
          acks: -1,
          messages: toDlq.map((p) =>
            dlqMessage(opts.groupId, batch.topic, batch.partition, p.message, p.err),
          ),
        });
      } catch (err) {
        throw new RecError(
          'REC_ERR_DLQ_WRITE',
          `could not write ${toDlq.length} records to ${opts.topic.dlq}: ${errorMessage(err)}`,
          { retriable: true, cause: err },
        );
      }
      for (const p of toDlq) {
        log.warn(
          {
            offset: p.message.offset,
            partition: batch.partition,
            code: p.err.code,
            reason: p.err.message,
          },
          'record sent to DLQ',
        );
        opts.hooks?.onDlq?.({ topic: batch.topic, code: p.err.code, reason: p.err.message });
      }
    }

    const last = batch.lastOffset();
    payload.resolveOffset(last);
    await consumer.commitOffsets([
      { topic: batch.topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() },
    ]);
    await heartbeat();
    const lastMessage = batch.messages[batch.messages.length - 1];
    opts.hooks?.onBatch?.({
      topic: batch.topic,
      partition: batch.partition,
      records: good.length,
      dlq: toDlq.length,
      durationMs: performance.now() - started,
      lastOffset: last,
      highWatermark: batch.highWatermark,
      lastTimestamp: lastMessage ? Number(lastMessage.timestamp) : null,
    });
  }

  await consumer.connect();
  await consumer.subscribe({ topic: opts.topic.name, fromBeginning: opts.fromBeginning ?? true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: opts.partitionsConsumedConcurrently ?? 1,
    eachBatch: processBatch,
  });
  log.info('consumer running');
  return {
    consumer,
    async stop() {
      stopping = true;
      await consumer.disconnect();
    },
  };
}
