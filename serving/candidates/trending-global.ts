/**
 * The `trending_global` source: the global 7-day trending set, read in round trip 1 beside the
 * customer state (also kept by the in-process trending cache, for answers while Redis is down).
 */
import type { Redis } from 'ioredis';
import type { HalfLife, KeySpace } from '../../features/keys.ts';
import type { CandidatePool } from './pool.ts';
import type { LogScored } from './replies.ts';
import type { Excluded } from './types.ts';

/** Half-life of the global trending set used for candidates, the trending route and the cache. */
export const GLOBAL_TRENDING_HL: HalfLife = '7d';

/** The top `n` of the global trending set (a `WITHSCORES` reply; no read when `n` is 0). */
export function readGlobalTrending(redis: Redis, keys: KeySpace, n: number): Promise<string[]> {
  return n > 0
    ? redis.zrevrange(keys.trending.global(GLOBAL_TRENDING_HL), 0, n - 1, 'WITHSCORES')
    : Promise.resolve([]);
}

/** Add the global trending top, in its order, without the excluded articles. */
export function addGlobalTrending(
  pool: CandidatePool,
  top: readonly LogScored[],
  excluded: Excluded,
): void {
  top.forEach((g, rank) => {
    if (excluded(g.articleId)) return;
    pool.add(g.articleId, 'trending_global', rank).global = { logScore: g.logScore };
  });
}
