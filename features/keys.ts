/**
 * The Redis key layout of the online feature store, in one place. Keys are Cluster-safe: every key
 * an atomic script touches shares a hash tag — `{u:<customer>}` for a customer's state,
 * `{a:<article>}` for an article's, `{t}` for trending — so the same code runs on ioredis Cluster.
 * A namespace (default `rec`) isolates stores in one Redis (tests, training replays).
 */
import { DAY_MS } from './decay.ts';

/** Half-lives (ms) of the decayed quantities, by label used in key and field names. */
export const HALF_LIVES = {
  '1d': DAY_MS,
  '7d': 7 * DAY_MS,
  '30d': 30 * DAY_MS,
} as const;
export type HalfLife = keyof typeof HALF_LIVES;

/** Article popularity half-lives (stored as hash fields `pop:<hl>`). */
export const POPULARITY_HALF_LIVES: readonly HalfLife[] = ['1d', '7d', '30d'];
/** Global trending half-lives (one sorted set each). */
export const GLOBAL_TRENDING_HALF_LIVES: readonly HalfLife[] = ['1d', '7d'];
/** Segment trending half-life. */
export const SEGMENT_HALF_LIFE: HalfLife = '7d';
/** Customer affinity half-life. */
export const AFFINITY_HALF_LIFE: HalfLife = '30d';
/** Co-purchase decay half-life. */
export const COPURCHASE_HALF_LIFE: HalfLife = '30d';
/** Half-life of the customer's time-weighted purchase counts per article and product code. */
export const ITEM_HALF_LIFE: HalfLife = '30d';

/**
 * Product codes usable in a key (`{p:<code>}`): an article record's `product_code` that does not
 * match is ignored (no product-level features or siblings for it).
 */
export const PRODUCT_CODE_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** The product code of an article record's `product_code` value, or null when it is unusable. */
export function productCodeOf(value: string | null | undefined): string | null {
  return typeof value === 'string' && PRODUCT_CODE_PATTERN.test(value) ? value : null;
}

/** Segment kinds for trending. */
export type SegmentKind = 'age_index' | 'channel';

export interface CustomerKeys {
  /**
   * hash event_id -> `<partition>:<offset>|<event time>` it was applied from (the event-id guard;
   * the events within the dedup horizon)
   */
  readonly seen: string;
  /**
   * hash, by field prefix: the stats (`n`, `units`, `spend`, `price_sum`, `first`, `last`),
   * events per sales channel (`ch:<id>`), log-space decayed affinities (`f:<kind>:<value>`,
   * `f:_total`), items (`a:<article>` -> `n|last|L|units|first|lu`, `p:<product code>` ->
   * `n|last|L`: purchase events, latest event time, log-space decayed count (ITEM_HALF_LIFE),
   * units, earliest event time, units at the latest event time; the article id stands in for a
   * missing product code) and the script's bookkeeping
   * (`o:<partition>` highest offset applied, `smin` earliest time in `seen`, `in` items held)
   */
  readonly state: string;
  /** zset: recent purchases scored by event time, member `t|event|article|price|channel|qty` */
  readonly recent: string;
  /** zset: purchases within the co-purchase window, member `offset|event|article`, score event time */
  readonly window: string;
  /** hash of the customer record (from the customers topic) */
  readonly meta: string;
}

export interface ArticleKeys {
  /** hash: n, units, revenue, price_sum, first, last, pop:<hl> */
  readonly stats: string;
  /** HyperLogLog of buyers */
  readonly buyers: string;
  /**
   * zset partner article -> log-space decayed co-purchase count: the top `copurchaseCap` partners
   * (trimmed as they grow past 1.25 times that)
   */
  readonly copurchase: string;
  /** hash of the article record (from the articles topic) */
  readonly meta: string;
  /**
   * hash: the article summary read per candidate in one command (state.ts `readArticles`) —
   * `s:<sig>` the sales state packed from `stats` and `buyers` (article.lua), `m:<sig>` the
   * metadata fields the features and answers use, packed from `meta` (metadata.lua); the
   * signatures name the packed layouts (`ARTICLE_SUMMARY_FIELDS`); `cb` the co-buyer neighbours
   * (co-buyers.ts, written by the batch build)
   */
  readonly summary: string;
  /** hash `a:<partition>` / `c:<partition>` -> highest offset applied by article / co-purchase script */
  readonly offsets: string;
}

export interface ProductKeys {
  /** zset article -> first sale time (ms): the product's articles that have sold */
  readonly sold: string;
}

/**
 * The trending sorted sets (article -> log-space decayed count), each the top `trendingCap`
 * articles (trimmed as they grow past 1.25 times that).
 */
export interface TrendingKeys {
  global(hl: HalfLife): string;
  segment(kind: SegmentKind, value: string, hl: HalfLife): string;
  /** hash `<partition>` -> highest offset applied to the trending sets */
  readonly offsets: string;
}

