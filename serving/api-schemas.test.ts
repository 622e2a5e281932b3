/**
 * Request parsing that needs no app: segments, and zod issues turned into named fields.
 */
import { describe, expect, it } from 'vitest';
import { zodFields } from './http-errors.ts';
import { RecommendationQuery, parseSegment } from './api-schemas.ts';

describe('parseSegment', () => {
  it.each([
    ['channel:2', { kind: 'channel', value: '2' }],
    ['channel:02', { kind: 'channel', value: '2' }],
    ['age_index:25-34|Ladieswear', { kind: 'age_index', value: '25-34|Ladieswear' }],
    // the processors write the 55+ bucket as 55_ (segmentValue's key-safe characters)
    ['age_index:55+|Baby/Children', { kind: 'age_index', value: '55_|Baby/Children' }],
    ['age_index:55_|Sport', { kind: 'age_index', value: '55_|Sport' }],
    // `+` unencoded in a query string arrives as a space
    ['age_index:55 |Sport', { kind: 'age_index', value: '55_|Sport' }],
    // characters the processors replace in keys are replaced the same way
    ['age_index:u25|Lingeries Tights', { kind: 'age_index', value: 'u25|Lingeries_Tights' }],
  ])('%s', (raw, expected) => {
    expect(parseSegment(raw)).toEqual(expected);
  });

  it.each([
    ['city:paris', /unknown segment kind "city"/],
    ['channel', /channel:<sales channel id>/],
    ['channel:x{y}', /channel:<sales channel id>/],
    ['age_index:teen|Sport', /age_index:</],
    ['age_index:u25', /age_index:</],
  ])('refuses %s', (raw, message) => {
    expect(parseSegment(raw)).toMatch(message);
  });
});

describe('RecommendationQuery', () => {
  it('applies defaults and parses booleans', () => {
    expect(RecommendationQuery.parse({})).toEqual({ k: 12 });
    expect(RecommendationQuery.parse({ k: '5', explain: '1', allow_repurchase: 'false' })).toEqual({
      k: 5,
      explain: true,
      allow_repurchase: false,
    });
  });

  it('names each offending field, unknown ones included', () => {
    const r = RecommendationQuery.safeParse({ k: '0', colour: 'red', explain: 'yes' });
    expect(r.success).toBe(false);
    if (r.success) return;
    expect(
      zodFields(r.error)
        .map((f) => f.path)
        .sort(),
    ).toEqual(['colour', 'explain', 'k']);
  });
});
