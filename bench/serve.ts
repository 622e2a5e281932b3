/**
 * `npm run bench:serve [-- --data <dir>] [--duration S] [--rates a,b,c] [--connections N]
 *   [--trees N] [--known N] [--cold-share F] [--burst] [--processes N] [--cpu-prof <dir>]`
 * (defaults: hm-sample, 10 s per rate (and for the freshness and overload runs), rates
 * 25,50,100,300,600, 16 connections, 500 trees, 1,000 known customers, 20 % cold requests, one
 * API process: `--processes` is the API's SERVING_PROCESSES; `--cpu-prof <dir>` runs the API under
 * node's `--cpu-prof`, one .cpuprofile per thread written to <dir> when it stops)
 *
 * Serving benchmark on the real stack, in one run, on fresh topics and a fresh Redis namespace:
 *   1. loads an H&M-layout folder (default ../shared/data/hm-sample) into topics
 *      `bench-serve-<id>.*` and processes it with the real processors (`processors/processors-cli.ts` as a
 *      child process: serving/ may not import processors/) until every consumer group's lag is 0;
 *   2. builds, registers and activates the fixture ranker (500 trees, depth 6, every feature of the
 *      API's feature set), with the project's Python (`REC_PYTHON`, else `.venv`, created or
 *      brought up to date from training/requirements.txt as the demo does on a fresh clone);
 *   3. starts the API as a child process (`serving/serve-cli.ts`, 2 scorer workers,
 *      SERVING_MAX_CANDIDATES=100, SERVING_ALLOW_FIXTURE_MODEL=true: the fixture measures the
 *      cost of a 500-tree model, and serving refuses untrained models without the opt-in) and
 *      waits until it is ready and ranks with that model;
 *   4. customers: up to 1,000 known ones (from the store) and cold ones (random ids never seen),
 *      80 / 20 by default, requested round robin (`k=12`); a sequential warm-up pass over all of
 *      them checks the candidates per request (100 wanted);
 *   5. where the time of one request goes, in process and without load: candidate reads
 *      (`gatherCandidates`), feature rows (`featureVector`), scoring (a ScorerPool like the
 *      server's), against the API's own `took_ms` and the client-side latency;
 *   6. the ceiling: bare `session.run` on 100 real feature rows (an in-process session, one thread),
 *      `ceiling_rps = scoring threads x 1000 / p50`; the same model through a ScorerPool of 2 at
 *      concurrency 16 (`pool_ceiling_rps`); Redis round trip (PING) and a pipelined read of 100
 *      candidates' article states;
 *   7. load: autocannon at each `--rates` value; then the search for the highest sustainable rate
 *      (1.25x the last rate each step while the last kept up: p99 <= 25 ms and at least 98 % of
 *      the offered requests answered); then one run without a rate limit (16 closed-loop
 *      connections: with the default admission limit of 8, mostly refusals: a stress figure);
 *   8. freshness (serve/freshness.ts): the processors run again, the API under load at 300 req/s;
 *      one at a time, a purchase is published to Kafka (the real producer) by a known customer of
 *      a trending article not in their current recommendations, and their recommendations with
 *      `explain=true` are polled every 10 ms until the features show it (`c_purchases` went up):
 *      publish -> visible in the API's answer;
 *   9. overload (serve/overload.ts): twice the highest sustainable rate (`max_rps_p99_25ms`, else
 *      the unthrottled rps) offered open loop for `--duration` seconds, requests sent on schedule
 *      whatever the answers (up to 512 connections, 5-s timeout), each answer classed.
 *
 * Pacing: autocannon's rate limiter lets each connection send its per-second quota back to back
 * at the start of every second, all connections' seconds aligned, so `overallRate` alone is a
 * burst of `connections` concurrent requests every second. By default each connection of a rate
 * run is therefore its own autocannon instance, the instances started 1000 / connections ms apart
 * (their windows staggered over the second); `--burst` uses one instance with `overallRate`.
 * Coordinated-omission "correction" is off (autocannon 8 back-fills with a 1 ms interval
 * whatever the rate); latencies are autocannon's per-response hrtime measurements, kept exactly
 * (its histogram rounds to whole ms).
 *
 * Each run also reports the CPU used by the API process (and by its main thread, the one running
 * the event loop, from /proc/<pid>/task), the load generator (this process), Redis and, from
 * /proc/stat, everything else on the machine (`other_cpu_cores`: other tenants of a shared machine
 * make the figures noisy); and the API's own figures from its /metrics, scraped before and after:
 * the p50 / p99 of each stage of a ranked request (`rec_serving_stage_duration_seconds`,
 * estimated within its buckets as Prometheus' histogram_quantile does) and the Redis commands its
 * client sent per recommendation request (`rec_serving_redis_commands_total`).
 *
 * The JSON line, besides every run's figures (`per_rate`, `max_run`, `freshness`, `overload`):
 *   rps, p50_ms, p99_ms, max_ms  answered (2xx) rps of the unthrottled run (`responses_rps`: every
 *                                response, 503s of admission control included); latencies of the highest rate whose
 *                                p99 <= 10 ms, else of the lowest (`latency_rule`)
 *   errors                       connection errors, timeouts and non-2xx over the rate runs, the
 *                                search steps and the unthrottled one
 *   ceiling_rps                  the scoring ceiling (step 6)
 *   p99_ms_at_300rps             p99 of the 300 req/s run (null when 300 is not among --rates)
 *   max_rps_p99_25ms             highest answered (2xx) rps of a run whose p99 <= 25 ms (rate runs,
 *                                search steps, the unthrottled one); null when none;
 *                                `ratio_sustainable_to_ceiling` = it / ceiling_rps
 *   cpu_ms_per_request, cpu_bound_rps
 *                                CPU per answered request of the API (and its main thread), Redis
 *                                and the load generator in that run, and cores x 1000 / their
 *                                total: the rate at which they would fill the machine
 *   candidates_ms, features_ms, scoring_ms, http_ms
 *                                { p50, p99 } of each stage in the API (ms): the candidate reads,
 *                                building the feature rows, scoring (scorer pool round trip, or the
 *                                heuristic, and the sort), and the rest of the request in the
 *                                server (routing, validation, middleware, answer and JSON)
 *   redis_commands_per_request   commands the API's Redis client sent per recommendation request
 *   main_thread_cpu_ms_per_request  CPU of the API's main thread per request
 *                                (these six from the 300 req/s run, else the headline's:
 *                                `per_request_figures_from_rate`)
 *   freshness_p50_ms, freshness_p99_ms, freshness_probes
 *                                publish -> visible in the API's answer (step 8); how many probes
 *   overload_rps                 the rate offered in step 9 (`overload_basis` says from what)
 *   overload_503                 answers 503 (refused by admission control)
 *   overload_5xx_non503          other 5xx answers, connection errors and timeouts
 *   overload_p99_ms              p99 of the accepted (2xx) requests; `overload_accepted_rps`
 *   overload_degraded            of those, answers the API served degraded (its own count): the
 *                                trending cache when its Redis commands timed out, the heuristic
 *                                after a ranker failure
 *
 * Progress on stderr, one JSON line on stdout at the end. Child processes, topics, consumer groups
 * and the namespace's keys are removed afterwards.
 *
 * The steps are in bench/serve/, one module each (prepare.ts: 1-3, warmup.ts, breakdown.ts,
 * ceilings.ts, load.ts, freshness.ts, overload.ts), with the run's resources (setup.ts), options (options.ts) and the
 * measuring helpers (stats.ts, server-metrics.ts, cpu.ts, children.ts, autocannon.ts). Being a
 * benchmark of the whole stack, they may import from any folder of the project.
 */
