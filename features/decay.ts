/**
 * Exact, order-independent time decay. A decayed sum  S(now) = Σ w_i · 2^(-(now - t_i) / H)  is
 * stored as the log of its value at a fixed epoch E:  L = ln Σ w_i · e^(λ (t_i - E)),  λ = ln 2 / H.
 * Adding an event is a log-add, which is commutative, so the same events in any order (late ones
 * included) give the same L up to floating-point rounding (relative ~1e-15); reading at any "now"
 * is  S(now) = e^(L - λ (now - E)). Log space never overflows, whatever the distance to E, which a
 * linear score scaled from a fixed epoch would after a few years at a one-day half-life.
 * The Lua scripts under processors/lua do the same arithmetic (`logadd` there mirrors this file).
 */

/** Fixed epoch of all decayed values: 2020-01-01T00:00:00Z. Changing it invalidates stored state. */
export const DECAY_EPOCH_MS = Date.UTC(2020, 0, 1);

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/** Decay rate λ (per ms) of a half-life in ms. */
export function rate(halfLifeMs: number): number {
  return Math.LN2 / halfLifeMs;
}

/** Log-space contribution of weight `w` at event time `t`. */
export function logWeight(t: number, halfLifeMs: number, w = 1): number {
  return rate(halfLifeMs) * (t - DECAY_EPOCH_MS) + Math.log(w);
}

/** ln(e^a + e^b), stable; `null` stands for an empty sum. */
export function logAdd(a: number | null, b: number): number {
  if (a === null) return b;
  const hi = Math.max(a, b);
  const lo = Math.min(a, b);
  return hi + Math.log(1 + Math.exp(lo - hi));
}

/** Value at `now` of a stored log-space sum (0 when empty). */
export function decayedValue(stored: number | null, now: number, halfLifeMs: number): number {
  if (stored === null) return 0;
  return Math.exp(stored - rate(halfLifeMs) * (now - DECAY_EPOCH_MS));
}

/** Reference implementation: Σ w · 2^(-(now - t)/H) computed directly (for tests and checks). */
export function directDecayedSum(
  events: readonly { t: number; w?: number }[],
  now: number,
  halfLifeMs: number,
): number {
  return events.reduce((s, e) => s + (e.w ?? 1) * 2 ** (-(now - e.t) / halfLifeMs), 0);
}
