/**
 * Training end to end on the real stack: a generated H&M-layout folder with a planted signal
 * (test/fixtures/planted.ts: hidden customer groups buying new articles of their group's
 * categories) is loaded into Kafka and processed into a fresh namespace; one training cycle
 * (replay -> rows -> LightGBM + a 2-trial Optuna search -> ONNX -> parity -> the gate on held-out
 * weeks -> refit) must beat the baselines with confidence and be promoted, and the API on that
 * namespace then answers with the new model. Also: the "too little data" errors of a cycle.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { runLoad, type LoadReport } from '../../streams/loader/load.ts';
import { activeVersion, listModels, readModel } from '../../models/registry.ts';
import { startServing } from '../../serving/server.ts';
import {
  runCycle,
  type CycleDeps,
  type CycleResult,
  type CycleStep,
} from '../../training/cycle.ts';
import { generatePlantedDataset, type PlantedInfo } from '../fixtures/planted.ts';
import { freePort, processAll, stackContext } from '../helpers.ts';
import { pinged, startRedis } from '../redis-helpers.ts';
import { RECIPE } from '../../training/recipe.ts';

interface RecResponse {
  customer_id: string;
  items: { article_id: string; score: number; rank: number }[];
  model_version: string;
  ranker: { kind: string; reason?: string };
  cold_start: boolean;
}

// 6 weeks of purchases from 2020-06-01 to 2020-07-12: the cycle ends on 2020-07-13.
const DAY = 86_400_000;
const END = Date.UTC(2020, 6, 13);
const GATE = [Date.UTC(2020, 5, 29), Date.UTC(2020, 6, 6)];
const VALIDATION = Date.UTC(2020, 5, 22);
const TRAIN = [Date.UTC(2020, 5, 8), Date.UTC(2020, 5, 15)];
/**
 * A small recipe for six weeks of data: two training weeks, exactly two gate weeks (not extended
 * for customers), two trials.
 */
const SMALL = {
  trainWeeks: 2,
  gateWeeks: 2,
  gate: { ...RECIPE.gate, maxWeeks: 2 },
  trials: 2,
  seed: 42,
};

