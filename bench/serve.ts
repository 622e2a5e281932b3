/**
 * `npm run bench:serve [-- --data <dir>] [--duration S] [--rates a,b,c] [--connections N]
 *   [--trees N] [--known N] [--cold-share F] [--burst]`
 * (defaults: hm-sample, 10 s per rate, rates 25,50,100,300,600, 16 connections, 500 trees,
 * 1,000 known customers, 20 % cold requests)
 *
 * Serving benchmark on the real stack, in one run, on fresh topics and a fresh Redis namespace:
 *   1. loads an H&M-layout folder (default ../shared/data/hm-sample) into topics
 *      `bench-serve-<id>.*` and processes it with the real processors (`processors/processors-cli.ts` as a
 *      child process: serving/ may not import processors/) until every consumer group's lag is 0;
 *   2. builds, registers and activates the fixture ranker (500 trees, depth 6, FEATURE_NAMES);
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
 *   7. load: autocannon at each `--rates` value, then one run without a rate limit.
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
 * Each run also reports the CPU used by the API process, the load generator (this process), Redis
 * and, from /proc/stat, everything else on the machine (`other_cpu_cores`: other tenants of a
 * shared machine make the figures noisy).
 *
 * Progress on stderr, one JSON line on stdout at the end. Child processes, topics, consumer groups
 * and the namespace's keys are removed afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Tensor } from 'onnxruntime-node';
import { pino } from 'pino';
import { consumerLag } from '../streams/admin.ts';
import { loadConfig } from '../common/config.ts';
import { FEATURE_NAMES, featureVector } from '../features/definitions.ts';
import { keySpace } from '../features/keys.ts';
import { emptyArticleState, readArticles } from '../features/state.ts';
import { createKafka } from '../streams/kafka.ts';
import { runLoad } from '../streams/loader/load.ts';
import { ensureStack } from '../stack/stack.ts';
import { allTopics, topics as makeTopics } from '../streams/topics.ts';
import {
  eventTimeNow,
  gatherCandidates,
  scaledCandidateConfig,
} from '../serving/candidates/index.ts';
import { buildFixtureModel } from '../models/fixture.ts';
import { loadModel, type LoadedModel } from '../models/model-meta.ts';
import { createSession } from '../models/onnx.ts';
import { activateModel, registerModel } from '../models/registry.ts';
import { ScorerPool } from '../serving/scoring/pool.ts';

// ---- autocannon (CommonJS, no bundled types): the part of its API used here -------------------

interface AcHistogram {
  readonly average: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}
interface AcResult {
  readonly latency: AcHistogram;
  readonly requests: AcHistogram;
  /** Seconds. */
  readonly duration: number;
  /** Connection errors, timeouts included. */
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
}
interface AcRequestSpec {
  path?: string;
}
interface AcRequest {
  readonly method: 'GET';
  readonly setupRequest: (req: AcRequestSpec) => AcRequestSpec;
  readonly onResponse: (status: number, body: string) => void;
}
interface AcOptions {
  readonly url: string;
  readonly connections: number;
  readonly duration: number;
  readonly requests: AcRequest[];
  readonly timeout: number;
  readonly overallRate?: number;
  /** Only with a rate (autocannon refuses it otherwise). */
  readonly ignoreCoordinatedOmission?: boolean;
}
interface AcInstance extends PromiseLike<AcResult> {
  on(
    event: 'response',
    fn: (client: unknown, status: number, bytes: number, ms: number) => void,
  ): AcInstance;
  stop(): void;
}
type Autocannon = (opts: AcOptions) => AcInstance;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

// ---- options ---------------------------------------------------------------------------------

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const DEFAULT_DATA = fileURLToPath(new URL('../../shared/data/hm-sample', import.meta.url));

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: DEFAULT_DATA },
    duration: { type: 'string', default: '10' },
    rates: { type: 'string', default: '25,50,100,300,600' },
    connections: { type: 'string', default: '16' },
    trees: { type: 'string', default: '500' },
    known: { type: 'string', default: '1000' },
    'cold-share': { type: 'string', default: '0.2' },
    burst: { type: 'boolean', default: false },
  },
});
const DURATION = Number(values.duration);
const RATES = values.rates
  .split(',')
  .map((r) => Number(r.trim()))
  .filter((r) => Number.isFinite(r) && r > 0);
