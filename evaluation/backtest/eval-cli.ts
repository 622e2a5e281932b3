/**
 * `npm run eval -- --data <dir> [--cutoffs N | --cutoff-dates YYYY-MM-DD,…] [--report <dir>]
 *  [--reload] [--work-dir <dir>] [--trainers N]` and, for experiments only, overrides of the recipe
 *  (`--trials N --train-weeks N --fit-weeks N --gate-weeks N --min-rounds N --max-rounds N
 *  --large-from N --negatives S --blend W --label-customers N --no-refit --k N --seed N`): without
 *  them the backtest measures exactly what `npm run train -- --once` ships. `--seeds 42,7,13` runs every cycle once per LightGBM seed over the same rows and adds
 *  the spread the seed causes (evaluation/backtest/seeds.ts); the first seed's run is the main
 *  result. `--trainers N` trains N cycles side by side (default: the cores, at most 4), sharing
 *  the cores out as LightGBM threads; the figures do not depend on it.
 *
 * Loads an H&M-layout folder into its own set of topics (prefix `eval-<name>-<hash>.`, from the
 * folder's content: streams/loader/dataset-topics.ts; reused when the same content was loaded
 * before, `--reload` publishes it again into fresh topics), runs the backtest (evaluation/backtest/backtest.ts), prints a
 * table per method, optionally writes the report with plots, and prints one JSON line last.
 * `--prefix <p>` evaluates topics that are already loaded (e.g. the live ones) instead of `--data`.
 */
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createRedis } from '../../common/redis.ts';
import { openTrainingRedis } from '../../training/rows-redis.ts';
import { connectStreams } from '../../streams/bootstrap.ts';
import { loadConfig } from '../../common/config.ts';
import { createLogger } from '../../common/logger.ts';
import { progress, type Progress } from '../../common/progress.ts';
import { datasetTopics } from '../../streams/loader/dataset-topics.ts';
import { METHODS, runEval, summaryLine, toReport, type EvalResult } from './backtest.ts';
import { recipeOverrides, RECIPE_FLAGS } from '../../training/recipe-flags.ts';
import { formatRatio } from '../stats.ts';
import { seedLines } from './seeds.ts';

const USAGE =
  'usage: npm run eval -- --data <dir> | --prefix <topic prefix> [--cutoffs N | --cutoff-dates YYYY-MM-DD,...] ' +
  '[--report <dir>] [--reload] [--work-dir <dir>] [--seeds N,N,...] [--trainers N]; recipe overrides (experiments): [--trials N] [--train-weeks N] ' +
  '[--fit-weeks N] [--gate-weeks N] [--min-rounds N] [--max-rounds N] [--large-from N] [--negatives S] [--blend W] [--label-customers N] [--no-refit] [--k N] ' +
  '[--seed N]';

