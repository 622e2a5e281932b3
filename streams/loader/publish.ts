/**
 * Publishing a dataset read from an H&M-layout folder: articles, then customers, then purchases in
 * event-time order, each through the typed Avro producer.
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
  const show = opts.progress ?? false;
  const step = async <T>(
    label: string,
    p: EventProducer<T>,
    events: readonly T[],
    rate?: number,
  ): Promise<number> => {
    const bar = progress(label, events.length, show, 'events');
    const sent = await p.send(events, {
      onProgress: (n) => {
        bar.update(n);
      },
      ...(rate === undefined ? {} : { rate }),
      ...(opts.onRetry === undefined ? {} : { onRetry: opts.onRetry }),
    });
    bar.stop(sent);
    return sent;
  };
  const { producer, topics, codecs } = deps;
  const articles = await step(
    'publish articles',
    new EventProducer(producer, topics.articles, codecs.articles),
    data.articles,
  );
  const customers = await step(
    'publish customers',
    new EventProducer(producer, topics.customers, codecs.customers),
    data.customers,
  );
  const purchases = await step(
    'publish purchases',
    new EventProducer(producer, topics.purchases, codecs.purchases),
    data.purchases,
    opts.rate,
  );
  return { articles, customers, purchases };
}
