/**
 * The `copurchase` source: the top neighbours (decayed co-purchase counts summed over seeds) of
 * the customer's last `copurchaseSeeds` distinct articles. Read in round trip 2.
 */
import type { ChainableCommander } from 'ioredis';
import { logAdd } from '../../features/decay.ts';
import type { KeySpace } from '../../features/keys.ts';
import type { CandidatePool } from './pool.ts';
import { parseScored, type LogScored, type Replies } from './replies.ts';
import type { Excluded } from './types.ts';

/** Queue the reads of each seed's top `perSeed` neighbours (one ZREVRANGE each). */
export function queueCopurchaseReads(
  pipe: ChainableCommander,
  keys: KeySpace,
  seeds: readonly string[],
  perSeed: number,
): void {
  for (const seed of seeds) {
    pipe.zrevrange(keys.article(seed).copurchase, 0, perSeed - 1, 'WITHSCORES');
  }
}

interface SeedSet {
  readonly seed: string;
  readonly entries: LogScored[];
}

/** The replies of `queueCopurchaseReads`. */
export function copurchaseReplies(replies: Replies, seeds: readonly string[]): SeedSet[] {
  return seeds.map((seed) => ({ seed, entries: parseScored(replies.next() as string[]) }));
}

/**
 * Add at most `n` neighbours of the seeds (not the seeds themselves), by decayed count summed
 * over seeds (a log-add: the same half-life everywhere, so the order does not depend on "now"),
 * each with the seed contributing most. Returns every neighbour's co-purchase share (seeds and
 * neighbours past the quota included): the mean over the seeds of its count divided by the
 * seed's total over the neighbours read, a conditional frequency as the strong heuristic's
 * co-purchase score (independent of "now" too); `setCopurchaseShares` gives it to the pool.
 */
export function addCopurchase(
  pool: CandidatePool,
  sets: readonly SeedSet[],
  excluded: Excluded,
  n: number,
): Map<string, number> {
  const co = new Map<string, { logScore: number; seed: string; best: number }>();
  const shares = new Map<string, number>();
  const seedSet = new Set(sets.map((s) => s.seed));
  for (const { seed, entries } of sets) {
    const total = entries.reduce<number | null>((t, e) => logAdd(t, e.logScore), null) ?? 0;
    for (const e of entries) {
      const share = Math.exp(e.logScore - total) / sets.length;
      shares.set(e.articleId, (shares.get(e.articleId) ?? 0) + share);
      if (seedSet.has(e.articleId) || excluded(e.articleId)) continue;
      const prev = co.get(e.articleId);
      if (!prev) co.set(e.articleId, { logScore: e.logScore, seed, best: e.logScore });
      else {
        prev.logScore = logAdd(prev.logScore, e.logScore);
        if (e.logScore > prev.best) {
          prev.best = e.logScore;
          prev.seed = seed;
        }
      }
    }
  }
  [...co]
    .sort((a, b) => b[1].logScore - a[1].logScore || (a[0] < b[0] ? -1 : 1))
    .slice(0, n)
    .forEach(([articleId, v], rank) => {
      pool.add(articleId, 'copurchase', rank).copurchase = { logScore: v.logScore, seed: v.seed };
    });
  return shares;
}

/** Give every candidate of the pool its co-purchase share (`addCopurchase`; 0 when none). */
export function setCopurchaseShares(pool: CandidatePool, shares: ReadonlyMap<string, number>) {
  for (const [id, share] of shares) {
    const c = pool.byId.get(id);
    if (c) c.copurchaseShare = share;
  }
}
