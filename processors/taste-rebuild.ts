/**
 * Rebuild every customer's taste vector from the purchases topic (EMBEDDINGS=on). The taste
 * processor adds nothing for a purchase whose article had no vector yet, so after `npm run embed`
 * embedded articles that were already bought (first run, new catalogue), the tastes are rebuilt:
 * the namespace's taste state is deleted and the whole topic replayed through the taste
 * processor's code. The running taste consumer may go on meanwhile; both write through the same
 * event-id guard, so nothing is applied twice (an event it applies while the deletion runs may be
 * lost until the next rebuild). The rebuild ignores the per-partition offset guard, which the live
 * consumer may have raised past the replay meanwhile (see taste.lua); the event ids it relies on
 * are kept for the horizon, as live.
 */
import type { Kafka } from 'kafkajs';
import { deleteMatching, type RedisClient } from '../common/redis.ts';
import type { Codecs } from '../streams/bootstrap.ts';
import type { EmbeddingKeys } from '../features/embedding-keys.ts';
import type { KeySpace } from '../features/keys.ts';
import type { Logger } from '../common/logger.ts';
import { progress } from '../common/progress.ts';
import { replay } from '../streams/replay.ts';
import type { Topics } from '../streams/topics.ts';
import { TasteProcessor } from './taste.ts';

export interface TasteRebuildDeps {
  readonly kafka: Kafka;
  readonly redis: RedisClient;
  readonly codecs: Codecs;
  readonly topics: Topics;
  readonly keys: KeySpace;
  readonly logger: Logger;
  /** Event-time horizon (ms) of the event-id guard: the deployment's (default 30 days). */
  readonly dedupHorizonMs?: number;
}

export interface TasteRebuildReport {
  readonly deleted: number;
  readonly records: number;
  readonly applied: number;
  readonly withoutVector: number;
  readonly ms: number;
}

async function deleteTastes(redis: RedisClient, ns: string): Promise<number> {
  let deleted = 0;
  for (const suffix of ['taste', 'tseen']) {
    deleted += await deleteMatching(redis, `${ns}:{u:*}:${suffix}`);
  }
  return deleted;
}

/** Delete the taste state of `keys`' namespace and replay all purchases into it. */
export async function rebuildTaste(
  deps: TasteRebuildDeps,
  articleKeys: EmbeddingKeys,
  opts: { progress?: boolean } = {},
): Promise<TasteRebuildReport> {
  const t0 = performance.now();
  const { redis, keys } = deps;
  const deleted = await deleteTastes(redis, keys.ns);
  const taste = new TasteProcessor(redis, keys, articleKeys, {
    offsetGuard: false,
    ...(deps.dedupHorizonMs === undefined ? {} : { dedupHorizonMs: deps.dedupHorizonMs }),
  });
  let applied = 0;
  let withoutVector = 0;
  let bar: ReturnType<typeof progress> | null = null;
  const result = await replay({
    kafka: deps.kafka,
    topic: deps.topics.purchases,
    codec: deps.codecs.purchases,
    from: 0,
    to: 8.64e15,
    logger: deps.logger,
    onRecords: async (records) => {
      const out = await taste.apply(records);
      applied += out.applied;
      withoutVector += out.withoutVector;
    },
    onProgress: (read, total) => {
      bar ??= progress('rebuilding tastes', total, opts.progress ?? false);
      bar.update(read);
    },
  });
  (bar as ReturnType<typeof progress> | null)?.stop();
  return { deleted, records: result.records, applied, withoutVector, ms: performance.now() - t0 };
}
