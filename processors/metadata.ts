/**
 * Metadata processors: article and customer records from the compacted topics into Redis hashes,
 * last-write-wins by `updated_at` (a Lua script), so replays and late records converge. An article
 * record also rewrites the metadata part of the article summary (features/state.ts).
 */
import { createHash } from 'node:crypto';
import type { RedisClient } from '../common/redis.ts';
import type { DecodedRecord } from '../streams/consumer.ts';
import type { KeySpace } from '../features/keys.ts';
import { articleSummaryArgs } from '../features/state.ts';
import type { Article, Customer } from '../schemas/events.ts';
import type { Scripts } from './scripts.ts';

type Flat = Record<string, string | number | boolean | null>;

function fields(record: Flat, skip: readonly string[]): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(record)) {
    if (skip.includes(k)) continue;
    out.push(k, v === null ? '' : typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
  }
  return out;
}

function digest(pairs: readonly string[]): string {
  return createHash('sha256').update(pairs.join('\u001f')).digest('hex').slice(0, 16);
}

interface Upsert {
  /** The record's hash, then (articles) the summary, stats and buyers keys. */
  keys: string[];
  time: number;
  /** The summary arguments of metadata.lua (articles), else none. */
  summary: readonly string[];
  pairs: string[];
}

async function upsert(redis: RedisClient, scripts: Scripts, items: Upsert[]): Promise<number> {
  if (items.length === 0) return 0;
  const pipe = redis.pipeline();
  for (const it of items) {
    scripts.call(pipe, 'metadata', it.keys, [
      it.time,
      digest(it.pairs),
      it.summary.length,
      ...it.summary,
      ...it.pairs,
    ]);
  }
  const res = (await pipe.exec()) ?? [];
  let written = 0;
  for (const [err, v] of res) {
    if (err) throw new Error(`redis metadata write failed: ${err.message}`, { cause: err });
    written += Number(v);
  }
  return written;
}

export function applyArticles(
  redis: RedisClient,
  keys: KeySpace,
  scripts: Scripts,
  records: readonly DecodedRecord<Article>[],
): Promise<number> {
  const summary = articleSummaryArgs();
  return upsert(
    redis,
    scripts,
    records.map((r) => {
      const k = keys.article(r.value.article_id);
      return {
        keys: [k.meta, k.summary, k.stats, k.buyers],
        time: r.value.updated_at,
        summary,
        pairs: fields(r.value, ['article_id', 'updated_at']),
      };
    }),
  );
}

export function applyCustomers(
  redis: RedisClient,
  keys: KeySpace,
  scripts: Scripts,
  records: readonly DecodedRecord<Customer>[],
): Promise<number> {
  return upsert(
    redis,
    scripts,
    records.map((r) => ({
      keys: [keys.customer(r.value.customer_id).meta],
      time: r.value.updated_at,
      summary: [],
      pairs: fields(r.value, ['customer_id', 'updated_at']),
    })),
  );
}
