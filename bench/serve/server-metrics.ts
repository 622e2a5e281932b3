/**
 * The API's own figures over a load run: its Prometheus `/metrics` scraped before and after, and
 * the difference (requests, mean latency, the p99 histogram bound, round trips, CPU, event-loop
 * lag, degraded answers, ranker errors).
 */
import { round } from './stats.ts';

export type Sample = { name: string; labels: Record<string, string>; value: number };

export async function scrape(base: string): Promise<Sample[]> {
  const text = await (await fetch(`${base}/metrics`)).text();
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
  return {
    server_requests: count,
    server_mean_ms: round(count > 0 ? (sum / count) * 1000 : NaN),
    server_p99_le_ms: p99Le,
    redis_round_trips_mean: round(
      d('rec_serving_redis_round_trips_sum') /
        Math.max(1, d('rec_serving_redis_round_trips_count')),
    ),
    server_cpu_cores: round(d('rec_serving_process_cpu_seconds_total') / seconds),
    server_eventloop_p99_ms: round(
      metricValue(after, 'rec_serving_nodejs_eventloop_lag_p99_seconds') * 1000,
    ),
    degraded: d('rec_serving_degraded_responses_total'),
    ranker_errors: d('rec_serving_ranker_errors_total'),
  };
}
