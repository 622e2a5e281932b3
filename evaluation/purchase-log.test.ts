import { describe, expect, it } from 'vitest';
import { PurchaseLog, PurchaseLogBuilder, type PurchaseEvent } from './purchase-log.ts';
import { rng } from './stats.ts';

/** The straightforward log: every event an object, sorted with Array.prototype.sort. */
class ReferenceLog {
  readonly all: readonly PurchaseEvent[];
  readonly byCustomer = new Map<string, PurchaseEvent[]>();

  constructor(events: readonly PurchaseEvent[]) {
    this.all = [...events].sort((a, b) => a.time - b.time);
    for (const e of this.all) {
      const list = this.byCustomer.get(e.customer);
      if (list) list.push(e);
      else this.byCustomer.set(e.customer, [e]);
    }
  }

  indexAt(t: number): number {
    const i = this.all.findIndex((e) => e.time >= t);
    return i < 0 ? this.all.length : i;
  }

  between(from: number, to: number): PurchaseEvent[] {
    return this.all.filter((e) => from <= e.time && e.time < to);
  }

  historyBefore(customer: string, t: number): PurchaseEvent[] {
    return (this.byCustomer.get(customer) ?? []).filter((e) => e.time < t);
  }

  labels(from: number, to: number): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (const e of this.between(from, to)) {
      const s = out.get(e.customer) ?? new Set<string>();
      s.add(e.article);
      out.set(e.customer, s);
    }
    return out;
  }
}

const T0 = Date.UTC(2020, 5, 1);
const HOUR = 3_600_000;

/** Events over 200 hours, many at the same hour, in the order `shuffle` leaves them. */
function randomEvents(seed: number, n: number, shuffle: 'random' | 'blocks'): PurchaseEvent[] {
  const next = rng(seed);
  const pick = (k: number) => Math.floor(next() * k);
  const events = Array.from({ length: n }, (_, i) => {
    const article = `a${String(pick(40))}`;
    return {
      customer: `c${String(pick(60))}`,
      // Unique articles on some events make the order of events at the same time visible.
      article: i % 3 === 0 ? `${article}-${String(i)}` : article,
      // Ties: ~n/200 events per hour.
      time: T0 + pick(200) * HOUR,
    };
  });
  if (shuffle === 'blocks') {
    // Sorted runs interleaved, as a topic's partitions are replayed.
    const runs = [0, 1, 2].map((r) =>
      events.filter((_, i) => i % 3 === r).sort((a, b) => a.time - b.time),
    );
    const out: PurchaseEvent[] = [];
    for (let i = 0; out.length < n; i += 50)
      for (const run of runs) out.push(...run.slice(i, i + 50));
    return out;
  }
  return events;
}

const labelsAsLists = (m: Map<string, Set<string>>) => [...m].map(([c, s]) => [c, [...s]]);

/** The log's events with from <= time < to, oldest first, as objects. */
function eventsBetween(log: PurchaseLog, from: number, to: number): PurchaseEvent[] {
  const out: PurchaseEvent[] = [];
  log.forEachBetween(from, to, (customer, article, time) => out.push({ customer, article, time }));
  return out;
}

