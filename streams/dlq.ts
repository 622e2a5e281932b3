/**
 * Dead letters of a topic (`<topic>.dlq`, written by the consumer runner, streams/consumer.ts):
 * read them, describe them, and re-publish ("redrive") chosen ones to their source topic.
 *
 * - Reading goes from each DLQ partition's first offset to its end offset recorded when the read
 *   starts, so it ends even on an idle topic or while consumers keep dead-lettering. It moves no
 *   committed offset (a throwaway group, deleted afterwards).
 * - A redrive re-publishes the original key and value bytes to the source partition, with the
 *   original Kafka timestamp (`dlq.source.timestamp`), through an idempotent producer. The
 *   `dlq.*` headers are dropped, the record's own headers kept, and `dlq.redriven.from`
 *   (`<dlq topic>:<partition>:<offset>`) and `dlq.redriven.at` added.
 * - Never twice: per error code, the consumer group `<prefix>dlq-redrive.<topic>.<code>` holds,
 *   per DLQ partition, the offset below which every dead letter of that code was re-published. A
 *   redrive sends only dead letters at or past their code's position and, once the broker
 *   acknowledged them, moves each position past the last one sent. So a second redrive sends
 *   only what was dead-lettered since, a `--code` redrive leaves the other codes to a later one,
 *   and a `--limit` redrive leaves the rest to the next. The window: a run that dies between the
 *   send and the position update sends those records again on the next run (the purchases
 *   processors count a re-published event once, by its event id).
 */
