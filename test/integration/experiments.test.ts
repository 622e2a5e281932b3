/**
 * A/B experiments on the real Redis with a real serving instance over HTTP and real (fixture) ONNX
 * models, signed: an experiment is refused when a model it names is missing, rejected or fails its
 * checks; while one runs, every answer names the experiment and the customer's sticky variant
 * (cold-start customers too, degraded answers too) and is ranked by that variant's model
 * (`model_version`); metrics count per variant; stopping goes back to the active model; a
 * variant's model that fails serving's checks is answered by the heuristic, saying why; pruning
 * spares the experiment's models; the trainer's promotion can start an experiment; and
 * `npm run experiment -- start|status|stop` end to end.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../common/config.ts';
import { createLogger } from '../../common/logger.ts';
import { DAY_MS } from '../../features/decay.ts';
import { featureNames } from '../../features/definitions.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import {
  assignVariant,
  readExperiment,
  startExperiment,
  stopExperiment,
  type ExperimentVariant,
} from '../../models/experiments.ts';
import { buildFixtureModel } from '../../models/fixture.ts';
import { loadModel, type LoadedModel } from '../../models/model-meta.ts';
import { activeVersion, readModel, registerModel, rejectModel } from '../../models/registry.ts';
import { SigningKey, type ModelTrust } from '../../models/signing.ts';
import { applyArticles, applyCustomers } from '../../processors/metadata.ts';
import { PurchaseProcessor } from '../../processors/purchases.ts';
import { defineScripts } from '../../processors/scripts.ts';
import { createApp, DEFAULT_SERVING_CONFIG } from '../../serving/app.ts';
import { createServingMetrics } from '../../serving/metrics.ts';
import { startServing, type ServingHandle } from '../../serving/server.ts';
import { TrendingCache } from '../../serving/trending-cache.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { promoteModel } from '../../training/promote.ts';
import { makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import { runTsCli, waitFor } from '../helpers.ts';

const FEATURE_NAMES = featureNames(false);
const CHECK_MS = 300;
const T0 = Date.UTC(2020, 5, 1);
const NOW = T0 + 20 * DAY_MS;

interface RecJson {
  customer_id: string;
  items: { article_id: string }[];
  model_version: string;
  ranker: { kind: string; reason?: string; message?: string };
  degraded: boolean;
  experiment: string | null;
  variant: string;
}

function record<T>(value: T, key: string, offset: number, timestamp: number): DecodedRecord<T> {
  return { value, key, topic: 'test', partition: 0, offset: String(offset), timestamp };
}

const runCli = (args: string[], env: Record<string, string>) =>
  runTsCli('serving/experiment-cli.ts', args, env);

function metricValue(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) return Number(m[3]);
  }
  return NaN;
}

describe('A/B experiments', () => {
  const config = loadConfig();
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent', 'test-experiments');
  const ns = `ab${randomUUID().slice(0, 8)}`;
  const keys = keySpace(ns);
  const redis = new Redis(config.redisUrl);
  const dir = mkdtempSync(join(tmpdir(), 'rec-experiments-'));
  const signingKey = `test-signing-key-${randomUUID()}`;
  const trust: ModelTrust = { key: new SigningKey(signingKey), allowUnsigned: false };
  const checks = { available: FEATURE_NAMES, trust };
  /** Known customers (with purchases) and cold-start ones (never seen). */
  const customers = [
    ...makeCustomers(12, T0).map((c) => c.customer_id),
    ...Array.from({ length: 18 }, (_, i) => `newcomer${i}`),
  ];
  let seven: LoadedModel;
  let eight: LoadedModel;
  let serving: ServingHandle;

  const as = (version: string, m: LoadedModel): LoadedModel => ({
    meta: { ...m.meta, version },
    bytes: m.bytes,
  });
  const recommend = async (customer: string, base = serving.url): Promise<RecJson> => {
    const r = await fetch(`${base}/v1/recommendations/${customer}?k=5`);
    expect(r.status).toBe(200);
    return (await r.json()) as RecJson;
  };
  const running = (name: string | null) =>
    waitFor(
      `serving to run experiment ${name ?? '(none)'}`,
      () => (serving.experiment.current?.name ?? null) === name,
      10 * CHECK_MS,
      50,
    );

  beforeAll(async () => {
    const build = async (seed: number) => {
      const b = await buildFixtureModel(join(dir, `m${seed}`), {
        trees: 10,
        depth: 4,
        seed,
        version: `fixture-ab-${seed}`,
      });
      return loadModel(b.onnxPath, b.metaPath, FEATURE_NAMES);
    };
    [seven, eight] = await Promise.all([build(7), build(8)]);
    const scripts = defineScripts(redis);
    await applyArticles(
      redis,
      keys,
      scripts,
      makeArticles(40, T0).map((a, i) => record(a, a.article_id, i, T0)),
    );
    await applyCustomers(
      redis,
      keys,
      scripts,
      makeCustomers(12, T0).map((c, i) => record(c, c.customer_id, i, T0)),
    );
    const purchases = makePurchases({
      count: 300,
      customers: 12,
      articles: 40,
      start: T0,
      days: 19,
      seed: 3,
    }).map((p, i) => record(p, p.customer_id, i, p.event_time));
    await new PurchaseProcessor(redis, keys, scripts).apply(purchases);
    await registerModel(redis, keys, as('A', seven), { trust });
    await registerModel(redis, keys, as('B', seven), { trust });
    await registerModel(redis, keys, as('C', eight), { trust });
    await promoteModel(redis, keys, 'A', checks); // the default: a switch
    serving = await startServing({
      redisUrl: config.redisUrl,
      keys,
      logger,
      port: 0,
      host: '127.0.0.1',
      allowFixtureModel: true,
      trust,
      activeCheckMs: CHECK_MS,
      workers: 1,
      now: () => NOW,
    });
  });

  afterAll(async () => {
    await serving.close();
    await deleteNamespace(redis, keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses an experiment naming a model that is missing, rejected or fails its checks; nothing runs', async () => {
    const start = (model: string) =>
      startExperiment(
        redis,
        keys,
        {
          name: 'bad',
          variants: [
            { name: 'control', model: 'A', weight: 1 },
            { name: 'treatment', model, weight: 1 },
          ],
        },
        checks,
      );
    await expect(start('nope')).rejects.toThrow(
      /variant treatment names model nope, which is not registered/,
    );
    await registerModel(redis, keys, as('R', seven), { trust });
    await rejectModel(redis, keys, 'R', 'the gate said no');
    await expect(start('R')).rejects.toThrow(/model R, which was rejected: the gate said no/);
    await registerModel(redis, keys, as('U', seven)); // unsigned
    await expect(start('U')).rejects.toThrow(/which failed its checks.*not signed/);
    expect(await readModel(redis, keys, 'U')).toMatchObject({ status: 'rejected' });
    expect(await readExperiment(redis, keys)).toBeNull();
    const answer = await recommend(customers[0] ?? '');
    expect(answer).toMatchObject({ experiment: null, variant: 'default', model_version: 'A' });
  });

  const EXP1: ExperimentVariant[] = [
    { name: 'h', model: 'heuristic', weight: 1 },
    { name: 'b', model: 'B', weight: 1 },
    { name: 'c', model: 'C', weight: 1 },
  ];
  const expectedModel: Record<string, string> = { h: 'heuristic-v2', b: 'B', c: 'C' };
  /** Variants seen per answer of the first experiment, for the metrics test. */
  const seen = new Map<string, number>();

  it("answers carry the customer's sticky variant and are ranked by its model, cold-start customers too", async () => {
    await startExperiment(redis, keys, { name: 'exp1', salt: 'salt-1', variants: EXP1 }, checks);
    await running('exp1');
    for (const pass of [1, 2]) {
      for (const c of customers) {
        const a = await recommend(c);
        const variant = assignVariant('salt-1', EXP1, c).name;
        expect(a).toMatchObject({ experiment: 'exp1', variant, degraded: false });
        expect(a.model_version).toBe(expectedModel[variant]);
        expect(a.items.length).toBeGreaterThan(0);
        if (variant === 'h') {
          expect(a.ranker).toMatchObject({ kind: 'heuristic', reason: 'variant_heuristic' });
        } else {
          expect(a.ranker).toEqual({ kind: 'model' });
        }
        if (pass === 1) seen.set(variant, (seen.get(variant) ?? 0) + 1);
      }
    }
    expect([...seen.keys()].sort()).toEqual(['b', 'c', 'h']);
    expect(serving.experiment.current?.variants.map((v) => `${v.name}:${v.servedBy}`)).toEqual([
      'h:heuristic-v2',
      'b:B',
      'c:C',
    ]);
  });

  it('counts answers, items and time per variant in /metrics, with the weights', async () => {
    const text = await (await fetch(`${serving.url}/metrics`)).text();
    for (const [variant, n] of seen) {
      const labels = { experiment: 'exp1', variant };
      expect(
        metricValue(text, 'rec_serving_experiment_answers_total', {
          ...labels,
          model_version: expectedModel[variant] ?? '',
        }),
      ).toBe(2 * n);
      expect(metricValue(text, 'rec_serving_experiment_items_total', labels)).toBeGreaterThan(
        2 * n,
      );
      expect(
        metricValue(text, 'rec_serving_experiment_answer_duration_seconds_count', labels),
      ).toBe(metricValue(text, 'rec_serving_experiment_answers_total', labels));
    }
    expect(
      metricValue(text, 'rec_serving_experiment_variant_weight', {
        experiment: 'exp1',
        variant: 'b',
        model: 'B',
        served_by: 'B',
      }),
    ).toBe(1);
  });

  it('names the variant in degraded answers from the trending cache', async () => {
    const flaky = new Redis(config.redisUrl, {
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      commandTimeout: 2_000,
    });
    flaky.on('error', () => undefined);
    await new Promise((resolve) => flaky.once('ready', resolve));
    try {
      const cache = new TrendingCache({ redis: flaky, keys, refreshMs: 3_600_000 });
      expect(await cache.refresh()).toBe(true);
      const app = createApp({
        redis: flaky,
        keys,
        ranker: () => null,
        assign: (id) => serving.experiment.assign(id),
        logger,
        metrics: createServingMetrics(),
        config: DEFAULT_SERVING_CONFIG,
        now: () => NOW,
        trendingCache: cache,
      });
      flaky.disconnect();
      for (const c of customers.slice(0, 6)) {
        const res = await app.request(`/v1/recommendations/${c}?k=3`);
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({
          degraded: true,
          model_version: 'trending-cache',
          experiment: 'exp1',
          variant: assignVariant('salt-1', EXP1, c).name,
        });
      }
    } finally {
      flaky.disconnect();
    }
  });

  it('refuses a second experiment while one runs, and pruning spares the running one’s models', async () => {
    await expect(
      startExperiment(
        redis,
        keys,
        {
          name: 'exp2',
          variants: [
            { name: 'x', model: 'A', weight: 1 },
            { name: 'y', model: 'heuristic', weight: 1 },
          ],
        },
        checks,
      ),
    ).rejects.toThrow(/experiment exp1 is running; stop it first/);
    for (let i = 0; i < 4; i++) {
      await registerModel(redis, keys, as(`P${i}`, seven), { trust, keep: 1 });
    }
    expect(await readModel(redis, keys, 'B')).not.toBeNull();
    expect(await readModel(redis, keys, 'C')).not.toBeNull();
    expect(await readModel(redis, keys, 'A')).not.toBeNull(); // active
    expect(await readModel(redis, keys, 'P0')).toBeNull();
  });

  it('goes back to the active model when the experiment stops', async () => {
    const stopped = await stopExperiment(redis, keys, checks);
    expect(stopped).toMatchObject({ name: 'exp1', status: 'stopped', promoted: null });
    await running(null);
    for (const c of customers.slice(0, 10)) {
      expect(await recommend(c)).toMatchObject({
        experiment: null,
        variant: 'default',
        model_version: 'A',
        ranker: { kind: 'model' },
      });
    }
    const text = await (await fetch(`${serving.url}/metrics`)).text();
    expect(text).not.toMatch(/^rec_serving_experiment_variant_weight\{/m);
    await expect(stopExperiment(redis, keys, checks)).rejects.toThrow(/no experiment is running/);
  });

  it('answers a variant whose model fails serving’s checks with the heuristic, saying why; never the unchecked model', async () => {
    // Signed, then its trees replaced: only the signature can tell.
    await registerModel(redis, keys, as('T', seven), { trust });
    const meta: Record<string, unknown> = { ...seven.meta, version: 'T' };
    delete meta.onnx_sha256;
    await redis.hset(keys.models.model('T'), { meta: JSON.stringify(meta), onnx: eight.bytes });
    // Whoever can write to Redis can start an experiment by hand: serving verifies too.
    const variants = [
      { name: 't', model: 'T', weight: 1 },
      { name: 'a', model: 'A', weight: 1 },
    ];
    await redis.hset(keys.models.experiment, {
      name: 'byhand',
      salt: 'byhand',
      variants: JSON.stringify(variants),
      status: 'running',
      started_at: String(Date.now()),
    });
    await redis.publish(keys.models.channel, 'experiment:byhand');
    await running('byhand');
    expect(serving.experiment.current?.variants.find((v) => v.name === 't')).toMatchObject({
      servedBy: 'heuristic-v2',
      refused: expect.stringContaining('failed this instance') as string,
    });
    let both = 0;
    for (const c of customers) {
      const a = await recommend(c);
      const variant = assignVariant('byhand', variants, c).name;
      expect(a.variant).toBe(variant);
      if (variant === 't') {
        both |= 1;
        expect(a.model_version).toBe('heuristic-v2');
        expect(a.ranker).toMatchObject({ kind: 'heuristic', reason: 'model_refused' });
        expect(a.ranker.message).toMatch(
          /^variant t of experiment byhand: model T failed this instance's checks and was marked rejected .*; ranking with heuristic-v2$/,
        );
      } else {
        both |= 2;
        expect(a.model_version).toBe('A');
      }
    }
    expect(both).toBe(3);
    // The registry keeps the check's own reason.
    expect(await readModel(redis, keys, 'T')).toMatchObject({
      status: 'rejected',
      reason: expect.stringContaining('signature does not match') as string,
    });
    await stopExperiment(redis, keys, checks);
    await running(null);
  });

  it('promotes a gate-passing model as an experiment against the active one (PROMOTE_AS=experiment)', async () => {
    await registerModel(redis, keys, as('N', eight), { trust });
    const promotion = { as: 'experiment', experimentWeight: 10 } as const;
    const out = await promoteModel(redis, keys, 'N', { ...checks, promotion });
    expect(out).toMatchObject({
      as: 'experiment',
      experiment: {
        name: 'promote-N',
        status: 'running',
        variants: [
          { name: 'control', model: 'A', weight: 90 },
          { name: 'treatment', model: 'N', weight: 10 },
        ],
      },
    });
    expect(await activeVersion(redis, keys)).toBe('A');
    await running('promote-N');
    await registerModel(redis, keys, as('N2', eight), { trust });
    await expect(promoteModel(redis, keys, 'N2', { ...checks, promotion })).rejects.toThrow(
      /model N2 passed the gate but its experiment was not started.*experiment promote-N is running.*npm run experiment -- start --name promote-N2 --variant control=A:90 --variant treatment=N2:10/,
    );
    const stopped = await stopExperiment(redis, keys, { ...checks, promote: 'treatment' });
    expect(stopped.promoted).toBe('treatment');
    expect(await activeVersion(redis, keys)).toBe('N');
    await running(null);
    await waitFor('N to serve', async () => (await recommend('newcomer1')).model_version === 'N');
  });

  it('npm run experiment -- start | status | stop, with clear errors', async () => {
    const env = { REDIS_NAMESPACE: ns, MODEL_SIGNING_KEY: signingKey };
    const start = await runCli(
      ['start', '--name', 'cli-exp', '--variant', 'control=heuristic:3', '--variant', 'treat=B:1'],
      env,
    );
    expect(start.stderr).toBe('');
    expect(start.code).toBe(0);
    expect(start.stdout).toContain('started experiment cli-exp');
    await running('cli-exp');
    const n = new Map<string, number>();
    for (const c of customers) {
      const a = await recommend(c);
      n.set(a.variant, (n.get(a.variant) ?? 0) + 1);
    }
    const status = await runCli(['status', '--metrics', serving.url], env);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('experiment cli-exp: running');
    expect(status.stdout).toContain('salt: cli-exp');
    expect(status.stdout).toMatch(/control\theuristic\tweight 3 \(75\.0 %\)\theuristic-v2/);
    expect(status.stdout).toMatch(/treat\tB\tweight 1 \(25\.0 %\)\tregistered/);
    expect(status.stdout).toContain(`control\t${n.get('control') ?? 0} answers`);
    expect(status.stdout).toContain(`treat\t${n.get('treat') ?? 0} answers`);

    const again = await runCli(
      ['start', '--name', 'x', '--variant', 'a=A:1', '--variant', 'b=B:1'],
      env,
    );
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('experiment cli-exp is running; stop it first');
    const bad = await runCli(
      ['start', '--name', 'x', '--variant', 'a=A', '--variant', 'b=B:1'],
      env,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('expected <name>=<model version|heuristic>:<weight>');
    const unknown = await runCli(['restart'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "restart"');
    const noSuch = await runCli(['stop', '--promote', 'nosuch'], env);
    expect(noSuch.code).toBe(1);
    expect(noSuch.stderr).toContain('has no such variant (it has control, treat)');
    const heuristic = await runCli(['stop', '--promote', 'control'], env);
    expect(heuristic.code).toBe(1);
    expect(heuristic.stderr).toContain('that variant is the heuristic');

    const stop = await runCli(['stop', '--promote', 'treat'], env);
    expect(stop.code).toBe(0);
    expect(stop.stdout).toContain('stopped experiment cli-exp; promoted treat: model B is active');
    expect(await activeVersion(redis, keys)).toBe('B');
    const after = await runCli(['status'], env);
    expect(after.code).toBe(0);
    expect(after.stdout).toContain('no experiment is running');
    expect(after.stdout).toContain('experiment cli-exp: stopped');
    await running(null);
  });
});
