/**
 * `npm run demo [-- --data <dir>] [--reload]`: the whole story so far, end to end.
 *  1. bring the local stack up (or use the services named by KAFKA_BROKERS / SCHEMA_REGISTRY_URL /
 *     REDIS_URL);
 *  2. create topics, register schemas, load an H&M-layout folder (default ../shared/data/hm-sample
 *     beside the checkout) into Kafka — once: a re-run recognises the folder it loaded and says so;
 *     it refuses to publish into topics that hold purchases already (`--reload` does, warning);
 *  3. run the processors over it until they have caught up, and print live features;
 *  4. train a first model (one training cycle by the recipe, training/recipe.ts: rows replayed at
 *     weekly cutoffs, LightGBM LambdaRank, ONNX, parity check, the gate on held-out weeks) and
 *     print its MAP@12 against the baselines with the gate's intervals;
 *  5. start the API and print ready-to-paste curl lines and the demo page's URL (`/demo`, which
 *     may buy through the HTTP ingest with a key made for the run, or DEMO_PAGE_KEY). It ranks with the promoted model (this
 *     run's, if it passed the gate, or one promoted before); without one it ranks with the
 *     documented heuristic `heuristic-v2` and says so, here and in every answer (`ranker`). The
 *     untrained fixture ranker is never activated: it is for benchmarks and tests only, and
 *     serving refuses it without SERVING_ALLOW_FIXTURE_MODEL=true.
 * The API stays up until Ctrl-C (`--exit` stops after a self-check request instead).
 * `main` is the outline; the steps are the functions below it (bringUpStack, runProcessors,
 * showLiveFeatures, trainFirstModel, startApi, tryTheApi; the embedding step is ./embeddings.ts).
 * demo/ sits at the top of the import graph: it drives the stack, the loader, the processors,
 * training and serving.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Kafka } from 'kafkajs';
import { createRedis, type RedisClient } from '../common/redis.ts';
import { connectStreams, type Codecs } from '../streams/bootstrap.ts';
import {
  loadConfig,
  type Config,
  type EmbeddingsConfig,
  type ModelRegistryConfig,
} from '../common/config.ts';
import { keySpace, type KeySpace } from '../features/keys.ts';
import { readArticles, readCustomers, trendingTop } from '../features/state.ts';
import { createLogger, type Logger } from '../common/logger.ts';
import { Secret } from '../common/redact.ts';
import { errorMessage } from '../common/errors.ts';
import { describeLoad, purchasesHeld, runLoad, type LoadReport } from '../streams/loader/load.ts';
import {
  datasetFingerprint,
  readLoadedMarker,
  writeLoadedMarker,
} from '../streams/loader/loaded.ts';
import { createRegistryClient } from '../streams/kafka.ts';
import { createIdempotentProducer } from '../streams/producer.ts';
import { ensureStack } from '../stack/stack.ts';
import { stackPaths } from '../stack/process.ts';
import type { Topics } from '../streams/topics.ts';
import { createProcessorMetrics } from '../processors/metrics.ts';
import { startProcessors } from '../processors/start.ts';
import { activeVersion } from '../models/registry.ts';
import { HEURISTIC_VERSION } from '../serving/ranking.ts';
import { startServing, type ServingHandle } from '../serving/server.ts';
import { runCycle } from '../training/cycle.ts';
import { RECIPE, weeksRead } from '../training/recipe.ts';
import { ensurePythonEnv } from '../training/venv.ts';
import { formatRatio } from '../evaluation/stats.ts';
import { showSimilarItems } from './embeddings.ts';
import { defaultCandidateConfig } from '../serving/candidates/index.ts';
import { republishCheck } from './republish.ts';

const DEFAULT_DATA = fileURLToPath(new URL('../../shared/data/hm-sample', import.meta.url));
const day = (t: number | null) => (t === null ? '-' : new Date(t).toISOString().slice(0, 10));

async function names(
  redis: RedisClient,
  keys: KeySpace,
  ids: string[],
): Promise<Map<string, string>> {
  const states = await readArticles(redis, keys, ids);
  return new Map(
    states.map((s) => [
      s.articleId,
      [s.meta.prod_name, s.meta.colour_group_name, s.meta.product_type_name]
        .filter((x) => x !== undefined && x !== '')
        .join(', '),
    ]),
  );
}

/**
 * Start preparing the Python environment now, in a child process; `ready()` waits for it and
 * prints what it did, or why it failed; the training step then tries again and, failing too, is
 * skipped with that reason (the heuristic serves).
 */
