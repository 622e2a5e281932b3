import { describe, expect, it } from 'vitest';
import { progressLine } from './progress.ts';

describe('progressLine (progress off a terminal)', () => {
  it('gives the count with separators, the share of a known total and the rate', () => {
    expect(
      progressLine({ label: 'read articles.csv', value: 10_000, total: 24_390, elapsedMs: 810 }),
    ).toBe('read articles.csv: 10,000 of 24,390 rows (41 %), 12,346 rows/s');
  });

  it('leaves the share out when the total is unknown (0)', () => {
    expect(
      progressLine({
        label: 'read transactions_train.csv',
        value: 1_234_567,
        total: 0,
        elapsedMs: 2_000,
      }),
    ).toBe('read transactions_train.csv: 1,234,567 rows, 617,284 rows/s');
  });

  it('gives no rate before any time has passed, and names its unit', () => {
    expect(
      progressLine({
        label: 'publish purchases',
        value: 0,
        total: 500,
        elapsedMs: 0,
        unit: 'events',
      }),
    ).toBe('publish purchases: 0 of 500 events (0 %)');
  });

  it('says when it is done, with the mean rate and the time taken', () => {
    expect(
      progressLine({
        label: 'read articles.csv',
        value: 24_390,
        total: 0,
        elapsedMs: 1_500,
        done: true,
      }),
    ).toBe('read articles.csv: done, 24,390 rows, 16,260 rows/s in 1.5 s');
    expect(
      progressLine({
        label: 'embedding articles',
        value: 100,
        total: 100,
        elapsedMs: 4_000,
        done: true,
      }),
    ).toBe('embedding articles: done, 100 rows (100 %), 25 rows/s in 4.0 s');
  });
});
