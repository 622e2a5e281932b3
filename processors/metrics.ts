/**
 * Prometheus metrics of the processors (`rec_processor_*`) and the HTTP endpoint serving them.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RunnerHooks } from '../streams/consumer.ts';

export interface ProcessorMetrics {
  readonly registry: Registry;
  readonly events: Counter<'topic'>;
  readonly dlq: Counter<'topic' | 'code'>;
  /** Malformed records skipped by a group that does not own the topic's DLQ (the taste group). */
  readonly skipped: Counter<'topic' | 'group' | 'code'>;
  readonly duplicates: Counter<'topic'>;
  readonly retries: Counter<'topic'>;
  readonly batchSeconds: Histogram<'topic'>;
  readonly lag: Gauge<'topic' | 'partition'>;
  readonly lastEventTime: Gauge<'topic'>;
  /** Consecutive failed attempts of the batch a partition is on (0 once it went through). */
  readonly stuck: Gauge<'topic' | 'partition'>;
  /** Records a handler failed on every time, isolated and dead-lettered (REC_ERR_APPLY). */
  readonly isolated: Counter<'topic'>;
  /** Runner hooks feeding these metrics. */
  hooks(): RunnerHooks;
  /**
   * Healthy unless a partition's batch has failed STUCK_AFTER times in a row: then the stuck
   * partitions, with their last error.
   */
  health(): { ok: boolean; stuck: StuckPartition[] };
}

/** Consecutive failed attempts after which a partition counts as stuck (about 15 s of backoff). */
export const STUCK_AFTER = 5;

export interface StuckPartition {
  readonly topic: string;
  readonly partition: number;
  readonly attempts: number;
  readonly error: string;
}

