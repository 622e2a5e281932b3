/**
 * Topic administration: create the project's topics (and their DLQs) with partitions and configs.
 * Idempotent: existing topics are left as they are, and a topic with fewer partitions than wanted
 * is reported rather than silently changed (re-partitioning moves keys between partitions). Also
 * record counts and consumer lag; the lag's offset reads are retried while the broker's group
 * coordinator is not ready yet (transient errors, bounded, with backoff), and the "caught up"
 * probe rides out a broker restart until its deadline.
 */
import type { Admin } from 'kafkajs';
import type { Logger } from '../common/logger.ts';
import { isTransient, retryTransient } from './retriable.ts';
import { replicationConfigs, type TopicDescriptor } from './topics.ts';

const DLQ_CONFIGS = { 'retention.ms': '-1', 'retention.bytes': '-1' };

export interface EnsureTopicsResult {
  created: string[];
  existing: string[];
}

/** Create each topic and its `<topic>.dlq` when missing; returns which were created. */
export async function ensureTopics(
  admin: Admin,
  descriptors: readonly TopicDescriptor<unknown>[],
  logger?: Logger,
): Promise<EnsureTopicsResult> {
  const wanted = descriptors.flatMap((d) => [
    {
      topic: d.name,
      numPartitions: d.partitions,
      replicationFactor: d.replicationFactor,
      configs: d.configs,
    },
    {
      topic: d.dlq,
      numPartitions: 1,
      replicationFactor: d.replicationFactor,
      configs: { ...DLQ_CONFIGS, ...replicationConfigs(d.replicationFactor) },
    },
  ]);
  const present = new Set(await admin.listTopics());
  const missing = wanted.filter((w) => !present.has(w.topic));
  if (missing.length > 0) {
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((w) => ({
        topic: w.topic,
        numPartitions: w.numPartitions,
        replicationFactor: w.replicationFactor,
        configEntries: Object.entries(w.configs).map(([name, value]) => ({ name, value })),
      })),
    });
  }
  const existing = wanted.filter((w) => present.has(w.topic));
  if (existing.length > 0) {
    const meta = await admin.fetchTopicMetadata({ topics: existing.map((w) => w.topic) });
    for (const t of meta.topics) {
      const want = wanted.find((w) => w.topic === t.name);
      if (want && t.partitions.length < want.numPartitions) {
        logger?.warn(
          { topic: t.name, partitions: t.partitions.length, wanted: want.numPartitions },
          'topic has fewer partitions than configured; left unchanged (adding partitions moves keys)',
        );
      }
    }
  }
  const result = { created: missing.map((w) => w.topic), existing: existing.map((w) => w.topic) };
  logger?.info(result, 'topics ensured');
  return result;
}

/** Sum of (high watermark - low watermark) over a topic's partitions: records currently held. */
export async function countRecords(admin: Admin, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((sum, p) => sum + Number(BigInt(p.high) - BigInt(p.low)), 0);
}

/** Sum of high watermarks: records ever written (what a counter of a fresh topic should equal). */
export async function endOffsetTotal(admin: Admin, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((sum, p) => sum + Number(p.high), 0);
}

/** How an admin call that failed with a retriable error is tried again. */
export interface AdminRetry {
  /** Attempts after the first. */
  readonly retries: number;
  /** Wait before the first retry (ms), doubled after each one up to `maxMs`. */
  readonly initialMs: number;
  readonly maxMs: number;
}

/**
 * Default for the lag probes: about 13 s in all, longer than the broker takes to load its group
 * coordinator after a fresh start.
 */
export const ADMIN_RETRY: AdminRetry = { retries: 10, initialMs: 100, maxMs: 2_000 };

/**
 * `call()`, tried again with backoff while it fails with a transient error
 * (`isTransient`: e.g. NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS while the broker
 * loads its group coordinator, or the connection errors of a broker restarting); any other
 * error, or the last transient one, is thrown.
 */
export function retryRetriable<T>(
  call: () => Promise<T>,
  retry: AdminRetry = ADMIN_RETRY,
): Promise<T> {
  return retryTransient(call, retry);
}

/**
 * Per-partition lag of a consumer group on a topic (high watermark minus committed offset). The
 * offset reads are retried on retriable errors (`retryRetriable`): right after the broker starts,
 * its group coordinator answers NOT_COORDINATOR until it has loaded the group offsets.
 */
export async function consumerLag(
  admin: Admin,
  groupId: string,
  topic: string,
  retry: AdminRetry = ADMIN_RETRY,
): Promise<{ partition: number; lag: number }[]> {
  const [ends, committed] = await Promise.all([
    retryRetriable(() => admin.fetchTopicOffsets(topic), retry),
    retryRetriable(() => admin.fetchOffsets({ groupId, topics: [topic] }), retry),
  ]);
  const done = new Map(committed[0]?.partitions.map((p) => [p.partition, BigInt(p.offset)]) ?? []);
  return ends.map((e) => {
    const c = done.get(e.partition) ?? -1n;
    const from = c < 0n ? BigInt(e.low) : c;
    return { partition: e.partition, lag: Number(BigInt(e.high) - from) };
  });
}

/**
 * Whether `groupId` has committed up to the current end of `topic`, asked until it has (true) or
 * `deadline` (a `Date.now()` value) passed (false). A broker restarting meanwhile is waited out:
 * transient errors (`isTransient`) are retried until the deadline, then thrown.
 */
export async function waitCommittedToEnd(
  admin: Admin,
  groupId: string,
  topic: string,
  deadline: number,
): Promise<boolean> {
  for (;;) {
    let done = false;
    try {
      done = (await consumerLag(admin, groupId, topic)).every((p) => p.lag <= 0);
    } catch (err) {
      if (!isTransient(err) || Date.now() > deadline) throw err;
    }
    if (done) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}