function preparePython(): { ready: () => Promise<void> } {
  const t0 = performance.now();
  const lines: string[] = [];
  const done = ensurePythonEnv((line) => lines.push(line)).then(
    () => null,
    (err: unknown) => err,
  );
  return {
    ready: async () => {
      const err = await done;
      if (lines.length === 0 && err === null) return;
      const took = ((performance.now() - t0) / 1000).toFixed(1);
      console.log(
        `\n  python env: ${lines.join('; ')}` +
          (err === null
            ? `: ready in ${took} s, alongside the steps above`
            : `: failed (${errorMessage(err)})`),
      );
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      data: { type: 'string' },
      'no-progress': { type: 'boolean', default: false },
      exit: { type: 'boolean', default: false },
      reload: { type: 'boolean', default: false },
      port: { type: 'string', default: process.env.SERVING_PORT ?? '8080' },
    },
  });
  const dataDir = values.data ?? DEFAULT_DATA;
  if (!existsSync(dataDir)) {
    throw new Error(
      `no dataset at ${dataDir}. Point the demo at a folder in the H&M Kaggle layout ` +
        `(articles, customers, transactions_train as .csv or .parquet): npm run demo -- --data <dir>`,
    );
  }
  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'demo');
  // The Python environment (a minute of pip on a fresh clone) is prepared alongside the stack,
  // the load and the processors; its lines are printed once it is ready.
  const pythonEnv = preparePython();

  const live = await bringUpStack(config);

  console.log(`== 2/5 load ${dataDir}`);
  const report = await loadOnce(live, logger, dataDir, {
    reload: values.reload,
    progress: !values['no-progress'],
  });

  const streams = await runProcessors(live, logger);
  const now = report.lastEventTime ?? Date.now();
  const top = await showLiveFeatures(streams, now, report.mostActiveCustomer);

  await pythonEnv.ready();

  console.log('\n== embeddings (npm run embed)');
  const { kafka, codecs, topics, redis, keys } = streams;
  await showSimilarItems(
    redis,
    keys,
    top[0]?.articleId,
    // With EMBEDDINGS=on the articles sold over the weeks the training cycle reads (its history
    // weeks included), so training sees the vectors serving has; otherwise those of the last 4
    // weeks, for the similar items shown. `npm run embed` does all sold ones.
    {
      embeddings: config.embeddings,
      progress: !values['no-progress'],
      soldSince: now - (config.embeddings.enabled ? weeksRead(RECIPE) + 1 : 4) * 7 * 86_400_000,
    },
    { kafka, codecs, topics, logger },
  );

  const notPromoted = await trainFirstModel(streams, logger, config.embeddings, config.models);

  const { serving, served, apiKey } = await startApi(
    streams,
    live,
    logger,
    Number(values.port),
    notPromoted,
  );
  const purchase = { article: top[0]?.articleId ?? null, time: now };
  await tryTheApi(serving, streams.stopProcessors, {
    served,
    customerId: report.mostActiveCustomer,
    exit: values.exit,
    ingest: { apiKey, purchase },
  });
}