import { availableParallelism, loadavg } from 'node:os';
import { ScorerPool } from '../serving/scoring/pool.ts';
import { timeBreakdown } from './serve/breakdown.ts';
import { poolCeiling, redisCeilings, sessionCeiling } from './serve/ceilings.ts';
import { freshnessRun } from './serve/freshness.ts';
import { loadRunner, loadRuns, type LoadRun, type LoadTarget } from './serve/load.ts';
import {
  CANDIDATES,
  K,
  P99_TARGET_MS,
  STOREFRONT_RATE,
  SUSTAINABLE_P99_MS,
  WORKERS,
  checkOptions,
  parseOptions,
  type BenchOptions,
} from './serve/options.ts';
import { overloadRun } from './serve/overload.ts';
import { buildModel, loadAndProcess, pickCustomers, startApi } from './serve/prepare.ts';
import { closeRun, openRun } from './serve/setup.ts';
import { round, say } from './serve/stats.ts';
import { warmUpPass } from './serve/warmup.ts';

const opts = parseOptions();

async function main(): Promise<void> {
  checkOptions(opts);
  const loadavgAtStart = loadavg().map((x) => round(x));
  const run = await openRun();
  try {
    const processingS = await loadAndProcess(run, opts.data);
    const model = await buildModel(run, opts.trees);
    const width = model.meta.features.length;
    const customers = await pickCustomers(run, opts);
    const { api, base } = await startApi(
      run,
      model,
      customers.known[0] ?? 'nobody',
      opts.processes,
      opts.cpuProf,
    );

    const warm = await warmUpPass(base, customers, run.redis, model.meta.version);

    const pool = await ScorerPool.create({ model, size: WORKERS });
    const { breakdown, realRows } = await timeBreakdown(
      run,
      base,
      customers.customers,
      pool,
      width,
    );

    const input100 =
      realRows ?? Float32Array.from({ length: CANDIDATES * width }, () => Math.random() * 10);
    const session = await sessionCeiling(model, input100);
    const poolRun = await poolCeiling(pool, input100, opts.connections);
    await pool.close();
    say(
      `ScorerPool(${WORKERS}) at concurrency ${opts.connections}: ${Math.round(poolRun.poolRps)} req/s (worker session.run p50 ${poolRun.workerRuns.p50_ms} ms)`,
    );
    const redisRun = await redisCeilings(run);

    const redisPid = Number(/process_id:(\d+)/.exec(await run.redis.info('server'))?.[1]);
    const apiPid = api.proc.pid ?? -1;
    const ours = new Set([process.pid, apiPid, redisPid]);
    const target: LoadTarget = {
      base,
      redis: run.redis,
      paths: customers.paths,
      connections: opts.connections,
      burst: opts.burst,
      ours,
      apiPid,
    };
    const load = await loadRuns(target, opts.rates, opts.duration, SUSTAINABLE_P99_MS);

    const freshness = await freshnessRun(
      { run, base, customers, loadRun: loadRunner(target), ours },
      opts.duration,
    );

    const sustainable = maxSustainable(load);
    const overloadRate = Math.max(1, Math.round(2 * sustainable.rps));
    say(
      `overload: ${overloadRate} req/s offered open loop for ${opts.duration} s (2 x ${sustainable.rps} req/s, ${sustainable.basis})`,
    );
    const overload = await overloadRun(
      { base, paths: customers.paths, apiPid },
      overloadRate,
      opts.duration,
    );

    console.log(
      JSON.stringify(
        resultLine({
          opts,
          model: { version: model.meta.version, trees: model.meta.trees, width },
          customers,
          processingS,
          loadavgAtStart,
          warm,
          breakdown,
          session,
          poolRun,
          redisRun,
          load,
          freshness,
          sustainable,
          overload,
        }),
      ),
    );
  } finally {
    await closeRun(run);
  }
}

