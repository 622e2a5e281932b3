/**
 * The purchase log the baselines (evaluation/baselines.ts), the label weeks (training/judge.ts)
 * and the backtest read: every purchase (customer, article, event time), in time order, with each
 * customer's purchases findable by time.
 *
 * It holds H&M's full size (31.8M purchases, 1.37M customers, 105k articles) in columns: each
 * customer and article id is kept once (string tables) and events refer to them by index; event
 * times are a Float64Array. About 20 bytes per event (time 8, customer 4, article 4, the
 * per-customer index 4) besides the id tables, where an object per event with its own strings
 * took over 200. No Map or Set has an entry per event (one V8 Map or Set holds at most 2^24 =
 * 16.7M entries): only the id tables are Maps, an entry per customer and per article.
 *
 * `PurchaseLogBuilder` collects a log one event at a time, dropping events whose id was seen
 * before (training/steps.ts `readPurchases`; streams/seen-ids.ts); `new PurchaseLog(events)` takes
 * events as objects.
 */
import { SeenEventIds } from '../streams/seen-ids.ts';

export interface PurchaseEvent {
  readonly customer: string;
  readonly article: string;
  /** Event time, ms. */
  readonly time: number;
}

/** Events as they were added: ids interned, columns grown by doubling (not exported). */
class Appended {
  size = 0;
  customer = new Uint32Array(1024);
  article = new Uint32Array(1024);
  time = new Float64Array(1024);
  readonly customerIds: string[] = [];
  readonly customerIndex = new Map<string, number>();
  readonly articleIds: string[] = [];
  readonly articleIndex = new Map<string, number>();

  static from(events: Iterable<PurchaseEvent>): Appended {
    const out = new Appended();
    for (const e of events) out.push(e.customer, e.article, e.time);
    return out;
  }

  push(customer: string, article: string, time: number): void {
    if (this.size === this.time.length) {
      const grown = 2 * this.size;
      this.customer = copyInto(new Uint32Array(grown), this.customer);
      this.article = copyInto(new Uint32Array(grown), this.article);
      this.time = copyInto(new Float64Array(grown), this.time);
    }
    let c = this.customerIndex.get(customer);
    if (c === undefined) {
      c = this.customerIds.length;
      this.customerIds.push(customer);
      this.customerIndex.set(customer, c);
    }
    let a = this.articleIndex.get(article);
    if (a === undefined) {
      a = this.articleIds.length;
      this.articleIds.push(article);
      this.articleIndex.set(article, a);
    }
    this.customer[this.size] = c;
    this.article[this.size] = a;
    this.time[this.size] = time;
    this.size++;
  }
}

function copyInto<T extends Uint32Array | Float64Array>(to: T, from: T): T {
  to.set(from);
  return to;
}

/** Runs shorter than this are insertion-sorted before merging. */
const RUN = 32;

/**
 * The indices 0..n-1 ordered by `time[i]`, stably: equal times keep their index order, as
 * `Array.prototype.sort` does. A bottom-up merge sort on indices (two Uint32Arrays, where an
 * array of objects sorted would need one object per event); runs already in order, as most of a
 * replayed topic is, are copied without comparing.
 */
function stableOrderByTime(time: Float64Array, n: number): Uint32Array {
  let order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) sorted = (time[i - 1] as number) <= (time[i] as number);
  if (sorted) return order;
  for (let lo = 0; lo < n; lo += RUN) {
    const hi = Math.min(lo + RUN, n);
    for (let i = lo + 1; i < hi; i++) {
      const x = order[i] as number;
      const tx = time[x] as number;
      let j = i - 1;
      while (j >= lo && (time[order[j] as number] as number) > tx) {
        order[j + 1] = order[j] as number;
        j--;
      }
      order[j + 1] = x;
    }
  }
  let other = new Uint32Array(n);
  for (let width = RUN; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(lo + width, n);
      const hi = Math.min(lo + 2 * width, n);
      if (
        mid >= hi ||
        (time[order[mid - 1] as number] as number) <= (time[order[mid] as number] as number)
      ) {
        other.set(order.subarray(lo, hi), lo);
        continue;
      }
      let i = lo;
      let j = mid;
      let k = lo;
      // The left run wins ties: stable.
      while (i < mid && j < hi) {
        const a = order[i] as number;
        const b = order[j] as number;
        if ((time[b] as number) < (time[a] as number)) {
          other[k++] = b;
          j++;
        } else {
          other[k++] = a;
          i++;
        }
      }
      if (i < mid) other.set(order.subarray(i, mid), k);
      else other.set(order.subarray(j, hi), k);
    }
    [order, other] = [other, order];
  }
  return order;
}

/**
 * Purchases in time order (ties in the order they were given), and each customer's purchases in
 * time order. Build it from event objects (`new PurchaseLog(events)`) or one event at a time
 * (`PurchaseLogBuilder`).
 */
