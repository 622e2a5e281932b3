/**
 * Poison isolation, against the real stack: one customer's state key is corrupted (a string where
 * the customer script expects a hash), so every batch holding that customer's purchases fails in
 * Redis the same way. After a few attempts the runner splits the batch until those purchases are
 * alone, dead-letters them with the error (REC_ERR_APPLY), applies every other purchase, and the
 * partition goes on; nothing else reaches the DLQ.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { KafkaMessage, Producer } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { keySpace } from '../../features/keys.ts';
import { readCustomers } from '../../features/state.ts';
import { isScriptFailure } from '../../processors/failures.ts';
import { bootstrap } from '../../streams/bootstrap.ts';
import { DLQ_HEADERS } from '../../streams/consumer.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import { stackContext, startSuiteProcessors, waitFor } from '../helpers.ts';

const T0 = Date.UTC(2020, 4, 4);

describe('a purchase whose apply fails every time', () => {
  const ctx = stackContext('poison');
  const redis = new Redis(ctx.config.redisUrl);
  let producer: Producer | null = null;

  afterAll(async () => {
    await producer?.disconnect();
    await ctx.cleanup();
    redis.disconnect();
  });

  it('classes Redis error replies: a script error is the record, a server state is not', () => {
    const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });
    const wrapped = (e: Error) =>
      new Error(`redis customer script failed: ${e.message}`, { cause: e });
    expect(
      isScriptFailure(
        wrapped(
          reply(
            'ERR Error running script (call to f_1): @user_script:60: WRONGTYPE Operation against a key holding the wrong kind of value',
          ),
        ),
      ),
    ).toBe(true);
    for (const m of [
      'LOADING Redis is loading',
      'OOM command not allowed',
      'BUSY running a script',
    ])
      expect(isScriptFailure(wrapped(reply(m)))).toBe(false);
    expect(isScriptFailure(reply('REC_OFFSET_REGRESSION: offset 3 ...'))).toBe(false);
    expect(isScriptFailure(new Error('Connection is closed.'))).toBe(false);
  });

  it('dead-letters the poison purchases with the error and applies every other one', async () => {
    const { codecs } = await bootstrap(ctx);
    producer = createIdempotentProducer(ctx.kafka);
    await producer.connect();
    const purchases = makePurchases({
      count: 400,
      customers: 20,
      articles: 15,
      start: T0,
      days: 20,
      seed: 11,
    });
    const poisoned = purchases[7]!.customer_id;
    const ns = `poison${randomUUID().slice(0, 8)}`;
    const keys = keySpace(ns);
    await redis.set(keys.customer(poisoned).state, 'not a hash');

    await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(
      makeArticles(15, T0),
    );
    await new EventProducer(producer, ctx.topics.customers, codecs.customers).send(
      makeCustomers(20, T0),
    );
    await new EventProducer(producer, ctx.topics.purchases, codecs.purchases).send(purchases);

    const { running, metrics } = await startSuiteProcessors(ctx, {
      redis,
      keys,
      codecs,
      producer,
      groupPrefix: `poison-${randomUUID().slice(0, 8)}`,
    });
    try {
      await running.caughtUp(120_000);
    } finally {
      await running.stop();
    }

    const bad = purchases.filter((p) => p.customer_id === poisoned);
    const good = purchases.filter((p) => p.customer_id !== poisoned);
    expect(bad.length).toBeGreaterThan(0);
    // Every other purchase applied exactly once.
    const others = [...new Set(good.map((p) => p.customer_id))];
    const states = await readCustomers(redis, keys, others);
    expect(states.reduce((s, c) => s + c.n, 0)).toBe(good.length);
    // The poisoned customer's purchases, and only they, in the DLQ with the error.
    const dead: KafkaMessage[] = [];
    const consumer = ctx.kafka.consumer({ groupId: `poison-read-${randomUUID().slice(0, 8)}` });
    await consumer.connect();
    await consumer.subscribe({ topic: ctx.topics.purchases.dlq, fromBeginning: true });
    await consumer.run({
      eachMessage: ({ message }) => {
        dead.push(message);
        return Promise.resolve();
      },
    });
    await waitFor('the dead letters', () => dead.length >= bad.length, 30_000, 50);
    await consumer.disconnect();
    expect(dead).toHaveLength(bad.length);
    for (const m of dead) {
      expect(m.key?.toString()).toBe(poisoned);
      expect(m.headers?.[DLQ_HEADERS.code]?.toString()).toBe('REC_ERR_APPLY');
      expect(m.headers?.[DLQ_HEADERS.reason]?.toString()).toMatch(/WRONGTYPE/);
    }
    const isolated = (await metrics.isolated.get()).values.reduce((s, v) => s + v.value, 0);
    expect(isolated).toBe(bad.length);
    expect(metrics.health().ok).toBe(true);
    await redis.unlink(...(await redis.keys(`${ns}:*`)));
  });
});