interface Results {
  readonly opts: BenchOptions;
  readonly model: { readonly version: string; readonly trees: number; readonly width: number };
  readonly customers: Awaited<ReturnType<typeof pickCustomers>>;
  readonly processingS: number;
  readonly loadavgAtStart: number[];
  readonly warm: Awaited<ReturnType<typeof warmUpPass>>;
  readonly breakdown: Awaited<ReturnType<typeof timeBreakdown>>['breakdown'];
  readonly session: Awaited<ReturnType<typeof sessionCeiling>>;
  readonly poolRun: Awaited<ReturnType<typeof poolCeiling>>;
  readonly redisRun: Awaited<ReturnType<typeof redisCeilings>>;
  readonly load: { perRate: LoadRun[]; search: LoadRun[]; maxRun: LoadRun; otherMax: number };
  readonly freshness: Awaited<ReturnType<typeof freshnessRun>>;
  readonly sustainable: ReturnType<typeof maxSustainable>;
  readonly overload: Awaited<ReturnType<typeof overloadRun>>;
}

/**
 * The highest answered (2xx) rps of a run whose p99 is within SUSTAINABLE_P99_MS — a rate run, a
 * search step or the unthrottled run; admission control's refusals are not counted as throughput
 * but do not disqualify a run (they are how latency stays bounded) — else the unthrottled run's
 * answered rps. `run` is the run it comes from (its CPU per request is the budget reported).
 */
