/**
 * Step 6 of the serving benchmark: the ceilings the API is measured against — bare `session.run`
 * on CANDIDATES real feature rows (an in-process session, one thread), the same model through a
 * ScorerPool at the load's concurrency, and Redis (PING, and a pipelined read of CANDIDATES
 * articles' states).
 */
import { availableParallelism } from 'node:os';
import { Tensor } from 'onnxruntime-node';
import { readArticles } from '../../features/state.ts';
import type { LoadedModel } from '../../models/model-meta.ts';
import { createSession } from '../../models/onnx.ts';
import type { ScorerPool } from '../../serving/scoring/pool.ts';
import { CANDIDATES, WORKERS } from './options.ts';
import type { BenchRun } from './setup.ts';
import { say, summary } from './stats.ts';

/**
 * 2,000 bare `session.run` calls (after 200 to warm up) on `input` (CANDIDATES rows);
 * `ceiling_rps` = scoring threads x 1000 / their p50.
 */
export async function sessionCeiling(model: LoadedModel, input: Float32Array) {
  const rows = CANDIDATES;
  const width = model.meta.features.length;
  const session = await createSession(model.bytes);
  const tensor = new Tensor('float32', input, [rows, width]);
  const feeds = { [model.meta.onnx_input]: tensor };
  const fetches = [model.meta.onnx_output];
  for (let i = 0; i < 200; i++) await session.run(feeds, fetches);
  const runs: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t0 = performance.now();
    await session.run(feeds, fetches);
    runs.push(performance.now() - t0);
  }
  await session.release();
  const runStats = summary(runs);
  const scoringThreads = Math.min(WORKERS, availableParallelism());
  const ceilingRps = (scoringThreads * 1000) / runStats.p50_ms;
  say(
    `session.run on ${rows} rows: p50 ${runStats.p50_ms} ms, p99 ${runStats.p99_ms} ms -> ceiling ${Math.round(ceilingRps)} req/s (${scoringThreads} threads)`,
  );
  return { rows, runStats, scoringThreads, ceilingRps };
}

/**
 * The pool's workers' own `session.run` (1,000 runs), then the pool's throughput for 3 s at
 * `connections` concurrent requests of `input`.
 */
export async function poolCeiling(pool: ScorerPool, input: Float32Array, connections: number) {
  const rows = CANDIDATES;
  const workerRuns = summary(await pool.benchRun(rows, 1000));
  const poolSeconds = 3;
  let poolDone = 0;
  const tPool = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() - tPool < poolSeconds * 1000) {
        await pool.score(input.slice(), rows);
        poolDone++;
      }
    }),
  );
  const poolRps = poolDone / ((performance.now() - tPool) / 1000);
  return { workerRuns, poolRps };
}

/** Redis PING (2,000 after 200) and a pipelined read of CANDIDATES trending articles' states. */
export async function redisCeilings(run: BenchRun) {
  const { redis, keys } = run;
  for (let i = 0; i < 200; i++) await redis.ping();
  const pings: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t0 = performance.now();
    await redis.ping();
    pings.push(performance.now() - t0);
  }
  const articleIds = (await redis.zrevrange(keys.trending.global('7d'), 0, CANDIDATES - 1)).slice(
    0,
    CANDIDATES,
  );
  const reads: number[] = [];
  for (let i = 0; i < 520; i++) {
    const t0 = performance.now();
    await readArticles(redis, keys, articleIds);
    if (i >= 20) reads.push(performance.now() - t0);
  }
  const pingStats = summary(pings);
  const readStats = summary(reads);
  say(
    `Redis: PING p50 ${pingStats.p50_ms} ms; pipelined read of ${articleIds.length} article states p50 ${readStats.p50_ms} ms`,
  );
  return { articleIds, pingStats, readStats };
}
