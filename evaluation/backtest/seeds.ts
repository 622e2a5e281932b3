/**
 * The spread LightGBM's seed alone causes (`npm run eval -- --seeds 42,7,13,1,2`): the backtest
 * builds its rows once and runs every cycle once per seed, so what differs between the runs is the
 * trainer's row and column sampling, nothing else. On a sample as small as hm-sample that moves
 * the ranker by about ±10 %, so one seed's ratio is one draw; the mean over seeds, with its least
 * and most, is what a target should be judged by.
 */
import { mean, sampleSd } from '../stats.ts';

/** The ranker's figures under one seed (over the same cutoffs and rows as the others). */
export interface SeedRun {
  readonly seed: number;
  /** MAP@k, mean over the cutoffs. */
  readonly ranker: number;
  /** The ranker's ratio to each other method (of the weekly means). */
  readonly ratios: Readonly<Record<string, number>>;
  /** Cutoffs where the ranker is above each other method. */
  readonly weeksWon: Readonly<Record<string, number>>;
  /** Cutoffs whose gate promoted the model. */
  readonly promotions: number;
}

/** A figure over the seeds: mean, sample sd, least and most. */
export interface Spread {
  readonly mean: number;
  readonly sd: number;
  readonly min: number;
  readonly max: number;
}

export interface SeedSpread {
  /** In the order run; the first is the backtest's main result. */
  readonly runs: readonly SeedRun[];
  readonly ranker: Spread;
  /** The ranker's ratio to each other method. */
  readonly ratios: Readonly<Record<string, Spread>>;
}

function spread(xs: readonly number[]): Spread {
  return { mean: mean(xs), sd: sampleSd(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/** The spread of the runs' figures (two runs at least; every run compares the same methods). */
export function seedSpread(runs: readonly SeedRun[]): SeedSpread {
  if (runs.length < 2)
    throw new Error(`a seed spread needs two runs at least (got ${runs.length})`);
  const methods = Object.keys(runs[0]?.ratios ?? {});
  return {
    runs,
    ranker: spread(runs.map((r) => r.ranker)),
    ratios: Object.fromEntries(
      methods.map((m) => [m, spread(runs.map((r) => r.ratios[m] ?? NaN))]),
    ),
  };
}

const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : 'n/a');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');

/** The spread as text lines (the CLI prints them, the report lists them), `k` for MAP@k. */
export function seedLines(s: SeedSpread, k: number): string[] {
  const seeds = s.runs.map((r) => r.seed).join(', ');
  const range = (x: Spread, f: (v: number) => string) =>
    `mean ${f(x.mean)} (sd ${f(x.sd)}, ${f(x.min)}-${f(x.max)})`;
  return [
    `seeds ${seeds} (same rows, one run of every cycle per LightGBM seed): ranker MAP@${k} ` +
      `${s.runs.map((r) => f4(r.ranker)).join(', ')}; ${range(s.ranker, f4)}`,
    ...Object.entries(s.ratios).map(
      ([m, x]) =>
        `ranker ÷ ${m}: ${s.runs.map((r) => f2(r.ratios[m] ?? NaN)).join(', ')}; ${range(x, f2)}; ` +
        `weeks won ${s.runs.map((r) => r.weeksWon[m] ?? 0).join(', ')}`,
    ),
    `gate promoted per seed: ${s.runs.map((r) => r.promotions).join(', ')}`,
  ];
}

const round = (x: number, d: number) => (Number.isFinite(x) ? Number(x.toFixed(d)) : null);

/** The spread in the summary line's JSON (`seeds`). */
export function seedsJson(s: SeedSpread, k: number): Record<string, unknown> {
  const sp = (x: Spread, d: number) => ({
    mean: round(x.mean, d),
    sd: round(x.sd, d),
    min: round(x.min, d),
    max: round(x.max, d),
  });
  return {
    seeds: s.runs.map((r) => r.seed),
    [`ranker_map${k}`]: s.runs.map((r) => round(r.ranker, 6)),
    [`ranker_map${k}_spread`]: sp(s.ranker, 6),
    ratio_to: Object.fromEntries(
      Object.entries(s.ratios).map(([m, x]) => [
        m,
        { per_seed: s.runs.map((r) => round(r.ratios[m] ?? NaN, 3)), ...sp(x, 3) },
      ]),
    ),
    promotions: s.runs.map((r) => r.promotions),
  };
}
