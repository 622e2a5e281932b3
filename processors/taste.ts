/**
 * The taste processor (issue 7, `EMBEDDINGS=on`): keeps a time-decayed mean embedding per
 * customer, updated as purchases arrive. Its own consumer group on the purchases topic; a batch
 * costs two round trips: the vectors of the batch's articles (from the article-embedding
 * namespace, see `articleEmbeddingKeys`), then one `taste.lua` call per customer (loaded by
 * scripts.ts, as every processor script), atomic with its event-id guard, so redeliveries and
 * duplicates are applied once. The guard is bounded: event ids are kept for `dedupHorizonMs` of
 * event time behind the customer's newest purchase, and a per-partition offset guard recognises
 * older redeliveries (see taste.lua); a new event dated before the horizon's cut is skipped as
 * late, as the purchases group refuses it. The taste state lives in the processor's own key space
 * (a training replay rebuilds it in its isolated namespace).
 * A purchase of an article without a vector yet is marked seen and adds nothing.
 */
import type { RedisClient } from '../common/redis.ts';
import type { Purchase } from '../schemas/events.ts';
import type { DecodedRecord } from '../streams/consumer.ts';
import { rate } from '../features/decay.ts';
import { embeddingKeys, type EmbeddingKeys } from '../features/embedding-keys.ts';
import { AFFINITY_HALF_LIFE, HALF_LIVES, type KeySpace } from '../features/keys.ts';
import type { Admin } from 'kafkajs';
import { waitCommittedToEnd } from '../streams/admin.ts';
import { runConsumer, type RunningConsumer } from '../streams/consumer.ts';
import { readVectors } from '../embeddings/store.ts';
import type { ProcessorDeps } from './deps.ts';
import { positionStore } from '../features/state.ts';
import { isScriptFailure } from './failures.ts';
import { DEFAULT_MAX_EVENT_SKEW_MS, admitPurchases } from './admit.ts';
import { DEFAULT_PURCHASE_OPTIONS } from './purchases.ts';
import { defineScripts, type Scripts } from './scripts.ts';

/** Half-life of the taste vector (the affinities'). */
export const TASTE_HALF_LIFE = AFFINITY_HALF_LIFE;

export interface TasteOutcome {
  /** Events applied for the first time (with or without a vector). */
  applied: number;
  /** Of those, events whose article had no vector. */
  withoutVector: number;
  /** Redeliveries, duplicates and late events skipped. */
  skipped: number;
  /**
   * Of those, late events: new, and dated before the dedup horizon's cut of the customer's newest
   * (the events the purchases group dead-letters, REC_ERR_LATE_EVENT).
   */
  late: number;
}

export interface TasteOptions {
  /** Dimension of the article vectors. */
  dim: number;
  /**
   * Event-time horizon (ms) of the event-id guard: ids of events this much older than the
   * customer's newest are forgotten (the deployment's, PurchaseProcessorOptions.dedupHorizonMs).
   */
  dedupHorizonMs: number;
  /**
   * Consult the per-partition offset guard (default true). A rebuild (taste-rebuild.ts) replays
   * the topic from the start while the live consumer, further on, may have raised the guard after
   * the rebuild deleted the state: it turns the check off (and still raises the guard).
   */
  offsetGuard: boolean;
}

export const DEFAULT_TASTE_OPTIONS: TasteOptions = {
  dim: 384,
  dedupHorizonMs: DEFAULT_PURCHASE_OPTIONS.dedupHorizonMs,
  offsetGuard: true,
};

export class TasteProcessor {
  private readonly tasteKeys: EmbeddingKeys;
  private readonly scripts: Scripts;
  private readonly opts: TasteOptions;

  /**
   * @param keys the processor's key space (taste state goes there)
   * @param articles where the article vectors are (`npm run embed`)
   */
  constructor(
    private readonly redis: RedisClient,
    keys: KeySpace,
    private readonly articles: EmbeddingKeys,
    opts: Partial<TasteOptions> = {},
  ) {
    this.tasteKeys = embeddingKeys(keys.ns);
    this.scripts = defineScripts(redis);
    this.opts = { ...DEFAULT_TASTE_OPTIONS, ...opts };
  }

