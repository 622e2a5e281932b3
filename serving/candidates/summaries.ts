/**
 * Article summaries: the display and filter fields of articles and when they last sold, read in
 * one pipelined round trip (for the similar-items and trending routes and the trending cache).
 */
import type { RedisClient } from '../../common/redis.ts';
import type { KeySpace } from '../../features/keys.ts';
import { storeRead } from '../http-errors.ts';
import { passesFilters } from './filters.ts';
import { execPipeline } from './replies.ts';
import type { Filters } from './types.ts';

/** Display and filter fields of an article, plus when it last sold. */
export interface ArticleSummary {
  readonly articleId: string;
  readonly name: string | null;
  readonly indexGroup: string | null;
  readonly section: string | null;
  readonly productGroup: string | null;
  /** Event time of its latest sale, if it sold. */
  readonly last: number | null;
}

const orNull = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

/** Summaries of articles in one round trip (HMGET meta + HGET stats last, pipelined). */
export async function readSummaries(
  redis: RedisClient,
  keys: KeySpace,
  ids: readonly string[],
): Promise<Map<string, ArticleSummary>> {
  if (ids.length === 0) return new Map();
  const pipe = redis.pipeline();
  for (const id of ids) {
    const k = keys.article(id);
    pipe.hmget(k.meta, 'prod_name', 'index_group_name', 'section_name', 'product_group_name');
    pipe.hget(k.stats, 'last');
  }
  const v = await storeRead('article summaries', () => execPipeline(pipe));
  return new Map(
    ids.map((articleId, i) => {
      const [name, indexGroup, section, productGroup] =
        (v[i * 2] as (string | null)[] | null) ?? [];
      const last = orNull(v[i * 2 + 1]);
      return [
        articleId,
        {
          articleId,
          name: orNull(name),
          indexGroup: orNull(indexGroup),
          section: orNull(section),
          productGroup: orNull(productGroup),
          last: last === null ? null : Number(last),
        },
      ];
    }),
  );
}

/** Whether an article summary passes the filters (for the trending cache). */
export function summaryPassesFilters(s: ArticleSummary, f: Filters): boolean {
  const meta: Record<string, string> = {};
  if (s.indexGroup !== null) meta.index_group_name = s.indexGroup;
  if (s.section !== null) meta.section_name = s.section;
  if (s.productGroup !== null) meta.product_group_name = s.productGroup;
  return passesFilters(meta, f);
}
