/**
 * The co-buyer build (features/co-buyers.ts): a batch job over the customers' item state of a
 * namespace, at an explicit "now". It reads the customers' articles (pipelined HSCANs of their
 * `state` hashes' `a:` fields; the customers given, else every one found by SCAN), takes those
 * whose latest purchase lies within the window before "now", counts each article's buyers and
 * each pair's common buyers, and writes each article's most similar ones by cosine into its
 * summary. Articles that had a list in the previous build and have none now lose it (the `ids`
 * set remembers them).
 *
 * Run at each cutoff by the training rows (into their isolated namespace, "now" = the cutoff) and
 * by each training cycle on the live namespace ("now" = the cycle's end), so serving reads what
 * training saw, at most a cycle old. `npm run co-buyers` runs it by hand.
 *
 * Cost: the pairs of each customer's articles within the window (at most the items cap, 200,
 * squared); each customer's list is cut to its `perCustomer` latest articles to bound it.
 */
import type { RedisClient } from '../common/redis.ts';
import { scanKeys } from '../common/redis.ts';
import {
  CO_BUYER_FIELD,
  CO_BUYER_TOP,
  CO_BUYER_WINDOW_MS,
  packCoBuyers,
} from '../features/co-buyers.ts';
import type { KeySpace } from '../features/keys.ts';
import { pipelineValues } from '../features/state.ts';

export interface CoBuyerOptions {
  /**
   * Event-time "now" (ms): purchases at or after it are not counted. Default: just after the
   * latest purchase the store holds (the customers' `last`), the store's event-time clock.
   */
  readonly now?: number;
  readonly windowMs?: number;
  readonly top?: number;
  /** Most articles per customer paired (the latest). */
  readonly perCustomer?: number;
  /**
   * The customers to read, when the caller knows them (training's replay does). Default: every
   * customer state of the namespace, found by SCAN, whose cost grows with the whole database.
   */
  readonly customers?: Iterable<string>;
}

export interface CoBuyerReport {
  readonly now: number;
  readonly customers: number;
  /** Articles with a buyer within the window. */
  readonly articles: number;
  /** Articles written a list (with at least one neighbour). */
  readonly written: number;
  /** Articles whose list of the previous build was removed. */
  readonly removed: number;
  readonly ms: number;
  /** Of `ms`: reading the customers, computing the lists, writing them. */
  readonly steps: { readonly readMs: number; readonly computeMs: number; readonly writeMs: number };
}

const PER_CUSTOMER = 200;
const BATCH = 1_000;

/** A customer's articles and the time of the latest purchase of each (customer.lua `a:<id>`). */
export type CustomerItems = readonly (readonly [articleId: string, last: number])[];

/**
 * The items of a customer's `state` fields and values, flat (HSCAN's replies): its `a:` fields,
 * each once (an HSCAN over several calls may return a field twice).
 */
export function itemsOf(flat: readonly string[]): [string, number][] {
  const out = new Map<string, number>();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const field = flat[i] as string;
    if (!field.startsWith('a:')) continue;
    const value = flat[i + 1] as string;
    const bar = value.indexOf('|');
    out.set(field.slice(2), Number(value.slice(bar + 1, value.indexOf('|', bar + 1))));
  }
  return [...out];
}

/** Each customer's articles within [now - window, now), latest first, at most `perCustomer`. */
export function basketsOf(
  customers: Iterable<CustomerItems>,
  opts: CoBuyerOptions & { readonly now: number },
): string[][] {
  const window = opts.windowMs ?? CO_BUYER_WINDOW_MS;
  const cap = opts.perCustomer ?? PER_CUSTOMER;
  const out: string[][] = [];
  for (const items of customers) {
    const within = items.filter(([, last]) => last < opts.now && last >= opts.now - window);
    if (within.length === 0) continue;
    within.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    out.push(within.slice(0, cap).map(([id]) => id));
  }
  return out;
}

