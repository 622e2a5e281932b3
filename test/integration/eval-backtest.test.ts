/**
 * The backtest (`npm run eval`) on the real stack with a planted signal (test/fixtures/planted.ts:
 * hidden customer groups buy new articles of their group's categories; popularity is flat): the
 * ranker trained by the production pipeline must beat popularity and repurchase + popularity on
 * the evaluated weeks, every figure of the summary line must be there, and the report must be
 * written with its plots. It runs two LightGBM seeds over the same rows: the first is the main
 * result, and both with their spread are reported. Each week's lists are kept in the work folder.
 * The model it ships at its last cutoff is the one a production cycle (`npm run train -- --once
 * --end`) ships there: the same rows and the same trees. Its cycles train side by side, and one
 * trainer at a time gives the same models and figures.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, type Codecs } from '../../streams/bootstrap.ts';
import { runLoad } from '../../streams/loader/load.ts';
import {
  METHODS,
  runEval,
  summaryLine,
  toReport,
  type EvalResult,
} from '../../evaluation/backtest/backtest.ts';
import { writeReport } from '../../evaluation/backtest/report.ts';
import { apAtK } from '../../evaluation/ranking-metrics.ts';
import { mean } from '../../evaluation/stats.ts';
import { generatePlantedDataset } from '../fixtures/planted.ts';
import { stackContext } from '../helpers.ts';
import { RECIPE } from '../../training/recipe.ts';
import { runCycle } from '../../training/cycle.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';

/** A LightGBM model file's trees: the file without its parameters block, which names the threads. */
function treesOf(file: string): string {
  const text = readFileSync(file, 'utf8');
  expect(text).toContain('Tree=0');
  return text.replace(/\nparameters:\n[\s\S]*?\nend of parameters\n/, '\n');
}

/** A small recipe for seven weeks of data: two training weeks, one gate week, one trial. */
const SMALL = {
  trainWeeks: 2,
  gateWeeks: 1,
  gate: { ...RECIPE.gate, maxWeeks: 1 },
  trials: 1,
  minRounds: 50,
};