export function createProcessorMetrics(defaults = true): ProcessorMetrics {
  const registry = new Registry();
  if (defaults) collectDefaultMetrics({ register: registry, prefix: 'rec_processor_' });
  const registers = [registry];
  const events = new Counter({
    name: 'rec_processor_events_processed_total',
    help: 'Events whose effects were applied to Redis',
    labelNames: ['topic'] as const,
    registers,
  });
  const dlq = new Counter({
    name: 'rec_processor_events_dlq_total',
    help: 'Records routed to the dead-letter topic, by error code',
    labelNames: ['topic', 'code'] as const,
    registers,
  });
  const skipped = new Counter({
    name: 'rec_processor_records_skipped_total',
    help: 'Malformed records skipped by a secondary consumer group; the group owning the DLQ dead-letters them (rec_processor_events_dlq_total)',
    labelNames: ['topic', 'group', 'code'] as const,
    registers,
  });
  const duplicates = new Counter({
    name: 'rec_processor_duplicates_skipped_total',
    help: 'Events skipped because their effects were already applied (redelivery or duplicate publish)',
    labelNames: ['topic'] as const,
    registers,
  });
  const retries = new Counter({
    name: 'rec_processor_batch_retries_total',
    help: 'Batch handler failures that were retried',
    labelNames: ['topic'] as const,
    registers,
  });
  const batchSeconds = new Histogram({
    name: 'rec_processor_batch_duration_seconds',
    help: 'Time to decode, apply and commit one batch',
    labelNames: ['topic'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const lag = new Gauge({
    name: 'rec_processor_consumer_lag_records',
    help: 'Records behind the partition high watermark after the last committed batch',
    labelNames: ['topic', 'partition'] as const,
    registers,
  });
  const lastEventTime = new Gauge({
    name: 'rec_processor_last_event_time_seconds',
    help: 'Event time of the last record processed (Unix seconds)',
    labelNames: ['topic'] as const,
    registers,
  });
  const stuck = new Gauge({
    name: 'rec_processor_stuck_batch_attempts',
    help: 'Consecutive failed attempts of the batch a partition is on (0: it went through)',
    labelNames: ['topic', 'partition'] as const,
    registers,
  });
  const stuckReason = new Gauge({
    name: 'rec_processor_stuck_reason',
    help: `1 per partition stuck (${STUCK_AFTER}+ failed attempts in a row), labelled with its last error`,
    labelNames: ['topic', 'partition', 'reason'] as const,
    registers,
  });
  const isolated = new Counter({
    name: 'rec_processor_records_isolated_total',
    help: 'Records the handler failed on every time, isolated from their batch and dead-lettered (REC_ERR_APPLY)',
    labelNames: ['topic'] as const,
    registers,
  });
  const failing = new Map<string, StuckPartition & { reason: string }>();
  const tracker: StuckTracker = {
    failed(topic, partition, attempts, error) {
      const id = `${topic}:${partition}`;
      const before = failing.get(id);
      if (before)
        stuckReason.remove({ topic, partition: String(partition), reason: before.reason });
      const reason = error.slice(0, 200);
      failing.set(id, { topic, partition, attempts, error, reason });
      stuck.set({ topic, partition: String(partition) }, attempts);
      if (attempts >= STUCK_AFTER)
        stuckReason.set({ topic, partition: String(partition), reason }, 1);
    },
    through(topic, partition) {
      const id = `${topic}:${partition}`;
      const before = failing.get(id);
      if (!before) return;
      failing.delete(id);
      stuck.set({ topic, partition: String(partition) }, 0);
      stuckReason.remove({ topic, partition: String(partition), reason: before.reason });
    },
  };
  return {
    registry,
    events,
    dlq,
    skipped,
    duplicates,
    retries,
    batchSeconds,
    lag,
    lastEventTime,
    stuck,
    isolated,
    hooks: () => runnerHooks({ batchSeconds, lag, lastEventTime, dlq, retries, isolated }, tracker),
    health() {
      const now = [...failing.values()]
        .filter((f) => f.attempts >= STUCK_AFTER)
        .map(({ topic, partition, attempts, error }) => ({ topic, partition, attempts, error }));
      return { ok: now.length === 0, stuck: now };
    },
  };
}

/** Which partitions keep failing, and since when they went through again. */
interface StuckTracker {
  failed(topic: string, partition: number, attempts: number, error: string): void;
  through(topic: string, partition: number): void;
}

/** Consumer-runner hooks feeding the batch, lag, event-time, DLQ, retry and stuck metrics. */
function runnerHooks(
  m: Pick<
    ProcessorMetrics,
    'batchSeconds' | 'lag' | 'lastEventTime' | 'dlq' | 'retries' | 'isolated'
  >,
  tracker: StuckTracker,
): RunnerHooks {
  return {
    onBatch: (b) => {
      tracker.through(b.topic, b.partition);
      m.batchSeconds.observe({ topic: b.topic }, b.durationMs / 1000);
      m.lag.set(
        { topic: b.topic, partition: String(b.partition) },
        Math.max(0, Number(BigInt(b.highWatermark) - BigInt(b.lastOffset) - 1n)),
      );
      if (b.lastTimestamp !== null) m.lastEventTime.set({ topic: b.topic }, b.lastTimestamp / 1000);
    },
    onDlq: (d) => {
      m.dlq.inc({ topic: d.topic, code: d.code });
    },
    onRetry: (r) => {
      m.retries.inc({ topic: r.topic });
      tracker.failed(r.topic, r.partition, r.attempt, r.error);
    },
    onIsolated: (i) => {
      m.isolated.inc({ topic: i.topic });
    },
  };
}

/**
 * Serve `GET /metrics` and `/healthz` on `port` (200 `ok`; 503 with the stuck partitions and
 * their last error as JSON while `health` says so); resolves when listening.
 */
export async function serveMetrics(
  metrics: Pick<ProcessorMetrics, 'registry' | 'health'>,
  port: number,
  host = '0.0.0.0',
): Promise<Server> {
  const { registry } = metrics;
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(body);
        })
        .catch((err: unknown) => {
          res.writeHead(500).end(String(err));
        });
    } else if (req.url === '/healthz') {
      const health = metrics.health();
      if (health.ok) res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      else
        res
          .writeHead(503, { 'content-type': 'application/json' })
          .end(JSON.stringify({ status: 'stuck', partitions: health.stuck }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return server;
}