export interface ModelKeys {
  /** hash per model version: meta (JSON), onnx (bytes), status, reason, registered_at */
  model(version: string): string;
  /** zset of registered versions by registration time (ms) */
  readonly versions: string;
  /** string: the active version */
  readonly active: string;
  /**
   * pub/sub channel announcing a newly activated version or a started or stopped experiment (a
   * hint to re-read `active` and `experiment`)
   */
  readonly channel: string;
  /**
   * hash: the latest A/B experiment (models/experiments.ts): name, salt, variants (JSON), status
   * (`running` / `stopped`), started_at, stopped_at, promoted
   */
  readonly experiment: string;
  /** set: the model versions the running experiment names (pruning keeps them) */
  readonly experimentModels: string;
  /** list: stopped experiments (JSON), newest first, capped */
  readonly experimentHistory: string;
}

export interface KeySpace {
  readonly ns: string;
  readonly models: ModelKeys;
  customer(customerId: string): CustomerKeys;
  article(articleId: string): ArticleKeys;
  /** Keys of a product code (see PRODUCT_CODE_PATTERN). */
  product(code: string): ProductKeys;
  readonly trending: TrendingKeys;
  /**
   * The co-buyer build (processors/co-buyers.ts; its lists live in the article summaries): set
   * `ids` = the articles the last build wrote a list for, hash `meta` = what it was built from
   */
  readonly coBuyers: { readonly ids: string; readonly meta: string };
  /** Pattern matching every key of this namespace (for SCAN). */
  readonly pattern: string;
  /** Pattern matching every customer's `state` key (for SCAN: the customers the store knows). */
  readonly customerStates: string;
  /** The customer id of a key matched by `customerStates`, else null. */
  customerOf(stateKey: string): string | null;
  /** string: the key layout the processors wrote this namespace with (STORE_LAYOUT) */
  readonly layout: string;
  /**
   * hash: what the processors run with that readers must agree on (`dedup_horizon_ms`, see
   * horizon.ts), written at their start
   */
  readonly processorSettings: string;
  /**
   * hash `<group>|<topic>|<partition>` -> the last offset whose effects this namespace holds
   * (written after each batch; the consumers re-process from it when it is behind their commits)
   */
  readonly positions: string;
  /**
   * On a Redis Cluster, the positions hash kept on the master serving hash tag `tag` (one per
   * master, see `positionStore`): a master failed over behind the others is noticed.
   */
  positionsOn(tag: string): string;
}

/** Build the key space of namespace `ns`. Ids must already be validated (see ID_PATTERN). */
export function keySpace(ns = 'rec'): KeySpace {
  if (!/^[A-Za-z0-9_.-]+$/.test(ns)) throw new Error(`invalid key namespace "${ns}"`);
  return {
    ns,
    pattern: `${ns}:*`,
    layout: `${ns}:layout`,
    processorSettings: `${ns}:processors`,
    customerStates: `${ns}:{u:*}:state`,
    customerOf(key) {
      const prefix = `${ns}:{u:`;
      const suffix = '}:state';
      return key.startsWith(prefix) && key.endsWith(suffix)
        ? key.slice(prefix.length, -suffix.length)
        : null;
    },
    positions: `${ns}:positions`,
    positionsOn: (tag) => `${ns}:positions:{${tag}}`,
    models: {
      model: (v) => `${ns}:{m}:model:${v}`,
      versions: `${ns}:{m}:versions`,
      active: `${ns}:{m}:active`,
      channel: `${ns}:models:activated`,
      experiment: `${ns}:{m}:experiment`,
      experimentModels: `${ns}:{m}:experiment:models`,
      experimentHistory: `${ns}:{m}:experiments`,
    },
    customer(c) {
      const p = `${ns}:{u:${c}}`;
      return {
        seen: `${p}:seen`,
        state: `${p}:state`,
        recent: `${p}:recent`,
        window: `${p}:win`,
        meta: `${p}:meta`,
      };
    },
    product(code) {
      return { sold: `${ns}:{p:${code}}:sold` };
    },
    article(a) {
      const p = `${ns}:{a:${a}}`;
      return {
        stats: `${p}:stats`,
        buyers: `${p}:buyers`,
        copurchase: `${p}:co`,
        meta: `${p}:meta`,
        summary: `${p}:sum`,
        offsets: `${p}:off`,
      };
    },
    coBuyers: { ids: `${ns}:{cb}:ids`, meta: `${ns}:{cb}:meta` },
    trending: {
      global: (hl) => `${ns}:{t}:global:${hl}`,
      segment: (kind, value, hl) => `${ns}:{t}:seg:${kind}:${value}:${hl}`,
      offsets: `${ns}:{t}:off`,
    },
  };
}

/** Age bucket used by segment trending. */
export function ageBucket(age: number | null | undefined): string {
  if (age === null || age === undefined || !Number.isFinite(age)) return 'unknown';
  if (age < 25) return 'u25';
  if (age < 35) return '25-34';
  if (age < 45) return '35-44';
  if (age < 55) return '45-54';
  return '55+';
}
