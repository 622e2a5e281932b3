/**
 * `npm run bench:replay [-- --data <dir>] [--cutoff YYYY-MM-DD] [--runs N] [--reload]`
 *
 * The training rows' purchase replay (training/rows.ts) on the real stack, one batch of purchases
 * applied at a time (the baseline, measured in the same run) against the default batches in flight
 * (`PURCHASE_BATCHES_IN_FLIGHT`, each waiting on the one before: processors/purchases.ts
 * `applyAfter`). Loads the folder into its own topics as `npm run eval` does (reused when loaded
 * before), then builds the rows at one cutoff (default: the Wednesday a week before the data's
 * last purchase, so every purchase before it is replayed) `--runs` times each way (default 2),
 * alternated, each in a fresh namespace, and compares their purchase replay times (the rows'
 * counts, positives and candidate recall must be the same, or it fails). Progress on stderr, one
 * JSON line last on stdout: the replay time of each run, the medians, their ratio, and Redis's and
 * this process's CPU for each whole build.
 * hm-sample (30,542 purchases) replays in a few seconds; a folder of many more customers
 * (copies of it, say) shows the difference better.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { createRedis, type RedisClient } from '../common/redis.ts';
import { DAY_MS } from '../features/decay.ts';
import { keySpace } from '../features/keys.ts';
import { deleteNamespace } from '../features/state.ts';
import { ensureStack } from '../stack/stack.ts';
import { connectStreams } from '../streams/bootstrap.ts';
import { datasetTopics } from '../streams/loader/dataset-topics.ts';
import { buildTrainingRows, PURCHASE_BATCHES_IN_FLIGHT } from '../training/rows.ts';
import { readPurchases } from '../training/steps.ts';

const DEFAULT_DATA = fileURLToPath(new URL('../../shared/data/hm-sample', import.meta.url));

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: DEFAULT_DATA },
    cutoff: { type: 'string' },
    runs: { type: 'string', default: '2' },
    reload: { type: 'boolean', default: false },
  },
});

const say = (msg: string) => {
  process.stderr.write(`[bench:replay] ${msg}\n`);
};
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function redisCpu(redis: RedisClient): Promise<number> {
  const info = await redis.info('cpu');
  const field = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}

async function main(): Promise<void> {
  if (!existsSync(values.data)) throw new Error(`no dataset at ${values.data}; pass --data <dir>`);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1)
    throw new Error(`--runs must be >= 1 (got ${values.runs})`);
  const config = loadConfig();
  const base = { ...config, ...(await ensureStack(config)) };
  const logger = createLogger('warn', 'bench');
  const redis = createRedis(base);
  try {
    const prefix = await datasetTopics(
      base,
      logger,
      redis,
      values.data,
      values.reload,
      '[bench:replay]',
    );
    const { kafka, topics, codecs } = await connectStreams(
      { ...base, topicPrefix: prefix },
      'rec-bench-replay',
      logger,
    );
    const deps = { kafka, redis, codecs, topics, logger };
    let cutoff: number;
    if (values.cutoff !== undefined) {
      cutoff = Date.parse(`${values.cutoff}T00:00:00Z`);
      if (Number.isNaN(cutoff))
        throw new Error(`--cutoff must be YYYY-MM-DD (got ${values.cutoff})`);
    } else {
      const last = (await readPurchases(deps)).lastTime;
      if (last === undefined) throw new Error('the purchases topic is empty');
      // The Wednesday (weekday 3) at least a week before the last purchase's day.
      const day = Math.floor(last / DAY_MS) * DAY_MS - 7 * DAY_MS;
      cutoff = day - ((new Date(day).getUTCDay() + 7 - 3) % 7) * DAY_MS;
    }
    say(`rows at ${new Date(cutoff).toISOString().slice(0, 10)}, ${runs} run(s) each way`);

    const ways = { one_at_a_time: 1, in_flight: PURCHASE_BATCHES_IN_FLIGHT } as const;
    const seconds: Record<keyof typeof ways, number[]> = { one_at_a_time: [], in_flight: [] };
    const redisS: Record<keyof typeof ways, number[]> = { one_at_a_time: [], in_flight: [] };
    const nodeS: Record<keyof typeof ways, number[]> = { one_at_a_time: [], in_flight: [] };
    let purchases = 0;
    let rows = 0;
    let built: string | undefined; // what every run must build alike
    for (let r = 0; r < runs; r++) {
      for (const [way, inFlight] of Object.entries(ways) as [keyof typeof ways, number][]) {
        const namespace = `bench-replay-${way}`;
        const redis0 = await redisCpu(redis);
        const node0 = process.cpuUsage();
        const result = await buildTrainingRows(deps, {
          cutoffs: [cutoff],
          namespace,
          purchaseBatchesInFlight: inFlight,
        });
        const node = process.cpuUsage(node0);
        await deleteNamespace(redis, keySpace(namespace));
        const s = result.timings.purchasesMs / 1000;
        seconds[way].push(s);
        redisS[way].push((await redisCpu(redis)) - redis0);
        nodeS[way].push((node.user + node.system) / 1e6);
        purchases = result.perCutoff[0]?.purchasesApplied ?? 0;
        rows = result.rows;
        const what = JSON.stringify({
          rows: result.rows,
          queries: result.queries,
          positives: result.positives,
          recall: result.candidateRecall,
        });
        if (built === undefined) built = what;
        else if (what !== built)
          throw new Error(`${way} built ${what} where another run built ${built}`);
        say(`${way} (${inFlight} in flight): ${purchases} purchases replayed in ${round(s)} s`);
      }
    }
    const med = (xs: number[]) => round(median(xs));
    console.log(
      JSON.stringify({
        bench: 'replay',
        data: values.data,
        cutoff: new Date(cutoff).toISOString().slice(0, 10),
        purchases,
        rows,
        batches_in_flight: PURCHASE_BATCHES_IN_FLIGHT,
        one_at_a_time_s: seconds.one_at_a_time.map((x) => round(x)),
        in_flight_s: seconds.in_flight.map((x) => round(x)),
        one_at_a_time_median_s: med(seconds.one_at_a_time),
        in_flight_median_s: med(seconds.in_flight),
        ratio: round(median(seconds.in_flight) / median(seconds.one_at_a_time), 3),
        redis_cpu_s: {
          one_at_a_time: redisS.one_at_a_time.map((x) => round(x)),
          in_flight: redisS.in_flight.map((x) => round(x)),
        },
        node_cpu_s: {
          one_at_a_time: nodeS.one_at_a_time.map((x) => round(x)),
          in_flight: nodeS.in_flight.map((x) => round(x)),
        },
      }),
    );
  } finally {
    redis.disconnect();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:replay failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
