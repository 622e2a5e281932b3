/**
 * Step 9 of the serving benchmark: overload. Requests are sent open loop, on a fixed schedule at
 * `rate` (twice the highest sustainable rate) whatever the answers, for `duration` seconds, over
 * up to SOCKETS keep-alive connections — so, unlike autocannon's closed loop of a few connections,
 * the offered rate stays the offered rate however slowly the API answers, as a storefront's many
 * users would. Each request's answer is classed: 2xx (accepted: its latency, from the send to the
 * end of the body), 503 (refused by admission control), any other 5xx, other statuses, connection
 * errors and timeouts (TIMEOUT_MS by default). The requests left in flight when the schedule ends
 * are waited for (at most that long).
 */
import { Agent, get } from 'node:http';
import { mainThreadTicks } from './cpu.ts';
import { scrape, serverDelta } from './server-metrics.ts';
import { round, say, summary } from './stats.ts';

/** A request without a complete answer by then is a timeout. */
const TIMEOUT_MS = 5_000;
/** Most concurrent connections (more requests wait in the client for a free one). */
const SOCKETS = 512;

export interface OverloadTarget {
  readonly base: string;
  /** Request paths, requested round robin. */
  readonly paths: readonly string[];
  readonly apiPid: number;
}

type Outcome = number | 'error' | 'timeout';

export async function overloadRun(
  target: OverloadTarget,
  rate: number,
  duration: number,
  timeoutMs = TIMEOUT_MS,
) {
  const url = new URL(target.base);
  const agent = new Agent({ keepAlive: true, maxSockets: SOCKETS });
  const accepted: number[] = [];
  const counts = { s2xx: 0, s503: 0, s5xxOther: 0, other: 0, errors: 0, timeouts: 0 };
  const total = Math.round(rate * duration);
  let sent = 0;
  let pending = 0;
  let drained: () => void = () => undefined;

  const record = (outcome: Outcome, ms: number) => {
    if (outcome === 'timeout') counts.timeouts++;
    else if (outcome === 'error') counts.errors++;
    else if (outcome >= 200 && outcome < 300) {
      counts.s2xx++;
      accepted.push(ms);
    } else if (outcome === 503) counts.s503++;
    else if (outcome >= 500) counts.s5xxOther++;
    else counts.other++;
  };
  const fireOne = (path: string) => {
    pending++;
    const start = performance.now();
    let finished = false;
    const finish = (outcome: Outcome) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      record(outcome, performance.now() - start);
      pending--;
      if (pending === 0 && sent >= total) drained();
    };
    const req = get({ agent, host: url.hostname, port: url.port, path }, (res) => {
      res.resume();
      res.on('end', () => {
        finish(res.statusCode ?? 0);
      });
      res.on('error', () => {
        finish('error');
      });
    });
    req.on('error', () => {
      finish('error');
    });
    const timer = setTimeout(() => {
      finish('timeout');
      req.destroy();
    }, timeoutMs);
  };

  const before = await scrape(target.base);
  const main0 = mainThreadTicks(target.apiPid);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.ceil(((performance.now() - t0) / 1000) * rate));
      for (; sent < due; sent++) fireOne(target.paths[sent % target.paths.length] ?? '/');
      if (sent < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  const sendS = (performance.now() - t0) / 1000;
  if (pending > 0) {
    await new Promise<void>((resolve) => {
      drained = resolve;
    });
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const main1 = mainThreadTicks(target.apiPid);
  agent.destroy();
  const after = await scrape(target.base);
  const server = serverDelta(before, after, wall);
  const answered = sent - counts.errors - counts.timeouts;
  const result = {
    rate,
    duration_s: duration,
    sent,
    offered_rps: round(sent / sendS, 1),
    status_2xx: counts.s2xx,
    status_503: counts.s503,
    status_5xx_other: counts.s5xxOther,
    status_other: counts.other,
    connection_errors: counts.errors,
    timeouts: counts.timeouts,
    accepted_rps: round(counts.s2xx / wall, 1),
    accepted: summary(accepted),
    timeout_ms: timeoutMs,
    sockets: SOCKETS,
    main_thread_cpu_ms_per_request: round(((main1 - main0) * 10) / Math.max(1, answered)),
    loadgen_cpu_cores: round((cpu.user + cpu.system) / 1e6 / wall),
    server,
  };
  say(
    `  -> offered ${result.offered_rps} req/s: ${result.status_2xx} 2xx (${result.accepted_rps}/s, p50 ${result.accepted.p50_ms} / p99 ${result.accepted.p99_ms} ms), ${result.status_503} 503, ${result.status_5xx_other} other 5xx, ${result.connection_errors} connection errors, ${result.timeouts} timeouts`,
  );
  return result;
}
