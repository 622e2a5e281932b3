/**
 * One load: read and validate an H&M-layout folder, create topics and register schemas, publish
 * everything (the purchases streamed in event-time order, so memory does not grow with the
 * transactions file), and report counts next to the files' row counts. Shared by `npm run load`
 * and the demo.
 */
import { resolve } from 'node:path';
import type { Config } from '../../common/config.ts';
import { connectStreams } from '../bootstrap.ts';
import { createKafka } from '../kafka.ts';
import { topics as topicsOf } from '../topics.ts';
import type { Logger } from '../../common/logger.ts';
import { errorMessage } from '../../common/errors.ts';
import { EventProducer, createIdempotentProducer } from '../producer.ts';
import { progress, type Progress } from '../../common/progress.ts';
import type { Purchase } from '../../schemas/events.ts';
import { openDataset, type Dataset, type DatasetStream } from './dataset.ts';
import { publishStream, type PublishCounts } from './publish.ts';

export interface LoadReport {
  dataDir: string;
  files: Dataset['files'];
  stats: Dataset['stats'];
  published: PublishCounts;
  topics: { purchases: string; articles: string; customers: string };
  firstEventTime: number | null;
  lastEventTime: number | null;
  /** The transactions file was already in event-time order (else it was sorted externally). */
  inOrder: boolean;
  /** Customer with the most purchases in the last 30 days of the data (for demos). */
  mostActiveCustomer: string | null;
  /** The first pass (validate every file, note the ids and the purchases' order). */
  readMs: number;
  /** Publishing: the second pass over every file. */
  publishMs: number;
}

export async function runLoad(opts: {
  config: Config;
  logger: Logger;
  dataDir: string;
  rate?: number;
  progress?: boolean;
  /** Where an external sort of a transactions file out of event-time order writes its runs. */
  tmpDir?: string;
}): Promise<LoadReport> {
  const { config, logger } = opts;
  const dataDir = resolve(opts.dataDir);
  const show = opts.progress ?? true;

  // First pass: everything validated before a topic is created (a bad value publishes nothing).
  const t0 = performance.now();
  const bars = new Map<string, Progress>();
  let opened: DatasetStream | null = await openDataset(dataDir, {
    onProgress: (file, rows) => {
      let bar = bars.get(file);
      if (!bar) {
        bar = progress(`read ${file}`, 0, show);
        bars.set(file, bar);
      }
      bar.update(rows);
    },
  });
  for (const b of bars.values()) b.stop();
  const readMs = performance.now() - t0;
  const { scan, files, stats } = opened;
  let streams: Pick<DatasetStream, 'articles' | 'customers' | 'purchases'> | null = opened;
  opened = null;

  const { kafka, topics, codecs } = await connectStreams(config, 'rec-loader', logger);
  const producer = createIdempotentProducer(kafka);
  await producer.connect();
  const t1 = performance.now();
  const active = new RecentBuyers(scan.lastEventTime);
  let published: PublishCounts;
  try {
    const bar = {
      progress: show,
      onRetry: ({ attempt, delayMs, err }: { attempt: number; delayMs: number; err: unknown }) => {
        logger.warn(
          { attempt, delayMs, err: errorMessage(err) },
          'Kafka unavailable; sending the chunk again',
        );
      },
    };
    const articles = await publishStream(
      new EventProducer(producer, topics.articles, codecs.articles),
      'articles',
      stats.articleRows - stats.duplicateArticles,
      streams.articles,
      bar,
    );
    const customers = await publishStream(
      new EventProducer(producer, topics.customers, codecs.customers),
      'customers',
      stats.customerRows - stats.duplicateCustomers,
      streams.customers,
      bar,
    );
    // Only the purchase stream is needed from here: the id maps of the metadata can go.
    const purchaseStream = streams.purchases;
    streams = null;
    const purchases = await publishStream(
      new EventProducer(producer, topics.purchases, codecs.purchases),
      'purchases',
      scan.rows,
      (sink) => purchaseStream(sink, opts.tmpDir === undefined ? {} : { tmpDir: opts.tmpDir }),
      {
        ...bar,
        observe: (batch) => {
          active.add(batch);
        },
        ...(opts.rate === undefined ? {} : { rate: opts.rate }),
      },
    );
    published = { articles, customers, purchases };
  } finally {
    await producer.disconnect();
  }
  return {
    dataDir,
    files,
    stats,
    published,
    topics: {
      purchases: topics.purchases.name,
      articles: topics.articles.name,
      customers: topics.customers.name,
    },
    firstEventTime: scan.firstEventTime,
    lastEventTime: scan.lastEventTime,
    inOrder: scan.inOrder,
    mostActiveCustomer: active.best(),
    readMs,
    publishMs: performance.now() - t1,
  };
}

