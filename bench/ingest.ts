/**
 * `npm run bench:ingest [-- --data <dir>] [--events N] [--live-rate N] [--live-seconds N]`
 *
 * Ingestion benchmark on the real stack. Builds >= 1M purchase events by re-keying the purchases
 * of an H&M-layout folder (default ../shared/data/hm-sample): copy c of every purchase gets
 * customer `<id>-c<c>` and its own event id, so each copy is a new set of customers with real
 * baskets, repeat buying and article skew. Then, in one run, on fresh topics and a fresh Redis
 * namespace:
 *   1. publishes them all (not timed as ingestion);
 *   2. ceiling: a bare consumer group that only decodes and validates, events/s;
 *   3. processors: the real consumer groups from offset 0 to caught up, sustained events/s; the
 *      CPU they cost per event: this process's (the processors run in it: `node_cpu_us_per_event`)
 *      and Redis's (INFO cpu: `redis_us_per_event`), and Redis's commands per event (INFO
 *      commandstats, scripts' inner commands included: `redis_top_commands`);
 *   4. freshness: with the processors running and caught up, publishes live events at a steady
 *      rate (`--live-rate`, default half the sustained rate of step 3: `freshness_rate_per_s`)
 *      and measures, for a sample, the time from send to the event being visible in Redis (with
 *      what may explain a slow probe: Redis forks meanwhile, this process's longest event-loop
 *      stall);
 *   5. Redis memory per customer and per article (MEMORY USAGE over a sample of each).
 * Prints progress, then one JSON line with the figures last. Topics and keys are deleted after.
 * `main` is the run's outline; each step is a function below it (buildDataset, publish,
 * decodeCeiling, processFromStart, freshness, memoryUsage, resultLine).
 */
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createRedis, type RedisClient } from '../common/redis.ts';
import { hostCpu } from './serve/cpu.ts';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Admin, Kafka, Producer } from 'kafkajs';
import { bootstrap, type Codecs } from '../streams/bootstrap.ts';
import { consumerLag } from '../streams/admin.ts';
import { loadConfig, type EmbeddingsSwitch } from '../common/config.ts';
import { runConsumer } from '../streams/consumer.ts';
import { keySpace, type KeySpace } from '../features/keys.ts';
import { deleteNamespace } from '../features/state.ts';
import { createKafka, createRegistryClient } from '../streams/kafka.ts';
import { createLogger, type Logger } from '../common/logger.ts';
import { readDataset } from '../streams/loader/dataset.ts';
import { EventProducer, createIdempotentProducer } from '../streams/producer.ts';
import { ensureStack } from '../stack/stack.ts';
import { topics as makeTopics, allTopics, type Topics } from '../streams/topics.ts';
import type { Article, Customer, Purchase } from '../schemas/events.ts';
import { createProcessorMetrics } from '../processors/metrics.ts';
import { startProcessors, type RunningProcessors } from '../processors/start.ts';

const DEFAULT_DATA = fileURLToPath(new URL('../../shared/data/hm-sample', import.meta.url));

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: DEFAULT_DATA },
    events: { type: 'string', default: '1000000' },
    'live-rate': { type: 'string' },
    'live-seconds': { type: 'string', default: '15' },
    partitions: { type: 'string', default: '3' },
  },
});
const TARGET = Number(values.events);
/** The freshness step's rate: `--live-rate`, else half the measured sustained rate. */
const LIVE_RATE_OPTION = values['live-rate'] === undefined ? null : Number(values['live-rate']);
const LIVE_SECONDS = Number(values['live-seconds']);

