/**
 * One load: read an H&M-layout folder, create topics and register schemas, publish everything,
 * and report counts next to the files' row counts. Shared by `npm run load` and the demo.
 */
import { resolve } from 'node:path';
import type { Config } from '../../common/config.ts';
import { connectStreams } from '../bootstrap.ts';
import type { Logger } from '../../common/logger.ts';
import { errorMessage } from '../../common/errors.ts';
import { createIdempotentProducer } from '../producer.ts';
import { progress, type Progress } from '../../common/progress.ts';
import { readDataset, type Dataset } from './dataset.ts';
import { publishDataset, type PublishCounts } from './publish.ts';

export interface LoadReport {
  dataDir: string;
  files: Dataset['files'];
  stats: Dataset['stats'];
  published: PublishCounts;
  topics: { purchases: string; articles: string; customers: string };
  firstEventTime: number | null;
  lastEventTime: number | null;
  /** Customer with the most purchases in the last 30 days of the data (for demos). */
  mostActiveCustomer: string | null;
  readMs: number;
  publishMs: number;
}

export async function runLoad(opts: {
  config: Config;
  logger: Logger;
  dataDir: string;
  rate?: number;
  progress?: boolean;
}): Promise<LoadReport> {
  const { config, logger } = opts;
  const dataDir = resolve(opts.dataDir);
  const show = opts.progress ?? true;

  const t0 = performance.now();
  const bars = new Map<string, Progress>();
  const data = await readDataset(dataDir, {
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

  const { kafka, topics, codecs } = await connectStreams(config, 'rec-loader', logger);
  const producer = createIdempotentProducer(kafka);
  await producer.connect();
  const t1 = performance.now();
  let published: PublishCounts;
  try {
    published = await publishDataset({ producer, topics, codecs }, data, {
      progress: show,
      ...(opts.rate === undefined ? {} : { rate: opts.rate }),
      onRetry: ({ attempt, delayMs, err }) => {
        logger.warn(
          { attempt, delayMs, err: errorMessage(err) },
          'Kafka unavailable; sending the chunk again',
        );
      },
    });
  } finally {
    await producer.disconnect();
  }
  return {
    dataDir,
    files: data.files,
    stats: data.stats,
    published,
    topics: {
      purchases: topics.purchases.name,
      articles: topics.articles.name,
      customers: topics.customers.name,
    },
    firstEventTime: data.purchases[0]?.event_time ?? null,
    mostActiveCustomer: mostActive(data.purchases),
    lastEventTime: data.purchases.at(-1)?.event_time ?? null,
    readMs,
    publishMs: performance.now() - t1,
  };
}

function mostActive(purchases: Dataset['purchases']): string | null {
  const last = purchases.at(-1)?.event_time;
  if (last === undefined) return null;
  const counts = new Map<string, number>();
  for (let i = purchases.length - 1; i >= 0; i--) {
    const p = purchases[i];
    if (!p || p.event_time < last - 30 * 86_400_000) break;
    counts.set(p.customer_id, (counts.get(p.customer_id) ?? 0) + 1);
  }
  let best: [string, number] | null = null;
  for (const e of counts) if (best === null || e[1] > best[1]) best = e;
  return best?.[0] ?? null;
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
