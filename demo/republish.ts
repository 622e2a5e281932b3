/**
 * The demo's rule for publishing a folder into live topics that hold purchases already
 * (demo.ts, loadOnce): the processors skip an event published again only within their dedup
 * horizon (30 days before the customer's latest purchase, processors/purchases.ts), so a second
 * publish would count every older purchase again in the live store.
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
    `the purchases topic already holds ${held} records, and publishing again would count, in ` +
    `the live store, every purchase older than the processors' dedup horizon (${days} days ` +
    "before its customer's latest) a second time";
  if (reload) return `${why} (--reload)`;
  throw new Error(
    `${why}. For a clean start: npm run stack:down && rm -rf ${stackData} && npm run demo ` +
      '(or TOPIC_PREFIX and REDIS_NAMESPACE naming a new pair); --reload publishes anyway',
  );
}