function maxSustainable(load: Results['load']) {
  const runs = [...load.perRate, ...load.search, load.maxRun].filter(
    (r) => r.p99_ms <= SUSTAINABLE_P99_MS,
  );
  const best = runs.reduce<LoadRun | null>(
    (b, r) => (b === null || r.answered_rps > b.answered_rps ? r : b),
    null,
  );
  return best === null
    ? {
        rps: load.maxRun.answered_rps,
        within: null,
        run: load.maxRun,
        basis: `no run had p99 <= ${SUSTAINABLE_P99_MS} ms: the unthrottled answered rps`,
      }
    : {
        rps: best.answered_rps,
        within: best.answered_rps,
        run: best,
        basis: `max_rps_p99_${SUSTAINABLE_P99_MS}ms (the ${best.rate === 'max' ? 'unthrottled' : `${best.rate}/s`} run)`,
      };
}

/**
 * CPU per answered request over every process a request touches, in the run that gave
 * `max_rps_p99_25ms`, and the rate at which they would fill every core: what bounds throughput
 * on a machine where the load generator and Redis share the cores with the API.
 */
function cpuBudget(run: LoadRun) {
  const per = (cores: number) => round((cores * 1000) / Math.max(run.answered_rps, 1e-9), 3);
  const total = per(run.server_cpu_cores + run.redis_cpu_cores + run.loadgen_cpu_cores);
  return {
    cpu_ms_per_request: {
      rate: run.rate,
      api: per(run.server_cpu_cores),
      api_main_thread: run.main_thread_cpu_ms_per_request,
      redis: per(run.redis_cpu_cores),
      load_generator: per(run.loadgen_cpu_cores),
      total,
    },
    cpu_bound_rps: Math.round((availableParallelism() * 1000) / Math.max(total, 1e-9)),
  };
}

/**
 * The JSON line: the headline (rps of the unthrottled run; p50 / p99 / max of the highest rate
 * whose p99 is within the target, else of the lowest), the ceilings and every run.
 */