describe('training end to end: load, process, train, promote, serve', () => {
  const ctx = stackContext('training-e2e');
  const keys = keySpace(`e${randomUUID().slice(0, 8)}`);
  const dir = mkdtempSync(join(tmpdir(), 'rec-training-e2e-'));
  const redis = new Redis(ctx.config.redisUrl);
  const steps: CycleStep[] = [];
  const lines: string[] = [];
  let planted: PlantedInfo;
  let report: LoadReport;
  let deps: CycleDeps;
  let result: CycleResult;
  let cycleMs = 0;

  beforeAll(async () => {
    planted = generatePlantedDataset(join(dir, 'data'), { seed: 5 });
    report = await runLoad({
      config: { ...ctx.config, topicPrefix: ctx.prefix },
      logger: ctx.logger,
      dataDir: join(dir, 'data'),
      progress: false,
    });
    const codecs = await processAll(ctx, redis, keys, `training-e2e-${keys.ns}`);
    deps = { kafka: ctx.kafka, redis, codecs, topics: ctx.topics, keys, logger: ctx.logger };
  });

  afterAll(async () => {
    const admin = ctx.kafka.admin();
    await admin.connect();
    const { groups } = await admin.listGroups();
    const mine = groups
      .map((g) => g.groupId)
      .filter((g) => g.startsWith(`training-e2e-${keys.ns}`));
    if (mine.length > 0) await admin.deleteGroups(mine).catch(() => undefined);
    await admin.disconnect();
    await deleteNamespace(redis, keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
    await ctx.cleanup();
  });

  it('trains a ranker that beats the baselines on the planted signal and promotes it', async () => {
    expect(planted.firstDate).toBe('2020-06-01');
    expect(planted.lastDate).toBe('2020-07-12');
    expect(planted.inGroupShare).toBeGreaterThan(0.85);
    const t0 = performance.now();
    result = await runCycle(deps, {
      recipe: SMALL,
      onProgress: (l) => lines.push(l),
      onStep: (s) => steps.push(s),
    });
    cycleMs = performance.now() - t0;
    console.info(
      `training e2e: cycle ${(cycleMs / 1000).toFixed(1)} s (rows ${(result.timings.rowsMs / 1000).toFixed(1)} s, ` +
        `train ${(result.timings.trainMs / 1000).toFixed(1)} s); gate ${JSON.stringify(result.gate.map)}; ` +
        `recall ${JSON.stringify(result.candidateRecall)}; rows ${JSON.stringify(result.rows)}`,
    );

    expect(result.weeks).toEqual({
      end: END,
      history: [], // the data starts with the first training week
      train: TRAIN,
      validation: VALIDATION,
      gate: GATE,
    });
    expect(result.rows.gateQueries).toBeGreaterThan(150);
    // The label weeks are (mostly) among the candidates.
    expect(result.candidateRecall.overall).toBeGreaterThan(0.8);
    const { gate } = result;
    expect(gate.weeks).toEqual(['2020-06-29', '2020-07-06']);
    // Each gate week judged by the recipe's model fitted on the weeks before it (rolling origin).
    expect(gate.scoredBy).toEqual({ '2020-06-29': 'rolling', '2020-07-06': 'rolling' });
    expect(
      lines.filter((l) => /rolling week \d{4}-\d\d-\d\d: trained on \d+ queries/.test(l)),
    ).toHaveLength(2);
    expect(gate.units).toBeGreaterThan(150);
    const map = (m: string) => gate.map[m]?.mean ?? NaN;
    expect(map('candidate')).toBeGreaterThan(0.2);
    expect(map('candidate')).toBeGreaterThan(2 * map('popular'));
    expect(map('candidate')).toBeGreaterThan(2 * map('repurchase_popular'));
    // The decision rests on the interval against the best baseline, which is above 1.
    expect(gate.vs[gate.bestBaseline]?.low).toBeGreaterThan(1);
    expect(gate.active).toBeNull(); // a fresh namespace: nothing to compare with
    expect(result.promoted).toBe(true);
    expect(result.reason).toMatch(
      /^MAP@12 \d+\.\d\dx \[\d+\.\d\d, \d+\.\d\d\] of the best baseline/,
    );

    // Registered and active in the namespace's registry.
    expect(await activeVersion(redis, keys)).toBe(result.version);
    const listed = await listModels(redis, keys);
    expect(listed.find((m) => m.version === result.version)?.status).toBe('active');

    // Progress: every stage counted up to its total; the trials one by one.
    const stages = new Set(steps.map((s) => s.stage));
    expect([...stages]).toEqual(['replay', 'rows', 'train']);
    const trials = steps.filter((s) => s.stage === 'train').map((s) => `${s.done}/${s.total}`);
    expect(trials).toEqual(['0/2', '1/2', '2/2']);
    const rowsDone = steps.filter((s) => s.stage === 'rows' && s.done === s.total);
    expect(rowsDone.map((s) => s.label)).toEqual([
      'customers at 2020-06-08',
      'customers at 2020-06-15',
      'customers at 2020-06-22',
      'customers at 2020-06-29',
      'customers at 2020-07-06',
    ]);
    expect(steps.some((s) => s.label === 'purchases < 2020-07-06' && s.done === s.total)).toBe(
      true,
    );
    for (const s of steps) expect(s.done).toBeLessThanOrEqual(s.total);
    expect(lines.some((l) => /^train: .*trial 2\/2: map@12=/.test(l))).toBe(true);
  }, 120_000);

  it('serves the promoted model on the same namespace', async () => {
    expect(result.promoted).toBe(true);
    const serving = await startServing({
      redisUrl: ctx.config.redisUrl,
      keys,
      logger: ctx.logger,
      port: 0,
      host: '127.0.0.1',
      now: () => report.lastEventTime ?? Date.now(),
    });
    try {
      expect(serving.live.version).toBe(result.version);
      const customers = [...planted.groupOf.keys()].slice(0, 20);
      let inGroup = 0;
      let items = 0;
      for (const c of customers) {
        const res = await fetch(`${serving.url}/v1/recommendations/${c}?k=12`);
        expect(res.status).toBe(200);
        const body = (await res.json()) as RecResponse;
        expect(body.model_version).toBe(result.version);
        expect(body.ranker).toEqual({ kind: 'model' });
        expect(body.cold_start).toBe(false);
        expect(body.items).toHaveLength(12);
        for (const item of body.items) {
          items++;
          if (planted.articleGroup.get(item.article_id) === planted.groupOf.get(c)) inGroup++;
        }
      }
      // The served ranking follows the planted signal too.
      expect(inGroup / items).toBeGreaterThan(0.5);
    } finally {
      await serving.close();
    }
  });

  it('records the recipe and the gate evidence with the model', async () => {
    const entry = await readModel(redis, keys, result.version);
    const meta = entry?.meta as Record<string, unknown> | undefined;
    expect(meta?.recipe).toMatchObject({ ...SMALL, refit: true });
    expect(meta?.gate).toMatchObject({ promoted: true, weeks: ['2020-06-29', '2020-07-06'] });
    // The shipped model was refit on every week: its cutoffs reach the last gate week.
    expect((meta?.cutoffs as { refit?: number[] }).refit).toEqual(GATE);
  });

  it('compares the next cycle with the active model on the weeks the active model has not seen', async () => {
    // A cycle ending a week earlier is promoted (the active model then knows nothing of the last
    // week); the next cycle's gate compares with it on that week only.
    const earlier = await runCycle(deps, { recipe: SMALL, end: END - 7 * DAY });
    expect(earlier.promoted).toBe(true);
    expect(await activeVersion(redis, keys)).toBe(earlier.version);
    const next = await runCycle(deps, { recipe: SMALL });
    expect(next.gate.active).toMatchObject({ version: earlier.version, weeks: ['2020-07-06'] });
    const vs = next.gate.vs.active;
    expect(vs?.units).toBeGreaterThan(50);
    expect(vs?.low).toBeLessThanOrEqual(vs?.ratio ?? NaN);
    expect(next.gate.map.active?.mean).toBeGreaterThan(0.1);
    // The decision says how the candidate stands against the active model.
    if (next.promoted) expect(next.reason).toContain(`of the active model ${earlier.version}`);
    else expect(next.reason).toMatch(/best baseline|active model/);
  }, 120_000);

  it('rebuilds the rows in the Redis given as rowsRedis (what TRAINING_REDIS_URL opens), none of them in the live one', async () => {
    const port = await freePort();
    const rowsDir = mkdtempSync(join(tmpdir(), 'rec-rows-redis-'));
    const server = startRedis(port, rowsDir);
    const rowsRedis = new Redis(port, '127.0.0.1', { lazyConnect: true });
    try {
      await pinged(port);
      // While the cycle trains, its rows namespace is complete: where is it?
      let where: Promise<{ rowsKeys: string[]; liveKeys: string[] }> | undefined;
      const cycle = await runCycle(
        { ...deps, rowsRedis },
        {
          recipe: { ...SMALL, trials: 1 },
          onStep: (s) => {
            if (s.stage === 'train' && where === undefined) {
              where = (async () => {
                const rowsKeys = await rowsRedis.keys('train-*');
                const ns = rowsKeys[0]?.split(':')[0] ?? 'none';
                return { rowsKeys, liveKeys: await redis.keys(`${ns}:*`) };
              })();
            }
          },
        },
      );
      const seen = await where;
      // The rows' state (customers, articles, co-purchases) went to the rows' Redis only.
      expect(seen?.rowsKeys.length).toBeGreaterThan(1000);
      expect(new Set(seen?.rowsKeys.map((k) => k.split(':')[0]))).toEqual(
        new Set([seen?.rowsKeys[0]?.split(':')[0]]),
      );
      expect(seen?.liveKeys).toEqual([]);
      // The cycle deleted it there, and registered its model in the live registry.
      expect(await rowsRedis.dbsize()).toBe(0);
      expect((await listModels(redis, keys)).map((m) => m.version)).toContain(cycle.version);
      // The same rows as a cycle in the live Redis builds.
      expect(cycle.rows).toEqual(result.rows);
    } finally {
      rowsRedis.disconnect();
      server.kill('SIGKILL');
      rmSync(rowsDir, { recursive: true, force: true });
    }
  }, 120_000);

  it('refuses a cycle without enough weeks of data (too little data)', async () => {
    const before = (await listModels(redis, keys)).map((m) => m.version);
    // The end after the data: its last weeks hold no purchases.
    await expect(runCycle(deps, { recipe: SMALL, end: Date.UTC(2020, 7, 1) })).rejects.toThrow(
      /^too little data: the cycle ends 2020-08-01, after the last purchase/,
    );
    // Five gate weeks and an early-stopping week leave no training week in six weeks of data.
    await expect(runCycle(deps, { recipe: { ...SMALL, gateWeeks: 5 } })).rejects.toThrow(
      /^too little data: purchases from 2020-06-01 to 2020-07-13 leave no training week/,
    );
    // Nothing was registered by the refused cycles.
    expect((await listModels(redis, keys)).map((m) => m.version)).toEqual(before);
  });

  it('adds gate weeks until they hold the customers the recipe asks for', async () => {
    const gateLines: string[] = [];
    const wide = await runCycle(deps, {
      recipe: {
        ...SMALL,
        trials: 1,
        gateWeeks: 1,
        gate: { ...RECIPE.gate, customerWeeks: 1_000_000, maxWeeks: 3 },
      },
      onProgress: (l) => gateLines.push(l),
    });
    // One gate week at least, three at most: three, and the earlier weeks move back with them.
    expect(wide.weeks.gate).toEqual([VALIDATION, ...GATE]);
    expect(wide.weeks.validation).toBe(VALIDATION - 7 * DAY);
    expect(wide.gate.weeks).toEqual(['2020-06-22', '2020-06-29', '2020-07-06']);
    expect(Object.values(wide.gate.scoredBy)).toEqual(['rolling', 'rolling', 'rolling']);
    expect(gateLines.filter((l) => l.includes('rolling week'))).toHaveLength(3);
    // Every customer who bought in those weeks is judged: more than the two weeks' judged.
    expect(wide.gate.units).toBeGreaterThan(result.gate.units);
  }, 120_000);
});