const say = (msg: string) => {
  process.stderr.write(`[bench:ingest] ${msg}\n`);
};
const pct = (sorted: number[], p: number) =>
  sorted.length === 0
    ? NaN
    : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  if (!existsSync(values.data)) {
    throw new Error(`no dataset at ${values.data}; pass --data <dir> (H&M layout)`);
  }
  const config = loadConfig();
  const logger = createLogger('warn', 'bench');
  const endpoints = await ensureStack(config);
  const runId = randomUUID().slice(0, 8);
  const topics = makeTopics(`bench-${runId}.`, Number(values.partitions));
  const kafka = createKafka(endpoints, 'rec-bench', logger);
  const redis = createRedis(endpoints, { maxRetriesPerRequest: null });
  const ns = `bench${runId}`;
  const keys = keySpace(ns);

  let dataset: BenchDataset | null = await buildDataset(values.data);

  const { codecs } = await bootstrap({
    kafka,
    registry: createRegistryClient(endpoints),
    topics,
    logger,
  });
  const producer = createIdempotentProducer(kafka);
  await producer.connect();
  const embeddings = config.embeddings;
  const run: Run = { runId, logger, topics, kafka, redis, keys, codecs, producer, embeddings };
  try {
    const published = await publish(run, dataset);
    // The processors run in this process: what they measure must not include collecting a heap
    // holding every published event (a processor process does not hold them). Only what the
    // later steps use is kept.
    const kept = keepAfterPublish(dataset);
    dataset = null;

    const admin = kafka.admin();
    await admin.connect();

    const ceiling = await decodeCeiling(run, admin);
    const processing = await processFromStart(run, admin, kept.eventCount);
    const liveRate = LIVE_RATE_OPTION ?? Math.max(1, Math.round(processing.sustained / 2));
    const { latencies, forks, loopDelayMaxMs } = await freshness(
      run,
      kept.liveSource,
      published.purchases,
      processing.running,
      liveRate,
    );
    const memory = await memoryUsage(run, kept);
    await admin.disconnect();

    console.log(
      JSON.stringify(
        resultLine(
          kept.eventCount,
          published,
          ceiling,
          processing,
          { rate: liveRate, latencies, forks, loopDelayMaxMs },
          memory,
        ),
      ),
    );
  } finally {
    await producer.disconnect();
    const admin = kafka.admin();
    await admin.connect();
    await admin
      .deleteTopics({ topics: allTopics(topics).flatMap((d) => [d.name, d.dlq]) })
      .catch(() => undefined);
    await admin.disconnect();
    await deleteNamespace(redis, keys);
    redis.disconnect();
  }
}

/** What the steps share: the run's id, topics, clients, key space, codecs and producer. */
interface Run {
  readonly runId: string;
  readonly logger: Logger;
  readonly topics: Topics;
  readonly kafka: Kafka;
  readonly redis: RedisClient;
  readonly keys: KeySpace;
  readonly codecs: Codecs;
  readonly producer: Producer;
  /** The deployment's embeddings switch (EMBEDDINGS): on, the taste group processes too. */
  readonly embeddings: EmbeddingsSwitch;
}

/** What the benchmark publishes: re-keyed copies of the dataset's purchases, and their metadata. */
interface BenchDataset {
  /** The purchase events, in event-time order. */
  readonly events: Purchase[];
  readonly customers: Customer[];
  /** The articles bought. */
  readonly articles: Article[];
}

/** Events: re-keyed copies of the dataset's purchases, in event-time order. */
async function buildDataset(dir: string): Promise<BenchDataset> {
  const data = await readDataset(dir);
  const copies = Math.ceil(TARGET / data.purchases.length);
  const events: Purchase[] = [];
  for (const p of data.purchases) {
    for (let c = 0; c < copies; c++) {
      events.push({ ...p, event_id: `${p.event_id}c${c}`, customer_id: `${p.customer_id}-c${c}` });
    }
  }
  const customers = data.customers.flatMap((cu) =>
    Array.from({ length: copies }, (_, c) => ({ ...cu, customer_id: `${cu.customer_id}-c${c}` })),
  );
  const bought = new Set(data.purchases.map((p) => p.article_id));
  const articles = data.articles.filter((a) => bought.has(a.article_id));
  say(
    `${events.length} purchase events (${copies} re-keyed copies of ${data.purchases.length}), ${articles.length} articles, ${customers.length} customers`,
  );
  return { events, customers, articles };
}

/** What the steps after publishing use of the dataset. */
interface Kept {
  readonly eventCount: number;
  /** The last events published: step 4's live events are copies of them. */
  readonly liveSource: Purchase[];
  /** Samples of the customers and articles whose memory step 5 measures. */
  readonly customerIds: string[];
  readonly articleIds: string[];
}

function keepAfterPublish({ events, customers, articles }: BenchDataset): Kept {
  return {
    eventCount: events.length,
    liveSource: events.slice(-20_000),
    customerIds: customers.slice(0, 500).map((c) => c.customer_id),
    articleIds: articles.slice(0, 500).map((a) => a.article_id),
  };
}

/** The purchases' producer (step 4 sends the live events with it) and the publishing rate. */
interface Published {
  readonly purchases: EventProducer<Purchase>;
  readonly publishPerS: number;
}

