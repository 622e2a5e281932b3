/**
 * Statistics for judging rankers on few customers: the standard error of a mean and a paired
 * bootstrap interval of a ratio of means. Both the promotion gate and the backtest use them, so a
 * change is judged by whether its interval moves, not by one week's point estimate.
 *
 * Units are customer-weeks: one customer's AP@12 at one cutoff. Pairing (every method scored on
 * the same units, resampled together) removes the variance the methods share (a week where
 * everyone's purchases are hard to predict), which is most of it.
 */

/** Arithmetic mean (NaN for no values). */
export function mean(xs: ArrayLike<number>): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i] as number;
  return s / xs.length;
}

/** Sample standard deviation (n − 1); 0 for fewer than two values. */
export function sampleSd(xs: ArrayLike<number>): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += ((xs[i] as number) - m) ** 2;
  return Math.sqrt(s / (xs.length - 1));
}

/** Standard error of the mean: sd / √n (NaN for fewer than two values). */
export function standardError(xs: ArrayLike<number>): number {
  return xs.length < 2 ? NaN : sampleSd(xs) / Math.sqrt(xs.length);
}

/** A small seeded generator (mulberry32): the same seed gives the same intervals. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface RatioInterval {
  /** mean(a) / mean(b) on the units as given. */
  readonly ratio: number;
  /** Lower and upper bounds of the central `confidence` interval of the resampled ratios. */
  readonly low: number;
  readonly high: number;
  readonly confidence: number;
  readonly units: number;
  /** Share of resamples where mean(a) > mean(b). */
  readonly winShare: number;
}

export interface BootstrapOptions {
  /** Central interval mass, e.g. 0.9 (default). */
  readonly confidence?: number;
  /** Resamples (default 2000). */
  readonly iterations?: number;
  readonly seed?: number;
}

/**
 * Paired bootstrap of mean(a) / mean(b): `a[i]` and `b[i]` belong to the same unit and are drawn
 * together. Percentile interval; a resample where mean(b) is 0 counts as +∞ when mean(a) > 0 and
 * as 1 when both are 0 (no evidence either way).
 */
export function pairedRatio(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  opts: BootstrapOptions = {},
): RatioInterval {
  if (a.length !== b.length) {
    throw new Error(`paired samples differ in length (${a.length} vs ${b.length})`);
  }
  const n = a.length;
  const confidence = opts.confidence ?? 0.9;
  const iterations = opts.iterations ?? 2000;
  const ratioOf = (sa: number, sb: number) =>
    sb > 0 ? sa / sb : sa > 0 ? Infinity : sa === 0 ? 1 : -Infinity;
  let sumA = 0;
  let sumB = 0;
  for (let i = 0; i < n; i++) {
    sumA += a[i] as number;
    sumB += b[i] as number;
  }
  if (n === 0) {
    return { ratio: NaN, low: NaN, high: NaN, confidence, units: 0, winShare: NaN };
  }
  const next = rng(opts.seed ?? 7);
  const ratios = new Float64Array(iterations);
  let wins = 0;
  for (let r = 0; r < iterations; r++) {
    let sa = 0;
    let sb = 0;
    for (let i = 0; i < n; i++) {
      const j = Math.floor(next() * n);
      sa += a[j] as number;
      sb += b[j] as number;
    }
    ratios[r] = ratioOf(sa, sb);
    if (sa > sb) wins++;
  }
  ratios.sort();
  const at = (q: number) =>
    ratios[Math.min(iterations - 1, Math.max(0, Math.floor(q * iterations)))] as number;
  const tail = (1 - confidence) / 2;
  return {
    ratio: ratioOf(sumA, sumB),
    low: at(tail),
    high: at(1 - tail),
    confidence,
    units: n,
    winShare: wins / iterations,
  };
}

/** `1.23x [1.05, 1.44]` */
export function formatRatio(r: RatioInterval): string {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : String(x));
  return `${f(r.ratio)}x [${f(r.low)}, ${f(r.high)}]`;
}
