/**
 * Property-based fuzz of the HTTP API from its own `/openapi.json`: Schemathesis (from the pinned
 * venv) generates a few thousand requests — schema examples, boundary values, random valid and
 * invalid inputs, undeclared methods — against a real instance on the real Redis, and runs every
 * check it has: no 5xx, every response matching its declared schema and status, valid requests
 * accepted, invalid ones refused with a 4xx, undeclared methods answered 405. The seed is fixed,
 * so a failure replays. The examples of the document name a customer and an article the store
 * knows, and a model is active, so those requests go through ranking. Schemathesis holds an API
 * key and the instance has Kafka (the suite's topics), so `POST /v1/events/purchases` is fuzzed
 * through to the producer (and its key check, by Schemathesis' own probes without the key).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../common/config.ts';
import { createLogger } from '../../common/logger.ts';
import { Redis } from 'ioredis';
import { featureNames } from '../../features/definitions.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { buildFixtureModel } from '../../models/fixture.ts';
import { loadModel } from '../../models/model-meta.ts';
import { activateModel, registerModel } from '../../models/registry.ts';
import { applyArticles, applyCustomers } from '../../processors/metadata.ts';
import { PurchaseProcessor } from '../../processors/purchases.ts';
import { defineScripts } from '../../processors/scripts.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import { startServing, type ServingHandle } from '../../serving/server.ts';
import { ensurePythonEnv } from '../../training/venv.ts';
import { Secret } from '../../common/redact.ts';
import { bootstrap } from '../../streams/bootstrap.ts';
import { stackContext } from '../helpers.ts';

const T0 = Date.UTC(2020, 8, 1);
/** The article id of the OpenAPI examples (serving/api-schemas.ts). */
const EXAMPLE_ARTICLE = '0706016001';

describe('the API under Schemathesis', () => {
  const ctx = stackContext('fuzz');
  const apiKey = `fuzz-key-${randomUUID()}`;
  let serving: ServingHandle;
  let redis: Redis;
  const keys = keySpace(`fuzz${randomUUID().slice(0, 8)}`);
  const work = mkdtempSync(join(tmpdir(), 'rec-fuzz-'));

  beforeAll(async () => {
    // State for the OpenAPI examples (customer `cust000001`, article `0706016001`), written by the
    // real processor scripts, and an active 20-tree model: the example requests reach candidate
    // reads, feature rows and ONNX scoring, not only the cold-start and 404 paths.
    redis = new Redis(loadConfig().redisUrl);
    const scripts = defineScripts(redis);
    const record = <T>(value: T, offset: number): DecodedRecord<T> => ({
      value,
      key: null,
      topic: 'fuzz',
      partition: 0,
      offset: String(offset),
      timestamp: 0,
    });
    const articles = [
      ...makeArticles(20, T0),
      { ...makeArticles(1, T0)[0]!, article_id: EXAMPLE_ARTICLE },
    ];
    await applyArticles(
      redis,
      keys,
      scripts,
      articles.map((a, i) => record(a, i)),
    );
    await applyCustomers(
      redis,
      keys,
      scripts,
      makeCustomers(10, T0).map((c, i) => record(c, i)),
    );
    const purchases = makePurchases({
      count: 200,
      customers: 10,
      articles: 20,
      start: T0,
      days: 10,
      seed: 3,
    });
    purchases.push({ ...purchases[0]!, event_id: 'fuzz-example', article_id: EXAMPLE_ARTICLE });
    await new PurchaseProcessor(redis, keys, scripts).apply(
      purchases.map((p, i) => ({ ...record(p, i), key: p.customer_id })),
    );
    const built = await buildFixtureModel(work, { trees: 20, seed: 4, version: 'fixture-fuzz-4' });
    await bootstrap(ctx);
    const model = await loadModel(built.onnxPath, built.metaPath, featureNames(false));
    await registerModel(redis, keys, model);
    await activateModel(redis, keys, model.meta.version, { available: featureNames(false) });
    serving = await startServing({
      redisUrl: loadConfig().redisUrl,
      keys,
      logger: createLogger('silent', 'fuzz'),
      port: 0,
      host: '127.0.0.1',
      allowFixtureModel: true,
      streams: { kafka: ctx.kafka, registry: ctx.registry, topics: ctx.topics },
      apiKeys: [new Secret(apiKey)],
    });
    const known = (await (await fetch(`${serving.url}/v1/recommendations/cust000001`)).json()) as {
      cold_start: boolean;
      model_version: string;
    };
    expect(known).toMatchObject({ cold_start: false, model_version: 'fixture-fuzz-4' });
  });
  afterAll(async () => {
    await serving.close();
    await deleteNamespace(redis, keys);
    redis.disconnect();
    rmSync(work, { recursive: true, force: true });
    await ctx.cleanup();
  });

  it('answers every generated request without a 5xx and as its schema says', async () => {
    const st = join(dirname(await ensurePythonEnv()), 'st');
    // A body over INGEST_MAX_BYTES is refused with 413 before it is parsed: a rejection of
    // invalid data like the 4xx Schemathesis expects by default (to which it is added here).
    writeFileSync(
      join(work, 'schemathesis.toml'),
      '[checks.negative_data_rejection]\n' +
        'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]\n',
    );
    // Asynchronous: the API answering Schemathesis runs in this process's event loop.
    const child = spawn(
      st,
      [
        'run',
        `${serving.url}/openapi.json`,
        '--url',
        serving.url,
        '--header',
        `Authorization: Bearer ${apiKey}`,
        '--checks',
        'all',
        '--max-examples',
        '150',
        '--seed',
        '20261130',
        '--no-color',
      ],
      // In a folder of its own: Schemathesis keeps a cache (`.schemathesis/`) where it runs.
      { cwd: work, env: { ...process.env, SCHEMATHESIS_TELEMETRY: 'false' } },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const status = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(status, out.slice(-4_000)).toBe(0);
    const generated = Number(/(\d+) generated/.exec(out)?.[1] ?? 0);
    expect(generated, out.slice(-2_000)).toBeGreaterThanOrEqual(1_500);
    expect(out).toMatch(new RegExp(`${generated} generated, ${generated} passed`));
    // The key reached the ingest route: batches were answered 202, and events produced.
    const ingested = (await serving.metrics.requestSeconds.get()).values.find(
      (v) =>
        v.metricName === 'rec_serving_request_duration_seconds_count' &&
        v.labels.route === '/v1/events/purchases' &&
        v.labels.status === '202',
    );
    expect(ingested?.value ?? 0).toBeGreaterThan(10);
    const accepted = (await serving.metrics.ingestEvents.get()).values.find(
      (v) => v.labels.status === 'accepted',
    );
    expect(accepted?.value ?? 0).toBeGreaterThan(0);
  }, 300_000);
});
