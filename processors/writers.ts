/**
 * The processors' writers for one Redis key space, built once: the article and customer metadata
 * upserts (metadata.ts), the purchases processor (purchases.ts) and, with embeddings on, the
 * taste processor (taste.ts), all on one set of scripts (scripts.ts).
 *
 * Two callers feed them the same records in the same way: the live processors (start.ts), from
 * their consumer groups, and the training replay (training/rows.ts), from the replayed topics into
 * its isolated namespace. One factory keeps the state a training replay rebuilds what the live
 * processors would have written.
 */
import type { RedisClient } from '../common/redis.ts';
import type { EmbeddingKeys } from '../features/embedding-keys.ts';
import type { KeySpace } from '../features/keys.ts';
import type { Article, Customer } from '../schemas/events.ts';
import type { DecodedRecord } from '../streams/consumer.ts';
import { applyArticles, applyCustomers, MetadataWritten } from './metadata.ts';
import {
  DEFAULT_PURCHASE_OPTIONS,
  PurchaseProcessor,
  type PurchaseProcessorOptions,
} from './purchases.ts';
import { defineScripts } from './scripts.ts';
import { TasteProcessor } from './taste.ts';

export interface Writers {
  /** Article records into their `meta` hashes (last write wins by `updated_at`); records written. */
  articles(records: readonly DecodedRecord<Article>[]): Promise<number>;
  /** Customer records into their `meta` hashes, likewise. */
  customers(records: readonly DecodedRecord<Customer>[]): Promise<number>;
  /** Purchases into the online features, effectively once. */
  readonly purchases: PurchaseProcessor;
  /** Embeddings on: purchases into the customers' taste vectors; null when off. */
  readonly taste: TasteProcessor | null;
}

export interface WritersOptions {
  /**
   * Overrides of the purchases processor's options (the deployment's); `dedupHorizonMs` is the
   * taste processor's too.
   */
  readonly purchases?: Partial<PurchaseProcessorOptions> | undefined;
  /**
   * Embeddings on: where the taste processor reads the article vectors (where `npm run embed`
   * wrote them); null: embeddings off, no taste processor.
   */
  readonly tasteArticles: EmbeddingKeys | null;
  /**
   * These writers are the only ones of the key space (training's replay into its isolated
   * namespace): metadata records the script would ignore are skipped without a round trip
   * (metadata.ts `MetadataWritten`). Never for a key space other processes write.
   */
  readonly soleWriter?: boolean;
}

/** The writers of key space `keys` on `redis` (see the module comment). */
export function createWriters(redis: RedisClient, keys: KeySpace, opts: WritersOptions): Writers {
  const scripts = defineScripts(redis);
  const written = opts.soleWriter === true ? new MetadataWritten() : undefined;
  return {
    articles: (records) => applyArticles(redis, keys, scripts, records, written),
    customers: (records) => applyCustomers(redis, keys, scripts, records, written),
    purchases: new PurchaseProcessor(redis, keys, scripts, opts.purchases),
    taste: opts.tasteArticles
      ? new TasteProcessor(redis, keys, opts.tasteArticles, {
          // The deployment's horizon of the event-id guards, for the taste guard too.
          dedupHorizonMs: opts.purchases?.dedupHorizonMs ?? DEFAULT_PURCHASE_OPTIONS.dedupHorizonMs,
        })
      : null,
  };
}