/** 1. publish: articles, customers, then the purchases (not timed as ingestion). */
async function publish(
  run: Run,
  { events, customers, articles }: BenchDataset,
): Promise<Published> {
  const { producer, topics, codecs } = run;
  const t = performance.now();
  await new EventProducer(producer, topics.articles, codecs.articles).send(articles);
  await new EventProducer(producer, topics.customers, codecs.customers).send(customers);
  const purchases = new EventProducer(producer, topics.purchases, codecs.purchases);
  await purchases.send(events, {
    chunkSize: 5_000,
    onProgress: (n) => {
      if (n % 200_000 < 5_000) say(`published ${n}`);
    },
  });
  const publishPerS = events.length / ((performance.now() - t) / 1000);
  say(
    `published in ${((performance.now() - t) / 1000).toFixed(1)} s (${Math.round(publishPerS)}/s)`,
  );
  return { purchases, publishPerS };
}

/** Until the group has committed up to the end of the topic. */
async function waitCaughtUp(admin: Admin, group: string, topic: string): Promise<void> {
  for (;;) {
    const lag = (await consumerLag(admin, group, topic)).reduce((s, p) => s + p.lag, 0);
    if (lag <= 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** 2. ceiling: a bare consumer group that only decodes and validates; events/s. */
async function decodeCeiling(run: Run, admin: Admin): Promise<number> {
  const { runId, kafka, topics, codecs, producer, logger } = run;
  const ceilingGroup = `bench-ceiling-${runId}`;
  let decoded = 0;
  const t = performance.now();
  const bare = await runConsumer({
    kafka,
    groupId: ceilingGroup,
    topic: topics.purchases,
    codec: codecs.purchases,
    dlqProducer: producer,
    logger,
    maxBytesPerPartition: 2_097_152,
    handler: (records) => {
      decoded += records.length;
      return Promise.resolve(undefined);
    },
  });
  await waitCaughtUp(admin, ceilingGroup, topics.purchases.name);
  const ceilingS = (performance.now() - t) / 1000;
  await bare.stop();
  const ceiling = decoded / ceilingS;
  say(`ceiling (decode only): ${Math.round(ceiling)} events/s over ${ceilingS.toFixed(1)} s`);
  return ceiling;
}

/** Step 3's figures, and the processors, still running for step 4. */
interface Processing {
  readonly running: RunningProcessors;
  /** Redis's used_memory before the processors started. */
  readonly redisBefore: number;
  readonly procS: number;
  readonly cpu: NodeJS.CpuUsage;
  /** Events/s from offset 0 to caught up. */
  readonly sustained: number;
  readonly batchSum: number;
  readonly batchCount: number;
  /** Redis's CPU seconds (INFO cpu) over the step. */
  readonly redisCpuS: number;
  /** Cores the whole machine was busy on average over the step (Linux /proc/stat; NaN elsewhere). */
  readonly hostCores: number;
  /** Per Redis command (scripts' inner commands included): calls and microseconds over the step. */
  readonly commands: Map<string, { calls: number; usec: number }>;
}

/** Redis's CPU seconds so far (INFO cpu: user + sys of the server, its threads included). */
async function redisCpu(redis: RedisClient): Promise<number> {
  const info = await redis.info('cpu');
  const f = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return f('used_cpu_sys') + f('used_cpu_user');
}

/** INFO commandstats: per command, calls and microseconds so far. */
async function commandStats(
  redis: RedisClient,
): Promise<Map<string, { calls: number; usec: number }>> {
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of (await redis.info('commandstats')).matchAll(
    /cmdstat_([^:]+):calls=(\d+),usec=(\d+)/g,
  )) {
    out.set(m[1] ?? '', { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return out;
}

/** 3. processors: the real consumer groups from offset 0 to caught up; sustained events/s. */
async function processFromStart(run: Run, admin: Admin, eventCount: number): Promise<Processing> {
  const { runId, kafka, redis, codecs, topics, keys, logger, producer } = run;
  const metrics = createProcessorMetrics(false);
  const redisBefore = Number((await redis.info('memory')).match(/used_memory:(\d+)/)?.[1] ?? 0);
  const redisCpu0 = await redisCpu(redis);
  const commands0 = await commandStats(redis);
  const host0 = hostCpu();
  const cpuBefore = process.cpuUsage();
  const t = performance.now();
  const running = await startProcessors({
    kafka,
    redis,
    codecs,
    topics,
    keys,
    logger,
    metrics,
    dlqProducer: producer,
    groupPrefix: `bench-proc-${runId}`,
    embeddings: run.embeddings,
  });
  const purchaseGroup = running.groups.purchases;
  const progress = setInterval(() => {
    void metrics.events.get().then((m) => {
      const n = m.values.find((v) => v.labels.topic === topics.purchases.name)?.value ?? 0;
      say(`processed ${n} (${Math.round(n / ((performance.now() - t) / 1000))}/s)`);
    });
  }, 10_000);
  await waitCaughtUp(admin, purchaseGroup, topics.purchases.name);
  clearInterval(progress);
  const procS = (performance.now() - t) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const host1 = hostCpu();
  const hostCores =
    host0 === null || host1 === null
      ? NaN
      : ((host1.busy - host0.busy) / Math.max(1, host1.total - host0.total)) *
        availableParallelism();
  const redisCpuS = (await redisCpu(redis)) - redisCpu0;
  const commands = new Map(
    [...(await commandStats(redis))].map(([name, c]) => {
      const before = commands0.get(name) ?? { calls: 0, usec: 0 };
      return [name, { calls: c.calls - before.calls, usec: c.usec - before.usec }];
    }),
  );
  const sustained = eventCount / procS;
  const batch = await metrics.batchSeconds.get();
  const batchSum =
    batch.values.find(
      (v) => v.metricName?.endsWith('_sum') && v.labels.topic === topics.purchases.name,
    )?.value ?? 0;
  const batchCount =
    batch.values.find(
      (v) => v.metricName?.endsWith('_count') && v.labels.topic === topics.purchases.name,
    )?.value ?? 0;
  say(
    `processors: ${Math.round(sustained)} events/s over ${procS.toFixed(1)} s, ${batchCount} batches`,
  );
  return {
    running,
    redisBefore,
    procS,
    cpu,
    sustained,
    batchSum,
    batchCount,
    redisCpuS,
    commands,
    hostCores,
  };
}

/** Step 4's latencies (ms, ascending) and what may explain a slow one. */
interface Freshness {
  readonly latencies: number[];
  /** Forks Redis made meanwhile (an AOF rewrite or a snapshot copies the dataset's pages). */
  readonly forks: number;
  /** The longest this process's event loop (the processors run in it) was blocked, ms. */
  readonly loopDelayMaxMs: number;
}

async function redisForks(redis: RedisClient): Promise<number> {
  return Number(/total_forks:(\d+)/.exec(await redis.info('stats'))?.[1] ?? NaN);
}

/**
 * 4. freshness: live events at a steady rate, probes polled in Redis; the processors are stopped
 * after. Returns the probes' latencies (ms), ascending.
 */
async function freshness(
  run: Run,
  events: Purchase[],
  purchases: EventProducer<Purchase>,
  running: RunningProcessors,
  rate: number,
): Promise<Freshness> {
  const { runId, redis, keys, producer, topics } = run;
  const forks0 = await redisForks(redis);
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const liveCount = rate * LIVE_SECONDS;
  const live: Purchase[] = Array.from({ length: liveCount }, (_, i) => {
    const src = events[i % events.length] as Purchase;
    return {
      ...src,
      event_id: `live${runId}x${i}`,
      event_time: (events.at(-1)?.event_time ?? 0) + i,
    };
  });
  const latencies: number[] = [];
  const probes = new Map<string, { customer: string; sent: number }>();
  const state = { polling: true };
  const poller = (async () => {
    while (state.polling || probes.size > 0) {
      const entries = [...probes.entries()];
      if (entries.length > 0) {
        const pipe = redis.pipeline();
        for (const [id, p] of entries) pipe.hexists(keys.customer(p.customer).seen, id);
        const res = (await pipe.exec()) ?? [];
        const now = performance.now();
        entries.forEach(([id, p], i) => {
          if (res[i]?.[1] === 1) {
            latencies.push(now - p.sent);
            probes.delete(id);
          }
        });
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  const chunk = Math.max(1, Math.round(rate / 20)); // 20 sends a second
  const liveStart = performance.now();
  for (let i = 0; i < live.length; i += chunk) {
    const due = liveStart + (i / rate) * 1000;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const part = live.slice(i, i + chunk);
    const probe = part[part.length - 1] as Purchase;
    const sent = performance.now();
    probes.set(probe.event_id, { customer: probe.customer_id, sent });
    await producer.send({
      topic: topics.purchases.name,
      acks: -1,
      messages: part.map((e) => purchases.toMessage(e)),
    });
  }
  state.polling = false;
  await Promise.race([poller, new Promise((r) => setTimeout(r, 30_000))]);
  loopDelay.disable();
  await running.stop();
  latencies.sort((a, b) => a - b);
  const forks = (await redisForks(redis)) - forks0;
  say(
    `freshness over ${latencies.length} probes at ${rate}/s: p50 ${round(pct(latencies, 0.5))} ms, p99 ${round(pct(latencies, 0.99))} ms`,
  );
  return { latencies, forks, loopDelayMaxMs: loopDelay.max / 1e6 };
}

/** Step 5's figures: bytes per customer and per article, Redis's used_memory at the end. */
interface Memory {
  readonly perCustomer: number;
  readonly perArticle: number;
  readonly redisAfter: number;
}

/** 5. memory per customer / article (MEMORY USAGE over a sample of each), and Redis's after. */
async function memoryUsage(run: Run, { customerIds, articleIds }: Kept): Promise<Memory> {
  const { redis, keys } = run;
  const sample = async (ids: string[], keysOf: (id: string) => string[]) => {
    const pipe = redis.pipeline();
    for (const id of ids)
      for (const k of keysOf(id)) pipe.call('MEMORY', 'USAGE', k, 'SAMPLES', '0');
    const res = (await pipe.exec()) ?? [];
    return res.reduce((s, [, v]) => s + (typeof v === 'number' ? v : 0), 0) / ids.length;
  };
  const perCustomer = await sample(customerIds, (id) => {
    const k = keys.customer(id);
    return [k.seen, k.state, k.recent, k.window, k.meta];
  });
  const perArticle = await sample(articleIds, (id) => {
    const k = keys.article(id);
    return [k.stats, k.buyers, k.copurchase, k.meta, k.summary, k.offsets];
  });
  const redisAfter = Number((await redis.info('memory')).match(/used_memory:(\d+)/)?.[1] ?? 0);
  return { perCustomer, perArticle, redisAfter };
}

/** The JSON line printed last: the figures of every step. */
function resultLine(
  eventCount: number,
  { publishPerS }: Published,
  ceiling: number,
  {
    procS,
    cpu,
    sustained,
    batchSum,
    batchCount,
    redisBefore,
    redisCpuS,
    commands,
    hostCores,
  }: Processing,
  { rate, latencies, forks, loopDelayMaxMs }: Freshness & { rate: number },
  { perCustomer, perArticle, redisAfter }: Memory,
): Record<string, unknown> {
  return {
    bench: 'ingest',
    data: values.data,
    events: eventCount,
    partitions: Number(values.partitions),
    events_per_s: Math.round(sustained),
    ceiling_events_per_s: Math.round(ceiling),
    ratio_to_ceiling: round(sustained / ceiling, 3),
    processing_s: round(procS),
    batches: batchCount,
    mean_batch_ms: round((batchSum / Math.max(batchCount, 1)) * 1000),
    processor_cpu_s: round((cpu.user + cpu.system) / 1e6),
    node_cpu_us_per_event: round((cpu.user + cpu.system) / eventCount),
    redis_us_per_event: round((redisCpuS * 1e6) / eventCount),
    // The machine during step 3: every process (the processors, Redis, Kafka, the rest), and
    // what the processors' Node work and Redis took of it.
    host_busy_cores: round(hostCores, 2),
    processors_cores: round((cpu.user + cpu.system) / 1e6 / procS, 2),
    redis_cores: round(redisCpuS / procS, 2),
    cores: availableParallelism(),
    redis_commands_per_event: round(
      [...commands.values()].reduce((s, c) => s + c.calls, 0) / eventCount,
      2,
    ),
    redis_top_commands: [...commands]
      .sort(([, a], [, b]) => b.usec - a.usec)
      .slice(0, 10)
      .map(([name, c]) => ({
        command: name,
        calls_per_event: round(c.calls / eventCount, 2),
        us_per_event: round(c.usec / eventCount, 2),
      })),
    freshness_rate_per_s: rate,
    freshness_probes: latencies.length,
    freshness_p50_ms: round(pct(latencies, 0.5)),
    freshness_p99_ms: round(pct(latencies, 0.99)),
    freshness_max_ms: round(latencies.at(-1) ?? NaN),
    freshness_redis_forks: forks,
    freshness_event_loop_max_ms: round(loopDelayMaxMs),
    redis_bytes_per_customer: Math.round(perCustomer),
    redis_bytes_per_article: Math.round(perArticle),
    redis_used_mb_delta: round((redisAfter - redisBefore) / 1048576),
    publish_events_per_s: Math.round(publishPerS),
  };
}

main().catch((err: unknown) => {
  console.error(
    `bench:ingest failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
  process.exit(1);
});
