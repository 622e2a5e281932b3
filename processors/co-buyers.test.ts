import { describe, expect, it } from 'vitest';
import { packCoBuyers, parseCoBuyers } from '../features/co-buyers.ts';
import { ItemTable, coBuyerLists, itemsOf, type Baskets } from './co-buyers.ts';

const DAY = 86_400_000;
const NOW = Date.UTC(2020, 5, 1);
/** customer.lua's `a:<article>` value: n|last|L|units|first|lu. */
const item = (daysAgo: number) => `1|${NOW - daysAgo * DAY}|0|1|${NOW - daysAgo * DAY}|1`;
/** Baskets as lists of ids. */
const named = (b: Baskets) =>
  Array.from({ length: b.start.length - 1 }, (_, i) =>
    Array.from(b.articles.subarray(b.start[i], b.start[i + 1]), (code) => b.ids[code]),
  );
/** The co-buyer lists of baskets given as ids (each article bought within the window). */
const listsOf = (baskets: string[][], top?: number) =>
  new Map(
    coBuyerLists(
      ItemTable.of(baskets.map((b) => b.map((id) => [id, NOW - DAY] as const))).baskets({
        now: NOW,
      }),
      top,
    ),
  );

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
    const table = ItemTable.of(states);
    expect(named(table.baskets({ now: NOW }))).toEqual([['A', 'B'], ['B']]);
    expect(named(table.baskets({ now: NOW, perCustomer: 1 }))).toEqual([['A'], ['B']]);
    expect(named(table.baskets({ now: NOW, windowMs: 5 * DAY }))).toEqual([['A'], ['B']]);
    // The same time: by id.
    const tie = ItemTable.of([
      [
        ['B', NOW - DAY],
        ['A', NOW - DAY],
        ['C', NOW - 2 * DAY],
      ],
    ]);
    expect(named(tie.baskets({ now: NOW }))).toEqual([['A', 'B', 'C']]);
    expect(tie.storeNow()).toBe(NOW - DAY + 1);
    expect(new ItemTable().baskets({ now: NOW }).start).toEqual(Int32Array.from([0]));
  });

  it('holds more customers and items than its first arrays', () => {
    // 3,000 customers of 5 items: past the first 1,024 customers and 4,096 items.
    const customers = Array.from({ length: 3000 }, (_, c) =>
      Array.from({ length: 5 }, (_, k) => [`a${(c + k) % 700}`, NOW - (k + 1) * DAY] as const),
    );
    const baskets = named(ItemTable.of(customers).baskets({ now: NOW }));
    expect(baskets).toHaveLength(3000);
    expect(baskets[0]).toEqual(['a0', 'a1', 'a2', 'a3', 'a4']);
    expect(baskets[2999]).toEqual(['a199', 'a200', 'a201', 'a202', 'a203']);
  });

  it('ranks neighbours by the cosine of their buyer sets, ties by id, at most `top`', () => {
    // buyers: A 3, B 2, C 1, D 1; common: A-B 2, A-C 1, B-C 1, A-D 1.
    const lists = listsOf([['A', 'B'], ['A', 'B', 'C'], ['A', 'D'], ['E']]);
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
    expect(listsOf(baskets, 1).get('A')).toEqual([['B', 2 / Math.sqrt(6)]]);
    // C and D tie at the cut: the lower id stays.
    expect(listsOf(baskets, 2).get('A')).toEqual([
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
