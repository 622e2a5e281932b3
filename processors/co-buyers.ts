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
 * squared); each customer's list is cut to its `perCustomer` latest articles to bound it. Memory:
 * the customers' items, coded into typed arrays (12 bytes an item, `ItemTable`), and one
 * pipeline of packed lists; each list is written as it is computed.
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

/** Customers' baskets of coded articles: basket b holds `articles[start[b] .. start[b + 1])`. */
export interface Baskets {
  /** Article ids by code. */
  readonly ids: readonly string[];
  readonly start: Int32Array;
  readonly articles: Int32Array;
}

/**
 * Every customer's items, held compactly: each article id once (its code is its index in `ids`)
 * and every (article, latest purchase) pair in two flat typed arrays, customer after customer.
 * A store of H&M's size holds about 27M such pairs; as arrays of tuples they would take most of
 * a 4 GB heap.
 */
export class ItemTable {
  readonly ids: string[] = [];
  private readonly codes = new Map<string, number>();
  private articles = new Int32Array(1 << 12);
  private lasts = new Float64Array(1 << 12);
  /** Customer c's pairs: [ends[c - 1] (0 for the first), ends[c]). */
  private ends = new Int32Array(1 << 10);
  private pairs = 0;
  private count = 0;

  static of(customers: Iterable<CustomerItems>): ItemTable {
    const table = new ItemTable();
    for (const items of customers) table.add(items);
    return table;
  }

  /** Add one customer's items. */
  add(items: CustomerItems): void {
    if (this.pairs + items.length > this.articles.length) {
      const size = Math.max(this.articles.length * 2, this.pairs + items.length);
      this.articles = grown(this.articles, new Int32Array(size));
      this.lasts = grown(this.lasts, new Float64Array(size));
    }
    for (const [id, last] of items) {
      let code = this.codes.get(id);
      if (code === undefined) {
        code = this.ids.length;
        this.codes.set(id, code);
        this.ids.push(id);
      }
      this.articles[this.pairs] = code;
      this.lasts[this.pairs] = last;
      this.pairs++;
    }
    if (this.count === this.ends.length) {
      this.ends = grown(this.ends, new Int32Array(this.ends.length * 2));
    }
    this.ends[this.count++] = this.pairs;
  }

  /** Just after the latest purchase of any item (the wall clock for an empty table). */
  storeNow(): number {
    let latest = -Infinity;
    for (let p = 0; p < this.pairs; p++) latest = Math.max(latest, this.lasts[p] as number);
    return Number.isFinite(latest) ? latest + 1 : Date.now();
  }

  /**
   * Each customer's articles last bought within [now - window, now), latest first (ties by id),
   * at most `perCustomer`; customers without one have no basket.
   */
  baskets(opts: CoBuyerOptions & { readonly now: number }): Baskets {
    const window = opts.windowMs ?? CO_BUYER_WINDOW_MS;
    const cap = opts.perCustomer ?? PER_CUSTOMER;
    const { ids, articles, lasts } = this;
    const out = new Int32Array(this.pairs);
    const start = [0];
    let filled = 0;
    const within: number[] = [];
    for (let c = 0, from = 0; c < this.count; from = this.ends[c++] as number) {
      within.length = 0;
      for (let p = from; p < (this.ends[c] as number); p++) {
        const last = lasts[p] as number;
        if (last < opts.now && last >= opts.now - window) within.push(p);
      }
      if (within.length === 0) continue;
      within.sort((p, q) => {
        const d = (lasts[q] as number) - (lasts[p] as number);
        if (d !== 0) return d;
        const a = ids[articles[p] as number] as string;
        const b = ids[articles[q] as number] as string;
        return a < b ? -1 : a > b ? 1 : 0;
      });
      for (let k = 0; k < Math.min(cap, within.length); k++) {
        out[filled++] = articles[within[k] as number] as number;
      }
      start.push(filled);
    }
    return { ids, start: Int32Array.from(start), articles: out.subarray(0, filled) };
  }
}

function grown<T extends Int32Array | Float64Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/**
 * Each article's `top` most similar articles by the cosine of their buyer sets (best first, ties
 * by article id), article after article; articles without a common buyer with any other are left
 * out. Row by row of the article x article product of the baskets: for each article, every basket
 * holding it adds one to each other article of the basket, counted in one dense scratch row.
 */