import { randomUUID } from 'node:crypto';
import type { IHeaders, Kafka, KafkaMessage, Message, Producer } from 'kafkajs';
import type { AvroCodec } from './avro.ts';
import { DLQ_HEADERS } from './consumer.ts';
import { RecError, errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { TopicDescriptor } from './topics.ts';

/** Headers a redrive adds to a re-published record. */
export const REDRIVE_HEADERS = {
  from: 'dlq.redriven.from',
  at: 'dlq.redriven.at',
} as const;

/** The code given to a dead letter without a `dlq.error.code` header. */
export const NO_CODE = 'UNKNOWN';

/** One record of a DLQ, with what its headers say. */
export interface DeadLetter {
  readonly dlqTopic: string;
  readonly dlqPartition: number;
  readonly dlqOffset: string;
  readonly code: string;
  readonly reason: string | null;
  readonly sourceTopic: string | null;
  readonly sourcePartition: number | null;
  readonly sourceOffset: string | null;
  /** The original record's Kafka timestamp (ms), from `dlq.source.timestamp`. */
  readonly sourceTimestamp: number | null;
  readonly failedAt: string | null;
  readonly group: string | null;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  /** The record's headers (the original's and the `dlq.*` ones). */
  readonly headers: IHeaders;
}

const header = (h: IHeaders | undefined, name: string): string | null => {
  const v = h?.[name];
  const one = Array.isArray(v) ? v[0] : v;
  return one === undefined ? null : one.toString();
};

const intOrNull = (s: string | null): number | null =>
  s === null || !/^-?\d+$/.test(s) ? null : Number(s);

function toDeadLetter(topic: string, partition: number, m: KafkaMessage): DeadLetter {
  const h = m.headers;
  return {
    dlqTopic: topic,
    dlqPartition: partition,
    dlqOffset: m.offset,
    code: header(h, DLQ_HEADERS.code) ?? NO_CODE,
    reason: header(h, DLQ_HEADERS.reason),
    sourceTopic: header(h, DLQ_HEADERS.topic),
    sourcePartition: intOrNull(header(h, DLQ_HEADERS.partition)),
    sourceOffset: header(h, DLQ_HEADERS.offset),
    sourceTimestamp: intOrNull(header(h, DLQ_HEADERS.timestamp)),
    failedAt: header(h, DLQ_HEADERS.failedAt),
    group: header(h, DLQ_HEADERS.group),
    key: m.key ?? null,
    value: m.value ?? null,
    headers: h ?? {},
  };
}

/**
 * Every record of `dlqTopic` from each partition's first offset to its end offset at the start
 * of the call, in partition then offset order. Fails (retriable `REC_ERR_REPLAY`) when no batch
 * arrives for `idleTimeoutMs` while records are still expected.
 */
export async function readDeadLetters(
  kafka: Kafka,
  dlqTopic: string,
  logger: Logger,
  idleTimeoutMs = 30_000,
): Promise<DeadLetter[]> {
  const log = logger.child({ module: 'dlq', topic: dlqTopic });
  const admin = kafka.admin();
  await admin.connect();
  let ends: Map<number, bigint>;
  try {
    const offsets = await admin.fetchTopicOffsets(dlqTopic);
    ends = new Map(
      offsets
        .filter((o) => BigInt(o.low) < BigInt(o.high))
        .map((o) => [o.partition, BigInt(o.high)]),
    );
  } finally {
    await admin.disconnect();
  }
  const got = new Map<number, Map<string, DeadLetter>>();
  if (ends.size > 0) {
    const groupId = `dlq-read-${randomUUID()}`;
    const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false });
    const pending = new Set(ends.keys());
    let lastProgress = Date.now();
    let finish!: (err?: unknown) => void;
    const done = new Promise<void>((resolve, reject) => {
      finish = (err?: unknown) => {
        if (err === undefined) resolve();
        else reject(err instanceof Error ? err : new Error(errorMessage(err)));
      };
    });
    await consumer.connect();
    try {
      // A fresh group starts at the earliest offset; kept records are keyed by offset, so a batch
      // fetched again after a rejoin counts once.
      await consumer.subscribe({ topic: dlqTopic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: async (payload) => {
          const { batch } = payload;
          const end = ends.get(batch.partition);
          if (end === undefined) return;
          const kept = got.get(batch.partition) ?? new Map<string, DeadLetter>();
          got.set(batch.partition, kept);
          for (const m of batch.messages) {
            if (BigInt(m.offset) >= end) break;
            kept.set(m.offset, toDeadLetter(dlqTopic, batch.partition, m));
          }
          payload.resolveOffset(batch.lastOffset());
          lastProgress = Date.now();
          if (BigInt(batch.lastOffset()) + 1n >= end) {
            pending.delete(batch.partition);
            if (pending.size === 0) finish();
          }
          await payload.heartbeat();
        },
      });
      const watchdog = setInterval(() => {
        if (Date.now() - lastProgress > idleTimeoutMs) {
          finish(
            new RecError(
              'REC_ERR_REPLAY',
              `reading ${dlqTopic} made no progress for ${idleTimeoutMs} ms (partitions left: ${[...pending].join(',')})`,
              { retriable: true },
            ),
          );
        }
      }, 1_000);
      try {
        await done;
      } finally {
        clearInterval(watchdog);
      }
    } finally {
      await consumer.disconnect();
      const cleanup = kafka.admin();
      await cleanup.connect();
      await cleanup.deleteGroups([groupId]).catch((err: unknown) => {
        log.debug({ err: errorMessage(err) }, 'could not delete the reading group');
      });
      await cleanup.disconnect();
    }
  }
  return [...got.entries()]
    .sort(([a], [b]) => a - b)
    .flatMap(([, kept]) =>
      [...kept.values()].sort((a, b) => (BigInt(a.dlqOffset) < BigInt(b.dlqOffset) ? -1 : 1)),
    );
}

/** What a dead letter's value holds, for a listing. */
export interface ValuePreview {
  readonly decoded: boolean;
  /** The decoded value as JSON, cut to `maxChars` (decoded), or why it does not decode. */
  readonly text: string;
  readonly bytes: number;
}

/**
 * Try to decode `value` with the topic's codec (through the registry). A value that is not a
 * record of the topic gives `decoded: false` and the reason; a registry that cannot be reached
 * throws (retriable), as everywhere.
 */
export async function previewValue<T>(
  codec: AvroCodec<T>,
  value: Buffer | null,
  maxChars = 160,
): Promise<ValuePreview> {
  const bytes = value?.length ?? 0;
  try {
    const json = JSON.stringify(await codec.decode(value), (_k, v: unknown) =>
      typeof v === 'bigint' ? v.toString() : v,
    );
    return {
      decoded: true,
      text: json.length > maxChars ? `${json.slice(0, maxChars - 1)}…` : json,
      bytes,
    };
  } catch (err) {
    if (err instanceof RecError && !err.retriable) {
      return { decoded: false, text: `${err.code}: ${err.message}`, bytes };
    }
    throw err;
  }
}

