/**
 * Starts the processors of one deployment: consumers of the metadata topics (articles, customers)
 * and of purchases, each its own consumer group, all writing to one Redis key space. Metadata is
 * caught up before purchases start, so a purchase processed at start-up sees its article's
 * categories. Everything is passed in; `processors-cli.ts` builds the clients.
 */
import { recordDedupHorizon } from '../features/horizon.ts';
import { claimStoreLayout, positionStore } from '../features/state.ts';
import { DEFAULT_MAX_EVENT_SKEW_MS, admitPurchases } from './admit.ts';
import { isScriptFailure } from './failures.ts';
import { lateRejection } from './purchases.ts';
import { waitCommittedToEnd } from '../streams/admin.ts';
import type { Admin } from 'kafkajs';
import type { AvroCodec } from '../streams/avro.ts';
import {
  runConsumer,
  type DecodedRecord,
  type RunnerHooks,
  type RunningConsumer,
} from '../streams/consumer.ts';
import type { TopicDescriptor } from '../streams/topics.ts';
import type { ProcessorDeps } from './deps.ts';
import { embeddingKeys } from '../features/embedding-keys.ts';
import { startTasteConsumer, type RunningTaste } from './taste.ts';
import { createWriters, type Writers } from './writers.ts';

export type { ProcessorDeps } from './deps.ts';

export interface RunningProcessors {
  readonly groups: { purchases: string; articles: string; customers: string };
  /** Resolves when every group has committed up to the current end of its topic. */
  caughtUp(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startProcessors(deps: ProcessorDeps): Promise<RunningProcessors> {
  const { kafka, redis, topics, keys, logger } = deps;
  await claimStoreLayout(redis, keys);
  const log = logger.child({ module: 'processors' });
  const writers = createWriters(redis, keys, {
    purchases: deps.options,
    // Article vectors where `npm run embed` wrote them (EMBEDDINGS_NAMESPACE, else ours).
    tasteArticles: deps.embeddings?.enabled
      ? embeddingKeys(deps.embeddings.namespace ?? deps.keys.ns)
      : null,
  });
  // The HTTP ingest refuses late purchases up front by the horizon the processors run with.
  await recordDedupHorizon(redis, keys, writers.purchases.dedupHorizonMs);
  const common = consumerSettings(deps);
  const groups = {
    purchases: `${deps.groupPrefix}.${topics.purchases.name}`,
    articles: `${deps.groupPrefix}.${topics.articles.name}`,
    customers: `${deps.groupPrefix}.${topics.customers.name}`,
  };
  const running: RunningConsumer[] = [];
  const admin = kafka.admin();
  await admin.connect();
  let taste: RunningTaste | null = null; // EMBEDDINGS=on: the taste consumer (taste.ts)
  const caughtUp = (which: (keyof typeof groups)[], timeoutMs: number) =>
    waitCaughtUp(
      admin,
      which.map((w) => [groups[w], topics[w].name] as const),
      timeoutMs,
    );

  try {
    running.push(
      await startMetadataConsumer(
        deps,
        common,
        groups.articles,
        { topic: deps.topics.articles, codec: deps.codecs.articles },
        (records) => writers.articles(records),
      ),
      await startMetadataConsumer(
        deps,
        common,
        groups.customers,
        { topic: deps.topics.customers, codec: deps.codecs.customers },
        (records) => writers.customers(records),
      ),
    );
    if (deps.metadataFirst ?? true) {
      await caughtUp(['articles', 'customers'], 600_000);
      log.info('metadata caught up; starting purchases');
    }
    running.push(await startPurchasesConsumer(deps, common, groups.purchases, writers));
    if (writers.taste) {
      taste = await startTasteConsumer(deps, writers.taste);
      running.push(taste.consumer);
    }
  } catch (err) {
    await Promise.allSettled(running.map((r) => r.stop()));
    await admin.disconnect();
    throw err;
  }

  return {
    groups,
    caughtUp: async (timeoutMs = 120_000) => {
      await caughtUp(['articles', 'customers', 'purchases'], timeoutMs);
      await taste?.caughtUp(admin, timeoutMs);
    },
    async stop() {
      await Promise.allSettled(running.map((r) => r.stop()));
      await admin.disconnect();
    },
  };
}

/** What every consumer group of the processors is started with. */
interface ConsumerSettings {
  readonly hooks: RunnerHooks;
  readonly session: { sessionTimeoutMs?: number; positionsCheckMs?: number };
}

function consumerSettings(deps: ProcessorDeps): ConsumerSettings {
  return {
    hooks: deps.metrics.hooks(),
    session: {
      ...(deps.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: deps.sessionTimeoutMs }),
      ...(deps.positionsCheckMs === undefined ? {} : { positionsCheckMs: deps.positionsCheckMs }),
    },
  };
}

/**
 * Resolves when each (group, topic) has committed up to the current end of its topic, in turn; a
 * broker restarting meanwhile is waited out (`waitCommittedToEnd`).
 */
async function waitCaughtUp(
  admin: Admin,
  which: readonly (readonly [group: string, topic: string])[],
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const [group, topic] of which) {
    if (!(await waitCommittedToEnd(admin, group, topic, deadline))) {
      throw new Error(`processors did not catch up on ${topic} within ${timeoutMs} ms`);
    }
  }
}

