/**
 * What every request reads alike, kept in process for a bounded time (`SharedReads`): article
 * states (sales and metadata) and the trending sets (global and segments). Most of a request's
 * candidates are the same popular articles, so without it every request read the same hundred
 * article states and trending sets again.
 *
 * Staleness is bounded: a cached value is used at most `maxAgeMs` after its read was sent (wall
 * clock), then read again. The customer's state and their personal lists (co-purchase neighbours
 * of their purchases, their products' sold articles, their recent purchases' metadata) are never
 * cached: a purchase shows in its customer's next answer as before. One instance per app (no
 * module state); training rows and the benchmark's in-process reads pass none and read everything.
 */
import type { ArticleState } from '../../features/state.ts';
import type { LogScored } from './replies.ts';

export interface SharedReadsOptions {
  /** Longest a cached value is used after its read was sent (ms); 0 = nothing is cached. */
  readonly maxAgeMs: number;
  /** Article states kept (default 50 000; expired ones are dropped first when full). */
  readonly maxArticles?: number;
  /** Wall clock (default Date.now); unrelated to the event-time "now" of features. */
  readonly clock?: () => number;
}

interface Timed<T> {
  /** When the read was sent. */
  readonly at: number;
  readonly value: T;
}

export class SharedReads {
  readonly maxAgeMs: number;
  readonly #maxArticles: number;
  readonly #clock: () => number;
  readonly #articles = new Map<string, Timed<ArticleState>>();
  /** Sorted-set tops read, parsed, by key and length. */
  readonly #lists = new Map<string, Timed<readonly LogScored[]>>();

  constructor(opts: SharedReadsOptions) {
    this.maxAgeMs = Math.max(0, opts.maxAgeMs);
    this.#maxArticles = opts.maxArticles ?? 50_000;
    this.#clock = opts.clock ?? Date.now;
  }

  /** The wall-clock time to stamp a read with: call it before sending the read. */
  now(): number {
    return this.#clock();
  }

  #fresh<T>(entry: Timed<T> | undefined): T | undefined {
    return entry !== undefined && this.#clock() - entry.at <= this.maxAgeMs
      ? entry.value
      : undefined;
  }

  /** The cached state of an article, if it is fresh enough. */
  article(id: string): ArticleState | undefined {
    return this.#fresh(this.#articles.get(id));
  }

  /** Keep article states read at `at` (see `now`). */
  keepArticles(states: readonly ArticleState[], at: number): void {
    if (this.maxAgeMs === 0) return;
    if (this.#articles.size + states.length > this.#maxArticles) this.#prune(states.length);
    for (const state of states) this.#articles.set(state.articleId, { at, value: state });
  }

  /** The cached top `n` of a sorted set, if it is fresh enough. */
  top(key: string, n: number): readonly LogScored[] | undefined {
    return this.#fresh(this.#lists.get(`${n}|${key}`));
  }

  /** Keep the top `n` of a sorted set read at `at` (see `now`). */
  keepTop(key: string, n: number, top: readonly LogScored[], at: number): void {
    if (this.maxAgeMs === 0) return;
    if (this.#lists.size >= 10_000) this.#lists.clear();
    this.#lists.set(`${n}|${key}`, { at, value: top });
  }

  /** Make room for `incoming` states: drop the expired ones; all of them when not enough. */
  #prune(incoming: number): void {
    const oldest = this.#clock() - this.maxAgeMs;
    for (const [id, e] of this.#articles) if (e.at < oldest) this.#articles.delete(id);
    if (this.#articles.size + incoming > this.#maxArticles) this.#articles.clear();
  }
}
