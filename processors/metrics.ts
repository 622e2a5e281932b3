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
  /** Runner hooks feeding these metrics. */
  hooks(): RunnerHooks;
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
    hooks: () => runnerHooks({ batchSeconds, lag, lastEventTime, dlq, retries }),
  };
}

/** Consumer-runner hooks feeding the batch, lag, event-time, DLQ and retry metrics. */
function runnerHooks(
  m: Pick<ProcessorMetrics, 'batchSeconds' | 'lag' | 'lastEventTime' | 'dlq' | 'retries'>,
): RunnerHooks {
  return {
    onBatch: (b) => {
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
    },
  };
}

/** Serve `GET /metrics` (and `/healthz`) on `port`; resolves when listening. */
export async function serveMetrics(
  registry: Registry,
  port: number,
  host = '0.0.0.0',
): Promise<Server> {
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
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
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
