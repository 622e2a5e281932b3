/**
 * The dedup horizon's cut, as the processors' scripts apply it (processors/lua/include/horizon.lua),
 * for the readers that decide ahead of them. A purchase dated before the cut of its customer's
 * newest applied event time is refused as late by the purchases and taste processors (and
 * dead-lettered, REC_ERR_LATE_EVENT); the HTTP ingest refuses it up front from the same rule.
 *
 * The processors record the horizon they run with in the namespace (`recordDedupHorizon`, at
 * start), so a reader uses theirs, not a setting of its own. A customer's newest event time only
 * grows, so a purchase before the cut read now is before every cut the processors will apply to
 * it: what is refused up front is a subset of what they would refuse.
 */
import type { RedisClient } from '../common/redis.ts';
import { DAY_MS } from './decay.ts';
import type { KeySpace } from './keys.ts';
import { pipelineValues } from './state.ts';

const HORIZON_FIELD = 'dedup_horizon_ms';

/**
 * The cut for a customer whose newest event time is `t`: the horizon before the start of the
 * quarter-horizon step holding `t` (horizon.lua's `horizon_cut`, the same doubles).
 */
export function horizonCut(t: number, horizonMs: number): number {
  const step = Math.max(1, Math.floor(horizonMs / 4));
  return Math.floor(t / step) * step - horizonMs;
}

/**
 * Why a purchase at `eventTime` of `customer` is late: its time, the cut it is before and what the
 * cut is (the processors' dead letter and the ingest's refusal each add what follows for them).
 */
export function lateReason(
  eventTime: number,
  customer: string,
  cut: number,
  horizonMs: number,
): string {
  return (
    `event_time ${new Date(eventTime).toISOString()} is before ${new Date(cut).toISOString()}, ` +
    `the dedup horizon's cut (${horizonMs / DAY_MS} days, in quarter-horizon steps) of ` +
    `customer "${customer}"'s newest purchase: its id may have been forgotten, so a second ` +
    'publish of it could not be told from a new event'
  );
}

/** Record the horizon the namespace's processors refuse late purchases by (at their start). */
export async function recordDedupHorizon(
  redis: RedisClient,
  keys: KeySpace,
  horizonMs: number,
): Promise<void> {
  await redis.hset(keys.processorSettings, HORIZON_FIELD, String(horizonMs));
}

/** Where the processors' cut stands for some customers, and the horizon it comes from. */
export interface LateCuts {
  readonly horizonMs: number;
  /** customer id -> the cut; customers without a purchase applied are absent */
  readonly cuts: ReadonlyMap<string, number>;
}

/**
 * The cuts of `customers` (one pipelined round trip: the recorded horizon and each customer's
 * newest event time); null when no processors have recorded a horizon in this namespace.
 */
export async function readLateCuts(
  redis: RedisClient,
  keys: KeySpace,
  customers: readonly string[],
): Promise<LateCuts | null> {
  const ids = [...new Set(customers)];
  const pipe = redis.pipeline();
  pipe.hget(keys.processorSettings, HORIZON_FIELD);
  for (const c of ids) pipe.hget(keys.customer(c).state, 'last');
  const [horizon, ...lasts] = pipelineValues(await pipe.exec());
  const horizonMs = Number(horizon);
  if (horizon === null || !Number.isFinite(horizonMs) || horizonMs <= 0) return null;
  const cuts = new Map<string, number>();
  ids.forEach((c, i) => {
    const last = lasts[i];
    if (typeof last !== 'string') return;
    const t = Number(last);
    if (Number.isFinite(t)) cuts.set(c, horizonCut(t, horizonMs));
  });
  return { horizonMs, cuts };
}
