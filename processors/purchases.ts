/**
 * The purchases processor: turns a batch of purchase events into the online features in Redis,
 * effectively once. A batch costs three pipelined round trips, whatever its size:
 *  1. read the metadata the events need (article categories, customer age);
 *  2. per customer, one script applies that customer's events atomically with its guards (the
 *     highest offset applied per partition, and hash `seen`: event id -> Kafka position, kept for
 *     the dedup horizon) and returns each event's co-purchase partners;
 *  3. per article, per co-purchase partner article and for trending, one script each applies
 *     the events of that slot, guarded by the highest Kafka offset per partition it has applied.
 * Each script aggregates its events in Lua and writes each touched field once. A crash anywhere
 * re-runs the batch: step 2 recognises redeliveries by position (and duplicates published twice by
 * a different position, within the dedup horizon), step 3 skips offsets it already applied, so
 * nothing is counted twice. A new event dated before the horizon's cut of its customer's newest is
 * refused as late (`BatchOutcome.late`, dead-lettered by the consumer): the guard may have
 * forgotten a first copy of it. State is bounded: the guard by the horizon, the customer's items
 * and bought by `itemsCap`, recent purchases by `recentCap`, the co-purchase window by time.
 */
import { RecError } from '../common/errors.ts';
import { lateReason } from '../features/horizon.ts';
import type { RedisClient } from '../common/redis.ts';
import type { DecodedRecord, Rejection } from '../streams/consumer.ts';
import { DECAY_EPOCH_MS, rate } from '../features/decay.ts';
import {
  AFFINITY_HALF_LIFE,
  COPURCHASE_HALF_LIFE,
  GLOBAL_TRENDING_HALF_LIVES,
  HALF_LIVES,
  ITEM_HALF_LIFE,
  POPULARITY_HALF_LIVES,
  productCodeOf,
  SEGMENT_HALF_LIFE,
  ageBucket,
  type KeySpace,
} from '../features/keys.ts';
import { segmentValue } from '../features/segments.ts';
import { ARTICLE_SUMMARY_FIELDS } from '../features/state.ts';
import type { Purchase } from '../schemas/events.ts';
import type { Scripts } from './scripts.ts';

export interface PurchaseProcessorOptions {
  /** Recent purchases kept per customer. */
  recentCap: number;
  /** Co-purchase window (ms): purchases of one customer this close in time are paired. */
  copurchaseWindowMs: number;
  /** Most partners paired with one purchase (nearest in time first). */
  copurchaseFanout: number;
  /**
   * Event-time horizon (ms) of the event-id guard: guard entries of events older than the cut
   * (this before the quarter-horizon step of the customer's newest event time) are forgotten, and
   * a new event dated before the cut is refused as late, since a first copy of it may have been
   * forgotten (redeliveries are recognised by position, whatever their age).
   */
  dedupHorizonMs: number;
  /**
   * Articles (and as many product codes) kept per customer in `items` and `bought`: the top by
   * time-weighted count (ITEM_HALF_LIFE); the rest are dropped once there are 25 % more.
   */
  itemsCap: number;
  /** Co-purchase partners kept per article: the top by decayed count, trimmed as they grow. */
  copurchaseCap: number;
  /** Articles kept per trending sorted set (global and per segment): the top by decayed count. */
  trendingCap: number;
  /**
   * Called after each of the three steps of a batch has been acknowledged by Redis, and awaited.
   * For observability and for fault-injection tests, which throw here to simulate a crash
   * mid-batch, or delay a step.
   */
  afterStep?: (step: 1 | 2 | 3) => void | Promise<void>;
}

export const DEFAULT_PURCHASE_OPTIONS: Omit<PurchaseProcessorOptions, 'afterStep'> = {
  recentCap: 50,
  copurchaseWindowMs: 14 * 86_400_000,
  copurchaseFanout: 20,
  dedupHorizonMs: 30 * 86_400_000,
  itemsCap: 200,
  copurchaseCap: 100,
  trendingCap: 2_000,
};

export interface BatchOutcome {
  /** Events applied for the first time (redeliveries of applied events are not counted). */
  applied: number;
  /** Events skipped as duplicates: the same event id published again at another position. */
  duplicates: number;
  /**
   * Events refused as late, applied nowhere: new to the guard, and dated before the horizon's cut
   * of their customer's newest event time (`cut`), where the guard may have forgotten a first copy
   * of them, so a second publish could not be told from a new event. The consumer dead-letters
   * them (`lateRejection`); a redelivered batch refuses them again.
   */
  late: LateEvent[];
}

