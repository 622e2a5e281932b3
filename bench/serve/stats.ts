/**
 * Small helpers of the serving benchmark: progress lines on stderr, percentiles and summaries of
 * latency samples, rounding.
 */

export const say = (msg: string) => {
  process.stderr.write(`[bench:serve] ${msg}\n`);
};
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const pct = (sorted: readonly number[], p: number) =>
  sorted.length === 0
    ? NaN
    : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN);
export const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
export const mean = (xs: readonly number[]) =>
  xs.length === 0 ? NaN : xs.reduce((s, x) => s + x, 0) / xs.length;
export const sorted = (xs: readonly number[]) => [...xs].sort((a, b) => a - b);
export const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** p50 / p99 / max of a sample, rounded. */
export function summary(xs: readonly number[]) {
  const s = sorted(xs);
  return {
    p50_ms: round(pct(s, 0.5)),
    p90_ms: round(pct(s, 0.9)),
    p99_ms: round(pct(s, 0.99)),
    max_ms: round(s.at(-1) ?? NaN),
  };
}

/** A latency summary (`summary`). */
export type Summary = ReturnType<typeof summary>;
