import { describe, expect, it } from 'vitest';
import {
  gateDecision,
  judgeFit,
  noSearch,
  rollingWeeks,
  trainedThrough,
  type FitInput,
  type Fitted,
} from './fit.ts';
import { RECIPE, cycleWeeks, weeksRead, WEEK_MS } from './recipe.ts';
import { pairedRatio, rng, standardError } from '../evaluation/stats.ts';
import type { ModelMeta } from '../models/model-meta.ts';

const interval = (ratio: number, low: number, high: number) => ({
  ratio,
  low,
  high,
  confidence: 0.9,
  units: 300,
  winShare: 0.5,
});

describe('the gate decision', () => {
  it('refuses a candidate whose interval against the best baseline reaches 1', () => {
    const d = gateDecision(
      { name: 'repurchase_popular', interval: interval(1.2, 0.97, 1.45) },
      null,
    );
    expect(d.promoted).toBe(false);
    expect(d.reason).toBe(
      'MAP@12 1.20x [0.97, 1.45] of the best baseline (repurchase_popular): not above it with 90 % confidence',
    );
  });

  it('refuses a candidate the active model beats with confidence', () => {
    const d = gateDecision(
      { name: 'strong_heuristic', interval: interval(1.3, 1.1, 1.5) },
      { version: 'v1', interval: interval(0.8, 0.7, 0.95) },
    );
    expect(d.promoted).toBe(false);
    expect(d.reason).toMatch(
      /0\.80x \[0\.70, 0\.95\] of the active model v1: worse with 90 % confidence/,
    );
  });

  it('promotes a candidate above the best baseline that the active model does not beat', () => {
    const d = gateDecision(
      { name: 'strong_heuristic', interval: interval(1.3, 1.1, 1.5) },
      { version: 'v1', interval: interval(0.95, 0.8, 1.1) },
    );
    expect(d).toEqual({
      promoted: true,
      reason:
        'MAP@12 1.30x [1.10, 1.50] of the best baseline (strong_heuristic), 0.95x [0.80, 1.10] of the active model v1',
    });
  });

  it('refuses when the interval is not a number (no customers judged)', () => {
    expect(
      gateDecision({ name: 'popular', interval: interval(NaN, NaN, NaN) }, null).promoted,
    ).toBe(false);
  });
});

describe('paired bootstrap of a ratio of means', () => {
  it('puts a clearly better method above 1 and brackets the point estimate', () => {
    const b = Array.from({ length: 400 }, (_, i): number => (i % 10 === 0 ? 1 : 0.1));
    const a = b.map((x, i) => x * 1.5 + (i % 7 === 0 ? 0.05 : 0));
    const r = pairedRatio(a, b, { seed: 1 });
    expect(r.ratio).toBeCloseTo(a.reduce((s, x) => s + x) / b.reduce((s, x) => s + x), 12);
    expect(r.low).toBeGreaterThan(1);
    expect(r.low).toBeLessThanOrEqual(r.ratio);
    expect(r.high).toBeGreaterThanOrEqual(r.ratio);
    expect(r.units).toBe(400);
  });

  it('gives an interval around 1 for two methods that differ by noise only', () => {
    const next = rng(5);
    const a = Array.from({ length: 300 }, () => (next() < 0.1 ? 1 : 0));
    const b = Array.from({ length: 300 }, () => (next() < 0.1 ? 1 : 0));
    const r = pairedRatio(a, b, { seed: 3 });
    expect(r.low).toBeLessThan(1);
    expect(r.high).toBeGreaterThan(1);
  });

  it('is deterministic for a seed and refuses unpaired samples', () => {
    const a = [0, 1, 0.5, 0.2];
    const b = [0.1, 0.4, 0.5, 0.3];
    expect(pairedRatio(a, b, { seed: 9 })).toEqual(pairedRatio(a, b, { seed: 9 }));
    expect(() => pairedRatio([1], [1, 2])).toThrow(/differ in length/);
  });

  it('computes the standard error of a mean', () => {
    expect(standardError([1, 2, 3, 4])).toBeCloseTo(Math.sqrt(5 / 3) / 2, 12);
    expect(standardError([1])).toBeNaN();
  });
});