const CONNECTIONS = Number(values.connections);
const TREES = Number(values.trees);
const KNOWN = Number(values.known);
const COLD_SHARE = Number(values['cold-share']);
const CANDIDATES = 100;
const WORKERS = 2;
const K = 12;
const P99_TARGET_MS = 10;

const say = (msg: string) => {
  process.stderr.write(`[bench:serve] ${msg}\n`);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: readonly number[], p: number) =>
  sorted.length === 0
    ? NaN
    : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN);
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
const mean = (xs: readonly number[]) =>
  xs.length === 0 ? NaN : xs.reduce((s, x) => s + x, 0) / xs.length;
const sorted = (xs: readonly number[]) => [...xs].sort((a, b) => a - b);
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** p50 / p99 / max of a sample, rounded. */
function summary(xs: readonly number[]) {
  const s = sorted(xs);
  return {
    p50_ms: round(pct(s, 0.5)),
    p90_ms: round(pct(s, 0.9)),
    p99_ms: round(pct(s, 0.99)),
    max_ms: round(s.at(-1) ?? NaN),
  };
}

// ---- child processes ---------------------------------------------------------------------------

interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  /** Lines of stdout, for the caller to watch (also echoed to stderr). */
  readonly lines: AsyncIterable<string>;
  alive: boolean;
}