/** An event refused as late, with the guard's cut it is dated before (ms). */
export interface LateEvent {
  record: DecodedRecord<Purchase>;
  cut: number;
}

/** A late event's dead letter (REC_ERR_LATE_EVENT): its time, the cut and the way out. */
export function lateRejection({ record, cut }: LateEvent, horizonMs: number): Rejection<Purchase> {
  const { event_time: t, customer_id: customer } = record.value;
  return {
    record,
    reason: new RecError(
      'REC_ERR_LATE_EVENT',
      `${lateReason(t, customer, cut, horizonMs)}, and it is applied nowhere. To apply it, widen ` +
        'PROCESSOR_DEDUP_HORIZON_DAYS past its lateness and redrive it (npm run dlq -- --topic ' +
        'purchases --code REC_ERR_LATE_EVENT --redrive)',
    ),
  };
}

/** Article metadata fields that feed affinities, segments and product-level state. */
const ARTICLE_FIELDS = [
  'product_group_name',
  'product_type_no',
  'colour_group_code',
  'department_no',
  'index_code',
  'section_no',
  'index_group_name',
  'product_code',
] as const;
const PRODUCT_POS = ARTICLE_FIELDS.indexOf('product_code');

/** The usable product code of an article's metadata (see PRODUCT_CODE_PATTERN), else ''. */
function productCode(meta: readonly (string | null)[] | undefined): string {
  return productCodeOf(meta?.[PRODUCT_POS]) ?? '';
}
/** Affinity field prefix per article metadata field. */
const AFFINITY_PREFIX: Partial<Record<(typeof ARTICLE_FIELDS)[number], string>> = {
  product_group_name: 'pg',
  product_type_no: 'pt',
  colour_group_code: 'col',
  department_no: 'dep',
  index_code: 'idx',
  section_no: 'sec',
};

const US = '\u001f'; // unit separator inside one list entry
const RS = '\u001e'; // record separator between list entries

type PipelineResult = [Error | null, unknown][] | null;

function check(results: PipelineResult, what: string): unknown[] {
  if (results === null) throw new Error(`redis pipeline for ${what} was aborted`);
  return results.map(([err, value]) => {
    if (err) throw new Error(`redis ${what} failed: ${err.message}`, { cause: err });
    return value;
  });
}

function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    const list = m.get(k);
    if (list) list.push(it);
    else m.set(k, [it]);
  }
  return m;
}

/**
 * A batch's Redis steps in flight (`PurchaseProcessor.applyAfter`): settled once its customer
 * scripts, and its other scripts, have been answered. The next batch's steps wait on them.
 */
export interface AppliedSteps {
  readonly customers: Promise<unknown>;
  readonly slots: Promise<unknown>;
}

interface Pending {
  record: DecodedRecord<Purchase>;
  /** 'n': applied to the customer now; 'p': a redelivery, completed in the other slots. */
  status: string;
  partners: Partner[];
}

interface Partner {
  article: string;
  time: number;
}

function parsePartners(s: string): Partner[] {
  if (s === '') return [];
  return s.split(RS).map((p) => {
    const [article = '', time = '0'] = p.split(US);
    return { article, time: Number(time) };
  });
}