/** The consumer group holding the redrive position of one code of one topic's DLQ. */
export function redriveGroup(prefix: string, logicalTopic: string, code: string): string {
  return `${prefix}dlq-redrive.${logicalTopic}.${code.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

/** Per code, per DLQ partition: the offset below which the code's dead letters were sent. */
export type RedrivePositions = Map<string, Map<number, bigint>>;

/** The redrive positions of `codes` (no committed offset: position 0). */
export async function redrivePositions(
  kafka: Kafka,
  dlqTopic: string,
  groupOf: (code: string) => string,
  codes: Iterable<string>,
): Promise<RedrivePositions> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const out: RedrivePositions = new Map();
    for (const code of new Set(codes)) {
      const [t] = await admin.fetchOffsets({ groupId: groupOf(code), topics: [dlqTopic] });
      const byPartition = new Map<number, bigint>();
      for (const p of t?.partitions ?? []) {
        const o = BigInt(p.offset);
        if (o >= 0n) byPartition.set(p.partition, o);
      }
      out.set(code, byPartition);
    }
    return out;
  } finally {
    await admin.disconnect();
  }
}

/** Whether a redrive already sent this dead letter (it lies below its code's position). */
export function alreadyRedriven(d: DeadLetter, positions: RedrivePositions): boolean {
  const pos = positions.get(d.code)?.get(d.dlqPartition);
  return pos !== undefined && BigInt(d.dlqOffset) < pos;
}

/** The record a redrive sends for `d`: original key, value and timestamp, headers cleaned. */
export function redriveMessage(d: DeadLetter, now: Date = new Date()): Message {
  const headers: IHeaders = {};
  for (const [name, v] of Object.entries(d.headers)) {
    if (v !== undefined && !name.startsWith('dlq.')) headers[name] = v;
  }
  headers[REDRIVE_HEADERS.from] = `${d.dlqTopic}:${d.dlqPartition}:${d.dlqOffset}`;
  headers[REDRIVE_HEADERS.at] = now.toISOString();
  return {
    key: d.key,
    value: d.value,
    headers,
    ...(d.sourceTimestamp === null ? {} : { timestamp: String(d.sourceTimestamp) }),
    ...(d.sourcePartition === null ? {} : { partition: d.sourcePartition }),
  };
}

/**
 * Re-publish `selected` (in DLQ order) to `topic` through `producer` (idempotent, acks from all
 * in-sync replicas), then move each code's position past the last of its dead letters sent, per
 * DLQ partition. Returns how many were sent.
 */
export async function redrive(opts: {
  kafka: Kafka;
  producer: Producer;
  topic: TopicDescriptor<unknown>;
  selected: readonly DeadLetter[];
  groupOf: (code: string) => string;
  logger: Logger;
}): Promise<number> {
  const { selected, topic } = opts;
  if (selected.length === 0) return 0;
  const now = new Date();
  try {
    await opts.producer.send({
      topic: topic.name,
      acks: -1,
      messages: selected.map((d) => redriveMessage(d, now)),
    });
  } catch (err) {
    throw new RecError(
      'REC_ERR_REDRIVE',
      `could not re-publish ${selected.length} dead letters to ${topic.name}: ${errorMessage(err)} (no redrive position moved: run again)`,
      { retriable: true, cause: err },
    );
  }
  const next = new Map<string, Map<number, bigint>>();
  for (const d of selected) {
    const byPartition = next.get(d.code) ?? new Map<number, bigint>();
    const after = BigInt(d.dlqOffset) + 1n;
    if ((byPartition.get(d.dlqPartition) ?? -1n) < after) byPartition.set(d.dlqPartition, after);
    next.set(d.code, byPartition);
  }
  const admin = opts.kafka.admin();
  await admin.connect();
  try {
    for (const [code, byPartition] of next) {
      await admin.setOffsets({
        groupId: opts.groupOf(code),
        topic: topic.dlq,
        partitions: [...byPartition].map(([partition, offset]) => ({
          partition,
          offset: offset.toString(),
        })),
      });
    }
  } catch (err) {
    throw new RecError(
      'REC_ERR_REDRIVE',
      `re-published ${selected.length} dead letters to ${topic.name} but could not record the redrive position: ${errorMessage(err)} (a next redrive would send them again)`,
      { cause: err },
    );
  } finally {
    await admin.disconnect();
  }
  opts.logger.info({ topic: topic.name, sent: selected.length }, 'dead letters re-published');
  return selected.length;
}
