/**
 * Serving end to end over HTTP on the real stack: a generated H&M-layout folder is loaded into
 * Kafka and processed into Redis by the real processors; the API serves it with a fixture ONNX
 * ranker from the model registry (started with `allowFixtureModel`, the opt-in for tests and
 * benchmarks: serving refuses untrained fixtures otherwise); a new model is activated under
 * concurrent requests (zero failures); models serving cannot run (unknown feature, tampered
 * bytes) are refused at activation, `active` stays and the current one keeps serving (signatures,
 * spoofed announcements, the periodic check and pruning: model-registry.test.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { featureNames } from '../../features/definitions.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { runLoad, type LoadReport } from '../../streams/loader/load.ts';
import { buildFixtureModel } from '../../models/fixture.ts';
import { loadModel, type LoadedModel } from '../../models/model-meta.ts';
import type { SwapOutcome } from '../../serving/live-model.ts';
import { activateModel, readModel, registerModel } from '../../models/registry.ts';
import { startServing, type ServingHandle } from '../../serving/server.ts';
import { generateDataset } from '../fixtures/generate.ts';
import { processAll, stackContext, waitFor } from '../helpers.ts';

/** The features this build computes with embeddings off (the default). */
const FEATURE_NAMES = featureNames(false);

interface RecResponse {
  customer_id: string;
  items: { article_id: string; score: number; rank: number; sources: string[] }[];
  model_version: string;
  ranker: { kind: string; reason?: string };
  degraded: boolean;
  cold_start: boolean;
}