/**
 * Each article's `top` most similar articles by the cosine of their buyer sets (best first, ties
 * by article id); articles without a common buyer with any other are left out. Row by row of the
 * article x article product of the baskets: for each article, every basket holding it adds one to
 * each other article of the basket, counted in one dense scratch row.
 */
export function coBuyerLists(
  baskets: readonly (readonly string[])[],
  top = CO_BUYER_TOP,
): Map<string, [string, number][]> {
  const index = new Map<string, number>();
  const ids: string[] = [];
  const coded = baskets.map((basket) =>
    Int32Array.from(basket, (id) => {
      let i = index.get(id);
      if (i === undefined) {
        i = ids.length;
        index.set(id, i);
        ids.push(id);
      }
      return i;
    }),
  );
  const n = ids.length;
  // The baskets holding each article i: holding[start[i] .. start[i + 1]).
  const start = new Int32Array(n + 1);
  for (const b of coded) for (const i of b) start[i + 1] = (start[i + 1] as number) + 1;
  for (let i = 0; i < n; i++) start[i + 1] = (start[i + 1] as number) + (start[i] as number);
  const fill = start.slice(0, n);
  const holding = new Int32Array(start[n] as number);
  coded.forEach((b, bi) => {
    for (const i of b) {
      holding[fill[i] as number] = bi;
      fill[i] = (fill[i] as number) + 1;
    }
  });
  const common = new Int32Array(n);
  const touched = new Int32Array(n);
  const cosine = new Float64Array(n);
  const out = new Map<string, [string, number][]>();
  for (let i = 0; i < n; i++) {
    let m = 0;
    for (let h = start[i] as number; h < (start[i + 1] as number); h++) {
      for (const j of coded[holding[h] as number] as Int32Array) {
        if (j === i) continue;
        if (common[j] === 0) touched[m++] = j;
        common[j] = (common[j] as number) + 1;
      }
    }
    if (m === 0) continue;
    const buyersI = (start[i + 1] as number) - (start[i] as number);
    for (let t = 0; t < m; t++) {
      const j = touched[t] as number;
      const buyersJ = (start[j + 1] as number) - (start[j] as number);
      cosine[t] = (common[j] as number) / Math.sqrt(buyersI * buyersJ);
      common[j] = 0;
    }
    // Only those at or above the top-th cosine are sorted (by cosine, then id).
    let floor = -Infinity;
    if (m > top) {
      const sorted = cosine.slice(0, m).sort();
      floor = sorted[m - top] as number;
    }
    const list: [string, number][] = [];
    for (let t = 0; t < m; t++) {
      const c = cosine[t] as number;
      if (c >= floor) list.push([ids[touched[t] as number] as string, c]);
    }
    list.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    if (list.length > top) list.length = top;
    out.set(ids[i] as string, list);
  }
  return out;
}

