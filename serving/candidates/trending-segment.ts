/**
 * The `trending_segment` source: the 7-day trending sets of the customer's age bucket × index
 * group (groups weighted by the customer's recent purchases, Laplace-smoothed; the filter's group
 * only when `index_group` is given; only when the age is known from the customer record) and of
 * the customer's dominant sales channel. Read in round trip 2.
 */
import { ageBucket, SEGMENT_HALF_LIFE, type KeySpace } from '../../features/keys.ts';
import { segmentValue } from '../../features/segments.ts';
import type { CustomerState } from '../../features/state.ts';
import type { CandidateConfig } from './config.ts';
import { customerAge, dominantChannel } from './customer.ts';
import type { CandidatePool } from './pool.ts';
import type { LogScored } from './replies.ts';
import type { Excluded, Filters } from './types.ts';

/** The segments whose trending sets a request reads. */
export interface Segments {
  /** Age bucket × index group: the group and the segment value (`<bucket>|<group>`). */
  readonly age: readonly { readonly group: string; readonly value: string }[];
  /** The customer's dominant sales channel, if any. */
  readonly channel: string | null;
}

/** The customer's segments (none when the segment quota is 0). */
export function customerSegments(
  customer: CustomerState,
  config: CandidateConfig,
  filters: Filters,
): Segments {
  const age = customerAge(customer);
  const groups = filters.indexGroup !== undefined ? [filters.indexGroup] : [...config.indexGroups];
  return {
    age:
      age === null || config.quotas.segment === 0
        ? []
        : groups.map((g) => ({ group: g, value: segmentValue('age_index', ageBucket(age), g) })),
    channel: config.quotas.segment > 0 ? dominantChannel(customer) : null,
  };
}

/** The keys of the segment sets a request reads: the age × group ones in order, then the channel's. */
export function segmentKeys(keys: KeySpace, segments: Segments): string[] {
  const out = segments.age.map((s) =>
    keys.trending.segment('age_index', s.value, SEGMENT_HALF_LIFE),
  );
  if (segments.channel !== null) {
    out.push(
      keys.trending.segment(
        'channel',
        segmentValue('channel', segments.channel),
        SEGMENT_HALF_LIFE,
      ),
    );
  }
  return out;
}

interface SegmentSets {
  readonly age: readonly {
    readonly group: string;
    readonly value: string;
    readonly entries: readonly LogScored[];
  }[];
  readonly channel: readonly LogScored[];
}

/** The segment sets from their tops, in `segmentKeys` order. */
export function segmentSets(
  segments: Segments,
  tops: readonly (readonly LogScored[])[],
): SegmentSets {
  const age = segments.age.map((s, i) => ({ ...s, entries: tops[i] ?? [] }));
  const channel = segments.channel === null ? [] : (tops[segments.age.length] ?? []);
  return { age, channel };
}

/** Index-group weights from the recent purchases' groups, Laplace-smoothed, the top group at 1. */
export function groupWeights(recentGroups: readonly (string | null)[]): (group: string) => number {
  const groupCount = new Map<string, number>();
  for (const g of recentGroups) {
    if (g) groupCount.set(g.toLowerCase(), (groupCount.get(g.toLowerCase()) ?? 0) + 1);
  }
  const maxCount = Math.max(0, ...groupCount.values());
  return (g) => ((groupCount.get(g.toLowerCase()) ?? 0) + 1) / (maxCount + 1);
}

/**
 * Add at most `n` segment candidates: scores normalised within their set (the top at 1), times
 * the group weight (1 for the channel), the best set kept per article.
 */
export function addSegmentTrending(
  pool: CandidatePool,
  segments: Segments,
  sets: SegmentSets,
  groupWeight: (group: string) => number,
  excluded: Excluded,
  n: number,
): void {
  const scores = new Map<string, { score: number; segment: string }>();
  const offer = (entries: readonly LogScored[], weight: number, segment: string) => {
    const top = entries[0]?.logScore;
    if (top === undefined) return;
    for (const e of entries) {
      if (excluded(e.articleId)) continue;
      const score = weight * Math.exp(e.logScore - top);
      const prev = scores.get(e.articleId);
      if (!prev || score > prev.score) scores.set(e.articleId, { score, segment });
    }
  };
  for (const s of sets.age) offer(s.entries, groupWeight(s.group), `age_index:${s.value}`);
  if (segments.channel !== null) {
    offer(sets.channel, 1, `channel:${segmentValue('channel', segments.channel)}`);
  }
  [...scores]
    .sort((a, b) => b[1].score - a[1].score || (a[0] < b[0] ? -1 : 1))
    .slice(0, n)
    .forEach(([articleId, v], rank) => {
      pool.add(articleId, 'trending_segment', rank).segment = v;
    });
}