/**
 * A metadata group (articles, customers): its records into the metadata hashes through `write`
 * (writers.ts; last write wins by `updated_at`), counted by topic.
 */
function startMetadataConsumer<T>(
  deps: ProcessorDeps,
  { hooks, session }: ConsumerSettings,
  groupId: string,
  stream: { topic: TopicDescriptor<T>; codec: AvroCodec<T> },
  write: (records: readonly DecodedRecord<T>[]) => Promise<unknown>,
): Promise<RunningConsumer> {
  const { kafka, logger, metrics } = deps;
  return runConsumer({
    kafka,
    groupId,
    ...stream,
    dlqProducer: deps.dlqProducer,
    logger,
    hooks,
    ...session,
    positions: positionStore(deps.redis, deps.keys, groupId),
    isDeterministic: isScriptFailure,
    handler: async (records) => {
      await write(records);
      metrics.events.inc({ topic: stream.topic.name }, records.length);
      return undefined;
    },
  });
}

/** The purchases group: purchase events into the online features (purchases.ts). */
function startPurchasesConsumer(
  deps: ProcessorDeps,
  { hooks, session }: ConsumerSettings,
  groupId: string,
  writers: Writers,
): Promise<RunningConsumer> {
  const { kafka, codecs, topics, logger, metrics } = deps;
  return runConsumer({
    kafka,
    groupId,
    topic: topics.purchases,
    codec: codecs.purchases,
    dlqProducer: deps.dlqProducer,
    logger,
    hooks,
    maxBytesPerPartition: 2_097_152,
    // Partitions hold disjoint customers, and every script in a shared slot (article,
    // trending) is atomic with its own per-partition offset guard, so batches of different
    // partitions may be applied concurrently: Redis stays busy while Node builds the next one.
    partitionsConsumedConcurrently: topics.purchases.partitions,
    ...session,
    positions: positionStore(deps.redis, deps.keys, groupId),
    isDeterministic: isScriptFailure,
    handler: async (records) => {
      const { accepted, rejected } = admitPurchases(
        records,
        (deps.clock ?? Date.now)(),
        deps.maxEventSkewMs ?? DEFAULT_MAX_EVENT_SKEW_MS,
      );
      const out = await writers.purchases.apply(accepted);
      metrics.events.inc({ topic: topics.purchases.name }, out.applied);
      if (out.duplicates > 0)
        metrics.duplicates.inc({ topic: topics.purchases.name }, out.duplicates);
      const horizon = writers.purchases.dedupHorizonMs;
      return { rejected: [...rejected, ...out.late.map((l) => lateRejection(l, horizon))] };
    },
  });
}
