/**
 * Publishing a dataset read from an H&M-layout folder: articles, then customers, then purchases in
 * event-time order (from arrays, or streamed in batches), each through the typed Avro producer.
 */
import type { Producer } from 'kafkajs';
import type { Codecs } from '../bootstrap.ts';
import { EventProducer, type SendOptions } from '../producer.ts';
import { progress } from '../../common/progress.ts';
import type { Topics } from '../topics.ts';
import type { Dataset } from './dataset.ts';

export interface PublishCounts {
  articles: number;
  customers: number;
  purchases: number;
}

export interface PublishOptions {
  /** Upper bound on purchase events per second (metadata goes at full speed). */
  rate?: number;
  progress?: boolean;
  /** Told about each chunk sent again after a transient error (a broker restarting). */
  onRetry?: SendOptions['onRetry'];
}

export async function publishDataset(
  deps: { producer: Producer; topics: Topics; codecs: Codecs },
  data: Pick<Dataset, 'articles' | 'customers' | 'purchases'>,
  opts: PublishOptions = {},
): Promise<PublishCounts> {
  const { producer, topics, codecs } = deps;
  const show = {
    progress: opts.progress ?? false,
    ...(opts.onRetry === undefined ? {} : { onRetry: opts.onRetry }),
  };
  const all = <T>(events: T[]) => {
    return async (sink: (batch: T[]) => Promise<void>) => {
      await sink(events);
      return events.length;
    };
  };
  const articles = await publishStream(
    new EventProducer(producer, topics.articles, codecs.articles),
    'articles',
    data.articles.length,
    all(data.articles),
    show,
  );
  const customers = await publishStream(
    new EventProducer(producer, topics.customers, codecs.customers),
    'customers',
    data.customers.length,
    all(data.customers),
    show,
  );
  const purchases = await publishStream(
    new EventProducer(producer, topics.purchases, codecs.purchases),
    'purchases',
    data.purchases.length,
    all(data.purchases),
    opts,
  );
  return { articles, customers, purchases };
}

/**
 * Publish the events one topic's `stream` hands over in batches (e.g. a `DatasetStream`'s
 * tables, dataset.ts); `label` and `total` make the progress bar, `observe` sees each batch before it is
 * sent. One batch is sent while the next is read (at most two in memory), batches one after the
 * other, in order. Under `rate`, each batch is paced, so the rate is an upper bound.
 */
export async function publishStream<T>(
  p: EventProducer<T>,
  label: string,
  total: number,
  stream: (sink: (batch: T[]) => Promise<void>) => Promise<number>,
  opts: PublishOptions & { observe?: (batch: readonly T[]) => void } = {},
): Promise<number> {
  const bar = progress(`publish ${label}`, total, opts.progress ?? false, 'events');
  let sent = 0;
  let sending: Promise<void> = Promise.resolve();
  // A failed send is kept here (a handler is attached at once) and thrown at the next batch.
  let failure: { err: unknown } | null = null;
  const settled = async (): Promise<void> => {
    await sending;
    if (failure !== null) throw failure.err;
  };
  await stream(async (batch) => {
    await settled();
    opts.observe?.(batch);
    const before = sent;
    sending = p
      .send(batch, {
        onProgress: (n) => {
          bar.update(before + n);
        },
        ...(opts.rate === undefined ? {} : { rate: opts.rate }),
        ...(opts.onRetry === undefined ? {} : { onRetry: opts.onRetry }),
      })
      .then(
        (n) => {
          sent += n;
        },
        (err: unknown) => {
          failure = { err };
        },
      );
  });
  await settled();
  bar.stop(sent);
  return sent;
}
