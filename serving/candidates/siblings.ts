/**
 * The `siblings` source: the articles that have sold of the customer's product codes (other
 * colours and sizes of what they bought), the most-bought product first, its latest articles
 * first. Read in round trip 2.
 */
import type { ChainableCommander } from 'ioredis';
import type { KeySpace } from '../../features/keys.ts';
import type { CustomerState, ItemStat } from '../../features/state.ts';
import type { CandidateConfig } from './config.ts';
import { byWeight } from './customer.ts';
import type { CandidatePool } from './pool.ts';
import type { Replies } from './replies.ts';
import type { Excluded } from './types.ts';

/** A product code of the customer and its time-weighted purchases. */
export type Product = [code: string, stat: ItemStat];

/**
 * The product codes whose sold articles are read: the customer's, by time-weighted purchases. An
 * article id standing in for a missing product code has no sold set, so it is not read.
 */
export function siblingProducts(customer: CustomerState, config: CandidateConfig): Product[] {
  return config.quotas.siblings > 0
    ? byWeight(customer.products)
        .filter(([code]) => !customer.items.has(code))
        .slice(0, config.siblingProducts)
    : [];
}

/** Queue the reads of each product's latest sold articles (one ZREVRANGE each). */
export function queueSiblingReads(
  pipe: ChainableCommander,
  keys: KeySpace,
  products: readonly Product[],
  perProduct: number,
): void {
  for (const [code] of products) pipe.zrevrange(keys.product(code).sold, 0, perProduct - 1);
}

interface SiblingSet {
  readonly code: string;
  readonly stat: ItemStat;
  readonly articles: string[];
}

/** The replies of `queueSiblingReads`. */
export function siblingReplies(replies: Replies, products: readonly Product[]): SiblingSet[] {
  return products.map(([code, stat]) => ({
    code,
    stat,
    articles: (replies.next() as string[] | null) ?? [],
  }));
}

/** Add at most `n` siblings, most-bought product first, each article once. */
export function addSiblings(
  pool: CandidatePool,
  sets: readonly SiblingSet[],
  excluded: Excluded,
  n: number,
): void {
  const picks: [string, { logCount: number; product: string }][] = [];
  const seen = new Set<string>();
  for (const { code, stat, articles: ids } of sets) {
    for (const id of ids) {
      if (seen.has(id) || excluded(id)) continue;
      seen.add(id);
      picks.push([id, { logCount: stat.logCount, product: code }]);
    }
  }
  picks.slice(0, n).forEach(([articleId, v], rank) => {
    pool.add(articleId, 'siblings', rank).sibling = v;
  });
}
