/**
 * Trending segments: how a purchase (and a customer at request time) maps to segment keys.
 */
import type { SegmentKind } from './keys.ts';

const clean = (v: string): string => v.replace(/[^A-Za-z0-9_./-]+/g, '_');

/**
 * Segment value: `age_index` = `<age bucket>|<index group>` (unknown parts spelled `unknown`);
 * `channel` = the sales channel id.
 */
export function segmentValue(kind: SegmentKind, a: string, b?: string | null): string {
  if (kind === 'channel') return clean(a);
  return `${clean(a)}|${clean(b ?? 'unknown') || 'unknown'}`;
}