describe('backtest with a planted signal', () => {
  const ctx = stackContext('eval');
  const dir = mkdtempSync(join(tmpdir(), 'rec-eval-'));
  const redis = new Redis(ctx.config.redisUrl);
  let codecs: Codecs;
  let result: EvalResult;

  beforeAll(async () => {
    generatePlantedDataset(join(dir, 'data'), { seed: 11, days: 49 });
    await runLoad({
      config: { ...ctx.config, topicPrefix: ctx.prefix },
      logger: ctx.logger,
      dataDir: join(dir, 'data'),
      progress: false,
    });
    ({ codecs } = await bootstrap(ctx));
    result = await runEval(
      { kafka: ctx.kafka, redis, codecs, topics: ctx.topics, logger: ctx.logger },
      {
        dataset: 'planted',
        cutoffs: 2,
        recipe: SMALL,
        seeds: [42, 7],
        workDir: join(dir, 'work'),
        trainers: 2,
      },
    );
  }, 240_000);

  afterAll(async () => {
    redis.disconnect();
    await ctx.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('evaluates the last two weeks, each with the cycle production would run before it', () => {
    // 49 days from 2020-06-01: last day 2020-07-19, last cutoff 2020-07-13.
    expect(result.cutoffs).toEqual(['2020-07-06', '2020-07-13']);
    const [first, second] = result.perCutoff;
    expect(first?.weeks).toEqual({
      train: ['2020-06-08', '2020-06-15'],
      validation: '2020-06-22',
      gate: ['2020-06-29'],
    });
    expect(second?.weeks).toEqual({
      train: ['2020-06-15', '2020-06-22'],
      validation: '2020-06-29',
      gate: ['2020-07-06'],
    });
    expect(result.usersScored).toBeGreaterThan(150);
    // The second cycle's gate week is the first evaluated week: judged by what the backtest shipped
    // there, not fitted again; the first cycle's gate week had no such model.
    expect(Object.values(result.perCutoff[0]?.gate.scoredBy ?? {})).toEqual(['rolling']);
    expect(result.perCutoff[1]?.gate.scoredBy).toEqual({
      '2020-07-06': result.perCutoff[0]?.model.version,
    });
    // The planted signal passes the gate; what was served is the promoted model.
    expect(result.promotions).toBe(2);
    expect(result.perCutoff.map((c) => c.served)).toEqual(
      result.perCutoff.map((c) => c.model.version),
    );
  });

  it('the ranker beats the popularity baselines because the signal is planted', () => {
    const map = result.map;
    expect(map.ranker.mean).toBeGreaterThan(2 * map.popular.mean);
    expect(map.ranker.mean).toBeGreaterThan(2 * map.repurchase_popular.mean);
    expect(result.versus.popular?.ratio).toBeGreaterThan(2);
    // The pooled interval of the ratio brackets the pooled point estimate and is above 1.
    const vs = result.versus.repurchase_popular;
    expect(vs?.pooled.low).toBeGreaterThan(1);
    expect(vs?.pooled.low).toBeLessThanOrEqual(vs?.pooled.ratio ?? 0);
    expect(vs?.pooled.high).toBeGreaterThanOrEqual(vs?.pooled.ratio ?? Infinity);
    expect(vs?.weeksWon).toBe(2);
    expect(result.map.ranker.se).toBeGreaterThan(0);
    expect(result.candidateRecall.overall).toBeGreaterThan(0.5);
    for (const c of result.perCutoff) {
      for (const m of METHODS) {
        // MAP@k for k = 1..12, each within [0, 1].
        expect(c.mapAtK[m]).toHaveLength(12);
        for (const v of c.mapAtK[m]) expect(v).toBeGreaterThanOrEqual(0);
      }
    }
  });

  it('prints every figure in the summary line and writes the report with plots', async () => {
    const line = summaryLine(result);
    const json = JSON.parse(JSON.stringify(line)) as Record<string, Record<string, number>>;
    for (const key of ['map12', 'map12_spread', 'map12_se', 'recall12', 'ndcg12']) {
      expect(Object.keys(json[key] ?? {}).sort()).toEqual([...METHODS].sort());
    }
    expect(json.candidate_recall?.overall).toBeGreaterThan(0.5);
    expect(line.users_scored).toBe(result.usersScored);
    const out = await writeReport(join(dir, 'report'), toReport(result));
    const md = readFileSync(join(dir, 'report', 'report.md'), 'utf8');
    expect(out.images.length).toBeGreaterThanOrEqual(4);
    for (const img of out.images) expect(existsSync(img)).toBe(true);
    expect(md).toContain('planted');
    // The ratios with their pooled intervals and weeks won, and the standard errors.
    expect(md).toContain('| versus | ratio | pooled ratio [interval] | weeks won |');
    expect(md).toMatch(
      /\| repurchase_popular \| \d+\.\d\d× \| \d+\.\d\d× \[\d+\.\d\d, \d+\.\d\d\] \| 2\/2 \|/,
    );
    expect(md).toContain('| method | MAP@12 | spread (sd) | s.e. |');
    expect(result.featureImportance.length).toBeGreaterThan(0);
    // The seed spread is in the report and the summary line.
    expect(md).toContain('- seeds 42, 7 (same rows, one run of every cycle per LightGBM seed)');
    expect((line.seeds as { seeds: number[] }).seeds).toEqual([42, 7]);
  });

  it('runs every cycle once per seed over the same rows; the first seed is the main result', () => {
    const s = result.seeds;
    expect(s?.runs.map((r) => r.seed)).toEqual([42, 7]);
    expect(result.recipe.seed).toBe(42);
    expect(s?.runs[0]?.ranker).toBe(result.map.ranker.mean);
    expect(s?.runs[0]?.ratios).toEqual(
      Object.fromEntries(Object.entries(result.versus).map(([m, v]) => [m, v.ratio])),
    );
    // The planted signal does not depend on the seed.
    expect(s?.runs[1]?.ratios.repurchase_popular).toBeGreaterThan(2);
    expect(s?.ranker.min).toBeLessThanOrEqual(s?.ranker.max ?? -1);
  });

  it("keeps each week's lists in the work folder, and they give the figures reported", () => {
    for (const [seed, run] of [
      [42, result.map.ranker.mean],
      [7, result.seeds?.runs[1]?.ranker],
    ] as const) {
      const maps = result.cutoffs.map((cutoff) => {
        const file = join(dir, 'work', `seed-${seed}`, cutoff, 'lists.json');
        const week = JSON.parse(readFileSync(file, 'utf8')) as {
          cutoff: string;
          customers: string[];
          relevant: string[][];
          lists: Record<string, string[][]>;
        };
        expect(week.cutoff).toBe(cutoff);
        expect(Object.keys(week.lists).sort()).toEqual([...METHODS].sort());
        const at = result.perCutoff.find((c) => c.cutoff === cutoff);
        expect(week.customers).toHaveLength(at?.usersScored ?? -1);
        const ap = (m: string) =>
          week.customers.map((_, i) =>
            apAtK(week.lists[m]?.[i] ?? [], new Set(week.relevant[i]), 12),
          );
        // perCutoff holds the first seed's figures: every method's MAP@12 comes from the file.
        if (seed === 42) {
          for (const m of METHODS) expect(mean(ap(m))).toBeCloseTo(at?.mapAtK[m][11] ?? -1, 12);
        }
        return mean(ap('ranker'));
      });
      expect(mean(maps)).toBeCloseTo(run ?? -1, 12);
    }
  });

  it('trains its cycles side by side and reports what one trainer at a time reports', async () => {
    const alone = await runEval(
      { kafka: ctx.kafka, redis, codecs, topics: ctx.topics, logger: ctx.logger },
      {
        dataset: 'planted',
        cutoffs: 2,
        recipe: SMALL,
        workDir: join(dir, 'alone'),
        trainers: 1,
      },
    );
    const figures = (r: EvalResult) =>
      r.perCutoff.map((c) => ({
        mapAtK: c.mapAtK,
        // (model versions, in the reason and scoredBy, hold their training time)
        gate: {
          promoted: c.gate.promoted,
          vsBest: c.gate.vsBest,
          rolling: Object.values(c.gate.scoredBy).map((v) => v === 'rolling'),
        },
        trees: c.model.trees,
      }));
    expect(figures(alone)).toEqual(figures(result));
    // the second cycle's gate week is the first cutoff: judged by the model shipped there, which
    // its trainer, started before that model existed, did not fit again
    const [first, second] = result.perCutoff;
    expect(Object.values(second?.gate.scoredBy ?? {})).toEqual([first?.model.version]);
    expect(Object.values(first?.gate.scoredBy ?? {})).toEqual(['rolling']);
    for (const cutoff of result.cutoffs) {
      expect(treesOf(join(dir, 'alone', cutoff, 'model', 'model.lgb.txt'))).toBe(
        treesOf(join(dir, 'work', 'seed-42', cutoff, 'model', 'model.lgb.txt')),
      );
    }
  }, 120_000);

  it('ships at its last cutoff what a production cycle ending there ships: the same rows and trees', async () => {
    const last = result.cutoffs.at(-1) as string;
    const keys = keySpace(`evalcycle-${Date.now().toString(36)}`);
    const work = join(dir, 'cycle');
    try {
      const cycle = await runCycle(
        { kafka: ctx.kafka, redis, codecs, topics: ctx.topics, keys, logger: ctx.logger },
        {
          recipe: { ...SMALL, seed: 42 },
          end: Date.parse(`${last}T00:00:00Z`),
          workDir: work,
        },
      );
      const shipped = join(dir, 'work', 'seed-42', last);
      const day = (t: number) => new Date(t).toISOString().slice(0, 10);
      expect({
        train: cycle.weeks.train.map(day),
        validation: day(cycle.weeks.validation),
        gate: cycle.weeks.gate.map(day),
      }).toEqual(result.perCutoff.at(-1)?.weeks);
      // The backtest built these rows among all its cutoffs, the cycle at its own: the same rows.
      const rows = (file: string) =>
        tableFromIPC(readFileSync(file))
          .toArray()
          .map((r: Record<string, unknown>) =>
            JSON.stringify({ ...r, qid: null }, (_, v: unknown) =>
              typeof v === 'bigint' ? String(v) : v,
            ),
          )
          .sort();
      for (const f of ['train.arrow', 'valid.arrow', 'gate.arrow']) {
        const got = rows(join(work, f));
        expect(got.length).toBeGreaterThan(100);
        expect(got).toEqual(rows(join(shipped, f)));
      }
      // (the cycle's trainer ran with two threads, the backtest's side by side with one each)
      expect(treesOf(join(work, 'model', 'model.lgb.txt'))).toBe(
        treesOf(join(shipped, 'model', 'model.lgb.txt')),
      );
    } finally {
      await deleteNamespace(redis, keys);
    }
  }, 120_000);
});
