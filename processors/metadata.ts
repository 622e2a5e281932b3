/**
 * Metadata processors: article and customer records from the compacted topics into Redis hashes,
 * last-write-wins by `updated_at` (a Lua script), so replays and late records converge. An article
 * record also rewrites the metadata part of the article summary (features/state.ts).
 */
import { createHash } from 'node:crypto';
import type { RedisClient } from '../common/redis.ts';
import type { DecodedRecord } from '../streams/consumer.ts';
import type { KeySpace } from '../features/keys.ts';
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
  /** An article record: metadata.lua writes its summary too. */
  article: boolean;
  pairs: string[];
}

/**
 * What a sole writer of a key space has written: per record hash, the `updated_at` and digest that
 * metadata.lua stored. With it, a record the script would ignore (an older one, or the same
 * `updated_at` with a digest not larger) is skipped without a round trip: a topic that holds the
 * catalogue several times (published again, not compacted yet) costs one script call per record
 * only once. Only for a key space no one else writes (training's replay into its namespace).
 */
export class MetadataWritten {
  private readonly stored = new Map<string, { readonly time: number; readonly digest: string }>();

  /** Whether metadata.lua would write a record of `key` at `time` with `d`; if so, remembers it. */
  admit(key: string, time: number, d: string): boolean {
    const s = this.stored.get(key);
    if (s !== undefined && (s.time > time || (s.time === time && s.digest >= d))) return false;
    this.stored.set(key, { time, digest: d });
    return true;
  }
}

async function upsert(
  redis: RedisClient,
  scripts: Scripts,
  items: Upsert[],
  written?: MetadataWritten,
): Promise<number> {
  const pipe = redis.pipeline();
  let calls = 0;
  for (const it of items) {
    const d = digest(it.pairs);
    if (written !== undefined && !written.admit(it.keys[0] as string, it.time, d)) continue;
    scripts.call(pipe, 'metadata', it.keys, [it.time, d, it.article ? 1 : 0, ...it.pairs]);
    calls++;
  }
  if (calls === 0) return 0;
  const res = (await pipe.exec()) ?? [];
  let count = 0;
  for (const [err, v] of res) {
    if (err) throw new Error(`redis metadata write failed: ${err.message}`, { cause: err });
    count += Number(v);
  }
  return count;
}

export function applyArticles(
  redis: RedisClient,
  keys: KeySpace,
  scripts: Scripts,
  records: readonly DecodedRecord<Article>[],
  written?: MetadataWritten,
): Promise<number> {
  return upsert(
    redis,
    scripts,
    records.map((r) => {
      const k = keys.article(r.value.article_id);
      return {
        keys: [k.meta, k.summary, k.stats, k.buyers],
        time: r.value.updated_at,
        article: true,
        pairs: fields(r.value, ['article_id', 'updated_at']),
      };
    }),
    written,
  );
}

export function applyCustomers(
  redis: RedisClient,
  keys: KeySpace,
  scripts: Scripts,
  records: readonly DecodedRecord<Customer>[],
  written?: MetadataWritten,
): Promise<number> {
  return upsert(
    redis,
    scripts,
    records.map((r) => ({
      keys: [keys.customer(r.value.customer_id).meta],
      time: r.value.updated_at,
      article: false,
      pairs: fields(r.value, ['customer_id', 'updated_at']),
    })),
    written,
  );
}
