/**
 * The `repurchase` source: every article the customer bought, by time-weighted purchase count
 * (`items`, 30-day half-life: frequency and recency in one number), only with `allow_repurchase`
 * (otherwise every bought article is excluded anyway). Read in round trip 1 (the customer state).
 */
import type { CustomerState } from '../../features/state.ts';
import { byWeight } from './customer.ts';
import type { CandidatePool } from './pool.ts';

/** Add the customer's `quota` most-bought articles. */
export function addRepurchase(pool: CandidatePool, customer: CustomerState, quota: number): void {
  // The same half-life for all, so the order does not depend on "now".
  byWeight(customer.items)
    .slice(0, quota)
    .forEach(([articleId, stat], rank) => {
      pool.add(articleId, 'repurchase', rank).repurchase = { lastBought: stat.last };
    });
}
