/**
 * `npm run bench:load [-- --rows N] [--customers N] [--articles N] [--days N] [--data <dir>]
 * [--keep-data]`
 *
 * The loader at scale: generates (once, kept under `.stack/bench-load/` unless `--data` names a
 * folder) an H&M-layout folder with N purchase rows written streaming (default 31,788,324 rows,
 * 1,371,980 customers, 105,542 articles over 734 days: the real dataset's counts), then loads it
 * with `runLoad` (what `npm run load` runs) in a child process onto fresh topics, and reports the
 * child's rows/s and peak resident memory (`process.resourceUsage().maxRSS`) with the machine's
 * load average. Topics are deleted after. Progress on stderr, one JSON line last on stdout.
 *
 * A `--data` folder that holds a dataset not generated here (e.g. the real H&M files) is loaded
 * as it is and kept. `--measure --data <dir> --prefix <p>` is the child: one load, one JSON line.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { ensureStack } from '../stack/stack.ts';
import { createKafka } from '../streams/kafka.ts';
import { runLoad } from '../streams/loader/load.ts';
import { runMeasureChild } from './measure-child.ts';
import { HM_SIZE, writeLargeDataset, type LargeOptions } from '../test/fixtures/generate-large.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: String(HM_SIZE.purchases) },
    customers: { type: 'string' },
    articles: { type: 'string' },
    days: { type: 'string', default: String(HM_SIZE.days) },
    data: { type: 'string' },
    'keep-data': { type: 'boolean', default: false },
    measure: { type: 'boolean', default: false },
    prefix: { type: 'string' },
  },
});

const say = (msg: string) => {
  process.stderr.write(`[bench:load] ${msg}\n`);
};
const MB = 1024 * 1024;
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** The child: one load of `--data` onto topics `--prefix`, then its figures as one JSON line. */
async function measure(dataDir: string, prefix: string): Promise<void> {
  const config = { ...loadConfig(), topicPrefix: prefix };
  const logger = createLogger('warn', 'bench-load');
  const t0 = performance.now();
  const report = await runLoad({ config, logger, dataDir, progress: true });
  const seconds = (performance.now() - t0) / 1000;
  const usage = process.resourceUsage();
  process.stdout.write(
    JSON.stringify({
      purchase_rows: report.stats.purchaseRows,
      published: report.published,
      in_order: report.inOrder,
      read_s: round(report.readMs / 1000),
      publish_s: round(report.publishMs / 1000),
      total_s: round(seconds),
      // maxRSS is in kilobytes
      peak_rss_mb: round(usage.maxRSS / 1024),
      heap_used_mb_end: round(process.memoryUsage().heapUsed / MB),
      cpu_user_s: round(usage.userCPUTime / 1e6),
      cpu_system_s: round(usage.systemCPUTime / 1e6),
    }) + '\n',
  );
}

interface Generated extends LargeOptions {
  transactionBytes: number;
  generateSeconds: number;
}

/** Generate the folder unless a complete one with the same options is there (`generated.json`). */
function ensureData(dir: string, opts: LargeOptions): Generated | null {
  const stamp = join(dir, 'generated.json');
  const dataset = ['csv', 'parquet'].some((x) => existsSync(join(dir, `transactions_train.${x}`)));
  if (dataset && !existsSync(stamp)) {
    say(`loading the dataset in ${dir} as it is (not generated here)`);
    return null;
  }
  if (existsSync(stamp)) {
    const done = JSON.parse(readFileSync(stamp, 'utf8')) as Generated;
    const same = (Object.keys(opts) as (keyof LargeOptions)[]).every((k) => done[k] === opts[k]);
    if (same) {
      say(`reusing ${dir} (${done.purchases} rows)`);
      return done;
    }
  }
  rmSync(dir, { recursive: true, force: true });
  say(`generating ${opts.purchases} purchase rows into ${dir}`);
  const t0 = performance.now();
  const info = writeLargeDataset(dir, opts);
  const done: Generated = {
    ...opts,
    transactionBytes: info.transactionBytes,
    generateSeconds: round((performance.now() - t0) / 1000),
  };
  writeFileSync(stamp, JSON.stringify(done) + '\n');
  say(`generated in ${done.generateSeconds} s (${round(info.transactionBytes / MB)} MB)`);
  return done;
}

async function main(): Promise<void> {
  if (values.measure) {
    if (values.data === undefined || values.prefix === undefined) {
      throw new Error('--measure needs --data and --prefix');
    }
    await measure(values.data, values.prefix);
    return;
  }
  const rows = Number(values.rows);
  const scale = Math.min(1, rows / HM_SIZE.purchases);
  const opts: LargeOptions = {
    purchases: rows,
    customers: Number(values.customers ?? Math.max(100, Math.round(HM_SIZE.customers * scale))),
    articles: Number(values.articles ?? Math.max(100, Math.round(HM_SIZE.articles * scale))),
    days: Number(values.days),
    seed: 31,
  };
  for (const [k, v] of Object.entries(opts)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer`);
  }
  const dir = values.data ?? join(ROOT, '.stack', 'bench-load', String(rows));
  const generated = ensureData(dir, opts);

  const config = loadConfig();
  const endpoints = await ensureStack(config);
  const prefix = `bench-load-${randomUUID().slice(0, 8)}.`;
  const loadBefore = loadavg();
  say(
    `loading onto topics ${prefix}* (load average ${loadBefore.map((x) => round(x, 2)).join(' ')})`,
  );
  let child: Record<string, unknown>;
  try {
    child = await runMeasureChild(
      'bench/load.ts',
      ['--measure', '--data', dir, '--prefix', prefix],
      'the load',
    );
  } finally {
    const kafka = createKafka(endpoints, 'rec-bench-load', createLogger('warn', 'bench-load'));
    const admin = kafka.admin();
    await admin.connect();
    const mine = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
    if (mine.length > 0) await admin.deleteTopics({ topics: mine });
    await admin.disconnect();
    say(`deleted ${String(mine.length)} topics`);
    if (!values['keep-data'] && generated !== null) rmSync(dir, { recursive: true, force: true });
  }
  const loadAfter = loadavg();
  const total = Number(child.total_s);
  const events = Object.values(child.published as Record<string, number>).reduce(
    (a, b) => a + b,
    0,
  );
  process.stdout.write(
    JSON.stringify({
      bench: 'load',
      purchase_rows: rows,
      customers: opts.customers,
      articles: opts.articles,
      transactions_mb: generated === null ? null : round(generated.transactionBytes / MB),
      ...child,
      rows_per_s: Math.round(rows / total),
      events_per_s: Math.round(events / total),
      machine: {
        cpus: availableParallelism(),
        loadavg_before: loadBefore.map((x) => round(x, 2)),
        loadavg_after: loadAfter.map((x) => round(x, 2)),
      },
    }) + '\n',
  );
}

main().catch((err: unknown) => {
  console.error(`bench:load failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
