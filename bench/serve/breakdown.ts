/**
 * Step 5 of the serving benchmark: where the time of one request goes, in this process and
 * without load — candidate reads (`gatherCandidates`), feature rows (`featureVector`) and scoring
 * (a ScorerPool like the server's) — beside the API's own `took_ms` and the client-side latency
 * of the same request right after.
 */
import { featureVector } from '../../features/definitions.ts';
import { emptyArticleState } from '../../features/state.ts';
import {
  eventTimeNow,
  gatherCandidates,
  scaledCandidateConfig,
  type CandidateConfig,
} from '../../serving/candidates/index.ts';
import type { ScorerPool } from '../../serving/scoring/pool.ts';
import { CANDIDATES, K } from './options.ts';
import type { BenchRun } from './setup.ts';
import { mean, pct, round, say, sorted, summary } from './stats.ts';

/** The samples of the second pass (the first warms up). */
interface Phase {
  readonly gather: number[];
  readonly features: number[];
  readonly score: number[];
  readonly articles: number[];
  readonly roundTrips: number[];
  readonly client: number[];
  readonly took: number[];
  /** CPU of this process (µs) spent in the candidate reads and in building feature rows. */
  gatherCpu: number;
  featuresCpu: number;
}

/**
 * Two passes over up to 500 customers; the breakdown of the second, and the feature rows of the
 * first known customer with CANDIDATES candidates (real rows for the scoring ceiling), if any.
 */
export async function timeBreakdown(
  run: BenchRun,
  base: string,
  customers: readonly string[],
  pool: ScorerPool,
  width: number,
) {
  const phase: Phase = {
    gather: [],
    features: [],
    score: [],
    articles: [],
    roundTrips: [],
    client: [],
    took: [],
    gatherCpu: 0,
    featuresCpu: 0,
  };
  const cfg = scaledCandidateConfig(CANDIDATES, run.config.embeddings.enabled);
  const bench: Bench = { run, base, pool, cfg, names: pool.features, width };
  let realRows: Float32Array | null = null;
  const breakdownCustomers = customers.slice(0, 500);
  for (let pass = 0; pass < 2; pass++) {
    for (const customerId of breakdownCustomers) {
      const sample = pass === 1 ? phase : null;
      realRows = (await timeOne(bench, customerId, sample, realRows === null)) ?? realRows;
    }
  }
  const breakdown = summarise(phase);
  say(
    `breakdown (p50): candidate reads ${breakdown.gather_candidates.p50_ms} ms (${breakdown.cpu_ms_per_request.candidate_reads} ms CPU, ${breakdown.article_states_read_mean} article states), feature rows ${breakdown.feature_rows.p50_ms} ms, scoring ${breakdown.pool_score.p50_ms} ms; API took_ms ${breakdown.time_split_p50_ms.api_took_ms}, client ${breakdown.time_split_p50_ms.api_client_ms} ms`,
  );
  return { breakdown, realRows };
}

interface Bench {
  readonly run: BenchRun;
  readonly base: string;
  readonly pool: ScorerPool;
  readonly cfg: CandidateConfig;
  /** The features of the rows, in order (the pool's model's). */
  readonly names: readonly string[];
  /** Features per row (the model's). */
  readonly width: number;
}

/**
 * One customer ranked in process, then requested from the API; the samples go to `phase` when
 * given. With `wantRows`, its feature rows when it is a known customer with CANDIDATES
 * candidates; else null.
 */
async function timeOne(
  bench: Bench,
  customerId: string,
  phase: Phase | null,
  wantRows: boolean,
): Promise<Float32Array | null> {
  const { run, base, pool, names, width } = bench;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const set = await gatherCandidates(run.redis, run.keys, bench.cfg, {
    customerId,
    filters: {},
    allowRepurchase: false,
  });
  const t1 = performance.now();
  const c1 = process.cpuUsage(c0);
  const now = eventTimeNow(
    [set.customer.last, ...[...set.articles.values()].map((a) => a.last)],
    Date.now(),
  );
  const matrix = new Float32Array(set.candidates.length * width);
  set.candidates.forEach((c, i) => {
    matrix.set(
      featureVector(names, {
        customer: set.customer,
        article: set.articles.get(c.articleId) ?? emptyArticleState(c.articleId),
        now,
        candidate: c,
      }),
      i * width,
    );
  });
  const t2 = performance.now();
  const c2 = process.cpuUsage(c0);
  const rows =
    wantRows && set.candidates.length === CANDIDATES && !set.coldStart ? matrix.slice() : null;
  if (set.candidates.length > 0) await pool.score(matrix, set.candidates.length);
  const t3 = performance.now();
  // The same request through the API, right after (same customer, same moment).
  const t4 = performance.now();
  const res = await fetch(`${base}/v1/recommendations/${customerId}?k=${K}`);
  const body = (await res.json()) as { took_ms?: number };
  const t5 = performance.now();
  if (phase !== null) {
    phase.client.push(t5 - t4);
    phase.took.push(body.took_ms ?? NaN);
    phase.gatherCpu += c1.user + c1.system;
    phase.featuresCpu += c2.user + c2.system - (c1.user + c1.system);
    phase.gather.push(t1 - t0);
    phase.features.push(t2 - t1);
    phase.score.push(t3 - t2);
    phase.articles.push(set.articles.size);
    phase.roundTrips.push(set.roundTrips);
  }
  return rows;
}

function summarise(phase: Phase) {
  const p50 = (xs: number[]) => pct(sorted(xs), 0.5);
  const inHandler = p50(phase.gather) + p50(phase.features) + p50(phase.score);
  const n = Math.max(1, phase.gather.length);
  return {
    time_split_p50_ms: {
      candidate_reads: round(p50(phase.gather)),
      feature_rows: round(p50(phase.features)),
      scoring_pool_round_trip: round(p50(phase.score)),
      rest_of_handler: round(p50(phase.took) - inHandler),
      http_validation_json: round(p50(phase.client) - p50(phase.took)),
      api_took_ms: round(p50(phase.took)),
      api_client_ms: round(p50(phase.client)),
      note: 'medians (an approximate split): each customer is ranked in process (candidate reads, feature rows, ScorerPool round trip) and then requested from the API; rest_of_handler = API took_ms - the three, http_validation_json = client latency - took_ms; sequential, no load',
    },
    cpu_ms_per_request: {
      candidate_reads: round(phase.gatherCpu / 1000 / n),
      feature_rows: round(phase.featuresCpu / 1000 / n),
      note: 'CPU of the thread doing it (in the API: the main thread, which serialises every request)',
    },
    requests: phase.gather.length,
    article_states_read_mean: round(mean(phase.articles), 1),
    redis_round_trips_mean: round(mean(phase.roundTrips)),
    gather_candidates: summary(phase.gather),
    feature_rows: summary(phase.features),
    pool_score: summary(phase.score),
    note: 'sequential, in the bench process, same Redis, config and pool size as the API',
  };
}
