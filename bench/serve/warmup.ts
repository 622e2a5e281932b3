/**
 * Step 4 of the serving benchmark: every customer requested once, sequentially — the candidates
 * per request (CANDIDATES wanted), the sequential latency and the Redis commands per request.
 */
import type { RedisClient } from '../../common/redis.ts';
import { CANDIDATES } from './options.ts';
import type { Customers } from './prepare.ts';
import { mean, round, say, summary } from './stats.ts';

/** Commands Redis has processed (whole server). */
async function redisCommands(redis: RedisClient): Promise<number> {
  return Number(/total_commands_processed:(\d+)/.exec(await redis.info('stats'))?.[1]);
}

export async function warmUpPass(
  base: string,
  customers: Customers,
  redis: RedisClient,
  modelVersion: string,
) {
  const warm = {
    knownCands: [] as number[],
    coldCands: [] as number[],
    latency: [] as number[],
    took: [] as number[],
    other: 0,
  };
  const cmdsBefore = await redisCommands(redis);
  for (const [i, c] of customers.customers.entries()) {
    const t0 = performance.now();
    const res = await fetch(`${base}${customers.paths[i] ?? ''}`);
    const body = (await res.json()) as {
      candidates?: number;
      took_ms?: number;
      model_version?: string;
    };
    warm.latency.push(performance.now() - t0);
    if (res.status !== 200 || body.model_version !== modelVersion) warm.other++;
    warm.took.push(body.took_ms ?? NaN);
    (customers.coldSet.has(c) ? warm.coldCands : warm.knownCands).push(body.candidates ?? 0);
  }
  const cmdsAfter = await redisCommands(redis);
  // A benchmark of failures or of another ranker would measure something else: stop here.
  if (warm.other > 0) {
    throw new Error(
      `warm-up: ${warm.other} of ${customers.customers.length} requests were not answered 200 by ${modelVersion}; nothing to measure`,
    );
  }
  const short = (xs: number[]) => xs.filter((n) => n < CANDIDATES).length;
  const candidatesCheck = {
    known_mean: round(mean(warm.knownCands), 1),
    known_min: Math.min(...warm.knownCands),
    known_below_100: short(warm.knownCands),
    cold_mean: round(mean(warm.coldCands), 1),
    cold_below_100: short(warm.coldCands),
  };
  const requests = customers.customers.length;
  const sequential = {
    requests,
    client: summary(warm.latency),
    took_ms: summary(warm.took),
    redis_commands_per_request_whole_server: round((cmdsAfter - cmdsBefore) / requests, 1),
    not_ranked_by_model: warm.other,
  };
  say(
    `warm-up pass: candidates known mean ${candidatesCheck.known_mean} (${candidatesCheck.known_below_100} below ${CANDIDATES}), cold mean ${candidatesCheck.cold_mean}; sequential latency p50 ${sequential.client.p50_ms} ms (took_ms p50 ${sequential.took_ms.p50_ms}), ~${sequential.redis_commands_per_request_whole_server} Redis commands per request (whole server)`,
  );
  if (candidatesCheck.known_below_100 > 0 || candidatesCheck.cold_below_100 > 0) {
    say(
      `note: the store could not supply ${CANDIDATES} candidates for ${candidatesCheck.known_below_100} known and ${candidatesCheck.cold_below_100} cold customers`,
    );
  }
  return { candidatesCheck, sequential };
}