  async apply(records: readonly DecodedRecord<Purchase>[]): Promise<TasteOutcome> {
    const out: TasteOutcome = { applied: 0, withoutVector: 0, skipped: 0, late: 0 };
    if (records.length === 0) return out;
    const ids = [...new Set(records.map((r) => r.value.article_id))];
    const vectors = await readVectors(this.redis, this.articles, ids);
    const blobs = new Map<string, Buffer>();
    for (const [id, v] of vectors) {
      if (v.length === this.opts.dim)
        blobs.set(id, Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    }
    const byCustomer = new Map<string, DecodedRecord<Purchase>[]>();
    for (const r of records) {
      const list = byCustomer.get(r.value.customer_id);
      if (list) list.push(r);
      else byCustomer.set(r.value.customer_id, [r]);
    }
    const pipe = this.redis.pipeline();
    const hlRate = rate(HALF_LIVES[TASTE_HALF_LIFE]);
    for (const [customer, list] of byCustomer) {
      const k = this.tasteKeys.customer(customer);
      const args: (string | number | Buffer)[] = [
        hlRate,
        this.opts.dim,
        this.opts.dedupHorizonMs,
        this.opts.offsetGuard ? 1 : 0,
        list.length,
      ];
      for (const r of list) {
        const e = r.value;
        args.push(
          e.event_id,
          `${r.partition}:${r.offset}`,
          e.event_time,
          blobs.get(e.article_id) ?? '',
        );
      }
      this.scripts.call(pipe, 'taste', [k.taste, k.tasteSeen], args);
    }
    const results = await pipe.exec();
    if (results === null) throw new Error('redis pipeline for the taste script was aborted');
    for (const [err, statuses] of results) {
      if (err) throw new Error(`redis taste script failed: ${err.message}`, { cause: err });
      for (const s of statuses as string[]) {
        if (s === 'n') out.applied++;
        else if (s === 'x') {
          out.applied++;
          out.withoutVector++;
        } else {
          out.skipped++;
          if (s === 'l') out.late++;
        }
      }
    }
    return out;
  }
}

export interface RunningTaste {
  readonly group: string;
  readonly consumer: RunningConsumer;
  /** Resolves when the taste group has committed up to the end of the purchases topic. */
  caughtUp(admin: Admin, timeoutMs: number): Promise<void>;
}

/** The taste consumer group of a deployment: `<groupPrefix>.<purchases topic>.taste`. */
export function tasteGroupId(groupPrefix: string, purchasesTopic: string): string {
  return `${groupPrefix}.${purchasesTopic}.taste`;
}

/**
 * Start the taste consumer group (`tasteGroupId`) feeding `taste` (the writers' taste processor,
 * which exists when `EMBEDDINGS=on`, see writers.ts). Not counted in the processor metrics (those
 * count purchases once). The purchases group owns the purchases DLQ: a malformed record, which it
 * dead-letters, is only logged and counted here (`rec_processor_records_skipped_total`), never
 * written to the DLQ a second time.
 */
export async function startTasteConsumer(
  deps: ProcessorDeps,
  taste: TasteProcessor,
): Promise<RunningTaste> {
  const { kafka, codecs, topics, logger } = deps;
  const group = tasteGroupId(deps.groupPrefix, topics.purchases.name);
  const consumer = await runConsumer({
    kafka,
    groupId: group,
    topic: topics.purchases,
    codec: codecs.purchases,
    dlqProducer: deps.dlqProducer,
    poison: 'skip',
    hooks: {
      onSkip: (d) => {
        deps.metrics.skipped.inc({ topic: d.topic, group, code: d.code });
      },
    },
    logger,
    maxBytesPerPartition: 2_097_152,
    partitionsConsumedConcurrently: topics.purchases.partitions,
    ...(deps.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: deps.sessionTimeoutMs }),
    ...(deps.positionsCheckMs === undefined ? {} : { positionsCheckMs: deps.positionsCheckMs }),
    positions: positionStore(deps.redis, deps.keys, group),
    isDeterministic: isScriptFailure,
    handler: async (records) => {
      // The records the purchases group dead-letters are skipped here (processors/admit.ts).
      const { accepted, rejected } = admitPurchases(
        records,
        (deps.clock ?? Date.now)(),
        deps.maxEventSkewMs ?? DEFAULT_MAX_EVENT_SKEW_MS,
      );
      await taste.apply(accepted);
      return { rejected };
    },
  });
  return {
    group,
    consumer,
    async caughtUp(admin, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      if (!(await waitCommittedToEnd(admin, group, topics.purchases.name, deadline))) {
        throw new Error(`the taste processor did not catch up within ${timeoutMs} ms`);
      }
    },
  };
}
