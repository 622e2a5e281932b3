/**
 * Typed Avro producer: validates each event with its contract, keys it by the contract's key
 * field, stamps the Kafka record with the event time (so offsets-by-timestamp follow event time),
 * and sends in chunks with acks from all in-sync replicas and an idempotent producer. A chunk
 * that fails with a transient error (a broker restarting) is sent again with backoff: the
 * idempotent producer keeps its sequence numbers, so the broker drops a copy it already holds.
 *
 * Each produce call holds one partition's messages (the partition computed here as kafkajs's
 * default partitioner would, murmur2 of the key over the descriptor's partition count): kafkajs
 * 2.2.4 retries a multi-broker send only to the brokers that have not answered yet, so when a
 * partition's leader dies and leadership moves to a broker that already answered for another
 * partition, that partition's messages are never sent while the send resolves (seen as one
 * send's share of the killed leader's partition missing in the cluster failover test).
 */
import {
  Partitioners,
  type Kafka,
  type Message,
  type PartitionMetadata,
  type Producer,
} from 'kafkajs';
import type { AvroCodec } from './avro.ts';
import { validateEvent } from './avro.ts';
import { retryTransient, type RetryPolicy } from './retriable.ts';
import type { TopicDescriptor } from './topics.ts';

export interface SendOptions {
  /** Messages per produce request. */
  chunkSize?: number;
  /** Called after each chunk with the number of events sent so far. */
  onProgress?: (sent: number) => void;
  /** Upper bound on events per second (omit for full speed). */
  rate?: number;
  /** How a chunk failing with a transient error is sent again (default `SEND_RETRY`). */
  retry?: RetryPolicy;
  /** Called before each such resend, with the error. */
  onRetry?: (info: { attempt: number; delayMs: number; err: unknown }) => void;
}

/**
 * A chunk is sent again for up to 5 minutes (kafkajs's own retries, about half a minute, come
 * first): long enough for a broker restart, short enough that a broker gone for good is reported.
 */
export const SEND_RETRY: RetryPolicy = { forMs: 300_000, initialMs: 500, maxMs: 5_000 };

export function createIdempotentProducer(kafka: Kafka): Producer {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    // murmur2 on the key, as the Java client: one customer's purchases share a partition.
    createPartitioner: Partitioners.DefaultPartitioner,
  });
}

const defaultPartitioner = Partitioners.DefaultPartitioner();

/** The partition list the partitioner is handed, per partition count (built once per count). */
const partitionLists = new Map<number, PartitionMetadata[]>();

/** The partition kafkajs's default partitioner picks for `key` among `count` partitions. */
export function partitionOf(topic: string, key: string, count: number): number {
  let partitionMetadata = partitionLists.get(count);
  if (partitionMetadata === undefined) {
    partitionMetadata = Array.from({ length: count }, (_, i) => ({
      partitionId: i,
      leader: 0,
      replicas: [],
      isr: [],
      partitionErrorCode: 0,
    }));
    partitionLists.set(count, partitionMetadata);
  }
  return defaultPartitioner({ topic, partitionMetadata, message: { key, value: null } });
}

/** Publishes events of one topic. */
export class EventProducer<T> {
  constructor(
    private readonly producer: Producer,
    private readonly topic: TopicDescriptor<T>,
    private readonly codec: AvroCodec<T>,
  ) {}

  /** Build the Kafka message for one event (validated first). */
  toMessage(event: T): Message {
    const valid = validateEvent(this.topic, event);
    const key = valid[this.topic.contract.keyField];
    const time = valid[this.topic.contract.timeField];
    return {
      key: String(key),
      value: this.codec.encode(valid),
      timestamp: String(time),
      headers: { 'content-type': 'application/vnd.confluent.avro' },
    };
  }

  /** Send all `events` in order; resolves when every chunk was acknowledged. */
  async send(events: readonly T[], opts: SendOptions = {}): Promise<number> {
    const limited = opts.rate !== undefined && opts.rate > 0;
    // Under a rate limit, send about ten chunks a second so the pace stays smooth.
    const chunkSize = Math.max(
      1,
      limited
        ? Math.min(opts.chunkSize ?? 2_000, Math.ceil((opts.rate ?? 1) / 10))
        : (opts.chunkSize ?? 2_000),
    );
    const started = Date.now();
    let sent = 0;
    for (let i = 0; i < events.length; i += chunkSize) {
      const chunk = events.slice(i, i + chunkSize);
      if (limited) {
        const due = started + ((sent + chunk.length) / (opts.rate ?? 1)) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      // One call per partition (module comment), the partitions concurrently.
      const perPartition = new Map<number, Message[]>();
      for (const e of chunk) {
        const m = this.toMessage(e);
        const partition = partitionOf(this.topic.name, String(m.key), this.topic.partitions);
        const list = perPartition.get(partition);
        if (list) list.push({ ...m, partition });
        else perPartition.set(partition, [{ ...m, partition }]);
      }
      await Promise.all(
        [...perPartition.values()].map((messages) =>
          retryTransient(
            () => this.producer.send({ topic: this.topic.name, acks: -1, messages }),
            opts.retry ?? SEND_RETRY,
            opts.onRetry,
          ),
        ),
      );
      sent += chunk.length;
      opts.onProgress?.(sent);
    }
    return sent;
  }
}
