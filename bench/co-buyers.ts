/**
 * `npm run bench:co-buyers [-- --customers N] [--articles N] [--days N]`
 *
 * The co-buyer build (processors/co-buyers.ts) at H&M's size: fills a fresh Redis namespace with
 * N customers' item state (default 1,371,980 customers, 105,542 articles: the real dataset's
 * counts), then runs the build as a training cycle does on the live namespace (SCAN of every
 * customer state, "now" the data's end) in a child process, and reports its time per step and
 * the child's peak resident memory (`maxRSS`). The namespace is deleted after. Progress on
 * stderr, one JSON line last on stdout.
 *
 * The state is generated, seeded, in customer.lua's layout (`a:<article>` -> `n|last|L|units|first|lu`
 * and a `p:<product>` field per article, and as many other fields as hm-sample's customers hold,
 * which the build's HSCAN walks without returning): distinct articles per customer log-normal
 * with hm-sample's mean and spread (19.8 and 31), capped at 500 (the items cap's ceiling), each
 * last bought at a uniform day of the `--days` before "now", articles drawn Zipf(0.9) by
 * popularity.
 *
 * `--measure --namespace <ns> --now <ms>` is the child: one build, one JSON line.
 */
import { randomUUID } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { loadConfig } from '../common/config.ts';
import { createRedis, type RedisClient } from '../common/redis.ts';
import { rng } from '../evaluation/stats.ts';
import { DAY_MS } from '../features/decay.ts';
import { keySpace } from '../features/keys.ts';
import { deleteNamespace, pipelineValues } from '../features/state.ts';
import { buildCoBuyers } from '../processors/co-buyers.ts';
import { ensureStack } from '../stack/stack.ts';
import { HM_SIZE } from '../test/fixtures/generate-large.ts';
import { runMeasureChild } from './measure-child.ts';

const { values } = parseArgs({
  options: {
    customers: { type: 'string', default: String(HM_SIZE.customers) },
    articles: { type: 'string', default: String(HM_SIZE.articles) },
    days: { type: 'string', default: String(HM_SIZE.days) },
    measure: { type: 'boolean', default: false },
    namespace: { type: 'string' },
    now: { type: 'string' },
  },
});

const say = (msg: string) => {
  process.stderr.write(`[bench:co-buyers] ${msg}\n`);
};
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const NOW = Date.UTC(2020, 8, 22);
/** hm-sample: distinct articles per customer, mean 19.8, sd 31 (log-normal parameters). */
const SIGMA = Math.sqrt(Math.log(1 + (31 / 19.8) ** 2));
const MU = Math.log(19.8) - (SIGMA * SIGMA) / 2;
const ITEMS_MAX = 500;
/**
 * A customer's other `state` fields, as many as hm-sample's live store holds on average (400
 * customers sampled: 36 affinities `f:`, 8 stats with `n`, a channel, an offset guard).
 */
const OTHER_FIELDS: Readonly<Record<string, string>> = Object.fromEntries(
  [
    ...Array.from({ length: 36 }, (_, i) => `f:k${i % 7}:${i}`),
    ...['units', 'spend', 'price_sum', 'first', 'last', 'in', 'smin', 'ch:1', 'o:1'],
  ].map((f): [string, string] => [f, '1595894400000']),
);

interface Filled {
  readonly customers: number;
  readonly items: number;
  readonly seconds: number;
}