export class PurchaseLog {
  /** Time of the first event, undefined when the log is empty. */
  readonly firstTime: number | undefined;
  /** Time of the last event, undefined when the log is empty. */
  readonly lastTime: number | undefined;
  private readonly customerIds: readonly string[];
  private readonly customerIndex: ReadonlyMap<string, number>;
  private readonly articleIds: readonly string[];
  /** Per event, in time order: its time, customer index and article index. */
  private readonly time: Float64Array;
  private readonly customer: Uint32Array;
  private readonly article: Uint32Array;
  /**
   * Event indices grouped by customer, each group in time order: customer c's events are
   * `byCustomer[customerStart[c]..customerStart[c + 1])`.
   */
  private readonly byCustomer: Uint32Array;
  private readonly customerStart: Uint32Array;

  /**
   * `events` in any order; events at the same time keep the order given. (`Appended` is this
   * module's own: `PurchaseLogBuilder.build()` passes its columns, taken as they are.)
   */
  constructor(events: Iterable<PurchaseEvent> | Appended) {
    const added = events instanceof Appended ? events : Appended.from(events);
    const n = added.size;
    const order = stableOrderByTime(added.time, n);
    const time = new Float64Array(n);
    const customer = new Uint32Array(n);
    const article = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const j = order[i] as number;
      time[i] = added.time[j] as number;
      customer[i] = added.customer[j] as number;
      article[i] = added.article[j] as number;
    }
    // Counting sort by customer, stable: each customer's events stay in time order.
    const customers = added.customerIds.length;
    const start = new Uint32Array(customers + 1);
    for (let i = 0; i < n; i++) {
      const c = (customer[i] as number) + 1;
      start[c] = (start[c] as number) + 1;
    }
    for (let c = 0; c < customers; c++)
      start[c + 1] = (start[c + 1] as number) + (start[c] as number);
    const next = start.slice(0, customers);
    const byCustomer = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const c = customer[i] as number;
      const k = next[c] as number;
      byCustomer[k] = i;
      next[c] = k + 1;
    }
    this.firstTime = n > 0 ? time[0] : undefined;
    this.lastTime = n > 0 ? time[n - 1] : undefined;
    this.customerIds = added.customerIds;
    this.customerIndex = added.customerIndex;
    this.articleIds = added.articleIds;
    this.time = time;
    this.customer = customer;
    this.article = article;
    this.byCustomer = byCustomer;
    this.customerStart = start;
  }

  /** Index of the first event at or after `t` in time order (binary search). */
  indexAt(t: number): number {
    let lo = 0;
    let hi = this.time.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.time[mid] as number) < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Calls `f` on each event with from <= time < to, oldest first, making no objects. */
  forEachBetween(
    from: number,
    to: number,
    f: (customer: string, article: string, time: number) => void,
  ): void {
    const { customerIds, articleIds, customer, article, time } = this;
    const end = this.indexAt(to);
    for (let i = this.indexAt(from); i < end; i++) {
      f(
        customerIds[customer[i] as number] as string,
        articleIds[article[i] as number] as string,
        time[i] as number,
      );
    }
  }

  /** A customer's events before `t`, oldest first. */
  historyBefore(customer: string, t: number): readonly PurchaseEvent[] {
    const c = this.customerIndex.get(customer);
    if (c === undefined) return [];
    const first = this.customerStart[c] as number;
    // The first of the customer's events at or after t (binary search within the group).
    let lo = first;
    let hi = this.customerStart[c + 1] as number;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.time[this.byCustomer[mid] as number] as number) < t) lo = mid + 1;
      else hi = mid;
    }
    const out: PurchaseEvent[] = [];
    for (let k = first; k < lo; k++) {
      const i = this.byCustomer[k] as number;
      out.push({
        customer,
        article: this.articleIds[this.article[i] as number] as string,
        time: this.time[i] as number,
      });
    }
    return out;
  }

  /** Distinct articles each customer bought in [from, to): the relevant sets of a label week. */
  labels(from: number, to: number): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    this.forEachBetween(from, to, (customer, article) => {
      const s = out.get(customer);
      if (s) s.add(article);
      else out.set(customer, new Set([article]));
    });
    return out;
  }
}

/**
 * A purchase log collected one event at a time, each event id once (the first event with an id
 * wins, later ones are dropped: a folder published twice counts once); `build()` once at the end.
 */
export class PurchaseLogBuilder {
  private events: Appended | undefined = new Appended();
  private ids = new SeenEventIds();

  /** Adds a purchase unless an event with the same id was added before; whether it was added. */
  add(eventId: string, customer: string, article: string, time: number): boolean {
    const events = this.open();
    if (!this.ids.add(eventId)) return false;
    events.push(customer, article, time);
    return true;
  }

  /** The log of the events added (events at the same time in the order added). */
  build(): PurchaseLog {
    const events = this.open();
    this.events = undefined;
    this.ids = new SeenEventIds();
    return new PurchaseLog(events);
  }

  private open(): Appended {
    if (!this.events) throw new Error('PurchaseLogBuilder: build() was called already');
    return this.events;
  }
}
