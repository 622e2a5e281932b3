/**
 * The `trending_global` source: the global 7-day trending set, read in round trip 1 beside the
 * customer state (or taken from the shared reads; also kept by the in-process trending cache, for
 * answers while Redis is down).
 */
import type { RedisClient } from '../../common/redis.ts';
import type { HalfLife, KeySpace } from '../../features/keys.ts';
import type { CandidatePool } from './pool.ts';
import { parseScored, type LogScored } from './replies.ts';
import type { SharedReads } from './shared.ts';
import type { Excluded } from './types.ts';

/** Half-life of the global trending set used for candidates, the trending route and the cache. */
export const GLOBAL_TRENDING_HL: HalfLife = '7d';

/**
 * The top `n` of the global trending set (no read when `n` is 0), from the shared reads when they
 * hold it fresh enough.
 */
export async function readGlobalTrending(
  redis: RedisClient,
  keys: KeySpace,
  n: number,
  shared: SharedReads | null,
): Promise<readonly LogScored[]> {
  if (n <= 0) return [];
  const key = keys.trending.global(GLOBAL_TRENDING_HL);
  const cached = shared?.top(key, n);
  if (cached !== undefined) return cached;
  const at = shared?.now() ?? 0;
  const top = parseScored(await redis.zrevrange(key, 0, n - 1, 'WITHSCORES'));
  shared?.keepTop(key, n, top, at);
  return top;
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