/** Build the co-buyer lists of `keys`' namespace at `opts.now` and write them (module comment). */
export async function buildCoBuyers(
  redis: RedisClient,
  keys: KeySpace,
  opts: CoBuyerOptions,
): Promise<CoBuyerReport> {
  const t0 = performance.now();
  const customers = await readItems(redis, keys, opts.customers);
  const t1 = performance.now();
  const now = opts.now ?? storeNow(customers);
  const baskets = basketsOf(customers, { ...opts, now });
  const lists = coBuyerLists(baskets, opts.top ?? CO_BUYER_TOP);
  const t2 = performance.now();

  const previous = await redis.smembers(keys.coBuyers.ids);
  const stale = previous.filter((id) => !lists.has(id));
  const entries = [...lists];
  const digits = new Map<number, string>();
  for (let i = 0; i < entries.length; i += BATCH) {
    const pipe = redis.pipeline();
    // The texts of the cosines met, kept for the next lists (bounded).
    if (digits.size > 1_000_000) digits.clear();
    for (const [id, list] of entries.slice(i, i + BATCH)) {
      pipe.hset(keys.article(id).summary, CO_BUYER_FIELD, packCoBuyers(list, digits));
    }
    pipelineValues(await pipe.exec());
  }
  for (let i = 0; i < stale.length; i += BATCH) {
    const pipe = redis.pipeline();
    for (const id of stale.slice(i, i + BATCH)) pipe.hdel(keys.article(id).summary, CO_BUYER_FIELD);
    pipelineValues(await pipe.exec());
  }
  // The ids set is replaced whole (a temporary key in the same slot, then RENAME).
  const next = `${keys.coBuyers.ids}:next`;
  await redis.del(next);
  for (let i = 0; i < entries.length; i += BATCH) {
    await redis.sadd(next, ...entries.slice(i, i + BATCH).map(([id]) => id));
  }
  if (entries.length > 0) await redis.rename(next, keys.coBuyers.ids);
  else await redis.del(keys.coBuyers.ids);
  const report: CoBuyerReport = {
    now,
    customers: baskets.length,
    articles: countArticles(baskets),
    written: entries.length,
    removed: stale.length,
    ms: Math.round(performance.now() - t0),
    steps: {
      readMs: Math.round(t1 - t0),
      computeMs: Math.round(t2 - t1),
      writeMs: Math.round(performance.now() - t2),
    },
  };
  await redis.hset(keys.coBuyers.meta, {
    now: report.now,
    customers: report.customers,
    articles: report.articles,
    written: report.written,
    top: opts.top ?? CO_BUYER_TOP,
    window_ms: opts.windowMs ?? CO_BUYER_WINDOW_MS,
    build_ms: report.ms,
  });
  return report;
}

/** The items of `ids`' customers, or of every customer (SCAN for the `state` hashes). */
async function readItems(
  redis: RedisClient,
  keys: KeySpace,
  ids: Iterable<string> | undefined,
): Promise<CustomerItems[]> {
  const out: CustomerItems[] = [];
  if (ids === undefined) {
    for await (const batch of scanKeys(redis, keys.customerStates)) {
      out.push(...(await readBatch(redis, batch)));
    }
    return out;
  }
  const all = Array.from(ids, (id) => keys.customer(id).state);
  for (let i = 0; i < all.length; i += BATCH) {
    out.push(...(await readBatch(redis, all.slice(i, i + BATCH))));
  }
  return out;
}

/** The items of the customers of `stateKeys`, by pipelined HSCANs of their `a:` fields. */
async function readBatch(
  redis: RedisClient,
  stateKeys: readonly string[],
): Promise<CustomerItems[]> {
  const pipe = redis.pipeline();
  for (const k of stateKeys) pipe.hscan(k, '0', 'MATCH', 'a:*', 'COUNT', 10_000);
  const replies = pipelineValues(await pipe.exec());
  const out: CustomerItems[] = [];
  for (let i = 0; i < stateKeys.length; i++) {
    let [cursor, flat] = replies[i] as [string, string[]];
    // A hash larger than the COUNT hint takes more calls.
    while (cursor !== '0') {
      const [next, more] = await redis.hscan(
        stateKeys[i] as string,
        cursor,
        'MATCH',
        'a:*',
        'COUNT',
        10_000,
      );
      cursor = next;
      flat = flat.concat(more);
    }
    out.push(itemsOf(flat));
  }
  return out;
}

/** Just after the latest purchase of any customer's article (the wall clock for an empty store). */
function storeNow(customers: readonly CustomerItems[]): number {
  let latest = -Infinity;
  for (const items of customers) for (const [, last] of items) latest = Math.max(latest, last);
  return Number.isFinite(latest) ? latest + 1 : Date.now();
}

function countArticles(baskets: readonly (readonly string[])[]): number {
  const seen = new Set<string>();
  for (const b of baskets) for (const id of b) seen.add(id);
  return seen.size;
}