export function* coBuyerLists(
  baskets: Baskets,
  top = CO_BUYER_TOP,
): Generator<[string, [string, number][]]> {
  const { ids, articles } = baskets;
  const bStart = baskets.start;
  const n = ids.length;
  // The baskets holding each article i: holding[start[i] .. start[i + 1]).
  const start = new Int32Array(n + 1);
  for (const i of articles) start[i + 1] = (start[i + 1] as number) + 1;
  for (let i = 0; i < n; i++) start[i + 1] = (start[i + 1] as number) + (start[i] as number);
  const fill = start.slice(0, n);
  const holding = new Int32Array(start[n] as number);
  for (let b = 0; b + 1 < bStart.length; b++) {
    for (let p = bStart[b] as number; p < (bStart[b + 1] as number); p++) {
      const i = articles[p] as number;
      holding[fill[i] as number] = b;
      fill[i] = (fill[i] as number) + 1;
    }
  }
  const common = new Int32Array(n);
  const touched = new Int32Array(n);
  const cosine = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let m = 0;
    for (let h = start[i] as number; h < (start[i + 1] as number); h++) {
      const b = holding[h] as number;
      for (let p = bStart[b] as number; p < (bStart[b + 1] as number); p++) {
        const j = articles[p] as number;
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
    yield [ids[i] as string, list];
  }
}

/** Build the co-buyer lists of `keys`' namespace at `opts.now` and write them (module comment). */
export async function buildCoBuyers(
  redis: RedisClient,
  keys: KeySpace,
  opts: CoBuyerOptions,
): Promise<CoBuyerReport> {
  const t0 = performance.now();
  const table = await readItems(redis, keys, opts.customers);
  const t1 = performance.now();
  const now = opts.now ?? table.storeNow();
  const baskets = table.baskets({ ...opts, now });

  const previous = new Set(await redis.smembers(keys.coBuyers.ids));
  // The ids set is replaced whole (a temporary key in the same slot, then RENAME).
  const next = `${keys.coBuyers.ids}:next`;
  await redis.del(next);
  let written = 0;
  let writeMs = 0;
  // The texts of the cosines met, kept for the next lists (bounded).
  const digits = new Map<number, string>();
  let batch: string[] = [];
  let pipe = redis.pipeline();
  const flush = async () => {
    const w = performance.now();
    pipe.sadd(next, ...batch);
    pipelineValues(await pipe.exec());
    written += batch.length;
    batch = [];
    pipe = redis.pipeline();
    writeMs += performance.now() - w;
  };
  for (const [id, list] of coBuyerLists(baskets, opts.top ?? CO_BUYER_TOP)) {
    if (digits.size > 1_000_000) digits.clear();
    pipe.hset(keys.article(id).summary, CO_BUYER_FIELD, packCoBuyers(list, digits));
    previous.delete(id);
    batch.push(id);
    if (batch.length === BATCH) await flush();
  }
  if (batch.length > 0) await flush();
  const t2 = performance.now();
  const stale = [...previous];
  for (let i = 0; i < stale.length; i += BATCH) {
    const p = redis.pipeline();
    for (const id of stale.slice(i, i + BATCH)) p.hdel(keys.article(id).summary, CO_BUYER_FIELD);
    pipelineValues(await p.exec());
  }
  if (written > 0) await redis.rename(next, keys.coBuyers.ids);
  else await redis.del(keys.coBuyers.ids);
  const report: CoBuyerReport = {
    now,
    customers: baskets.start.length - 1,
    articles: countArticles(baskets),
    written,
    removed: stale.length,
    ms: Math.round(performance.now() - t0),
    steps: {
      readMs: Math.round(t1 - t0),
      computeMs: Math.round(t2 - t1 - writeMs),
      writeMs: Math.round(performance.now() - t2 + writeMs),
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
): Promise<ItemTable> {
  const table = new ItemTable();
  if (ids === undefined) {
    for await (const batch of scanKeys(redis, keys.customerStates)) {
      await readBatch(redis, batch, table);
    }
    return table;
  }
  const all = Array.from(ids, (id) => keys.customer(id).state);
  for (let i = 0; i < all.length; i += BATCH) {
    await readBatch(redis, all.slice(i, i + BATCH), table);
  }
  return table;
}

/** Add the items of the customers of `stateKeys` (pipelined HSCANs of their `a:` fields). */
async function readBatch(
  redis: RedisClient,
  stateKeys: readonly string[],
  table: ItemTable,
): Promise<void> {
  const pipe = redis.pipeline();
  for (const k of stateKeys) pipe.hscan(k, '0', 'MATCH', 'a:*', 'COUNT', 10_000);
  const replies = pipelineValues(await pipe.exec());
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
    table.add(itemsOf(flat));
  }
}

/** Articles in at least one basket. */
function countArticles(baskets: Baskets): number {
  const seen = new Uint8Array(baskets.ids.length);
  let n = 0;
  for (const i of baskets.articles) {
    if (seen[i] === 0) n++;
    seen[i] = 1;
  }
  return n;
}