/** 1/5: the local stack up (or the services named by the environment); their endpoints. */
async function bringUpStack(config: Config): Promise<Readonly<Config>> {
  console.log('== 1/5 stack');
  const t0 = performance.now();
  const endpoints = await ensureStack(config, (line) => {
    console.log(`  ${line}`);
  });
  console.log(`  stack ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return Object.freeze({ ...config, ...endpoints });
}

/** What the demo keeps of a load: what the later steps use, and what a re-run recalls. */
type DemoLoad = Pick<
  LoadReport,
  'published' | 'firstEventTime' | 'lastEventTime' | 'mostActiveCustomer'
>;

/**
 * 2/5: publish the folder, unless this run's topics hold it already — a marker in Redis names the
 * folder's fingerprint (streams/loader/loaded.ts, as `npm run eval` recognises its loads) and the
 * purchases topic still holds as many records as were published. Publishing into topics that hold
 * purchases already (another folder, a changed one, or the same one again) counts nothing twice,
 * but the processors dead-letter every purchase older than their dedup horizon behind its
 * customer's latest, and two folders mix (demo/republish.ts). So the demo refuses to, naming the
 * clean start; `--reload` publishes anyway, with a warning.
 */
async function loadOnce(
  live: Readonly<Config>,
  logger: Logger,
  dataDir: string,
  opts: { reload: boolean; progress: boolean },
): Promise<DemoLoad> {
  // The content alone: the same files under another folder name are the same load.
  const fingerprint = datasetFingerprint(dataDir).hash;
  const key = `demo:loaded:${live.topicPrefix === '' ? '(no prefix)' : live.topicPrefix}`;
  const redis = createRedis(live, { maxRetriesPerRequest: null });
  try {
    const marker = opts.reload ? null : await readLoadedMarker<DemoLoad>(redis, key, fingerprint);
    const held = await purchasesHeld(live, logger);
    if (marker !== null) {
      if (held >= marker.report.published.purchases) {
        const iso = (t: number | null) => (t === null ? '-' : new Date(t).toISOString());
        console.log(
          `  already loaded on ${iso(marker.loadedAt)}: ${marker.report.published.purchases} purchases, ` +
            `${marker.report.published.articles} articles, ${marker.report.published.customers} customers ` +
            `(event time ${iso(marker.report.firstEventTime)} .. ${iso(marker.report.lastEventTime)}); ` +
            'not publishing again (--reload to publish it anyway)',
        );
        return marker.report;
      }
      console.log(
        `  loaded before, but the purchases topic holds ${held} of its ${marker.report.published.purchases} purchases`,
      );
    }
    const warning = republishCheck(held, opts.reload, stackPaths(live.stackDir).data);
    if (warning !== null) console.log(`  warning: ${warning}`);
    const report = await runLoad({ config: live, logger, dataDir, progress: opts.progress });
    for (const line of describeLoad(report)) console.log(line);
    const kept: DemoLoad = {
      published: report.published,
      firstEventTime: report.firstEventTime,
      lastEventTime: report.lastEventTime,
      mostActiveCustomer: report.mostActiveCustomer,
    };
    await writeLoadedMarker(redis, key, fingerprint, kept);
    return kept;
  } finally {
    redis.disconnect();
  }
}

/** The clients the steps after the load share. */
interface DemoStreams {
  readonly kafka: Kafka;
  readonly topics: Topics;
  readonly codecs: Codecs;
  readonly redis: RedisClient;
  readonly keys: KeySpace;
  /** The processors keep running (purchases posted to the API are applied live) until this. */
  readonly stopProcessors: () => Promise<void>;
}

/**
 * 3/5: the processors over the loaded topics until caught up, left running (with a Redis client
 * of their own) so that what the API ingests reaches the features; the clients for what follows.
 * `live` is the configuration with the stack's endpoints (main's `live`).
 */
async function runProcessors(live: Readonly<Config>, logger: Logger): Promise<DemoStreams> {
  console.log('== 3/5 processors');
  const { kafka, topics, codecs } = await connectStreams(live, 'rec-demo', logger);
  const redis = createRedis(live, { maxRetriesPerRequest: null });
  const keys = keySpace(live.redisNamespace);
  const producer = createIdempotentProducer(kafka);
  await producer.connect();
  const metrics = createProcessorMetrics(false);
  const t1 = performance.now();
  const processorsRedis = createRedis(live, { maxRetriesPerRequest: null });
  const running = await startProcessors({
    kafka,
    redis: processorsRedis,
    codecs,
    topics,
    keys,
    logger,
    metrics,
    dlqProducer: producer,
    groupPrefix: process.env.PROCESSOR_GROUP ?? 'rec-processors',
    embeddings: live.embeddings,
  });
  await running.caughtUp(600_000);
  const stopProcessors = async () => {
    await running.stop();
    await producer.disconnect();
    processorsRedis.disconnect();
  };
  const ofPurchases = (v: { labels: Partial<Record<'topic', string | number>> }) =>
    v.labels.topic === topics.purchases.name;
  const count = async (c: typeof metrics.events) =>
    (await c.get()).values.filter(ofPurchases).reduce((s, v) => s + v.value, 0);
  const applied = await count(metrics.events);
  const duplicates = await count(metrics.duplicates);
  const late = (await metrics.dlq.get()).values
    .filter((v) => ofPurchases(v) && v.labels.code === 'REC_ERR_LATE_EVENT')
    .reduce((s, v) => s + v.value, 0);
  console.log(
    `  caught up in ${((performance.now() - t1) / 1000).toFixed(1)} s: ${applied} purchases applied` +
      (duplicates > 0
        ? `, ${duplicates} skipped as already applied (published again within the dedup horizon)`
        : applied === 0 && late === 0
          ? ' (the store already holds what the topics hold)'
          : '') +
      (late > 0
        ? `, ${late} dead-lettered as older than the dedup horizon (REC_ERR_LATE_EVENT: npm run dlq -- --topic purchases)`
        : ''),
  );
  return { kafka, topics, codecs, redis, keys, stopProcessors };
}

/** Live features: the top trending articles at `now`, and the most active customer's state. */
async function showLiveFeatures(
  { redis, keys }: DemoStreams,
  now: number,
  customerId: string | null,
): Promise<{ articleId: string }[]> {
  console.log(`\nTop trending articles at ${day(now)} (7-day half-life):`);
  const top = await trendingTop(redis, keys, { n: 10, now, halfLife: '7d' });
  const topNames = await names(
    redis,
    keys,
    top.map((t) => t.articleId),
  );
  top.forEach((t, i) => {
    console.log(
      `  ${String(i + 1).padStart(2)}. ${t.articleId}  ${t.score.toFixed(2).padStart(6)}  ${topNames.get(t.articleId) ?? ''}`,
    );
  });

  if (customerId !== null) {
    const [c] = await readCustomers(redis, keys, [customerId]);
    if (c) {
      console.log(
        `\nCustomer ${customerId.slice(0, 16)}…: ${c.n} purchases, spend ${c.spend.toFixed(4)}, ` +
          `first ${day(c.first)}, last ${day(c.last)}, age ${c.meta.age ?? '-'}`,
      );
      const recent = c.recent.slice(0, 8);
      const recentNames = await names(
        redis,
        keys,
        recent.map((r) => r.articleId),
      );
      for (const r of recent) {
        console.log(
          `  ${day(r.time)}  ${r.articleId}  channel ${r.channel}  ${recentNames.get(r.articleId) ?? ''}`,
        );
      }
    }
  }
  return top;
}

/**
 * 4/5: one training cycle with its gate, its figures printed. Returns why this run promoted no
 * model (the gate's reason, or why training did not run), or null when it promoted one.
 */
async function trainFirstModel(
  streams: DemoStreams,
  logger: Logger,
  embeddings: EmbeddingsConfig,
  models: ModelRegistryConfig,
): Promise<string | null> {
  const { kafka, redis, codecs, topics, keys } = streams;
  console.log('\n== 4/5 training');
  /** Why this run promoted no model (the gate's reason, or why training did not run). */
  let notPromoted: string | null = null;
  try {
    const result = await runCycle(
      { kafka, redis, codecs, topics, keys, logger, embeddings, models },
      {
        onProgress: (line) => {
          // Per-batch counts of replay and rows, and the trial lines, are too many for the demo.
          if (!line.includes(': trial ') && !/^rows: \w+ \d+\/\d+$/.test(line)) {
            console.log(`  ${line}`);
          }
        },
      },
    );
    const { gate } = result;
    console.log(
      `  gate weeks ${gate.weeks.join(', ')}: ${gate.units} customer-weeks; MAP@12 (± s.e.), candidate ÷ method (${Math.round(gate.confidence * 100)} % interval):`,
    );
    for (const [method, v] of Object.entries(gate.map)) {
      const vs = gate.vs[method];
      console.log(
        `    ${method.padEnd(20)} ${v.mean.toFixed(4)} ± ${v.se.toFixed(4)}${vs ? `   ${formatRatio(vs)}` : ''}`,
      );
    }
    console.log(
      `  candidate recall: ${Object.entries(result.candidateRecall)
        .map(([k, v]) => `${k} ${v.toFixed(3)}`)
        .join(', ')}`,
    );
    console.log(
      `  ${result.promoted ? 'promoted' : 'not promoted'} ${result.version}: ${result.reason}`,
    );
    if (!result.promoted) notPromoted = `the gate refused ${result.version}: ${result.reason}`;
    console.log(`  (training cycle ${(result.timings.totalMs / 1000).toFixed(1)} s)`);
  } catch (err) {
    notPromoted = `training skipped: ${err instanceof Error ? err.message : String(err)}`;
    console.log(`  ${notPromoted}`);
  }
  return notPromoted;
}

/**
 * 5/5: the API up (the demo's Redis client closed first), and what it ranks with: the promoted
 * model, or the heuristic and why. Returns the server and the version it serves (null: heuristic).
 * `live` is the configuration with the stack's endpoints (main's `live`).
 */
async function startApi(
  { kafka, topics, redis, keys }: DemoStreams,
  live: Readonly<Config>,
  logger: Logger,
  port: number,
  notPromoted: string | null,
): Promise<{ serving: ServingHandle; served: string | null; apiKey: string }> {
  console.log('\n== 5/5 serving');
  const active = await activeVersion(redis, keys);
  redis.disconnect();
  // The write route needs a key: API_KEYS plus the page's (DEMO_PAGE_KEY, else one made for
  // this run); the page is handed it, so this is for a local demo only.
  const pageKey = demoPageKey(live.apiKeys);
  const serving = await startServing({
    redisUrl: live.redisUrl,
    redisClusterNodes: live.redisClusterNodes,
    keys,
    logger,
    port,
    trust: live.models.trust,
    activeCheckMs: live.models.activeCheckMs,
    streams: { kafka, registry: createRegistryClient(live), topics },
    apiKeys: pageKey.apiKeys,
    servedLog: live.servedLog,
    config: {
      ...defaultCandidateConfig(live.embeddings.enabled),
      ...(live.embeddings.namespace ? { embeddingNamespace: live.embeddings.namespace } : {}),
      ingest: live.ingest,
      demoPage: { enabled: true, ingestKey: pageKey.key },
    },
  });
  console.log(
    `  the demo page may buy with ${pageKey.generated ? 'a key made for this run' : 'DEMO_PAGE_KEY'}: ` +
      'anyone who can load the page can read it (a local demo only)',
  );
  const served = serving.live.version;
  if (served !== null) {
    // An earlier run's promoted model keeps serving when this run's candidate was refused.
    const earlier = notPromoted === null ? '' : ` (promoted before; this run: ${notPromoted})`;
    console.log(`  serving the promoted model ${served}${earlier}`);
  } else {
    if (notPromoted !== null) console.log(`  no model promoted: ${notPromoted}`);
    if (active !== null) console.log(`  ${serving.live.noModel().message}`);
    console.log(
      `  the API ranks with the documented heuristic ${HEURISTIC_VERSION} (serving/ranking.ts); ` +
        `every answer says so: model_version "${HEURISTIC_VERSION}", ranker.reason "${serving.live.noModel().reason}"`,
    );
  }
  return { serving, served, apiKey: pageKey.key.reveal() };
}

/**
 * The key the demo page buys with: DEMO_PAGE_KEY, else one made for this run; added to the
 * API_KEYS the ingest accepts.
 */
function demoPageKey(apiKeys: readonly Secret[]): {
  key: Secret;
  apiKeys: Secret[];
  generated: boolean;
} {
  const given = process.env.DEMO_PAGE_KEY;
  const key = new Secret(given ?? `demo-${randomBytes(24).toString('hex')}`);
  const known = apiKeys.some((k) => k.reveal() === key.reveal());
  return { key, apiKeys: known ? [...apiKeys] : [...apiKeys, key], generated: given === undefined };
}

/**
 * The curl lines to try, a self-check request, then either stop (`--exit`) or keep the API up
 * until Ctrl-C.
 */
async function tryTheApi(
  serving: ServingHandle,
  stopProcessors: () => Promise<void>,
  run: {
    served: string | null;
    customerId: string | null;
    exit: boolean;
    ingest: { apiKey: string; purchase: { article: string | null; time: number } };
  },
): Promise<void> {
  const { served, customerId, exit, ingest } = run;
  const shutdown = async () => {
    await serving.close();
    await stopProcessors();
  };
  const known = customerId ?? 'unknown-customer';
  const bought = JSON.stringify([
    {
      customer_id: known,
      article_id: ingest.purchase.article ?? '0706016001',
      price: 0.03,
      sales_channel_id: 2,
      event_time: ingest.purchase.time + 60_000,
    },
  ]);
  const lines = [
    `curl -s '${serving.url}/v1/recommendations/${known}?k=12' | jq .`,
    `curl -s '${serving.url}/v1/recommendations/someone-new?k=12' | jq .`,
    `curl -s '${serving.url}/v1/recommendations/${known}?k=5&explain=true' | jq .`,
    `curl -s '${serving.url}/v1/trending?segment=channel:2&k=10' | jq .`,
    `curl -s -X POST '${serving.url}/v1/events/purchases' -H 'Authorization: Bearer ${ingest.apiKey}' ` +
      `-H 'content-type: application/json' -d '${bought}' | jq .`,
    `open ${serving.url}/docs`,
  ];
  const page = `${serving.url}/demo#customer=${encodeURIComponent(known)}`;
  console.log(`  API up at ${serving.url} (${served ?? HEURISTIC_VERSION}); try:`);
  for (const l of lines) console.log(`    ${l}`);
  const check = await fetch(`${serving.url}/v1/recommendations/${known}?k=3`);
  const body = (await check.json()) as {
    items?: { article_id: string }[];
    model_version?: string;
    ranker?: { kind: string; reason?: string };
  };
  const by = body.ranker
    ? ` (${body.ranker.kind}${body.ranker.reason ? `: ${body.ranker.reason}` : ''})`
    : '';
  console.log(
    `  self-check: HTTP ${check.status}, ${body.items?.length ?? 0} items from ${body.model_version ?? '?'}${by}`,
  );
  console.log(`  the demo storefront page: ${page}`);
  if (exit) {
    await shutdown();
    return;
  }
  console.log('  the processors keep running: purchases posted to the API reach the features live');
  console.log('  (Ctrl-C to stop)');
  const stop = () => {
    void shutdown().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
