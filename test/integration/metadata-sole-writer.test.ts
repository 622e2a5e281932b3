/**
 * The metadata writers of a key space they alone write (training's replay): records metadata.lua
 * would ignore (older, or the same `updated_at` with a digest not larger) are skipped without a
 * script call, and the namespace ends exactly as the plain writers leave it. Real Redis, real
 * scripts; the catalogue comes three times, with older and tied versions among the copies. And a
 * winning record replaces the stored one whole: the fields it leaves empty are deleted.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../common/config.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { MetadataWritten } from '../../processors/metadata.ts';
import { createWriters } from '../../processors/writers.ts';
import type { Article, Customer } from '../../schemas/events.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { embeddingCatalogue } from '../fixtures/embedding-articles.ts';
import { makeCustomers } from '../fixtures/events.ts';
import { dumpNamespace, expectSameState } from '../redis-helpers.ts';

const T = Date.UTC(2020, 8, 1);

const record = <V extends { updated_at: number }>(value: V, i: number, key: string) => ({
  value,
  key,
  topic: 'meta',
  partition: 0,
  offset: String(i),
  timestamp: value.updated_at,
});

/** The catalogue published three times: later versions, older ones after them, ties, copies. */
function articleStream(): DecodedRecord<Article>[] {
  const base = embeddingCatalogue(T);
  const renamed = base.map((a) => ({ ...a, prod_name: `${a.prod_name ?? ''} v2` }));
  const later = base.map((a) => ({ ...a, updated_at: T + 1000, colour_group_name: 'Later' }));
  const tie = base.map((a) => ({ ...a, updated_at: T + 1000, colour_group_name: 'Tie' }));
  const all = [...base, ...later, ...renamed, ...base, ...tie, ...later, ...base];
  return all.map((a, i) => record(a, i, a.article_id));
}

function customerStream(): DecodedRecord<Customer>[] {
  const c = (id: string, t: number, age: number): Customer => ({
    ...(makeCustomers(1, t)[0] as Customer),
    customer_id: id,
    age,
  });
  const all = [c('c1', T, 30), c('c2', T, 40), c('c1', T + 5, 31), c('c1', T, 29), c('c2', T, 40)];
  return all.map((v, i) => record(v, i, v.customer_id));
}

describe('metadata writers of a key space they alone write', () => {
  let redis: Redis;
  const plain = keySpace(`meta${randomUUID().slice(0, 8)}`);
  const sole = keySpace(`meta${randomUUID().slice(0, 8)}`);

  beforeAll(() => {
    redis = new Redis(loadConfig().redisUrl, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    await deleteNamespace(redis, plain);
    await deleteNamespace(redis, sole);
    redis.disconnect();
  });

  it('skip what the script would ignore and end in the same state', async () => {
    const articles = articleStream();
    const customers = customerStream();
    const apply = async (keys: typeof plain, soleWriter: boolean) => {
      const w = createWriters(redis, keys, { tasteArticles: null, soleWriter });
      // in batches of 7, as a replay hands them over
      let written = 0;
      for (let i = 0; i < articles.length; i += 7) {
        written += await w.articles(articles.slice(i, i + 7));
      }
      written += await w.customers(customers);
      return written;
    };
    const writtenPlain = await apply(plain, false);
    const admit = vi.spyOn(MetadataWritten.prototype, 'admit');
    const writtenSole = await apply(sole, true);
    const sent = admit.mock.results.filter((r) => r.value === true).length;
    admit.mockRestore();

    expect(writtenPlain).toBeGreaterThan(articles.length / 7);
    expect(writtenSole).toBe(writtenPlain);
    // A script call only for a record that wins when it comes, and each of those writes: the base,
    // the later and the larger-digest tie version of an article at most, 3 of the 5 customers.
    expect(sent).toBe(writtenSole);
    expect(sent).toBeLessThanOrEqual((articles.length * 3) / 7 + 3);
    expect(sent).toBeGreaterThan(0);
    const norm = (ns: string) => (d: Map<string, unknown>) =>
      new Map([...d].map(([k, v]) => [k.replace(ns, 'NS'), v]));
    expectSameState(
      norm(sole.ns)(await dumpNamespace(redis, sole.ns)),
      norm(plain.ns)(await dumpNamespace(redis, plain.ns)),
    );
  });

  it('write a winning record whole: its fields set, the ones it leaves empty deleted', async () => {
    const keys = keySpace(`meta${randomUUID().slice(0, 8)}`);
    const w = createWriters(redis, keys, { tasteArticles: null });
    const first = embeddingCatalogue(T)[0] as Article;
    expect(first.detail_desc).toBeTruthy();
    const emptied = { ...first, updated_at: T + 1, detail_desc: null, prod_name: 'Renamed' };
    expect(await w.articles([record(first, 0, first.article_id)])).toBe(1);
    expect(await w.articles([record(emptied, 1, first.article_id)])).toBe(1);
    const stored = await redis.hgetall(keys.article(first.article_id).meta);
    await deleteNamespace(redis, keys);
    const expected = Object.fromEntries(
      Object.entries(emptied)
        .filter(([k, v]) => k !== 'article_id' && k !== 'updated_at' && v !== null && v !== '')
        .map(([k, v]) => [k, String(v)]),
    );
    const { updated_at: updatedAt, _digest: digest, ...rest } = stored;
    expect(rest).toEqual(expected);
    expect(rest).not.toHaveProperty('detail_desc');
    expect(Number(updatedAt)).toBe(T + 1);
    expect(digest).toMatch(/^[0-9a-f]{16}$/);
  });
});