describe('the weeks of a cycle', () => {
  const end = Date.UTC(2020, 7, 26);
  const day = (t: number) => new Date(t).toISOString().slice(0, 10);

  it('holds out the gate weeks at the end, the early-stopping week before them, training before', () => {
    const w = cycleWeeks(end, { ...RECIPE, trainWeeks: 3, gateWeeks: 2 });
    expect(w.gate.map(day)).toEqual(['2020-08-12', '2020-08-19']);
    expect(day(w.validation)).toBe('2020-08-05');
    expect(w.train.map(day)).toEqual(['2020-07-15', '2020-07-22', '2020-07-29']);
    // Every label window ends at or before the next stage's first cutoff.
    expect((w.train.at(-1) ?? 0) + WEEK_MS).toBe(w.validation);
    expect(w.validation + WEEK_MS).toBe(w.gate[0]);
    expect((w.gate.at(-1) ?? 0) + WEEK_MS).toBe(end);
  });

  it('drops training weeks before the first purchase', () => {
    const w = cycleWeeks(end, { ...RECIPE, trainWeeks: 10, gateWeeks: 2 }, Date.UTC(2020, 6, 20));
    expect(w.train.map(day)).toEqual(['2020-07-22', '2020-07-29']);
    expect(w.history).toEqual([]);
  });

  it("reaches back for the gate weeks' fits: each learns from as many weeks as the refit", () => {
    const recipe = { ...RECIPE, trainWeeks: 3, gateWeeks: 2, fitWeeks: 6 };
    const w = cycleWeeks(end, recipe);
    // The first gate week (08-12) is fitted on the 6 weeks before it: 07-01 .. 08-05.
    expect(w.history.map(day)).toEqual(['2020-07-01', '2020-07-08']);
    expect(w.train.map(day)).toEqual(['2020-07-15', '2020-07-22', '2020-07-29']);
    expect(weeksRead(recipe)).toBe(recipe.gate.maxWeeks + 6);
    // Fits of fewer weeks than the search's need nothing older; without a refit no fit does.
    expect(cycleWeeks(end, { ...recipe, fitWeeks: 4 }).history).toEqual([]);
    expect(cycleWeeks(end, { ...recipe, refit: false }).history).toEqual([]);
  });

  it('adds gate weeks until they hold enough customers, up to the most weeks', () => {
    const recipe = {
      ...RECIPE,
      trainWeeks: 3,
      gateWeeks: 2,
      gate: { ...RECIPE.gate, customerWeeks: 300, maxWeeks: 5 },
    };
    const gateDays = (buyers: number) =>
      cycleWeeks(end, recipe, -Infinity, () => buyers).gate.map(day);
    // 100 a week: three weeks reach 300.
    expect(gateDays(100)).toEqual(['2020-08-05', '2020-08-12', '2020-08-19']);
    // 200 a week: the least two already hold 400.
    expect(gateDays(200)).toEqual(['2020-08-12', '2020-08-19']);
    // 10 a week: five weeks at most.
    expect(gateDays(10)).toHaveLength(5);
    const w = cycleWeeks(end, recipe, -Infinity, () => 100);
    expect(day(w.validation)).toBe('2020-07-29');
    expect(w.train.map(day)).toEqual(['2020-07-08', '2020-07-15', '2020-07-22']);
    // An early-stopping week and one training week stay after the first purchase.
    const short = cycleWeeks(end, recipe, Date.UTC(2020, 6, 20), () => 10);
    expect(short.gate.map(day)).toEqual(['2020-08-05', '2020-08-12', '2020-08-19']);
    expect(short.train.map(day)).toEqual(['2020-07-22']);
    // A week judges at most `labelCustomers` of its buyers: 1,000 a week count as 100.
    const sampled = { ...recipe, labelCustomers: 100 };
    expect(cycleWeeks(end, sampled, -Infinity, () => 1000).gate.map(day)).toEqual(gateDays(100));
  });

  it('knows how far a model was trained from its cutoffs', () => {
    const meta = {
      cutoffs: { train: [1000], valid: [2000], refit: [5000, 3000] },
    } as unknown as ModelMeta;
    expect(trainedThrough(meta)).toBe(5000 + WEEK_MS);
    expect(trainedThrough({} as ModelMeta)).toBeNull();
  });
});

describe('noSearch', () => {
  it('trains no search model when one trial of fixed trees is refitted, as the recipe is', () => {
    expect(noSearch(RECIPE)).toBe(true);
    expect(noSearch({ ...RECIPE, trials: 3 })).toBe(false);
    expect(noSearch({ ...RECIPE, minRounds: 100 })).toBe(false); // early stopping chooses
    expect(noSearch({ ...RECIPE, refit: false })).toBe(false); // the searched model ships
  });
});

describe('the gate weeks a cycle fits itself', () => {
  const weeks = { gate: [1, 2, 3] };

  it('are those without a shipped model, and none without a refit', () => {
    expect(rollingWeeks({ refit: true }, weeks, (g) => g === 2)).toEqual([1, 3]);
    expect(rollingWeeks({ refit: false }, weeks, () => false)).toEqual([]);
  });

  it('a gate week with neither a rolling fit nor a shipped model is an error, not a blind spot', async () => {
    const input = {
      recipe: { ...RECIPE, refit: true },
      weeks: { gate: [Date.UTC(2020, 6, 1), Date.UTC(2020, 6, 8)] },
      shippedAt: new Map(),
      say: () => undefined,
    } as unknown as FitInput;
    const fitted = { rolling: [Date.UTC(2020, 6, 1)] } as unknown as Fitted;
    await expect(judgeFit(input, fitted)).rejects.toThrow(
      'gate: no model shipped at 2020-07-08 and no rolling fit',
    );
  });
});
