/**
 * Served-list logging: every 200 answer of `GET /v1/recommendations/{customerId}` becomes one
 * record of the topic `recommendations.served` (schemas/served.avsc, keyed by customer_id), which
 * the online read-out replays. Logging never blocks or fails a request:
 *
 * - `record()` (the request's only cost) pushes a reference to the answer onto a bounded buffer
 *   (`bufferSize`, SERVED_LOG_BUFFER); a full buffer drops the answer (counted);
 * - a timer every `flushMs` (SERVED_LOG_FLUSH_MS), and a full batch at once, sends up to
 *   `batchSize` records (SERVED_LOG_BATCH) in one produce request: the records are built,
 *   validated and Avro-encoded there, in the batch, one batch in flight at a time;
 * - the producer connects (and the schema is registered) in the background; while it cannot,
 *   what waits is dropped at each failed attempt and attempts back off to 30 s; a batch Kafka
 *   refuses after the client's retries is dropped. Every drop is counted by reason in
 *   `rec_served_log_dropped_total`; sent in `rec_served_log_sent_total`, the buffer's length
 *   (read when scraped) in `rec_served_log_buffered`;
 * - `close()` sends what is buffered (bounded by a timeout), then disconnects.
 *
 * Each serving process logs its own answers (cluster.ts sums the metrics). Delivery is at most
 * once per attempt and not idempotent: a batch retried inside the client may be written twice
 * (the read-out counts each `request_id` once).
 */
import { Partitioners, type Kafka, type Message, type Producer } from 'kafkajs';
import type { Logger } from '../common/logger.ts';
import type { Served } from '../schemas/events.ts';
import { AvroCodec } from '../streams/avro.ts';
import type { SchemaRegistryClient } from '../streams/kafka.ts';
import { EventProducer } from '../streams/producer.ts';
import type { TopicDescriptor } from '../streams/topics.ts';
import type { RecommendationResponseBody } from './api-schemas.ts';
import type { ServingMetrics } from './metrics.ts';

/** What the recommendations route logs to: one call per 200 answer, never awaited. */
export interface ServedSink {
  record(body: RecommendationResponseBody, requestId: string): void;
}

/** Why a record was not logged (the `reason` of `rec_served_log_dropped_total`). */
export type DropReason =
  'buffer_full' | 'kafka_unavailable' | 'send_failed' | 'invalid' | 'shutdown';

export interface ServedLogOptions {
  readonly kafka: Kafka;
  readonly registry: SchemaRegistryClient;
  readonly topic: TopicDescriptor<Served>;
  readonly logger: Logger;
  readonly metrics: ServingMetrics;
  readonly bufferSize: number;
  readonly batchSize: number;
  readonly flushMs: number;
}

interface Pending {
  readonly body: RecommendationResponseBody;
  readonly requestId: string;
  readonly servedAt: number;
}

/** Longest wait between two connection attempts (ms). */
const MAX_BACKOFF_MS = 30_000;

/** The record of one answer (schemas/served.avsc). */
export function servedRecord(
  body: RecommendationResponseBody,
  requestId: string,
  servedAt: number,
): Served {
  return {
    request_id: requestId,
    customer_id: body.customer_id,
    served_at: servedAt,
    features_now: body.now,
    model_version: body.model_version,
    ranked_by: body.ranker.kind,
    experiment: body.experiment,
    variant: body.variant,
    degraded: body.degraded,
    cold_start: body.cold_start,
    items: body.items.map((i) => ({
      article_id: i.article_id,
      rank: i.rank,
      score: i.score,
      sources: [...i.sources],
    })),
  };
}

export class ServedLog implements ServedSink {
  readonly #opts: ServedLogOptions;
  readonly #log: Logger;
  readonly #producer: Producer;
  #buffer: Pending[] = [];
  #out: EventProducer<Served> | null = null;
  #connecting = false;
  /** The connection attempt under way, if any (`close` waits for it). */
  #connection: Promise<void> | null = null;
  #failures = 0;
  #retryAt = 0;
  #sending: Promise<void> | null = null;
  #kicked = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #sendFailuresLogged = 0;

  constructor(opts: ServedLogOptions) {
    this.#opts = opts;
    this.#log = opts.logger.child({ module: 'served-log', topic: opts.topic.name });
    this.#producer = opts.kafka.producer({
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    opts.metrics.readServedLogBuffer(() => this.#buffer.length);
  }

  /** Start the flush timer and connect in the background. */
  start(): this {
    this.#timer = setInterval(() => {
      this.#tick();
    }, this.#opts.flushMs);
    this.#timer.unref();
    this.#connect();
    return this;
  }

  /** Whether the producer is connected (tests, readiness of the log). */
  get connected(): boolean {
    return this.#out !== null;
  }

