/**
 * The demo's rule for publishing a folder into live topics that hold purchases already
 * (demo.ts, loadOnce). Nothing would be counted twice: the processors skip a purchase they
 * applied before as a duplicate within their dedup horizon, and dead-letter as late one dated
 * before the horizon's cut of its customer's newest (processors/purchases.ts). But a folder loaded
 * again fills the purchases DLQ with its old purchases, and another folder's purchases are mixed
 * with the first's; the demo asks for a clean start instead.
 */
import { DEFAULT_PURCHASE_OPTIONS } from '../processors/purchases.ts';

/**
 * Whether the demo may publish a folder into live topics whose purchases topic holds `held`
 * records (demo.ts loadOnce): null when they are empty; with `reload`, the warning to print;
 * else it throws, naming why and the clean start (`stackData`: the local stack's data folder,
 * STACK_DIR's `data`).
 */
export function republishCheck(held: number, reload: boolean, stackData: string): string | null {
  if (held === 0) return null;
  const days = DEFAULT_PURCHASE_OPTIONS.dedupHorizonMs / 86_400_000;
  const why =
    `the purchases topic already holds ${held} records: the processors would skip the purchases ` +
    `they applied before (duplicates within their ${days}-day dedup horizon) and dead-letter ` +
    "every purchase older than that behind its customer's latest (REC_ERR_LATE_EVENT), and a " +
    "different folder's purchases would be mixed with the first's";
  if (reload) return `${why} (--reload)`;
  throw new Error(
    `${why}. For a clean start: npm run stack:down && rm -rf ${stackData} && npm run demo ` +
      '(or TOPIC_PREFIX and REDIS_NAMESPACE naming a new pair); --reload publishes anyway',
  );
}
