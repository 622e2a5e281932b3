/**
 * Batches in flight together (`PurchaseProcessor.applyAfter`, what the training replay uses),
 * against the real Redis and the real scripts: every batch of a replay started at once leaves
 * exactly the state that applying them one after the other leaves, and a batch that fails fails
 * the batches after it before they write anything.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../common/config.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import type { AppliedSteps, BatchOutcome } from '../../processors/purchases.ts';
import { createWriters, type Writers } from '../../processors/writers.ts';
import type { Purchase } from '../../schemas/events.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import { dumpNamespace, expectSameState } from '../redis-helpers.ts';

const T0 = Date.UTC(2020, 0, 1);
const PARTITIONS = 3;
const BATCH = 40;

const decoded = <T>(
  value: T,
  key: string,
  partition: number,
  offset: number,
): DecodedRecord<T> => ({
  value,
  key,
  topic: 'test',
  partition,
  offset: String(offset),
  timestamp: T0,
});

/**
 * A topic's purchases as a replay hands them over: each customer's on one partition, offsets in
 * event-time order per partition, batches that mix the partitions, in event-time order.
 */
function replayBatches(): DecodedRecord<Purchase>[][] {
  const purchases = makePurchases({
    count: 600,
    customers: 12,
    articles: 30,
    start: T0,
    days: 40,
    seed: 11,
  });
  const next = Array.from({ length: PARTITIONS }, () => 0);
  const records = purchases.map((p) => {
    const partition = Number(p.customer_id.replace(/\D/g, '')) % PARTITIONS;
    return decoded(p, p.customer_id, partition, next[partition]!++);
  });
  const batches: DecodedRecord<Purchase>[][] = [];
  for (let i = 0; i < records.length; i += BATCH) batches.push(records.slice(i, i + BATCH));
  return batches;
}

describe('purchase batches in flight together', () => {
  let redis: Redis;
  const namespaces: string[] = [];

  beforeAll(() => {
    redis = new Redis(loadConfig().redisUrl, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    for (const ns of namespaces) await deleteNamespace(redis, keySpace(ns));
    redis.disconnect();
  });

  /** Writers of a new namespace, with the articles' and customers' records written. */
  async function namespace(
    afterStep?: (step: 1 | 2 | 3) => void | Promise<void>,
  ): Promise<[string, Writers]> {
    const ns = `inorder${randomUUID().slice(0, 8)}`;
    namespaces.push(ns);
    const writers = createWriters(redis, keySpace(ns), {
      tasteArticles: null,
      ...(afterStep ? { purchases: { afterStep } } : {}),
    });
    await writers.articles(makeArticles(30, T0).map((a, i) => decoded(a, a.article_id, 0, i)));
    await writers.customers(makeCustomers(12, T0).map((c, i) => decoded(c, c.customer_id, 0, i)));
    return [ns, writers];
  }

  /** Every batch started at once, each after the one before it. */
  function startAll(writers: Writers, batches: DecodedRecord<Purchase>[][]) {
    let steps: AppliedSteps | null = null;
    const done: Promise<BatchOutcome>[] = [];
    for (const batch of batches) {
      const started = writers.purchases.applyAfter(batch, steps);
      started.done.catch(() => undefined);
      steps = started.steps;
      done.push(started.done);
    }
    return done;
  }

  it('leaves the state of batches applied one after the other', async () => {
    const batches = replayBatches();
    const [one, oneWriters] = await namespace();
    let applied = 0;
    for (const batch of batches) applied += (await oneWriters.purchases.apply(batch)).applied;
    expect(applied).toBe(600);

    // The first batch's metadata read is answered last: the others' steps must still wait.
    let reads = 0;
    const [all, allWriters] = await namespace(async (step) => {
      if (step === 1 && ++reads === 1) await new Promise((r) => setTimeout(r, 100));
    });
    const outcomes = await Promise.all(startAll(allWriters, batches));
    expect(outcomes.reduce((n, o) => n + o.applied, 0)).toBe(600);
    expect(outcomes.every((o) => o.duplicates === 0 && o.late.length === 0)).toBe(true);

    // Out of order, a customer's later offsets would be applied first and the guard would take
    // the earlier ones for redeliveries: counts, items, co-purchases and trending would differ.
    expectSameState(await dumpNamespace(redis, all), await dumpNamespace(redis, one));
  });

  it('fails the batches after a failed one before they write', async () => {
    const batches = replayBatches().slice(0, 4);
    let customerSteps = 0;
    const [ns, writers] = await namespace((step) => {
      if (step === 2 && ++customerSteps === 2) throw new Error('simulated failure after step 2');
    });
    const done = startAll(writers, batches);
    await expect(done[0]).resolves.toMatchObject({ applied: BATCH });
    for (const d of done.slice(1)) await expect(d).rejects.toThrow('simulated failure');

    // The failed batch's customer scripts ran (the failure came after them); the later batches'
    // did not.
    const keys = keySpace(ns);
    const seenIds = async (batch: DecodedRecord<Purchase>[]) => {
      const ids: string[] = [];
      for (const r of batch) {
        if (
          (await redis.hexists(keys.customer(r.value.customer_id).seen, r.value.event_id)) === 1
        ) {
          ids.push(r.value.event_id);
        }
      }
      return ids.length;
    };
    expect(await seenIds(batches[1]!)).toBe(BATCH);
    expect(await seenIds(batches[2]!)).toBe(0);
    expect(await seenIds(batches[3]!)).toBe(0);
  });
});
