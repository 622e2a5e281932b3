import { describe, expect, it } from 'vitest';
import type { RowsDeps } from '../../training/rows.ts';
import { runEval } from './backtest.ts';
import { seedLines, seedSpread, seedsJson, type SeedRun } from './seeds.ts';

const run = (seed: number, ranker: number, vsRp: number, promotions: number): SeedRun => ({
  seed,
  ranker,
  ratios: { repurchase_popular: vsRp, strong_heuristic: vsRp + 0.1 },
  weeksWon: { repurchase_popular: 10, strong_heuristic: 11 },
  promotions,
});

describe('the spread over LightGBM seeds', () => {
  const runs = [run(42, 0.0255, 1.42, 5), run(7, 0.0225, 1.25, 5), run(13, 0.0213, 1.18, 3)];
  const s = seedSpread(runs);

  it('gives the mean, sample sd, least and most of the ranker and of each ratio', () => {
    expect(s.ranker.mean).toBeCloseTo(0.0231, 6);
    expect(s.ranker.min).toBe(0.0213);
    expect(s.ranker.max).toBe(0.0255);
    // sd of (0.0255, 0.0225, 0.0213) with n - 1: deviations 0.0024, -0.0006, -0.0018.
    expect(s.ranker.sd).toBeCloseTo(Math.sqrt((0.0024 ** 2 + 0.0006 ** 2 + 0.0018 ** 2) / 2), 8);
    expect(Object.keys(s.ratios)).toEqual(['repurchase_popular', 'strong_heuristic']);
    expect(s.ratios.repurchase_popular?.mean).toBeCloseTo(1.2833, 4);
    expect(s.ratios.strong_heuristic?.min).toBeCloseTo(1.28, 8);
    expect(s.ratios.strong_heuristic?.max).toBeCloseTo(1.52, 8);
  });

  it('needs two runs', () => {
    expect(() => seedSpread(runs.slice(0, 1))).toThrow(/two runs/);
  });

  it('prints each seed in the order run, the spread and the promotions', () => {
    const lines = seedLines(s, 12);
    expect(lines[0]).toBe(
      'seeds 42, 7, 13 (same rows, one run of every cycle per LightGBM seed): ranker MAP@12 ' +
        '0.0255, 0.0225, 0.0213; mean 0.0231 (sd 0.0022, 0.0213-0.0255)',
    );
    expect(lines[1]).toBe(
      'ranker ÷ repurchase_popular: 1.42, 1.25, 1.18; mean 1.28 (sd 0.12, 1.18-1.42); weeks won 10, 10, 10',
    );
    expect(lines.at(-1)).toBe('gate promoted per seed: 5, 5, 3');
  });

  it('puts the same figures in the summary line', () => {
    const j = seedsJson(s, 12) as {
      seeds: number[];
      ranker_map12: number[];
      ranker_map12_spread: { mean: number; min: number; max: number };
      ratio_to: Record<string, { per_seed: number[]; mean: number; min: number; max: number }>;
      promotions: number[];
    };
    expect(j.seeds).toEqual([42, 7, 13]);
    expect(j.ranker_map12).toEqual([0.0255, 0.0225, 0.0213]);
    expect(j.ranker_map12_spread.mean).toBeCloseTo(0.0231, 6);
    expect(j.ratio_to.repurchase_popular).toMatchObject({
      per_seed: [1.42, 1.25, 1.18],
      min: 1.18,
      max: 1.42,
    });
    expect(j.promotions).toEqual([5, 5, 3]);
  });

  it('a backtest refuses a seed given twice before it reads anything', async () => {
    // No services: the check comes before the first read.
    await expect(runEval({} as RowsDeps, { dataset: 'x', seeds: [42, 7, 42] })).rejects.toThrow(
      /a seed is given twice \(42,7,42\)/,
    );
  });
});