/** Write the customers' `state` hashes (module comment); returns what was written. */
async function fill(
  redis: RedisClient,
  ns: string,
  customers: number,
  articles: number,
  days: number,
): Promise<Filled> {
  const keys = keySpace(ns);
  const rnd = rng(31);
  // Zipf(0.9) by inverse CDF over the cumulative weights.
  const cumulative = new Float64Array(articles);
  let total = 0;
  for (let i = 0; i < articles; i++) {
    total += 1 / Math.pow(i + 1, 0.9);
    cumulative[i] = total;
  }
  const article = () => {
    const u = rnd() * total;
    let lo = 0;
    let hi = articles - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cumulative[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return 100_000_000 + lo;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  const t0 = performance.now();
  let items = 0;
  let pipe = redis.pipeline();
  for (let c = 0; c < customers; c++) {
    const n = Math.max(1, Math.min(ITEMS_MAX, Math.round(Math.exp(MU + SIGMA * normal()))));
    // The fields the build does not read, which its HSCAN walks too (module comment).
    const fields: Record<string, string> = { ...OTHER_FIELDS, n: String(n) };
    const bought = new Set<number>();
    for (let k = 0; k < n; k++) {
      const a = article();
      const last = NOW - 1 - Math.floor(rnd() * days * DAY_MS);
      bought.add(a);
      fields[`a:0${a}`] = `1|${last}|0|1|${last}|1`;
      fields[`p:0${Math.floor(a / 1000)}`] = `1|${last}|0`;
    }
    items += bought.size;
    pipe.hset(keys.customer(`bench-${c}`).state, fields);
    if ((c + 1) % 2_000 === 0 || c + 1 === customers) {
      pipelineValues(await pipe.exec());
      pipe = redis.pipeline();
    }
    if ((c + 1) % 200_000 === 0) say(`filled ${c + 1} of ${customers} customers`);
  }
  return { customers, items, seconds: round((performance.now() - t0) / 1000) };
}

/** The child: one build of `ns` at `now`, then its figures as one JSON line. */
async function measure(ns: string, now: number): Promise<void> {
  const redis = createRedis(loadConfig(), { maxRetriesPerRequest: null });
  try {
    const r = await buildCoBuyers(redis, keySpace(ns), { now });
    const usage = process.resourceUsage();
    process.stdout.write(
      JSON.stringify({
        customers_in_window: r.customers,
        articles: r.articles,
        written: r.written,
        build_s: round(r.ms / 1000),
        read_s: round(r.steps.readMs / 1000),
        compute_s: round(r.steps.computeMs / 1000),
        write_s: round(r.steps.writeMs / 1000),
        // maxRSS is in kilobytes
        peak_rss_mb: round(usage.maxRSS / 1024),
        cpu_user_s: round(usage.userCPUTime / 1e6),
      }) + '\n',
    );
  } finally {
    redis.disconnect();
  }
}

async function main(): Promise<void> {
  if (values.measure) {
    if (values.namespace === undefined || values.now === undefined) {
      throw new Error('--measure needs --namespace and --now');
    }
    await measure(values.namespace, Number(values.now));
    return;
  }
  const opts = {
    customers: Number(values.customers),
    articles: Number(values.articles),
    days: Number(values.days),
  };
  for (const [k, v] of Object.entries(opts)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer`);
  }
  const config = loadConfig();
  const endpoints = await ensureStack(config);
  const redis = createRedis(endpoints, { maxRetriesPerRequest: null });
  const ns = `bench-cb-${randomUUID().slice(0, 8)}`;
  try {
    say(`filling namespace ${ns}: ${opts.customers} customers, ${opts.articles} articles`);
    const before = await usedMemory(redis);
    const filled = await fill(redis, ns, opts.customers, opts.articles, opts.days);
    const memory = (await usedMemory(redis)) - before;
    say(`filled in ${filled.seconds} s (${filled.items} items); building`);
    const loadBefore = loadavg();
    const child = await runMeasureChild(
      'bench/co-buyers.ts',
      ['--measure', '--namespace', ns, '--now', String(NOW)],
      'the build',
    );
    process.stdout.write(
      JSON.stringify({
        bench: 'co-buyers',
        customers: filled.customers,
        items: filled.items,
        catalogue: opts.articles,
        fill_s: filled.seconds,
        redis_used_memory_mb: round(memory / 1024 / 1024),
        ...child,
        machine: {
          cpus: availableParallelism(),
          loadavg_before: loadBefore.map((x) => round(x, 2)),
          loadavg_after: loadavg().map((x) => round(x, 2)),
        },
      }) + '\n',
    );
  } finally {
    const deleted = await deleteNamespace(redis, keySpace(ns));
    say(`deleted ${deleted} keys`);
    redis.disconnect();
  }
}

/** Redis's used memory (one node's, on a cluster). */
async function usedMemory(redis: RedisClient): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
}

main().catch((err: unknown) => {
  console.error(`bench:co-buyers failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
