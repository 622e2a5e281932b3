import { describe, expect, it } from 'vitest';
import { trainerShares } from './backtest.ts';

describe('trainerShares: trainers side by side and their LightGBM threads', () => {
  it('runs one trainer per core, at most four, and shares the cores out', () => {
    expect(trainerShares(undefined, 12, 2)).toEqual({ trainers: 2, threads: 1 });
    expect(trainerShares(undefined, 12, 8)).toEqual({ trainers: 4, threads: 2 });
    expect(trainerShares(undefined, 12, 1)).toEqual({ trainers: 1, threads: 1 });
  });

  it('starts no more trainers than there are cycles', () => {
    expect(trainerShares(undefined, 1, 8)).toEqual({ trainers: 1, threads: 8 });
    expect(trainerShares(6, 3, 6)).toEqual({ trainers: 3, threads: 2 });
  });

  it('takes the number asked for, at least one thread each', () => {
    expect(trainerShares(3, 12, 2)).toEqual({ trainers: 3, threads: 1 });
    expect(trainerShares(1, 12, 2)).toEqual({ trainers: 1, threads: 2 });
  });

  it('refuses a number that is not a positive integer', () => {
    expect(() => trainerShares(0, 12, 2)).toThrow('--trainers must be a positive integer (got 0)');
    expect(() => trainerShares(1.5, 12, 2)).toThrow('--trainers must be a positive integer');
  });
});
