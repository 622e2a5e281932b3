/**
 * HTTP ingest of purchases (routes/events.ts): what one posted element must be, the event ids
 * derived for elements without one, and the sink that produces the valid events to the
 * `purchases` topic through the project's Avro producer (streams/producer.ts: idempotent, acks
 * from all in-sync replicas, keyed by customer_id), so the processors see them exactly like
 * loaded ones.
 *
 * Derived ids: the loader's `purchaseEventId` (sha256 of customer, article, event time, price,
 * channel, quantity and `n`), with `n` numbering the identical tuples within the request in
 * order. The same batch posted again gets the same ids, whatever else it is batched with or in
 * which order, so a retry after a timeout or a 503 is recognised by the processors' dedupe; two
 * identical lines of one request (two units, as H&M writes them) are two purchases. The price of
 * that: identical purchases sent in *separate* requests get the same id and count once; a caller
 * that can make them (the same customer buying the same article at the same millisecond, price,
 * channel and quantity twice) sends its own `event_id`s.
 */
import type { Kafka } from 'kafkajs';
import { z } from 'zod';
import type { Logger } from '../common/logger.ts';
import { ID_PATTERN, purchaseSchema, type Purchase } from '../schemas/events.ts';
import { AvroCodec } from '../streams/avro.ts';
import type { SchemaRegistryClient } from '../streams/kafka.ts';
import { purchaseEventId } from '../streams/loader/convert.ts';
import { EventProducer, createIdempotentProducer } from '../streams/producer.ts';
import type { RetryPolicy } from '../streams/retriable.ts';
import type { TopicDescriptor } from '../streams/topics.ts';

/**
 * One posted purchase: the Avro `Purchase`'s fields, checked as the contract checks them
 * (schemas/events.ts), with `event_id` optional (derived, see the module comment) and
 * `quantity` defaulting to 1. `event_time` is required: it is when the purchase happened, which
 * only the caller knows, and a derived id depends on it. Unknown fields are refused (a typo such
 * as `customerId` is named, not silently dropped).
 */
export const purchaseIn = z.strictObject({
  ...purchaseSchema.shape,
  event_id: purchaseSchema.shape.event_id.optional(),
  quantity: purchaseSchema.shape.quantity.default(1),
});
export type PurchaseIn = z.infer<typeof purchaseIn>;

/**
 * The events of valid elements in order, each with its own `event_id` or a derived one (module
 * comment): identical tuples without an id are numbered 0, 1, … in the order they come.
 */
export function withEventIds(events: readonly PurchaseIn[]): Purchase[] {
  const seen = new Map<string, number>();
  return events.map((e) => {
    if (e.event_id !== undefined) return { ...e, event_id: e.event_id };
    const tuple = `${e.customer_id}|${e.article_id}|${e.event_time}|${e.price}|${e.sales_channel_id}|${e.quantity}`;
    const n = seen.get(tuple) ?? 0;
    seen.set(tuple, n + 1);
    return { ...e, event_id: purchaseEventId(e, n) };
  });
}

/** The `event_id` of a posted element, echoed in its status when it is a well-formed id. */
export function postedEventId(raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const id = (raw as { event_id?: unknown }).event_id;
  return typeof id === 'string' && ID_PATTERN.test(id) ? id : null;
}

const NO_RESEND: RetryPolicy = { retries: 0, initialMs: 0, maxMs: 0 };

/** Where accepted purchases go: resolves once every event is acknowledged. */
export interface PurchaseSink {
  send(events: readonly Purchase[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * The purchases topic through an idempotent producer, connected (and the schema registered) on
 * the first send, not at start: an instance whose Kafka is away still serves reads. A failed
 * connection is retried by the next send.
 */
export class KafkaPurchaseSink implements PurchaseSink {
  #ready: Promise<EventProducer<Purchase>> | null = null;
  #closed = false;
  readonly #producer;

  constructor(
    kafka: Kafka,
    private readonly registry: SchemaRegistryClient,
    private readonly topic: TopicDescriptor<Purchase>,
    private readonly logger: Logger,
  ) {
    this.#producer = createIdempotentProducer(kafka);
  }

  async send(events: readonly Purchase[]): Promise<void> {
    if (this.#closed) throw new Error('the ingest producer is closed');
    const producer = await this.#connect();
    // No resends beyond kafkajs's own: the route answers 503 at INGEST_TIMEOUT_MS and the client
    // posts again, so a send must not go on retrying behind a request already answered.
    await producer.send(events, { retry: NO_RESEND });
  }

  #connect(): Promise<EventProducer<Purchase>> {
    if (this.#ready !== null) return this.#ready;
    const ready = (async () => {
      const [codec] = await Promise.all([
        AvroCodec.forTopic(this.registry, this.topic),
        this.#producer.connect(),
      ]);
      this.logger.info({ topic: this.topic.name }, 'ingest producer connected');
      return new EventProducer(this.#producer, this.topic, codec);
    })();
    this.#ready = ready;
    ready.catch((err: unknown) => {
      if (this.#ready === ready) this.#ready = null;
      this.logger.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'ingest producer could not connect; the next request retries',
      );
    });
    return ready;
  }

  /** Disconnect, without waiting for a connection attempt still under way. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#producer.disconnect().catch(() => undefined);
  }
}
