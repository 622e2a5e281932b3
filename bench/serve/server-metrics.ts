/**
 * The API's own figures over a load run: its Prometheus `/metrics` scraped before and after, and
 * the difference (requests, mean latency, the p99 histogram bound, the p50 / p99 of each stage of
 * a ranked request, round trips and Redis commands per request, CPU, the event loop's delay,
 * degraded answers, ranker errors).
 */
import { EVENT_LOOP_SAMPLE_MS } from '../../serving/metrics.ts';
import { round } from './stats.ts';

export type Sample = { name: string; labels: Record<string, string>; value: number };

export async function scrape(base: string): Promise<Sample[]> {
  return parseExposition(await (await fetch(`${base}/metrics`)).text());
}

/** The samples of a Prometheus text exposition (comments and blank lines skipped). */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) labels[l[1] ?? ''] = l[2] ?? '';
    out.push({ name: m[1] ?? '', labels, value: Number(m[3]) });
  }
  return out;
}

const REC_ROUTE = '/v1/recommendations/:customerId';

function metricValue(s: Sample[], name: string, labels: Record<string, string> = {}): number {
  return s
    .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
    .reduce((sum, x) => sum + x.value, 0);
}

/** The stages of a ranked request the API times (`rec_serving_stage_duration_seconds`). */
export const STAGES = ['candidates', 'features', 'scoring', 'http'] as const;
export type StageName = (typeof STAGES)[number];

/**
 * The q-quantile (ms) of a histogram's observations between two scrapes, as Prometheus'
 * `histogram_quantile` estimates it: linear within the bucket holding it (the highest finite
 * bound when it falls in +Inf); null without observations.
 */
export function histogramQuantile(
  before: Sample[],
  after: Sample[],
  name: string,
  labels: Record<string, string>,
  q: number,
): number | null {
  const bucket = `${name}_bucket`;
  const les = after
    .filter((x) => x.name === bucket && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
    .map((x) => x.labels.le ?? '');
  const cumulative = les
    .map((le) => ({
      le: le === '+Inf' ? Infinity : Number(le),
      n:
        metricValue(after, bucket, { ...labels, le }) -
        metricValue(before, bucket, { ...labels, le }),
    }))
    .sort((a, b) => a.le - b.le);
  const total = cumulative.at(-1)?.n ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const { le, n } of cumulative) {
    if (n >= rank) {
      if (!Number.isFinite(le)) return round(lower * 1000, 3);
      const share = n > below ? (rank - below) / (n - below) : 1;
      return round((lower + (le - lower) * share) * 1000, 3);
    }
    lower = le;
    below = n;
  }
  return round(lower * 1000, 3);
}

/** Server-side figures over the interval between two scrapes. */
export function serverDelta(before: Sample[], after: Sample[], seconds: number) {
  const d = (name: string, labels: Record<string, string> = {}) =>
    metricValue(after, name, labels) - metricValue(before, name, labels);
  const route = { route: REC_ROUTE, status: '200' };
  const count = d('rec_serving_request_duration_seconds_count', route);
  const sum = d('rec_serving_request_duration_seconds_sum', route);
  // Smallest histogram bound holding 99 % of the interval's requests.
  const bounds = after
    .filter(
      (x) =>
        x.name === 'rec_serving_request_duration_seconds_bucket' &&
        x.labels.route === REC_ROUTE &&
        x.labels.status === '200',
    )
    .map((x) => x.labels.le ?? '')
    .filter((le) => le !== '+Inf')
    .map(Number)
    .sort((a, b) => a - b);
  let p99Le: number | null = null;
  for (const le of bounds) {
    if (
      d('rec_serving_request_duration_seconds_bucket', { ...route, le: String(le) }) >=
      0.99 * count
    ) {
      p99Le = le * 1000;
      break;
    }
  }
  const stage = (name: StageName) => ({
    p50: histogramQuantile(
      before,
      after,
      'rec_serving_stage_duration_seconds',
      { stage: name },
      0.5,
    ),
    p99: histogramQuantile(
      before,
      after,
      'rec_serving_stage_duration_seconds',
      { stage: name },
      0.99,
    ),
  });
  const recRequests = d('rec_serving_request_duration_seconds_count', { route: REC_ROUTE });
  return {
    server_requests: count,
    server_mean_ms: round(count > 0 ? (sum / count) * 1000 : NaN),
    server_p99_le_ms: p99Le,
    stages_ms: Object.fromEntries(STAGES.map((name) => [name, stage(name)])) as Record<
      StageName,
      ReturnType<typeof stage>
    >,
    redis_commands_per_request:
      recRequests > 0 ? round(d('rec_serving_redis_commands_total') / recRequests, 1) : null,
    redis_round_trips_mean: round(
      d('rec_serving_redis_round_trips_sum') /
        Math.max(1, d('rec_serving_redis_round_trips_count')),
    ),
    server_cpu_cores: round(d('rec_serving_process_cpu_seconds_total') / seconds),
    // The gauge holds the intervals between the loop's samples: the delay is that less the
    // sampling interval (an idle loop reads 0).
    server_eventloop_delay_p99_ms: round(
      Math.max(
        0,
        metricValue(after, 'rec_serving_nodejs_eventloop_lag_p99_seconds') * 1000 -
          EVENT_LOOP_SAMPLE_MS,
      ),
    ),
    degraded: d('rec_serving_degraded_responses_total'),
    ranker_errors: d('rec_serving_ranker_errors_total'),
  };
}