function positiveInt(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--${name} must be a positive integer (got "${v}")`);
  return n;
}

async function main(): Promise<void> {
  const flags = parseFlags();
  if (flags === 'help') {
    console.log(USAGE);
    return;
  }
  const base = loadConfig();
  const logger = createLogger(base.logLevel === 'info' ? 'warn' : base.logLevel, 'eval');
  // The rows' own Redis when TRAINING_REDIS_URL is set, as in `npm run train` (refused before
  // anything else connects: with EMBEDDINGS=on, or when it does not answer).
  const rowsRedis = await openTrainingRedis(base);
  const redis = createRedis(base);
  const t0 = performance.now();
  try {
    const prefix =
      flags.prefix ??
      (await datasetTopics(base, logger, redis, flags.data as string, flags.reload, '[eval]'));
    const config = { ...base, topicPrefix: prefix };
    const { kafka, topics, codecs } = await connectStreams(config, 'rec-eval', logger);
    const result = await runEval(
      { kafka, redis: rowsRedis ?? redis, codecs, topics, logger, embeddings: config.embeddings },
      {
        dataset: flags.data === undefined ? prefix : basename(resolve(flags.data)),
        cutoffs: flags.cutoffs,
        ...(flags.dates ? { cutoffDates: flags.dates } : {}),
        recipe: flags.recipe,
        ...(flags.workDir === undefined ? {} : { workDir: flags.workDir }),
        ...(flags.seeds === undefined ? {} : { seeds: flags.seeds }),
        ...(flags.trainers === undefined ? {} : { trainers: flags.trainers }),
        onProgress: (line) => {
          console.error(`[eval] ${line}`);
        },
        onRowsProgress: rowsProgressBars(),
      },
    );
    result.timings.wall_s = (performance.now() - t0) / 1000;
    printTable(result);
    if (flags.report !== undefined) {
      // Loaded only when asked for: vega is large.
      const { writeReport } = await import('./report.ts');
      const out = await writeReport(flags.report, toReport(result));
      console.log(`report: ${join(flags.report, 'report.md')} (${out.images.length} images)`);
    }
    console.log(JSON.stringify(summaryLine(result)));
  } finally {
    redis.disconnect();
    rowsRedis?.disconnect();
  }
}

interface Flags {
  /** Exactly one of the folder to load and the prefix of topics already loaded. */
  readonly data: string | undefined;
  readonly prefix: string | undefined;
  readonly cutoffs: number;
  /** `--cutoff-dates` (ms, UTC midnight). */
  readonly dates: number[] | undefined;
  readonly recipe: ReturnType<typeof recipeOverrides>;
  readonly report: string | undefined;
  readonly reload: boolean;
  readonly workDir: string | undefined;
  /** `--seeds`: LightGBM seeds, in the order given. */
  readonly seeds: number[] | undefined;
  /** `--trainers`: cycles trained side by side (default: the cores, at most 4). */
  readonly trainers: number | undefined;
}

/** The command line, checked (see the module comment and USAGE); 'help' for --help. */
function parseFlags(): Flags | 'help' {
  const { values } = parseArgs({
    options: {
      data: { type: 'string' },
      prefix: { type: 'string' },
      cutoffs: { type: 'string' },
      'cutoff-dates': { type: 'string' },
      ...RECIPE_FLAGS,
      report: { type: 'string' },
      reload: { type: 'boolean', default: false },
      'work-dir': { type: 'string' },
      seeds: { type: 'string' },
      trainers: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return 'help';
  if ((values.data === undefined) === (values.prefix === undefined)) {
    throw new Error(`give exactly one of --data or --prefix\n${USAGE}`);
  }
  const dates = values['cutoff-dates']?.split(',').map((d) => {
    const t = Date.parse(`${d.trim()}T00:00:00Z`);
    if (!/^\d{4}-\d{2}-\d{2}$/.test(d.trim()) || Number.isNaN(t)) {
      throw new Error(`--cutoff-dates: "${d}" is not a YYYY-MM-DD date`);
    }
    return t;
  });
  if (dates && values.cutoffs !== undefined)
    throw new Error('give --cutoffs or --cutoff-dates, not both');
  const cutoffs = positiveInt('cutoffs', values.cutoffs, 6);
  const recipe = recipeOverrides(values);
  const seeds = parseSeeds(values.seeds);
  if (seeds && recipe.seed !== undefined) throw new Error('give --seed or --seeds, not both');
  if (Object.keys(recipe).length > 0) {
    console.error(
      `[eval] recipe overrides ${JSON.stringify(recipe)}: this measures a variant, not what production trains`,
    );
  }
  return {
    data: values.data,
    prefix: values.prefix,
    cutoffs,
    dates,
    recipe,
    report: values.report,
    reload: values.reload,
    workDir: values['work-dir'],
    seeds,
    trainers:
      values.trainers === undefined ? undefined : positiveInt('trainers', values.trainers, 1),
  };
}

/** `--seeds 42,7,13`: integers >= 0 (the backtest refuses a seed given twice). */
function parseSeeds(v: string | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  const seeds = v.split(',').map((x) => {
    const n = Number(x.trim());
    if (x.trim() === '' || !Number.isInteger(n) || n < 0) {
      throw new Error(`--seeds must be integers >= 0, comma-separated (got "${v}")`);
    }
    return n;
  });
  return seeds;
}

/** The backtest's row-building progress: one bar per stage while it runs. */
function rowsProgressBars(): (stage: string, done: number, total: number) => void {
  const bars = new Map<string, Progress>();
  return (stage, done, total) => {
    let bar = bars.get(stage);
    if (!bar) {
      bar = progress(stage === 'queries' ? 'rows: queries' : `replay: ${stage}`, total);
      bars.set(stage, bar);
    }
    bar.update(done);
    if (done >= total) {
      bar.stop(done);
      bars.delete(stage);
    }
  };
}

/** The table per method on stdout, then the gate's promotions and the candidate recall. */
function printTable(result: EvalResult): void {
  const pct = (x: number) => (Number.isFinite(x) ? x.toFixed(5) : '   n/a');
  const k = result.k;
  console.log(
    `\nbacktest of ${result.dataset}: ${result.cutoffs.join(', ')} (${result.usersScored} customer-weeks scored)`,
  );
  console.log(
    `method              MAP@${k} mean  sd/week   s.e.   recall@${k}  NDCG@${k}  ranker ÷ (pooled, 90 % interval)  weeks won`,
  );
  for (const m of METHODS) {
    const v = result.versus[m];
    console.log(
      `${m.padEnd(20)}${pct(result.map[m].mean).padStart(10)} ${pct(result.map[m].spread).padStart(8)} ${pct(result.map[m].se).padStart(8)} ${pct(result.recall[m]).padStart(10)} ${pct(result.ndcg[m]).padStart(9)}  ${
        v === undefined
          ? ''
          : `${v.ratio.toFixed(2)} (${formatRatio(v.pooled)})`.padEnd(34) +
            `${v.weeksWon}/${result.cutoffs.length}`
      }`,
    );
  }
  console.log(
    `gate: promoted at ${result.promotions} of ${result.cutoffs.length} cutoffs; served: ${result.perCutoff.map((c) => c.served).join(', ')}`,
  );
  console.log(
    `candidate recall: ${Object.entries(result.candidateRecall)
      .map(([s, v]) => `${s} ${pct(v)}`)
      .join(', ')}`,
  );
  if (result.seeds) for (const line of seedLines(result.seeds, k)) console.log(line);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`eval failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