  record(body: RecommendationResponseBody, requestId: string): void {
    if (this.#closed) return;
    if (this.#buffer.length >= this.#opts.bufferSize) {
      this.#opts.metrics.servedLogDropped.inc({ reason: 'buffer_full' });
      return;
    }
    this.#buffer.push({ body, requestId, servedAt: Date.now() });
    // A full batch goes at once, after this request (not in it).
    if (this.#buffer.length >= this.#opts.batchSize && !this.#kicked && this.#sending === null) {
      this.#kicked = true;
      setImmediate(() => {
        this.#kicked = false;
        this.#tick();
      });
    }
  }

  #drop(reason: DropReason, n: number): void {
    if (n > 0) this.#opts.metrics.servedLogDropped.inc({ reason }, n);
  }

  /** Send the next batch when connected and nothing is in flight; connect otherwise. */
  #tick(): void {
    if (this.#sending !== null || this.#buffer.length === 0) return;
    const out = this.#out;
    if (out === null) {
      this.#connect();
      return;
    }
    const batch = this.#buffer.splice(0, this.#opts.batchSize);
    this.#sending = this.#send(out, batch).finally(() => {
      this.#sending = null;
      if (!this.#closed && this.#buffer.length >= this.#opts.batchSize) this.#tick();
    });
  }

  async #send(out: EventProducer<Served>, batch: readonly Pending[]): Promise<void> {
    const messages: Message[] = [];
    for (const p of batch) {
      try {
        messages.push(out.toMessage(servedRecord(p.body, p.requestId, p.servedAt)));
      } catch (err) {
        this.#drop('invalid', 1);
        this.#log.warn(
          { request_id: p.requestId, err: err instanceof Error ? err.message : String(err) },
          'served record does not match its contract; dropped',
        );
      }
    }
    if (messages.length === 0) return;
    try {
      await this.#producer.send({ topic: this.#opts.topic.name, acks: -1, messages });
      this.#opts.metrics.servedLogSent.inc(messages.length);
      this.#sendFailuresLogged = 0;
    } catch (err) {
      this.#drop('send_failed', messages.length);
      // Once per run of failures, then every 100th: an outage must not flood the log.
      if (this.#sendFailuresLogged++ % 100 === 0) {
        this.#log.warn(
          { err: err instanceof Error ? err.message : String(err), dropped: messages.length },
          'served-list batch not acknowledged by Kafka; dropped',
        );
      }
    }
  }

  /**
   * Connect and register the schema, in the background; on failure drop what waits (it would
   * only age) and allow the next attempt after a backoff.
   */
  #connect(): void {
    if (this.#connecting || this.#out !== null || this.#closed || Date.now() < this.#retryAt) {
      return;
    }
    this.#connecting = true;
    this.#connection = (async () => {
      try {
        const [codec] = await Promise.all([
          AvroCodec.forTopic(this.#opts.registry, this.#opts.topic),
          this.#producer.connect(),
        ]);
        if (this.#failures > 0) this.#log.info('served-list logging connected again');
        this.#failures = 0;
        this.#out = new EventProducer(this.#producer, this.#opts.topic, codec);
      } catch (err) {
        this.#failures += 1;
        this.#retryAt = Date.now() + Math.min(MAX_BACKOFF_MS, 1_000 * 2 ** (this.#failures - 1));
        this.#drop('kafka_unavailable', this.#buffer.length);
        this.#buffer = [];
        if (this.#failures === 1) {
          this.#log.warn(
            { err: err instanceof Error ? err.message : String(err) },
            'served-list logging cannot reach Kafka or the registry; answers are dropped and counted until it can',
          );
        }
      } finally {
        this.#connecting = false;
        this.#connection = null;
      }
    })();
  }

  /**
   * Stop taking records, send what is buffered (for at most `timeoutMs`), disconnect. What could
   * not be sent is counted as dropped (`shutdown`).
   */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#timer);
    const deadline = Date.now() + timeoutMs;
    const untilDeadline = async (p: Promise<unknown>) => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        p,
        new Promise((r) => {
          timer = setTimeout(r, Math.max(0, deadline - Date.now()));
        }),
      ]);
      clearTimeout(timer);
    };
    // Not connected yet (still connecting, or waiting out a backoff): one attempt now, within
    // the same bound, so that what was buffered is not dropped only for that.
    if (this.#out === null && this.#buffer.length > 0) {
      this.#retryAt = 0;
      this.#connect();
      if (this.#connection !== null) await untilDeadline(this.#connection);
    }
    this.#closed = true;
    while (this.#out !== null && Date.now() < deadline) {
      if (this.#sending === null) this.#tick();
      const sending = this.#sending;
      if (sending === null) break;
      await untilDeadline(sending);
    }
    this.#drop('shutdown', this.#buffer.length);
    this.#buffer = [];
    await this.#producer.disconnect().catch(() => undefined);
  }
}