/** The records the purchases topic of `config`'s prefix holds (0 when it does not exist yet). */
export async function purchasesHeld(config: Readonly<Config>, logger: Logger): Promise<number> {
  const kafka = createKafka(config, 'rec-loader-check', logger);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const name = topicsOf(config.topicPrefix).purchases.name;
    if (!(await admin.listTopics()).includes(name)) return 0;
    const offsets = await admin.fetchTopicOffsets(name);
    return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  } finally {
    await admin.disconnect();
  }
}

/** What publishing a folder into a purchases topic that holds `held` records means. */
export function republishWarning(held: number): string {
  return (
    `the purchases topic already holds ${held} records: nothing is counted twice (the ` +
    'processors skip a purchase they applied as a duplicate, and dead-letter one older than ' +
    "their dedup horizon allows behind its customer's newest, REC_ERR_LATE_EVENT), but a folder " +
    "published again fills the DLQ with its old purchases, and another folder's are mixed in"
  );
}

/**
 * Purchases per customer in the last 30 days of the data (the scan knows the last event time):
 * memory grows with the customers active in that window, not with the file.
 */
class RecentBuyers {
  private readonly counts = new Map<string, number>();
  /** Position in the stream of each customer's latest purchase (breaks ties). */
  private readonly latest = new Map<string, number>();
  private readonly since: number;
  private seen = 0;

  constructor(lastEventTime: number | null) {
    this.since = lastEventTime === null ? Infinity : lastEventTime - 30 * 86_400_000;
  }

  add(batch: readonly Purchase[]): void {
    for (const p of batch) {
      this.seen++;
      if (p.event_time < this.since) continue;
      this.counts.set(p.customer_id, (this.counts.get(p.customer_id) ?? 0) + 1);
      this.latest.set(p.customer_id, this.seen);
    }
  }

  /** The customer with the most purchases; on a tie, the one who bought last. */
  best(): string | null {
    let best: string | null = null;
    let bestCount = 0;
    let bestLatest = 0;
    for (const [customer, n] of this.counts) {
      const latest = this.latest.get(customer) ?? 0;
      if (n > bestCount || (n === bestCount && latest > bestLatest)) {
        best = customer;
        bestCount = n;
        bestLatest = latest;
      }
    }
    return best;
  }
}

/** Human-readable summary lines of a load. */
export function describeLoad(r: LoadReport): string[] {
  const iso = (t: number | null) => (t === null ? '-' : new Date(t).toISOString());
  const row = (what: string, file: string, rows: number, sent: number, dups: number) =>
    `  ${what.padEnd(10)} ${String(rows).padStart(9)} rows in ${file} -> ${String(sent).padStart(9)} published` +
    (dups > 0 ? ` (${dups} duplicate ids: last row wins)` : '');
  return [
    `loaded ${r.dataDir}`,
    row(
      'articles',
      r.files.articles,
      r.stats.articleRows,
      r.published.articles,
      r.stats.duplicateArticles,
    ),
    row(
      'customers',
      r.files.customers,
      r.stats.customerRows,
      r.published.customers,
      r.stats.duplicateCustomers,
    ),
    row('purchases', r.files.purchases, r.stats.purchaseRows, r.published.purchases, 0),
    `  event time ${iso(r.firstEventTime)} .. ${iso(r.lastEventTime)}`,
    `  topics ${r.topics.articles}, ${r.topics.customers}, ${r.topics.purchases}`,
    `  read ${(r.readMs / 1000).toFixed(1)} s, published ${(r.publishMs / 1000).toFixed(1)} s ` +
      `(${Math.round((r.published.articles + r.published.customers + r.published.purchases) / Math.max(r.publishMs / 1000, 0.001))} events/s)`,
  ];
}
