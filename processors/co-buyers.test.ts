import { describe, expect, it } from 'vitest';
import { packCoBuyers, parseCoBuyers } from '../features/co-buyers.ts';
import { basketsOf, coBuyerLists, itemsOf } from './co-buyers.ts';

const DAY = 86_400_000;
const NOW = Date.UTC(2020, 5, 1);
/** customer.lua's `a:<article>` value: n|last|L|units. */
const item = (daysAgo: number) => `1|${NOW - daysAgo * DAY}|0|1`;

describe('co-buyer lists', () => {
  it("takes each customer's articles last bought within the window before now, latest first", () => {
    // HSCAN replies (field, value, ...): only `a:` fields are items.
    const states = [
      ['n', '3', 'a:A', item(1), 'a:B', item(10), 'p:P', item(1), 'a:C', item(400)],
      ['a:B', item(0.5), 'a:A', item(0)], // A at "now": not counted
      ['a:C', item(500), 'a:C', item(500)], // nothing within the window: no basket
    ].map(itemsOf);
    expect(states[2]).toEqual([['C', NOW - 500 * DAY]]); // a field returned twice counts once
    expect(states[0]).toEqual([
      ['A', NOW - DAY],
      ['B', NOW - 10 * DAY],
      ['C', NOW - 400 * DAY],
    ]);
    expect(basketsOf(states, { now: NOW })).toEqual([['A', 'B'], ['B']]);
    expect(basketsOf(states, { now: NOW, perCustomer: 1 })).toEqual([['A'], ['B']]);
    expect(basketsOf(states, { now: NOW, windowMs: 5 * DAY })).toEqual([['A'], ['B']]);
  });

  it('ranks neighbours by the cosine of their buyer sets, ties by id, at most `top`', () => {
    // buyers: A 3, B 2, C 1, D 1; common: A-B 2, A-C 1, B-C 1, A-D 1.
    const lists = coBuyerLists([['A', 'B'], ['A', 'B', 'C'], ['A', 'D'], ['E']]);
    expect(lists.get('A')).toEqual([
      ['B', 2 / Math.sqrt(6)],
      ['C', 1 / Math.sqrt(3)],
      ['D', 1 / Math.sqrt(3)],
    ]);
    expect(lists.get('C')).toEqual([
      ['B', 1 / Math.sqrt(2)],
      ['A', 1 / Math.sqrt(3)],
    ]);
    expect(lists.has('E')).toBe(false); // no common buyer with any other
    const baskets = [
      ['A', 'B'],
      ['A', 'B', 'C'],
      ['A', 'D'],
    ];
    expect(coBuyerLists(baskets, 1).get('A')).toEqual([['B', 2 / Math.sqrt(6)]]);
    // C and D tie at the cut: the lower id stays.
    expect(coBuyerLists(baskets, 2).get('A')).toEqual([
      ['B', 2 / Math.sqrt(6)],
      ['C', 1 / Math.sqrt(3)],
    ]);
  });

  it('packs and parses a list, five significant digits', () => {
    const packed = packCoBuyers([
      ['B', 2 / Math.sqrt(6)],
      ['C', 1 / 3],
    ]);
    expect(packed).toBe('B 0.8165,C 0.33333');
    expect([...parseCoBuyers(packed)]).toEqual([
      ['B', 0.8165],
      ['C', 0.33333],
    ]);
    expect(parseCoBuyers('').size).toBe(0);
    // The texts kept across lists give the same packing.
    const digits = new Map<number, string>();
    expect(packCoBuyers([['C', 1 / 3]], digits)).toBe('C 0.33333');
    expect(
      packCoBuyers(
        [
          ['B', 2 / Math.sqrt(6)],
          ['C', 1 / 3],
        ],
        digits,
      ),
    ).toBe(packed);
    expect(packCoBuyers([], digits)).toBe('');
  });
});