function resultLine(r: Results) {
  const { opts, customers, session, poolRun, redisRun } = r;
  const { perRate, search, maxRun, otherMax } = r.load;
  const { known, cold, knownAll } = customers;
  const { rows, runStats, scoringThreads, ceilingRps } = session;
  const within = perRate.filter((x) => x.p99_ms <= P99_TARGET_MS);
  const headline = within.at(-1) ?? perRate[0];
  if (headline === undefined) throw new Error('no rate run');
  const allRuns = [...perRate, ...search, maxRun];
  const candidatesAll = allRuns.flatMap((x) =>
    Number.isFinite(x.candidates_mean) ? [x.candidates_mean * x.requests] : [],
  );
  const requestsAll = allRuns.reduce((s, x) => s + x.requests, 0);
  const at300 = perRate.find((x) => x.rate === STOREFRONT_RATE) ?? null;
  // Per-stage and per-request figures: of the STOREFRONT_RATE run, else of the headline's.
  const figures = at300 ?? headline;
  const { freshness, overload } = r;
  const stage = (name: keyof typeof figures.stages_ms) => figures.stages_ms[name];
  return {
    bench: 'serve',
    candidates: CANDIDATES,
    rps: maxRun.answered_rps,
    responses_rps: maxRun.rps,
    p50_ms: headline.p50_ms,
    p99_ms: headline.p99_ms,
    max_ms: headline.max_ms,
    errors: allRuns.reduce((s, x) => s + x.errors, 0),
    /** 200s ranked by the heuristic after a ranker failure / timeout (server-side count). */
    degraded: allRuns.reduce((s, x) => s + x.degraded, 0),
    ceiling_rps: Math.round(ceilingRps),
    p99_ms_at_300rps: at300?.p99_ms ?? null,
    max_rps_p99_25ms: r.sustainable.within,
    ratio_sustainable_to_ceiling: round((r.sustainable.within ?? 0) / ceilingRps, 3),
    ...cpuBudget(r.sustainable.run),
    candidates_ms: stage('candidates'),
    features_ms: stage('features'),
    scoring_ms: stage('scoring'),
    http_ms: stage('http'),
    redis_commands_per_request: figures.redis_commands_per_request,
    main_thread_cpu_ms_per_request: figures.main_thread_cpu_ms_per_request,
    per_request_figures_from_rate: figures.rate,
    freshness_p50_ms: freshness.p50_ms,
    freshness_p99_ms: freshness.p99_ms,
    freshness_probes: freshness.probes,
    overload_rps: overload.rate,
    overload_503: overload.status_503,
    overload_5xx_non503: overload.status_5xx_other + overload.connection_errors + overload.timeouts,
    overload_p99_ms: overload.accepted.p99_ms,
    overload_degraded: overload.server.degraded,
    overload_accepted_rps: overload.accepted_rps,
    overload_basis: r.sustainable.basis,
    redis_rtt_ms: redisRun.pingStats.p50_ms,
    latency_from_rate: headline.rate,
    latency_rule: `p50/p99/max of the highest rate whose p99 <= ${P99_TARGET_MS} ms, else of the lowest rate; rps of the unthrottled run; errors over every run (connection errors, timeouts, non-2xx)`,
    p99_target_met: within.length > 0,
    ratio_to_ceiling: round(maxRun.answered_rps / ceilingRps, 3),
    ceiling_formula: `ceiling_rps = scoring threads (${scoringThreads}: ${WORKERS} workers on ${availableParallelism()} cores) x 1000 / p50 of bare session.run on ${rows} rows (${runStats.p50_ms} ms)`,
    session_run_ms: runStats,
    worker_session_run_p50_ms: poolRun.workerRuns.p50_ms,
    pool_ceiling_rps: Math.round(poolRun.poolRps),
    ratio_to_pool_ceiling: round(maxRun.answered_rps / poolRun.poolRps, 3),
    redis_ping_ms: redisRun.pingStats,
    redis_candidate_read_ms: { articles: redisRun.articleIds.length, ...redisRun.readStats },
    candidates_mean: round(candidatesAll.reduce((s, x) => s + x, 0) / Math.max(1, requestsAll), 1),
    candidates_check: r.warm.candidatesCheck,
    cold_share: round(cold.length / customers.customers.length, 3),
    customers: { known: known.length, cold: cold.length, in_store: knownAll.length },
    per_rate: perRate,
    search,
    max_run: maxRun,
    freshness,
    overload,
    sequential: r.warm.sequential,
    breakdown: r.breakdown,
    pacing: opts.burst
      ? 'one autocannon instance per run with overallRate (bursts of all connections each second)'
      : `rate runs: ${opts.connections} single-connection autocannon instances, their 1-s rate windows staggered by ${round(1000 / opts.connections, 1)} ms; max run: one instance, ${opts.connections} connections`,
    latency_source: 'autocannon per-response hrtime, 2xx only, coordinated-omission correction off',
    connections: opts.connections,
    duration_s: opts.duration,
    k: K,
    model: { version: r.model.version, trees: r.model.trees, depth: 6, features: r.model.width },
    scorer_workers: WORKERS,
    api_processes: opts.processes,
    cores: availableParallelism(),
    processing_s: round(r.processingS, 1),
    loadavg_at_start: r.loadavgAtStart,
    other_cpu_cores_max: otherMax,
    data: opts.data,
  };
}

main().catch((err: unknown) => {
  console.error(
    `bench:serve failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
  process.exit(1);
});
