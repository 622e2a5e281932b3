import { describe, expect, it } from 'vitest';
import {
  apAtK,
  mapAtK,
  meanNdcgAtK,
  meanRecallAtK,
  ndcgAtK,
  recallAtK,
} from './ranking-metrics.ts';

const set = (...ids: string[]) => new Set(ids);
const log2 = Math.log2;

describe('ranking metrics (hand-computed)', () => {
  it('fewer relevant items than k', () => {
    // hits at ranks 2 and 4: (1/2 + 2/4) / min(2, 12)
    const ranked = ['a', 'b', 'c', 'd', 'e'];
    const rel = set('b', 'd');
    expect(apAtK(ranked, rel)).toBeCloseTo(0.5, 15);
    expect(recallAtK(ranked, rel)).toBe(1);
    expect(ndcgAtK(ranked, rel)).toBeCloseTo((1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3)), 15);
    // a relevant item outside the top k is a miss
    expect(apAtK(ranked, rel, 3)).toBeCloseTo(0.5 / 2, 15);
    expect(recallAtK(ranked, rel, 3)).toBe(0.5);
  });

  it('more relevant items than k: the denominator is k', () => {
    // top 3 = a, x, b: hits at 1 and 3 -> (1/1 + 2/3) / min(5, 3)
    const ranked = ['a', 'x', 'b', 'c'];
    const rel = set('a', 'b', 'c', 'd', 'e');
    expect(apAtK(ranked, rel, 3)).toBeCloseTo((1 + 2 / 3) / 3, 15);
    expect(recallAtK(ranked, rel, 3)).toBeCloseTo(2 / 5, 15);
    expect(ndcgAtK(ranked, rel, 3)).toBeCloseTo(
      (1 + 1 / log2(4)) / (1 + 1 / log2(3) + 1 / log2(4)),
      15,
    );
  });

  it('nothing relevant, or nothing found, gives 0', () => {
    expect(apAtK(['a', 'b'], set())).toBe(0);
    expect(recallAtK(['a', 'b'], set())).toBe(0);
    expect(ndcgAtK(['a', 'b'], set())).toBe(0);
    expect(apAtK(['a', 'b'], set('z'))).toBe(0);
    expect(ndcgAtK(['a', 'b'], set('z'))).toBe(0);
  });

  it('empty predictions give 0', () => {
    expect(apAtK([], set('a'))).toBe(0);
    expect(recallAtK([], set('a'))).toBe(0);
    expect(ndcgAtK([], set('a'))).toBe(0);
  });

  it('a repeated article counts once: it keeps its position but is not a second hit', () => {
    // a at 1 (hit), a again at 2 (skipped), b at 3 (hit): (1/1 + 2/3) / 2
    const ranked = ['a', 'a', 'b'];
    const rel = set('a', 'b');
    expect(apAtK(ranked, rel)).toBeCloseTo((1 + 2 / 3) / 2, 15);
    expect(recallAtK(ranked, rel)).toBe(1);
    expect(ndcgAtK(ranked, rel)).toBeCloseTo((1 + 1 / log2(4)) / (1 + 1 / log2(3)), 15);
    // repeating a hit can never exceed 1
    expect(apAtK(['a', 'a', 'a'], set('a'))).toBe(1);
    expect(recallAtK(['a', 'a', 'a'], set('a', 'b'))).toBe(0.5);
  });

  it('all relevant items at the top score 1', () => {
    const ranked = ['c', 'a', 'b', 'x', 'y'];
    const rel = set('a', 'b', 'c');
    expect(apAtK(ranked, rel)).toBe(1);
    expect(recallAtK(ranked, rel)).toBe(1);
    expect(ndcgAtK(ranked, rel)).toBeCloseTo(1, 15);
    // k smaller than |relevant|, top k all relevant
    expect(apAtK(ranked, rel, 2)).toBe(1);
    expect(ndcgAtK(ranked, rel, 2)).toBeCloseTo(1, 15);
  });

  it('means over queries', () => {
    const ranked = [['a', 'b', 'c', 'd', 'e'], ['x'], ['c', 'a', 'b']];
    const rel = [set('b', 'd'), set('y'), set('a', 'b', 'c')];
    expect(mapAtK(ranked, rel)).toBeCloseTo((0.5 + 0 + 1) / 3, 15);
    expect(meanRecallAtK(ranked, rel)).toBeCloseTo((1 + 0 + 1) / 3, 15);
    expect(meanNdcgAtK(ranked, rel)).toBeCloseTo(
      ((1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3)) + 0 + 1) / 3,
      15,
    );
    expect(mapAtK([], [])).toBeNaN();
    expect(() => mapAtK([['a']], [])).toThrow(/one ranking per query/);
    expect(() => apAtK(['a'], set('a'), 0)).toThrow(/positive integer/);
  });
});
