/**
 * In-process copy of the global 7-day trending top (default 200 articles, with names and the
 * metadata the filters need), answered from when Redis is down (degraded mode).
 *
 * It holds the raw log-space scores of the sorted set, so a degraded answer computes the decayed
 * values at the request's "now" exactly like a live read, and its order is the set's order.
 *
 * Kept fresh two ways:
 *  - `refresh()` reads the top `capacity` and their summaries (2 round trips); `start()` runs it
 *    every `refreshMs` (an unref'd timer), and `refreshIfStale()` — called by the app on each
 *    request — starts one in the background when the last is older than `refreshMs`; at most one
 *    refresh runs at a time, and a failed one is logged and leaves the cache as it was;
 *  - `offer()` merges every successful global trending read of a request (log-space scores only
 *    grow, so the larger of the cached and the offered score is the fresher one); a read equal to
 *    the last one offered has nothing new (`isNewOffer`: the caller skips building summaries).
 */
import type { RedisClient } from '../common/redis.ts';
import { decayedValue } from '../features/decay.ts';
import { HALF_LIVES, type KeySpace } from '../features/keys.ts';
import type { Logger } from '../common/logger.ts';
import {
  GLOBAL_TRENDING_HL,
  parseScored,
  readSummaries,
  summaryPassesFilters,
  type ArticleSummary,
  type Filters,
  type LogScored,
} from './candidates/index.ts';
import { storeRead } from './http-errors.ts';

export interface TrendingCacheOptions {
  readonly redis: RedisClient;
  readonly keys: KeySpace;
  readonly logger?: Logger;
  /** Articles kept (default 200). */
  readonly capacity?: number;
  /** Refresh period and staleness bound (ms, default 10 000). */
  readonly refreshMs?: number;
  /** Wall clock for staleness (default Date.now); unrelated to the event-time "now". */
  readonly clock?: () => number;
}

export interface CachedTrending extends ArticleSummary {
  /** Log-space decayed count in the global 7-day set. */
  readonly logScore: number;
  /** Decayed count at the "now" asked for. */
  readonly score: number;
}

export class TrendingCache {
  readonly capacity: number;
  readonly refreshMs: number;
  private readonly redis: RedisClient;
  private readonly keys: KeySpace;
  private readonly logger: Logger | undefined;
  private readonly clock: () => number;
  private ranking: LogScored[] = [];
  private lastOffer: readonly LogScored[] = [];
  private summaries = new Map<string, ArticleSummary>();
  private refreshedAt: number | null = null;
  private attemptedAt: number | null = null;
  private inflight: Promise<boolean> | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(opts: TrendingCacheOptions) {
    this.redis = opts.redis;
    this.keys = opts.keys;
    this.logger = opts.logger;
    this.capacity = opts.capacity ?? 200;
    this.refreshMs = opts.refreshMs ?? 10_000;
    this.clock = opts.clock ?? Date.now;
  }

  /** Articles held. */
  get size(): number {
    return this.ranking.length;
  }

  /** Wall-clock time of the last successful refresh, or null. */
  get lastRefresh(): number | null {
    return this.refreshedAt;
  }

  /** Latest sale among the cached articles (an event-time "now" for degraded answers). */
  latestEventTime(): number | null {
    let best: number | null = null;
    for (const s of this.summaries.values()) {
      if (s.last !== null && (best === null || s.last > best)) best = s.last;
    }
    return best;
  }

  /** Top `n` at event time `now`, optionally filtered (unknown metadata fails a filter). */
  top(n: number, now: number, filters: Filters = {}): CachedTrending[] {
    const out: CachedTrending[] = [];
    for (const e of this.ranking) {
      if (out.length >= n) break;
      const s = this.summaries.get(e.articleId) ?? {
        articleId: e.articleId,
        name: null,
        indexGroup: null,
        section: null,
        productGroup: null,
        last: null,
      };
      if (!summaryPassesFilters(s, filters)) continue;
      out.push({
        ...s,
        logScore: e.logScore,
        score: decayedValue(e.logScore, now, HALF_LIVES[GLOBAL_TRENDING_HL]),
      });
    }
    return out;
  }

  /**
   * Whether a read of the global set's top differs from the last one offered. An equal read has
   * no new sale (a sale raises its article's score), so offering it would change nothing.
   */
  isNewOffer(entries: readonly LogScored[]): boolean {
    const last = this.lastOffer;
    if (entries.length !== last.length) return true;
    for (let i = 0; i < entries.length; i++) {
      const a = entries[i];
      const b = last[i];
      if (a?.articleId !== b?.articleId || a?.logScore !== b?.logScore) return true;
    }
    return false;
  }

  /** Merge a successful read of the global set's top (and the summaries read with it). */
  offer(entries: readonly LogScored[], summaries?: ReadonlyMap<string, ArticleSummary>): void {
    if (entries.length === 0) return;
    this.lastOffer = entries;
    const merged = new Map(this.ranking.map((e) => [e.articleId, e.logScore]));
    for (const e of entries) {
      const prev = merged.get(e.articleId);
      if (prev === undefined || e.logScore > prev) merged.set(e.articleId, e.logScore);
    }
    this.ranking = [...merged]
      .map(([articleId, logScore]) => ({ articleId, logScore }))
      .sort((a, b) => b.logScore - a.logScore || (a.articleId < b.articleId ? -1 : 1))
      .slice(0, this.capacity);
    if (summaries) for (const [id, s] of summaries) this.summaries.set(id, s);
    const kept = new Set(this.ranking.map((e) => e.articleId));
    for (const id of this.summaries.keys()) if (!kept.has(id)) this.summaries.delete(id);
  }

  /** Re-read the top and its summaries; resolves false (logged) when Redis fails. Never rejects. */
  refresh(): Promise<boolean> {
    this.inflight ??= this.load().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  /**
   * Start a background refresh when the last attempt is older than `refreshMs` (or none yet);
   * failed attempts count, so a Redis outage costs one attempt per period, not one per request.
   */
  refreshIfStale(): void {
    const at = this.attemptedAt;
    if (this.inflight === null && (at === null || this.clock() - at >= this.refreshMs)) {
      void this.refresh();
    }
  }

  /** Refresh now and every `refreshMs` (the timer does not keep the process alive). */
  start(): void {
    if (this.timer !== null) return;
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private async load(): Promise<boolean> {
    this.attemptedAt = this.clock();
    try {
      const flat = await storeRead('trending cache', () =>
        this.redis.zrevrange(
          this.keys.trending.global(GLOBAL_TRENDING_HL),
          0,
          this.capacity - 1,
          'WITHSCORES',
        ),
      );
      const ranking = parseScored(flat);
      const summaries = await readSummaries(
        this.redis,
        this.keys,
        ranking.map((e) => e.articleId),
      );
      this.ranking = ranking;
      this.summaries = summaries;
      this.refreshedAt = this.clock();
      return true;
    } catch (err) {
      this.logger?.warn({ err }, 'trending cache refresh failed; keeping the previous copy');
      return false;
    }
  }
}