export class PurchaseProcessor {
  private readonly opts: PurchaseProcessorOptions;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly scripts: Scripts,
    opts: Partial<PurchaseProcessorOptions> = {},
  ) {
    this.opts = { ...DEFAULT_PURCHASE_OPTIONS, ...opts };
  }

  /** The event-id guard's horizon (ms), which late events are refused against. */
  get dedupHorizonMs(): number {
    return this.opts.dedupHorizonMs;
  }

  /** Apply a batch; resolves only when Redis acknowledged every effect. */
  async apply(records: readonly DecodedRecord<Purchase>[]): Promise<BatchOutcome> {
    return this.applyAfter(records, null).done;
  }

  /**
   * Apply a batch while the one before it (`after`, the steps `applyAfter` returned for it) may
   * still be in flight. Its metadata read starts at once; its customer scripts are sent once the
   * previous batch's have been answered, and its article, co-purchase and trending scripts once
   * the previous batch's have. So Redis runs every key's scripts in the order of the batches, as
   * batches applied one after the other would (a batch's customer scripts may run before the
   * previous batch's other scripts, which touch none of their keys), while building one batch's
   * scripts and reading its answers overlaps the other's time in Redis: a replay of the topic in
   * one order (training/rows.ts). A step that fails fails the later batches' same step. `done`
   * resolves like `apply`; `steps` is what the next batch goes after.
   */
  applyAfter(
    records: readonly DecodedRecord<Purchase>[],
    after: AppliedSteps | null,
  ): { done: Promise<BatchOutcome>; steps: AppliedSteps } {
    if (records.length === 0) {
      return {
        done: Promise.resolve({ applied: 0, duplicates: 0, late: [] }),
        steps: after ?? { customers: Promise.resolve(), slots: Promise.resolve() },
      };
    }
    const meta = this.readMetadata(records);
    const customers = Promise.all([meta, after?.customers]).then(([{ articleMeta }]) =>
      this.applyCustomerScripts(records, articleMeta),
    );
    const slots = Promise.all([meta, customers, after?.slots]).then(
      async ([{ articleMeta, customerAge }, { pending }]) => {
        if (pending.length === 0) return;
        // Secondary slots need each partition's events in offset order (offsets are decimal
        // strings of int64s, compared by length then text: no BigInt per comparison).
        pending.sort(
          (x, y) =>
            x.record.partition - y.record.partition ||
            x.record.offset.length - y.record.offset.length ||
            (x.record.offset < y.record.offset ? -1 : x.record.offset > y.record.offset ? 1 : 0),
        );
        await this.applySlotScripts(pending, articleMeta, customerAge);
      },
    );
    // Awaited by `done` and by the next batch's steps; marked handled here, so that a failure no
    // later batch waits on is reported once, by `done`.
    customers.catch(() => undefined);
    slots.catch(() => undefined);
    const done = Promise.all([customers, slots]).then(([{ applied, duplicates, late }]) => ({
      applied,
      duplicates,
      late,
    }));
    return { done, steps: { customers, slots } };
  }

  /** Step 1: the metadata the events need, article categories and customer age (one round trip). */
  private async readMetadata(records: readonly DecodedRecord<Purchase>[]): Promise<{
    articleMeta: Map<string, (string | null)[]>;
    customerAge: Map<string, number | null>;
  }> {
    const { keys, opts } = this;
    const articles = [...new Set(records.map((r) => r.value.article_id))];
    const customers = [...new Set(records.map((r) => r.value.customer_id))];
    const metaPipe = this.redis.pipeline();
    for (const a of articles) metaPipe.hmget(keys.article(a).meta, ...ARTICLE_FIELDS);
    for (const c of customers) metaPipe.hget(keys.customer(c).meta, 'age');
    const meta = check(await metaPipe.exec(), 'metadata read');
    await opts.afterStep?.(1);
    const articleMeta = new Map(
      articles.map((a, i) => [a, (meta[i] as (string | null)[] | undefined) ?? []]),
    );
    const customerAge = new Map(
      customers.map((c, i) => {
        const v = meta[articles.length + i] as string | null | undefined;
        return [c, v === null || v === undefined ? null : Number(v)];
      }),
    );
    return { articleMeta, customerAge };
  }

  /**
   * Step 2: one customer script per customer (the event-id guard, customer state, co-purchase
   * partners), one round trip. Returns the events the other slots must apply (new ones and
   * redeliveries) with their partners, the counts of new and duplicate events, and the late ones.
   */
  private async applyCustomerScripts(
    records: readonly DecodedRecord<Purchase>[],
    articleMeta: Map<string, (string | null)[]>,
  ): Promise<{ pending: Pending[]; applied: number; duplicates: number; late: LateEvent[] }> {
    const { keys, scripts, opts } = this;
    const custPipe = this.redis.pipeline();
    const order: DecodedRecord<Purchase>[][] = [];
    for (const [c, list] of groupBy(records, (r) => r.value.customer_id)) {
      const k = keys.customer(c);
      scripts.call(
        custPipe,
        'customer',
        [k.seen, k.state, k.recent, k.window],
        this.customerArgs(list, articleMeta),
      );
      order.push(list);
    }
    const custResults = check(await custPipe.exec(), 'customer script');
    await opts.afterStep?.(2);
    const pending: Pending[] = [];
    const late: LateEvent[] = [];
    let duplicates = 0;
    let applied = 0;
    custResults.forEach((res, i) => {
      const list = order[i] ?? [];
      (res as [string, string][]).forEach(([status, partners], j) => {
        const record = list[j];
        if (!record) return;
        if (status === 'd') {
          duplicates++;
          return;
        }
        if (status === 'l') {
          late.push({ record, cut: Number(partners) });
          return;
        }
        if (status === 'n') applied++;
        pending.push({ record, status, partners: parsePartners(partners) });
      });
    });
    return { pending, applied, duplicates, late };
  }

  /** The customer script's ARGV for one customer's events (see customer.lua). */
  private customerArgs(
    list: readonly DecodedRecord<Purchase>[],
    articleMeta: Map<string, (string | null)[]>,
  ): (string | number)[] {
    const { opts } = this;
    const args: (string | number)[] = [
      DECAY_EPOCH_MS,
      rate(HALF_LIVES[AFFINITY_HALF_LIFE]),
      opts.recentCap,
      opts.copurchaseWindowMs,
      opts.copurchaseFanout,
      rate(HALF_LIVES[ITEM_HALF_LIFE]),
      opts.dedupHorizonMs,
      opts.itemsCap,
      list.length,
    ];
    for (const r of list) {
      const e = r.value;
      const m = articleMeta.get(e.article_id) ?? [];
      const cats: string[] = [];
      ARTICLE_FIELDS.forEach((f, i) => {
        const prefix = AFFINITY_PREFIX[f];
        const v = m[i];
        if (prefix !== undefined && v !== null && v !== undefined && v !== '') {
          cats.push(`f:${prefix}:${v}`);
        }
      });
      args.push(
        e.event_id,
        e.article_id,
        e.event_time,
        e.price,
        e.quantity,
        e.sales_channel_id,
        `${r.partition}:${r.offset}`,
        cats.join(US),
        productCode(m),
      );
    }
    return args;
  }

  /**
   * Step 3: the article, co-purchase and trending scripts and the products' sold articles, for
   * the `pending` events (in offset order per partition), one round trip.
   */
  private async applySlotScripts(
    pending: readonly Pending[],
    articleMeta: Map<string, (string | null)[]>,
    customerAge: Map<string, number | null>,
  ): Promise<void> {
    const { keys } = this;
    const slotPipe = this.redis.pipeline();
    const coRate = rate(HALF_LIVES[COPURCHASE_HALF_LIFE]);
    this.articleCalls(slotPipe, pending, coRate);
    this.copurchaseCalls(slotPipe, pending, coRate);
    // The articles of a product that have sold, with their first sale (ZADD LT keeps the earliest:
    // idempotent and independent of order, so no guard is needed).
    for (const { record } of pending) {
      const code = productCode(articleMeta.get(record.value.article_id));
      if (code !== '') {
        slotPipe.zadd(
          keys.product(code).sold,
          'LT',
          record.value.event_time,
          record.value.article_id,
        );
      }
    }
    // Chunks keep each script call short (Redis runs scripts one at a time).
    for (let i = 0; i < pending.length; i += 500) {
      const chunk = pending.slice(i, i + 500).map((p) => p.record);
      this.trendingCall(slotPipe, chunk, articleMeta, customerAge);
    }
    check(await slotPipe.exec(), 'article/co-purchase/trending scripts');
    await this.opts.afterStep?.(3);
  }

  /**
   * One article script per article: its stats, buyers and outgoing co-purchases (the partner set
   * capped at about `copurchaseCap`, the top by decayed count), and the sales part of its summary.
   */
  private articleCalls(
    pipe: ReturnType<RedisClient['pipeline']>,
    pending: readonly Pending[],
    coRate: number,
  ): void {
    const pops = POPULARITY_HALF_LIVES.flatMap((hl) => [hl, rate(HALF_LIVES[hl])]);
    for (const [a, list] of groupBy(pending, (p) => p.record.value.article_id)) {
      const k = this.keys.article(a);
      const args: (string | number)[] = [
        DECAY_EPOCH_MS,
        coRate,
        this.opts.copurchaseCap,
        POPULARITY_HALF_LIVES.length,
        ...pops,
        ARTICLE_SUMMARY_FIELDS.sales,
        list.length,
      ];
      for (const { record, status, partners } of list) {
        const e = record.value;
        args.push(
          record.partition,
          record.offset,
          status,
          e.customer_id,
          e.event_time,
          e.price,
          e.quantity,
          partners.map((p) => `${p.article}${US}${p.time}`).join(RS),
        );
      }
      this.scripts.call(
        pipe,
        'article',
        [k.stats, k.buyers, k.copurchase, k.offsets, k.summary],
        args,
      );
    }
  }

  /**
   * One co-purchase script per partner article: the incoming side of the events' pairs (the same
   * capped partner set as the article script's).
   */
  private copurchaseCalls(
    pipe: ReturnType<RedisClient['pipeline']>,
    pending: readonly Pending[],
    coRate: number,
  ): void {
    // Per partner article: its ARGV tail (4 values per event) and the number of events.
    const incoming = new Map<string, { args: (string | number)[]; events: number }>();
    for (const { record, partners } of pending) {
      const e = record.value;
      // An event's partners are distinct articles but for a repeat purchase within the window:
      // each partner article gets one entry with every pair time of this event.
      const times = new Map<string, string>();
      for (const p of partners) {
        const t = String(Math.max(p.time, e.event_time));
        const had = times.get(p.article);
        times.set(p.article, had === undefined ? t : `${had}${RS}${t}`);
      }
      for (const [b, pairTimes] of times) {
        let entry = incoming.get(b);
        if (!entry) {
          entry = { args: [], events: 0 };
          incoming.set(b, entry);
        }
        entry.args.push(record.partition, record.offset, e.article_id, pairTimes);
        entry.events++;
      }
    }
    for (const [b, { args, events }] of incoming) {
      const k = this.keys.article(b);
      this.scripts.call(
        pipe,
        'copurchase',
        [k.copurchase, k.offsets],
        [DECAY_EPOCH_MS, coRate, this.opts.copurchaseCap, events, ...args],
      );
    }
  }

  /**
   * One trending script for a chunk of events: the global and segment sets they touch, each kept
   * at about `trendingCap` articles, the top by decayed count.
   */
  private trendingCall(
    pipe: ReturnType<RedisClient['pipeline']>,
    records: readonly DecodedRecord<Purchase>[],
    articleMeta: Map<string, (string | null)[]>,
    customerAge: Map<string, number | null>,
  ): void {
    const { keys } = this;
    const zsets: string[] = [];
    const rates: number[] = [];
    const index = new Map<string, number>();
    const slot = (key: string, hlRate: number): number => {
      let i = index.get(key);
      if (i === undefined) {
        zsets.push(key);
        rates.push(hlRate);
        i = zsets.length;
        index.set(key, i);
      }
      return i;
    };
    const perEvent: (string | number)[] = [];
    const indexGroupPos = ARTICLE_FIELDS.indexOf('index_group_name');
    for (const r of records) {
      const e = r.value;
      const idx: number[] = GLOBAL_TRENDING_HALF_LIVES.map((hl) =>
        slot(keys.trending.global(hl), rate(HALF_LIVES[hl])),
      );
      const segRate = rate(HALF_LIVES[SEGMENT_HALF_LIFE]);
      const indexGroup = articleMeta.get(e.article_id)?.[indexGroupPos] ?? null;
      const ageIndex = segmentValue(
        'age_index',
        ageBucket(customerAge.get(e.customer_id)),
        indexGroup,
      );
      idx.push(slot(keys.trending.segment('age_index', ageIndex, SEGMENT_HALF_LIFE), segRate));
      idx.push(
        slot(
          keys.trending.segment('channel', String(e.sales_channel_id), SEGMENT_HALF_LIFE),
          segRate,
        ),
      );
      perEvent.push(r.partition, r.offset, e.article_id, e.event_time, idx.length, ...idx);
    }
    this.scripts.call(
      pipe,
      'trending',
      [keys.trending.offsets, ...zsets],
      [DECAY_EPOCH_MS, this.opts.trendingCap, zsets.length, ...rates, records.length, ...perEvent],
    );
  }
}