function spawnTs(name: string, script: string, env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { stdout, stderr } = proc;
  stderr.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() !== '') process.stderr.write(`  [${name}] ${line}\n`);
    }
  });
  const lines = createInterface({ input: stdout });
  const child: Child = {
    name,
    proc,
    lines,
    alive: true,
    exited: new Promise((resolve) => {
      proc.on('exit', (code) => {
        child.alive = false;
        resolve(code);
      });
    }),
  };
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`. */
async function stopChild(child: Child | null, graceMs = 15_000): Promise<void> {
  if (child === null || !child.alive) return;
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (child.alive) {
      say(`${child.name} did not stop within ${graceMs} ms; SIGKILL`);
      child.proc.kill('SIGKILL');
    }
  }, graceMs);
  await child.exited;
  clearTimeout(timer);
}

// ---- /metrics of the API -----------------------------------------------------------------------

type Sample = { name: string; labels: Record<string, string>; value: number };

async function scrape(base: string): Promise<Sample[]> {
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
function serverDelta(before: Sample[], after: Sample[], seconds: number) {
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

/** Busy and total jiffies of the whole machine (Linux /proc/stat), or null elsewhere. */
function hostCpu(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] =
      line.trim().split(/\s+/).slice(1).map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, total: busy + idle + iowait };
  } catch {
    return null;
  }
}

/** CPU ticks (utime + stime, USER_HZ = 100) and name of every process (Linux /proc). */
function processTicks(): Map<number, { comm: string; ticks: number }> {
  const out = new Map<number, { comm: string; ticks: number }>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const fields = stat.slice(close + 2).split(' ');
      // After "(comm) ": state is field 3, utime 14 and stime 15 (1-based in proc(5)).
      out.set(Number(pid), { comm, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** The busiest processes between two snapshots, except `exclude`, in cores. */
function busiest(
  before: Map<number, { comm: string; ticks: number }>,
  after: Map<number, { comm: string; ticks: number }>,
  seconds: number,
  exclude: ReadonlySet<number>,
): { pid: number; name: string; cores: number }[] {
  return [...after]
    .filter(([pid]) => !exclude.has(pid))
    .map(([pid, a]) => ({
      pid,
      name: a.comm,
      cores: round((a.ticks - (before.get(pid)?.ticks ?? 0)) / 100 / seconds),
    }))
    .filter((p) => p.cores >= 0.05)
    .sort((x, y) => y.cores - x.cores)
    .slice(0, 4);
}

async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const f = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return f('used_cpu_sys') + f('used_cpu_user');
}

// ---- main --------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (!existsSync(values.data)) {
    throw new Error(`no dataset at ${values.data}; pass --data <dir> (H&M layout)`);
  }
  if (RATES.length === 0 || !(DURATION > 0) || !(CONNECTIONS >= 1) || !(TREES >= 1)) {
    throw new Error('--rates, --duration, --connections and --trees must be positive numbers');
  }
  const loadavgAtStart = loadavg().map((x) => round(x));
  const config = loadConfig();
  // Logs on stderr: stdout carries only the result line.
  const logger = pino({ name: 'bench', level: 'warn' }, pino.destination(2));
  const endpoints = await ensureStack(config, say);
  const runId = randomUUID().slice(0, 8);
  const prefix = `bench-serve-${runId}.`;
  const ns = `benchserve${runId}`;
  const groupPrefix = `bench-serve-${runId}`;
  const keys = keySpace(ns);
  const topics = makeTopics(prefix);
  const kafka = createKafka(endpoints.kafkaBrokers, 'rec-bench-serve', logger);
  const redis = new Redis(endpoints.redisUrl, { maxRetriesPerRequest: null });
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    KAFKA_BROKERS: endpoints.kafkaBrokers.join(','),
    SCHEMA_REGISTRY_URL: endpoints.schemaRegistryUrl,
    REDIS_URL: endpoints.redisUrl,
    REDIS_NAMESPACE: ns,
    LOG_LEVEL: 'warn',
  };
  const groups = [topics.articles, topics.customers, topics.purchases].map((t) => ({
    group: `${groupPrefix}.${t.name}`,
    topic: t.name,
  }));
  const modelDir = mkdtempSync(join(tmpdir(), 'rec-bench-serve-'));
  let processors: Child | null = null;
  let api: Child | null = null;
  const admin = kafka.admin();
  await admin.connect();

  try {
    // 1. load and process -------------------------------------------------------------------------
    say(`loading ${values.data} into topics ${prefix}*`);
    const load = await runLoad({
      config: { ...config, ...endpoints, topicPrefix: prefix },
      logger,
      dataDir: values.data,
      progress: false,
    });
    say(
      `published ${load.published.articles} articles, ${load.published.customers} customers, ${load.published.purchases} purchases in ${round(load.publishMs / 1000, 1)} s`,
    );
    const tProc = performance.now();
    const proc = spawnTs('processors', 'processors/processors-cli.ts', {
      ...childEnv,
      TOPIC_PREFIX: prefix,
      PROCESSOR_GROUP: groupPrefix,
      PROCESSOR_METRICS_PORT: '0',
    });
    processors = proc;
    void (async () => {
      for await (const line of proc.lines) process.stderr.write(`  [processors] ${line}\n`);
    })();
    let lastSay = 0;
    for (;;) {
      if (!proc.alive) throw new Error('the processors exited before catching up');
      const lags = await Promise.all(
        groups.map(async (g) =>
          (await consumerLag(admin, g.group, g.topic)).reduce((s, p) => s + Math.max(0, p.lag), 0),
        ),
      );
      if (lags.every((l) => l === 0)) break;
      if (performance.now() - lastSay > 5_000) {
        lastSay = performance.now();
        say(`processing: lag ${groups.map((g, i) => `${g.topic} ${lags[i] ?? '?'}`).join(', ')}`);
      }
      if (performance.now() - tProc > 15 * 60_000) {
        throw new Error('the processors did not catch up within 15 min');
      }
      await sleep(250);
    }
    const processingS = (performance.now() - tProc) / 1000;
    say(`processed (every consumer group at lag 0) in ${round(processingS, 1)} s`);
    await stopChild(proc);

    // 2. model ------------------------------------------------------------------------------------
    const built = await buildFixtureModel(modelDir, {
      features: FEATURE_NAMES,
      trees: TREES,
      depth: 6,
      seed: 1,
    });
    const model: LoadedModel = await loadModel(built.onnxPath, built.metaPath, FEATURE_NAMES);
    await registerModel(redis, keys, model);
    await activateModel(redis, keys, model.meta.version);
    const width = model.meta.features.length;
    say(
      `model ${model.meta.version}: ${model.meta.trees} trees, depth 6, ${width} features, ${model.bytes.length} bytes`,
    );

    // Customers: known ones from the store, cold ones never seen.
    const knownAll: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${ns}:{u:*}:stats`, 'COUNT', 2000);
      cursor = next;
      for (const k of batch) {
        const m = /\{u:(.+)\}:stats$/.exec(k);
        if (m?.[1] !== undefined) knownAll.push(m[1]);
      }
    } while (cursor !== '0');
    knownAll.sort();
    const shuffle = <T>(xs: T[]): T[] => {
      for (let i = xs.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
      }
      return xs;
    };
    const known = shuffle([...knownAll]).slice(0, KNOWN);
    const coldCount = Math.round((known.length * COLD_SHARE) / Math.max(1e-9, 1 - COLD_SHARE));
    const cold = Array.from({ length: coldCount }, () => randomBytes(32).toString('hex'));
    const coldSet = new Set(cold);
    const customers = shuffle([...known, ...cold]);
    const paths = customers.map((c) => `/v1/recommendations/${c}?k=${K}`);
    say(
      `${knownAll.length} customers in the store; requesting ${known.length} known + ${cold.length} cold (${round(cold.length / customers.length, 3)} cold)`,
    );

    // 3. the API ----------------------------------------------------------------------------------
    api = spawnTs('api', 'serving/serve-cli.ts', {
      ...childEnv,
      SERVING_PORT: '0',
      SERVING_HOST: '127.0.0.1',
      SCORER_WORKERS: String(WORKERS),
      SERVING_MAX_CANDIDATES: String(CANDIDATES),
      SERVING_ALLOW_FIXTURE_MODEL: 'true',
    });
    const apiChild = api;
    const base = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error('the API did not start within 60 s'));
      }, 60_000);
      void apiChild.exited.then((code) => {
        reject(new Error(`the API exited (code ${code ?? 'signal'}) before serving`));
      });
      void (async () => {
        for await (const line of apiChild.lines) {
          const m = /serving on (http:\/\/\S+)/.exec(line);
          if (m?.[1] !== undefined) {
            clearTimeout(timer);
            resolve(m[1]);
          } else process.stderr.write(`  [api] ${line}\n`);
        }
      })();
    });
    const probe = `${base}/v1/recommendations/${known[0] ?? 'nobody'}?k=${K}`;
    for (let i = 0; ; i++) {
      if (i > 600) throw new Error('the API never became ready with the fixture model');
      const ready = await fetch(`${base}/readyz`).catch(() => null);
      if (ready?.status === 200) {
        const body = (await (await fetch(probe)).json()) as { model_version?: string };
        if (body.model_version === model.meta.version) break;
      }
      await sleep(100);
    }
    say(`API at ${base} ready, ranking with ${model.meta.version}`);

    // 4. warm-up pass: every customer once, sequentially -----------------------------------------
    const warm = {
      knownCands: [] as number[],
      coldCands: [] as number[],
      latency: [] as number[],
      took: [] as number[],
      other: 0,
    };
    const cmdsBefore = Number(
      /total_commands_processed:(\d+)/.exec(await redis.info('stats'))?.[1],
    );
    for (const [i, c] of customers.entries()) {
      const t0 = performance.now();
      const res = await fetch(`${base}${paths[i] ?? ''}`);
      const body = (await res.json()) as {
        candidates?: number;
        took_ms?: number;
        model_version?: string;
      };
      warm.latency.push(performance.now() - t0);
      if (res.status !== 200 || body.model_version !== model.meta.version) warm.other++;
      warm.took.push(body.took_ms ?? NaN);
      (coldSet.has(c) ? warm.coldCands : warm.knownCands).push(body.candidates ?? 0);
    }
    const cmdsAfter = Number(/total_commands_processed:(\d+)/.exec(await redis.info('stats'))?.[1]);
    const short = (xs: number[]) => xs.filter((n) => n < CANDIDATES).length;
    const candidatesCheck = {
      known_mean: round(mean(warm.knownCands), 1),
      known_min: Math.min(...warm.knownCands),
      known_below_100: short(warm.knownCands),
      cold_mean: round(mean(warm.coldCands), 1),
      cold_below_100: short(warm.coldCands),
    };
    const sequential = {
      requests: customers.length,
      client: summary(warm.latency),
      took_ms: summary(warm.took),
      redis_commands_per_request_whole_server: round(
        (cmdsAfter - cmdsBefore) / customers.length,
        1,
      ),
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

    // 5. where the time goes, in process (no load) ---------------------------------------------
    const pool = await ScorerPool.create({ model, size: WORKERS });
    const cfg = scaledCandidateConfig(CANDIDATES);
    const names = pool.features;
    const phase = {
      gather: [] as number[],
      features: [] as number[],
      score: [] as number[],
      articles: [] as number[],
      roundTrips: [] as number[],
      client: [] as number[],
      took: [] as number[],
      /** CPU of this process (µs) spent in the candidate reads and in building feature rows. */
      gatherCpu: 0,
      featuresCpu: 0,
    };
    let realRows: Float32Array | null = null;
    const breakdownCustomers = customers.slice(0, 500);
    for (let pass = 0; pass < 2; pass++) {
      for (const customerId of breakdownCustomers) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        const set = await gatherCandidates(redis, keys, cfg, {
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
        if (realRows === null && set.candidates.length === CANDIDATES && !set.coldStart) {
          realRows = matrix.slice();
        }
        if (set.candidates.length > 0) await pool.score(matrix, set.candidates.length);
        const t3 = performance.now();
        // The same request through the API, right after (same customer, same moment).
        const t4 = performance.now();
        const res = await fetch(`${base}/v1/recommendations/${customerId}?k=${K}`);
        const body = (await res.json()) as { took_ms?: number };
        const t5 = performance.now();
        if (pass === 1) {
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
      }
    }
    const p50 = (xs: number[]) => pct(sorted(xs), 0.5);
    const inHandler = p50(phase.gather) + p50(phase.features) + p50(phase.score);
    const n = Math.max(1, phase.gather.length);
    const breakdown = {
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
    say(
      `breakdown (p50): candidate reads ${breakdown.gather_candidates.p50_ms} ms (${breakdown.cpu_ms_per_request.candidate_reads} ms CPU, ${breakdown.article_states_read_mean} article states), feature rows ${breakdown.feature_rows.p50_ms} ms, scoring ${breakdown.pool_score.p50_ms} ms; API took_ms ${breakdown.time_split_p50_ms.api_took_ms}, client ${breakdown.time_split_p50_ms.api_client_ms} ms`,
    );

    // 6. ceilings ---------------------------------------------------------------------------------
    const rows = CANDIDATES;
    const input100 =
      realRows ?? Float32Array.from({ length: rows * width }, () => Math.random() * 10);
    const session = await createSession(model.bytes);
    const tensor = new Tensor('float32', input100, [rows, width]);
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
    const workerRuns = summary(await pool.benchRun(rows, 1000));
    const poolSeconds = 3;
    let poolDone = 0;
    const tPool = performance.now();
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (performance.now() - tPool < poolSeconds * 1000) {
          await pool.score(input100.slice(), rows);
          poolDone++;
        }
      }),
    );
    const poolRps = poolDone / ((performance.now() - tPool) / 1000);
    await pool.close();
    say(
      `ScorerPool(${WORKERS}) at concurrency ${CONNECTIONS}: ${Math.round(poolRps)} req/s (worker session.run p50 ${workerRuns.p50_ms} ms)`,
    );

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

    // 7. load -------------------------------------------------------------------------------------
    const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
    const ours = new Set([process.pid, apiChild.proc.pid ?? -1, redisPid]);
    let next = 0;
    const onResponse = { took: [] as number[], cands: [] as number[] };
    const request: AcRequest = {
      method: 'GET',
      setupRequest: (req) => {
        req.path = paths[next++ % paths.length] ?? '/';
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

    const loadRun = async (rate: number | null, duration: number) => {
      onResponse.took = [];
      onResponse.cands = [];
      const latencies: number[] = [];
      const before = await scrape(base);
      const redisCpu0 = await redisCpuSeconds(redis);
      const cpu0 = process.cpuUsage();
      const host0 = hostCpu();
      const procs0 = processTicks();
      const t0 = performance.now();
      const start = (connections: number, overallRate: number | undefined, delayMs: number) =>
        sleep(delayMs).then(async () => {
          let responses = 0;
          const instance = autocannon({
            url: base,
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
      let parts: { result: AcResult; responses: number }[];
      if (rate === null || values.burst) {
        parts = [await start(CONNECTIONS, rate ?? undefined, 0)];
      } else {
        const slices = Math.min(CONNECTIONS, rate);
        parts = await Promise.all(
          Array.from({ length: slices }, (_, i) =>
            start(1, Math.floor(rate / slices) + (i < rate % slices ? 1 : 0), (i * 1000) / slices),
          ),
        );
      }
      const wall = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const host1 = hostCpu();
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
      const errors = parts.reduce((s, p) => s + p.result.errors, 0);
      const non2xx = parts.reduce((s, p) => s + p.result.non2xx, 0);
      const first = parts[0]?.result;
      return {
        rate: rate ?? 'max',
        rps: round(rps, 1),
        ...summary(latencies),
        errors: errors + non2xx,
        non2xx,
        timeouts: parts.reduce((s, p) => s + p.result.timeouts, 0),
        requests: latencies.length,
        took_ms: summary(onResponse.took),
        candidates_mean: round(mean(onResponse.cands), 1),
        ...server,
        server_cpu_ms_per_request: round((server.server_cpu_cores * 1000) / Math.max(rps, 1e-9)),
        loadgen_cpu_cores: round(loadgenCores),
        redis_cpu_cores: round(redisCores),
        host_cpu_cores: round(hostCores),
        other_cpu_cores: round(hostCores - server.server_cpu_cores - loadgenCores - redisCores),
        other_busiest: busiest(procs0, procs1, wall, ours),
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

    say(`autocannon warm-up (3 s, ${CONNECTIONS} connections, unthrottled)`);
    await loadRun(null, 3);
    const perRate: Awaited<ReturnType<typeof loadRun>>[] = [];
    for (const rate of RATES) {
      say(`rate ${rate}/s for ${DURATION} s (${CONNECTIONS} connections)`);
      const r = await loadRun(rate, DURATION);
      perRate.push(r);
      say(
        `  -> ${r.rps} req/s, p50 ${r.p50_ms} / p99 ${r.p99_ms} / max ${r.max_ms} ms, errors ${r.errors}, took_ms p50 ${r.took_ms.p50_ms} p99 ${r.took_ms.p99_ms}, server cpu ${r.server_cpu_cores} cores (${r.server_cpu_ms_per_request} ms/request), load generator ${r.loadgen_cpu_cores}, redis ${r.redis_cpu_cores}, other processes ${r.other_cpu_cores}${r.other_busiest.length > 0 ? ` (${r.other_busiest.map((p) => `${p.name} ${p.cores}`).join(', ')})` : ''}`,
      );
    }
    say(`max throughput for ${DURATION} s (${CONNECTIONS} connections, no rate limit)`);
    const maxRun = await loadRun(null, DURATION);
    say(
      `  -> ${maxRun.rps} req/s, p50 ${maxRun.p50_ms} / p99 ${maxRun.p99_ms} / max ${maxRun.max_ms} ms, errors ${maxRun.errors}, took_ms p50 ${maxRun.took_ms.p50_ms} p99 ${maxRun.took_ms.p99_ms}, server cpu ${maxRun.server_cpu_cores} cores (${maxRun.server_cpu_ms_per_request} ms/request), load generator ${maxRun.loadgen_cpu_cores}, redis ${maxRun.redis_cpu_cores}, other processes ${maxRun.other_cpu_cores}${maxRun.other_busiest.length > 0 ? ` (${maxRun.other_busiest.map((p) => `${p.name} ${p.cores}`).join(', ')})` : ''}`,
    );

    const otherMax = Math.max(...[...perRate, maxRun].map((r) => r.other_cpu_cores));
    if (otherMax > 0.25) {
      say(
        `warning: other processes used up to ${otherMax} of ${availableParallelism()} cores during the runs; the figures are lower than on a quiet machine`,
      );
    }
    const within = perRate.filter((r) => r.p99_ms <= P99_TARGET_MS);
    const headline = within.at(-1) ?? perRate[0];
    if (headline === undefined) throw new Error('no rate run');
    const allRuns = [...perRate, maxRun];
    const candidatesAll = allRuns.flatMap((r) =>
      Number.isFinite(r.candidates_mean) ? [r.candidates_mean * r.requests] : [],
    );
    const requestsAll = allRuns.reduce((s, r) => s + r.requests, 0);

    console.log(
      JSON.stringify({
        bench: 'serve',
        candidates: CANDIDATES,
        rps: maxRun.rps,
        p50_ms: headline.p50_ms,
        p99_ms: headline.p99_ms,
        max_ms: headline.max_ms,
        errors: allRuns.reduce((s, r) => s + r.errors, 0),
        /** 200s ranked by the heuristic after a ranker failure / timeout (server-side count). */
        degraded: allRuns.reduce((s, r) => s + r.degraded, 0),
        ceiling_rps: Math.round(ceilingRps),
        redis_rtt_ms: pingStats.p50_ms,
        latency_from_rate: headline.rate,
        latency_rule: `p50/p99/max of the highest rate whose p99 <= ${P99_TARGET_MS} ms, else of the lowest rate; rps of the unthrottled run; errors over every run (connection errors, timeouts, non-2xx)`,
        p99_target_met: within.length > 0,
        ratio_to_ceiling: round(maxRun.rps / ceilingRps, 3),
        ceiling_formula: `ceiling_rps = scoring threads (${scoringThreads}: ${WORKERS} workers on ${availableParallelism()} cores) x 1000 / p50 of bare session.run on ${rows} rows (${runStats.p50_ms} ms)`,
        session_run_ms: runStats,
        worker_session_run_p50_ms: workerRuns.p50_ms,
        pool_ceiling_rps: Math.round(poolRps),
        ratio_to_pool_ceiling: round(maxRun.rps / poolRps, 3),
        redis_ping_ms: pingStats,
        redis_candidate_read_ms: { articles: articleIds.length, ...readStats },
        candidates_mean: round(
          candidatesAll.reduce((s, x) => s + x, 0) / Math.max(1, requestsAll),
          1,
        ),
        candidates_check: candidatesCheck,
        cold_share: round(cold.length / customers.length, 3),
        customers: { known: known.length, cold: cold.length, in_store: knownAll.length },
        per_rate: perRate,
        max_run: maxRun,
        sequential,
        breakdown,
        pacing: values.burst
          ? 'one autocannon instance per run with overallRate (bursts of all connections each second)'
          : `rate runs: ${CONNECTIONS} single-connection autocannon instances, their 1-s rate windows staggered by ${round(1000 / CONNECTIONS, 1)} ms; max run: one instance, ${CONNECTIONS} connections`,
        latency_source:
          'autocannon per-response hrtime, 2xx only, coordinated-omission correction off',
        connections: CONNECTIONS,
        duration_s: DURATION,
        k: K,
        model: { version: model.meta.version, trees: model.meta.trees, depth: 6, features: width },
        scorer_workers: WORKERS,
        cores: availableParallelism(),
        processing_s: round(processingS, 1),
        loadavg_at_start: loadavgAtStart,
        other_cpu_cores_max: otherMax,
        data: values.data,
      }),
    );
  } finally {
    await stopChild(api);
    await stopChild(processors);
    await admin
      .deleteTopics({ topics: allTopics(topics).flatMap((d) => [d.name, d.dlq]) })
      .catch((err: unknown) => {
        say(`could not delete topics: ${message(err)}`);
      });
    await admin.deleteGroups(groups.map((g) => g.group)).catch(() => undefined);
    await admin.disconnect();
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${ns}:*`, 'COUNT', 5000);
      cursor = next;
      if (batch.length > 0) await redis.unlink(...batch);
    } while (cursor !== '0');
    redis.disconnect();
    rmSync(modelDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(
    `bench:serve failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
  process.exit(1);
});