/** Every query of `log` against the reference, at times around and between the events'. */
function expectSameAs(log: PurchaseLog, ref: ReferenceLog, seed: number): void {
  const next = rng(seed);
  const all = eventsBetween(log, -Infinity, Infinity);
  expect(all.length).toBe(ref.all.length);
  expect(log.firstTime).toBe(ref.all[0]?.time);
  expect(log.lastTime).toBe(ref.all.at(-1)?.time);
  expect(all).toEqual(ref.all);
  const times = [-Infinity, Infinity, T0 - HOUR, T0 + 300 * HOUR];
  for (let i = 0; i < 40; i++) {
    const t = T0 + Math.floor(next() * 202 - 1) * HOUR;
    times.push(t, t + 1, t - 1);
  }
  for (const t of times) expect(log.indexAt(t)).toBe(ref.indexAt(t));
  for (let i = 0; i < 60; i++) {
    const from = times[Math.floor(next() * times.length)] as number;
    const to = times[Math.floor(next() * times.length)] as number;
    expect(eventsBetween(log, from, to)).toEqual(ref.between(from, to));
    expect(labelsAsLists(log.labels(from, to))).toEqual(labelsAsLists(ref.labels(from, to)));
  }
  for (const customer of [...ref.byCustomer.keys(), 'nobody']) {
    for (let i = 0; i < 5; i++) {
      const t = times[Math.floor(next() * times.length)] as number;
      expect(log.historyBefore(customer, t)).toEqual(ref.historyBefore(customer, t));
    }
  }
}

describe('purchase log', () => {
  it('answers as the straightforward log does, ties in time in the order given', () => {
    for (const [seed, shuffle] of [
      [1, 'random'],
      [2, 'blocks'],
      [3, 'random'],
    ] as const) {
      const events = randomEvents(seed, 5000, shuffle);
      expectSameAs(new PurchaseLog(events), new ReferenceLog(events), seed);
    }
    // Small and already sorted logs take shorter paths.
    const sorted = randomEvents(4, 3000, 'random').sort((a, b) => a.time - b.time);
    expectSameAs(new PurchaseLog(sorted), new ReferenceLog(sorted), 4);
    const few = randomEvents(5, 20, 'random');
    expectSameAs(new PurchaseLog(few), new ReferenceLog(few), 5);
  });

  it('is built one event at a time, each event id once, the first event with an id kept', () => {
    const next = rng(7);
    const hex = () =>
      Array.from({ length: 4 }, () =>
        Math.floor(next() * 2 ** 32)
          .toString(16)
          .padStart(8, '0'),
      ).join('');
    // 32-hex ids as the loader makes them, and other strings; ~1 in 3 events repeats an id.
    const ids = Array.from({ length: 4000 }, (_, i) =>
      i % 5 === 0 ? `order-${String(i)}` : hex(),
    );
    const events = randomEvents(8, 6000, 'random');
    const builder = new PurchaseLogBuilder();
    const firsts: PurchaseEvent[] = [];
    const seen = new Set<string>();
    for (const [i, e] of events.entries()) {
      const id =
        i < ids.length ? (ids[i] as string) : (ids[Math.floor(next() * ids.length)] as string);
      // A repeated id with another article: the first one is the one kept.
      const article = seen.has(id) ? 'repeat' : e.article;
      expect(builder.add(id, e.customer, article, e.time)).toBe(!seen.has(id));
      if (!seen.has(id)) firsts.push({ ...e, article });
      seen.add(id);
    }
    const log = builder.build();
    expect(eventsBetween(log, -Infinity, Infinity).length).toBe(ids.length);
    expectSameAs(log, new ReferenceLog(firsts), 9);
    expect(eventsBetween(log, -Infinity, Infinity).some((e) => e.article === 'repeat')).toBe(false);
    expect(() => builder.add('x', 'c', 'a', T0)).toThrow(/build\(\) was called/);
  });

  it('an empty log answers with nothing', () => {
    for (const log of [new PurchaseLog([]), new PurchaseLogBuilder().build()]) {
      expect(eventsBetween(log, -Infinity, Infinity).length).toBe(0);
      expect(log.firstTime).toBeUndefined();
      expect(log.lastTime).toBeUndefined();
      expect(log.indexAt(T0)).toBe(0);
      expect(eventsBetween(log, -Infinity, Infinity)).toEqual([]);
      log.forEachBetween(-Infinity, Infinity, () => {
        throw new Error('no events');
      });
      expect(log.historyBefore('c', Infinity)).toEqual([]);
      expect(log.labels(-Infinity, Infinity).size).toBe(0);
    }
  });
});
