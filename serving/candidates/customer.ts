/**
 * What candidate generation derives from the customer's state: their latest distinct purchases
 * (the seeds of co-purchase and similar, with their index groups and names read in round trip 2),
 * their age and dominant sales channel (the segments), and their items and product codes by
 * time-weighted purchases (repurchase and siblings).
 */
import type { ChainableCommander } from 'ioredis';
import type { KeySpace } from '../../features/keys.ts';
import type { CustomerState, ItemStat } from '../../features/state.ts';
import type { Replies } from './replies.ts';

/** The customer's distinct recently bought articles, newest first. */
export function latestDistinct(customer: CustomerState): string[] {
  const seen = new Set<string>();
  for (const r of customer.recent) seen.add(r.articleId);
  return [...seen];
}

/** The sales channel the customer bought through most (lowest id on ties); null without history. */
export function dominantChannel(customer: CustomerState): string | null {
  let best: string | null = null;
  let bestN = 0;
  for (const [ch, n] of Object.entries(customer.channels)) {
    if (n > bestN || (n === bestN && best !== null && Number(ch) < Number(best))) {
      best = ch;
      bestN = n;
    }
  }
  return best;
}

/** The customer's age from the customer record, or null. */
export function customerAge(customer: CustomerState): number | null {
  const raw = customer.meta.age;
  if (raw === undefined || raw === '') return null;
  const age = Number(raw);
  return Number.isFinite(age) ? age : null;
}

/** Entries of a customer's item map, most time-weighted purchases first (then latest, then id). */
export function byWeight(m: ReadonlyMap<string, ItemStat>): [string, ItemStat][] {
  return [...m].sort(
    (a, b) =>
      b[1].logCount - a[1].logCount ||
      b[1].last - a[1].last ||
      (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0),
  );
}

/** Queue the reads of the index group and name of each recent purchase (one HMGET each). */
export function queueRecentReads(
  pipe: ChainableCommander,
  keys: KeySpace,
  recent: readonly string[],
): void {
  for (const a of recent) pipe.hmget(keys.article(a).meta, 'index_group_name', 'prod_name');
}

/** The replies of `queueRecentReads`: index groups in order, and names by article. */
export function recentReplies(
  replies: Replies,
  recent: readonly string[],
): { groups: (string | null)[]; names: Map<string, string | null> } {
  const meta = recent.map(() => (replies.next() as (string | null)[] | null) ?? []);
  return {
    groups: meta.map(([group]) => group ?? null),
    names: new Map(recent.map((a, i) => [a, meta[i]?.[1] ?? null])),
  };
}