describe('serving over HTTP on the real stack', () => {
  const ctx = stackContext('serving');
  const ns = `s${randomUUID().slice(0, 8)}`;
  const keys = keySpace(ns);
  const dir = mkdtempSync(join(tmpdir(), 'rec-serving-'));
  const redis = new Redis(ctx.config.redisUrl);
  const swaps: SwapOutcome[] = [];
  let serving: ServingHandle;
  let report: LoadReport;
  let modelA: LoadedModel;
  let modelB: LoadedModel;
  let customers: string[];

  beforeAll(async () => {
    generateDataset(join(dir, 'data'), { customers: 60, articles: 120, purchases: 1500, seed: 21 });
    report = await runLoad({
      config: { ...ctx.config, topicPrefix: ctx.prefix },
      logger: ctx.logger,
      dataDir: join(dir, 'data'),
      progress: false,
    });
    await processAll(ctx, redis, keys, `serving-${ns}`);

    const build = async (seed: number) => {
      const out = join(dir, `model-${seed}`);
      const b = await buildFixtureModel(out, { trees: 100, seed, version: `fixture-e2e-${seed}` });
      return loadModel(b.onnxPath, b.metaPath, FEATURE_NAMES);
    };
    [modelA, modelB] = await Promise.all([build(1), build(2)]);
    await registerModel(redis, keys, modelA);
    await activateModel(redis, keys, modelA.meta.version, { available: FEATURE_NAMES });
    customers = (await redis.keys(keys.customerStates)).flatMap((k) => keys.customerOf(k) ?? []);

    serving = await startServing({
      redisUrl: ctx.config.redisUrl,
      keys,
      logger: ctx.logger,
      port: 0,
      host: '127.0.0.1',
      now: () => report.lastEventTime ?? Date.now(),
      onSwap: (o) => swaps.push(o),
      // The fixture models below are untrained: only an instance that opts in serves them.
      allowFixtureModel: true,
      // The swap test sends waves of 16 concurrent requests and wants every one answered: past
      // the default limit (4 per scorer thread) admission control would refuse some, which is
      // tested on its own in serving-app.test.ts.
      config: { maxInFlight: 16 },
    });
  });

  afterAll(async () => {
    await serving.close();
    await deleteNamespace(redis, keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
    await ctx.cleanup();
  });

  const get = async (path: string) => {
    const res = await fetch(`${serving.url}${path}`);
    return { status: res.status, body: (await res.json()) as RecResponse };
  };

  it('ranks a known customer with the active ONNX model and answers a cold customer', async () => {
    expect(customers.length).toBeGreaterThan(20);
    const known = await get(`/v1/recommendations/${customers[0]}?k=12`);
    expect(known.status).toBe(200);
    expect(known.body.model_version).toBe(modelA.meta.version);
    expect(known.body.ranker).toEqual({ kind: 'model' });
    expect(known.body.items).toHaveLength(12);
    expect(known.body.cold_start).toBe(false);
    expect(known.body.items.map((i) => i.rank)).toEqual(
      Array.from({ length: 12 }, (_, i) => i + 1),
    );
    const scores = known.body.items.map((i) => i.score);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);

    const cold = await get('/v1/recommendations/nobody-we-know?k=5');
    expect(cold.status).toBe(200);
    expect(cold.body.cold_start).toBe(true);
    expect(cold.body.items.length).toBe(5);

    const bad = await fetch(`${serving.url}/v1/recommendations/${customers[0]}?k=500`);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain('k');
  });

  it('counts its Redis commands and times the stages of each ranked request', async () => {
    const { redisCommands, stageSeconds } = serving.metrics;
    const commands = async () => (await redisCommands.get()).values[0]?.value ?? 0;
    const stages = ['candidates', 'features', 'scoring', 'http'];
    const observed = async () => {
      const values = (await stageSeconds.get()).values;
      return stages.map(
        (stage) =>
          values.find(
            (v) =>
              v.metricName === 'rec_serving_stage_duration_seconds_count' &&
              v.labels.stage === stage,
          )?.value ?? 0,
      );
    };
    const commands0 = await commands();
    const stages0 = await observed();
    const n = 5;
    for (const c of customers.slice(0, n)) {
      expect((await get(`/v1/recommendations/${c}?k=12`)).status).toBe(200);
    }
    // Candidates alone take at least three round trips of one command or more each.
    expect((await commands()) - commands0).toBeGreaterThanOrEqual(3 * n);
    const stages1 = await observed();
    expect(stages1.map((x, i) => x - (stages0[i] ?? 0))).toEqual(stages.map(() => n));
  });

  it('hot-swaps to a newly activated model under concurrent requests without a single failure', async () => {
    await registerModel(redis, keys, modelB);
    const statuses: number[] = [];
    const versions = new Set<string>();
    let swappedAtWave: number | null = null;
    let wave = 0;
    const waves = async () => {
      // Keep requests in flight before, during and for a few waves after the swap.
      for (; wave < 300; wave++) {
        if (swappedAtWave !== null && wave >= Math.max(10, swappedAtWave + 5)) break;
        const batch = await Promise.all(
          Array.from({ length: 16 }, (_, i) =>
            get(`/v1/recommendations/${customers[(wave * 16 + i) % customers.length]}?k=12`),
          ),
        );
        for (const r of batch) {
          statuses.push(r.status);
          versions.add(r.body.model_version);
        }
      }
    };
    const load = waves();
    await new Promise((r) => setTimeout(r, 100));
    await activateModel(redis, keys, modelB.meta.version, { available: FEATURE_NAMES });
    await waitFor('the swap', () => swaps.some((s) => s.version === modelB.meta.version), 20_000);
    swappedAtWave = wave;
    await load;
    expect(statuses.length).toBeGreaterThan(100);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect([...versions].sort()).toEqual([modelA.meta.version, modelB.meta.version].sort());
    expect((await get(`/v1/recommendations/${customers[1]}`)).body.model_version).toBe(
      modelB.meta.version,
    );
  });

  it('refuses to activate a model with a feature it cannot produce, or tampered bytes: active and the served model stay', async () => {
    const current = serving.live.version;
    expect(current).not.toBeNull();
    const active = await redis.get(keys.models.active);
    expect(active).toBe(current);
    const unknown = await buildFixtureModel(join(dir, 'model-unknown'), {
      features: [...FEATURE_NAMES, 'x_not_a_feature'],
      trees: 20,
      seed: 3,
      version: 'fixture-unknown-feature',
    });
    const withUnknown = await loadModel(unknown.onnxPath, unknown.metaPath, [
      ...FEATURE_NAMES,
      'x_not_a_feature',
    ]);
    await registerModel(redis, keys, withUnknown);
    await expect(
      activateModel(redis, keys, 'fixture-unknown-feature', { available: FEATURE_NAMES }),
    ).rejects.toThrow(/x_not_a_feature.*the active model stays/);
    expect(await readModel(redis, keys, 'fixture-unknown-feature')).toMatchObject({
      status: 'rejected',
      reason: expect.stringContaining('x_not_a_feature') as string,
    });
    expect(await redis.get(keys.models.active)).toBe(active);

    const tampered = {
      meta: { ...modelA.meta, version: 'fixture-tampered' },
      bytes: modelA.bytes.subarray(0, modelA.bytes.length >> 1),
    };
    await registerModel(redis, keys, tampered);
    await expect(
      activateModel(redis, keys, 'fixture-tampered', { available: FEATURE_NAMES }),
    ).rejects.toThrow(/fixture-tampered was not activated/);
    expect((await readModel(redis, keys, 'fixture-tampered'))?.status).toBe('rejected');
    expect(await redis.get(keys.models.active)).toBe(active);

    // Nothing was announced: the instance never looked at either.
    expect(swaps.map((s) => s.version)).not.toContain('fixture-unknown-feature');
    expect(swaps.map((s) => s.version)).not.toContain('fixture-tampered');
    expect(serving.live.version).toBe(current);
    const after = await get(`/v1/recommendations/${customers[2]}`);
    expect(after.status).toBe(200);
    expect(after.body.model_version).toBe(current);
  });
});
