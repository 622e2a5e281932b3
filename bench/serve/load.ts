/**
 * Step 7 of the serving benchmark: autocannon against the API at each `--rates` value, then one
 * run without a rate limit; per run the client latencies (per-response hrtime, 2xx only), the
 * API's `took_ms` and its own metrics (stage times, Redis commands per request), and the CPU of
 * the API (and of its main thread), the load generator, Redis and everything else. Rate runs are paced as staggered single-connection instances unless `--burst`
 * (why: the Pacing paragraph of bench/serve.ts).
 */
import { availableParallelism } from 'node:os';
import type { RedisClient } from '../../common/redis.ts';
import { autocannon, type AcRequest, type AcResult } from './autocannon.ts';
import { busiest, hostCpu, mainThreadTicks, processTicks, redisCpuSeconds } from './cpu.ts';
import { STAGES, scrape, serverDelta } from './server-metrics.ts';
import { mean, round, say, sleep, summary } from './stats.ts';

export interface LoadTarget {
  /** The API's base URL. */
  readonly base: string;
  readonly redis: RedisClient;
  /** Request paths, requested round robin. */
  readonly paths: readonly string[];
  readonly connections: number;
  /** One autocannon instance with `overallRate` per rate run, instead of staggered ones. */
  readonly burst: boolean;
  /** Processes not counted as "other" (this one, the API, Redis; the processors while running). */
  readonly ours: ReadonlySet<number>;
  /** The API's process id (its main thread's CPU is measured, see `mainThreadTicks`). */
  readonly apiPid: number;
}

/** A function running the load at a rate (null: unthrottled) for `duration` seconds. */
export function loadRunner(target: LoadTarget) {
  const { base, redis } = target;
  let next = 0;
  const onResponse = { took: [] as number[], cands: [] as number[] };
  const request: AcRequest = {
    method: 'GET',
    setupRequest: (req) => {
      req.path = target.paths[next++ % target.paths.length] ?? '/';
      return req;
    },
    onResponse: (status, body) => {
      if (status !== 200) return;
      const took = /"took_ms":([\d.]+)/.exec(body)?.[1];
      const cands = /"candidates":(\d+)/.exec(body)?.[1];
      if (took !== undefined) onResponse.took.push(Number(took));
      if (cands !== undefined) onResponse.cands.push(Number(cands));
    },
  };

  return async (rate: number | null, duration: number) => {
    onResponse.took = [];
    onResponse.cands = [];
    const latencies: number[] = [];
    const before = await scrape(base);
    const redisCpu0 = await redisCpuSeconds(redis);
    const cpu0 = process.cpuUsage();
    const host0 = hostCpu();
    const procs0 = processTicks();
    const main0 = mainThreadTicks(target.apiPid);
    const t0 = performance.now();
    const parts = await fire(target, request, rate, duration, latencies);
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const host1 = hostCpu();
    const main1 = mainThreadTicks(target.apiPid);
    const procs1 = processTicks();
    const redisCpu = (await redisCpuSeconds(redis)) - redisCpu0;
    const after = await scrape(base);
    const server = serverDelta(before, after, wall);
    const rps = parts.reduce((s, p) => s + p.responses / p.result.duration, 0);
    const loadgenCores = (cpu.user + cpu.system) / 1e6 / wall;
    const redisCores = redisCpu / wall;
    const hostCores =
      host0 === null || host1 === null
        ? NaN
        : ((host1.busy - host0.busy) / Math.max(1, host1.total - host0.total)) *
          availableParallelism();
    const responses = parts.reduce((s, p) => s + p.responses, 0);
    const errors = parts.reduce((s, p) => s + p.result.errors, 0);
    const non2xx = parts.reduce((s, p) => s + p.result.non2xx, 0);
    const first = parts[0]?.result;
    return {
      rate: rate ?? 'max',
      rps: round(rps, 1),
      // Answers that ranked (2xx): a 503 of admission control is a response, not throughput.
      answered_rps: round((rps * latencies.length) / Math.max(1, responses), 1),
      ...summary(latencies),
      errors: errors + non2xx,
      non2xx,
      timeouts: parts.reduce((s, p) => s + p.result.timeouts, 0),
      requests: latencies.length,
      took_ms: summary(onResponse.took),
      candidates_mean: round(mean(onResponse.cands), 1),
      ...server,
      server_cpu_ms_per_request: round((server.server_cpu_cores * 1000) / Math.max(rps, 1e-9)),
      // Every process the request touches, per response: the API (main thread and scorer
      // threads), Redis and the load generator.
      total_cpu_ms_per_request: round(
        ((server.server_cpu_cores + redisCores + loadgenCores) * 1000) / Math.max(rps, 1e-9),
      ),
      main_thread_cpu_ms_per_request: round(((main1 - main0) * 10) / Math.max(1, responses)),
      loadgen_cpu_cores: round(loadgenCores),
      redis_cpu_cores: round(redisCores),
      host_cpu_cores: round(hostCores),
      other_cpu_cores: round(hostCores - server.server_cpu_cores - loadgenCores - redisCores),
      other_busiest: busiest(procs0, procs1, wall, target.ours),
      ...(parts.length === 1 && first
        ? {
            autocannon: {
              requests_average: first.requests.average,
              latency_p50: first.latency.p50,
              latency_p99: first.latency.p99,
              latency_max: first.latency.max,
            },
          }
        : {}),
    };
  };
}

/** The figures of one load run. */
export type LoadRun = Awaited<ReturnType<ReturnType<typeof loadRunner>>>;

/**
 * The autocannon instances of one run, each with its result and responses; the latencies of the
 * 2xx responses go to `latencies`.
 */
async function fire(
  target: LoadTarget,
  request: AcRequest,
  rate: number | null,
  duration: number,
  latencies: number[],
): Promise<{ result: AcResult; responses: number }[]> {
  const start = (connections: number, overallRate: number | undefined, delayMs: number) =>
    sleep(delayMs).then(async () => {
      let responses = 0;
      const instance = autocannon({
        url: target.base,
        connections,
        duration,
        requests: [request],
        timeout: 10,
        ...(overallRate === undefined ? {} : { overallRate, ignoreCoordinatedOmission: true }),
      });
      instance.on('response', (_client, status, _bytes, ms) => {
        responses++;
        if (status >= 200 && status < 300) latencies.push(ms);
      });
      const result = await instance;
      return { result, responses };
    });
  if (rate === null || target.burst) {
    return [await start(target.connections, rate ?? undefined, 0)];
  }
  const slices = Math.min(target.connections, rate);
  return Promise.all(
    Array.from({ length: slices }, (_, i) =>
      start(1, Math.floor(rate / slices) + (i < rate % slices ? 1 : 0), (i * 1000) / slices),
    ),
  );
}

/** A run's figures in one progress line. */
export const describeRun = (r: LoadRun) =>
  `  -> ${r.rps} req/s, p50 ${r.p50_ms} / p99 ${r.p99_ms} / max ${r.max_ms} ms, errors ${r.errors}, took_ms p50 ${r.took_ms.p50_ms} p99 ${r.took_ms.p99_ms}, answered ${r.answered_rps}/s, server cpu ${r.server_cpu_cores} cores (${r.server_cpu_ms_per_request} ms/request, main thread ${r.main_thread_cpu_ms_per_request}; all processes ${r.total_cpu_ms_per_request}), load generator ${r.loadgen_cpu_cores}, redis ${r.redis_cpu_cores}, other processes ${r.other_cpu_cores}${r.other_busiest.length > 0 ? ` (${r.other_busiest.map((p) => `${p.name} ${p.cores}`).join(', ')})` : ''}\n     stages p50/p99 ms: ${STAGES.map((st) => `${st} ${r.stages_ms[st].p50 ?? '-'}/${r.stages_ms[st].p99 ?? '-'}`).join(', ')}; ${r.redis_commands_per_request ?? '-'} Redis commands/request; event loop delay p99 ${r.server_eventloop_delay_p99_ms} ms`;

/** Answered rps of a run may not trail its offered rate by more than this share (refusals, lag). */
const SEARCH_SHORTFALL = 0.02;
/** Each search step offers this much more than the last. */
const SEARCH_STEP = 1.25;
/** Search steps at most, after the last `--rates` value. */
const SEARCH_STEPS = 8;

/** A rate run that kept up: p99 within `p99Ms` and (nearly) every offered request answered. */
export function keptUp(r: LoadRun, p99Ms: number): boolean {
  return (
    typeof r.rate === 'number' &&
    r.p99_ms <= p99Ms &&
    r.answered_rps >= r.rate * (1 - SEARCH_SHORTFALL)
  );
}

/**
 * A 3-s unthrottled warm-up, a run at each rate, then the search for the highest sustainable
 * rate: from the highest `--rates` value, rates SEARCH_STEP x higher each, as long as the last
 * one kept up (`keptUp` within `searchP99Ms`), at most SEARCH_STEPS; then one unthrottled run. The
 * unthrottled run offers whatever `connections` closed-loop clients can send: with more clients
 * than the API admits, most of it is refused (503s are cheap but not free), so it is a stress
 * figure, not the sustainable one; the search gives that. Returns the runs and the most CPU other
 * processes used in one (warned about above 0.25 cores).
 */
export async function loadRuns(
  target: LoadTarget,
  rates: readonly number[],
  duration: number,
  searchP99Ms: number,
): Promise<{ perRate: LoadRun[]; search: LoadRun[]; maxRun: LoadRun; otherMax: number }> {
  const loadRun = loadRunner(target);
  const { connections } = target;
  say(`autocannon warm-up (3 s, ${connections} connections, unthrottled)`);
  await loadRun(null, 3);
  const perRate: LoadRun[] = [];
  for (const rate of rates) {
    say(`rate ${rate}/s for ${duration} s (${connections} connections)`);
    const r = await loadRun(rate, duration);
    perRate.push(r);
    say(describeRun(r));
  }
  const search: LoadRun[] = [];
  let last = perRate.at(-1);
  while (last !== undefined && keptUp(last, searchP99Ms) && search.length < SEARCH_STEPS) {
    const rate = Math.round(Number(last.rate) * SEARCH_STEP);
    say(`search: rate ${rate}/s for ${duration} s (the last kept up: p99 <= ${searchP99Ms} ms)`);
    last = await loadRun(rate, duration);
    search.push(last);
    say(describeRun(last));
  }
  say(`max throughput for ${duration} s (${connections} connections, no rate limit)`);
  const maxRun = await loadRun(null, duration);
  say(describeRun(maxRun));

  const otherMax = Math.max(...[...perRate, ...search, maxRun].map((r) => r.other_cpu_cores));
  if (otherMax > 0.25) {
    say(
      `warning: other processes used up to ${otherMax} of ${availableParallelism()} cores during the runs; the figures are lower than on a quiet machine`,
    );
  }
  return { perRate, search, maxRun, otherMax };
}
