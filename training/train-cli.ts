/**
 * `npm run train -- --once [--end YYYY-MM-DD] [--dask tcp://host:8786]`: one training cycle by the recipe
 * (training/recipe.ts) on the data before that day (default: all of it). Recipe overrides for
 * experiments (`--trials N --train-weeks N --fit-weeks N --gate-weeks N --min-rounds N
 * --max-rounds N --large-from N --negatives S --blend W --label-customers N --no-refit --k N
 * --seed N`) are recorded in the model's metadata. `--dask` (or TRAIN_DASK_SCHEDULER) trains on a
 * Dask cluster with lightgbm.dask (training/trainer/distributed.py).
 * `npm run trainer [-- --every-hours H]`: a cycle now and then every H hours (TRAIN_EVERY_HOURS,
 * default 24) from the start of the previous one, each on the latest full week (training/schedule.ts).
 * `kill -USR1 <pid>` runs a cycle now (or right after the running one); cycles never overlap and
 * a failed one is logged while the schedule goes on. SIGINT / SIGTERM stop it between cycles (a
 * second one exits at once).
 *
 * Progress of replay, row building and the Optuna trials: bars on a terminal, a line every few
 * seconds otherwise (common/progress.ts); `--no-progress` leaves only the stage lines.
 */
import { parseArgs } from 'node:util';
import { createRedis } from '../common/redis.ts';
import { openTrainingRedis } from './rows-redis.ts';
import { connectStreams } from '../streams/bootstrap.ts';
import { loadConfig } from '../common/config.ts';
import { keySpace } from '../features/keys.ts';
import { createLogger } from '../common/logger.ts';
import { progress, type Progress } from '../common/progress.ts';
import { runCycle, type CycleDeps, type CycleStep } from './cycle.ts';
import { recipeOverrides, RECIPE_FLAGS } from './recipe-flags.ts';
import { runSchedule } from './schedule.ts';

/** One progress bar at a time: a new one whenever the (stage, label) or the total changes. */
function stepBars(enabled: boolean): { onStep: (s: CycleStep) => void; end: () => void } {
  let current: { id: string; done: number; bar: Progress } | null = null;
  let finished = '';
  const end = () => {
    current?.bar.stop(current.done);
    current = null;
  };
  return {
    onStep: (s) => {
      if (!enabled) return;
      const id = `${s.stage} ${s.label} ${s.total}`;
      if (id === finished) return; // its last count, again
      // A bar from the first count on: a stage's opening lines (the trainer's) do not cut it.
      if (current?.id !== id && s.done === 0 && s.total > 0) return;
      if (current?.id !== id) {
        end();
        current = { id, done: 0, bar: progress(`${s.stage} ${s.label}`, s.total) };
      }
      current.done = s.done;
      current.bar.update(s.done);
      if (s.done >= s.total) {
        finished = id;
        end();
      }
    },
    end,
  };
}

async function main(): Promise<void> {
  const config = loadConfig();
  const flags = parseFlags(config.trainDask);
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'trainer');
  // Refused before anything else connects: with EMBEDDINGS=on, or when it does not answer.
  const rowsRedis = await openTrainingRedis(config);
  const { kafka, topics, codecs } = await connectStreams(config, 'rec-trainer', logger);
  const redis = createRedis(config);
  const keys = keySpace(config.redisNamespace);
  const deps = {
    kafka,
    redis,
    ...(rowsRedis === undefined ? {} : { rowsRedis }),
    codecs,
    topics,
    keys,
    logger,
    embeddings: config.embeddings,
    models: config.models,
    promotion: config.promotion,
  };
  const cycle = cycleRunner(deps, flags);
  try {
    if (flags.once) {
      await cycle();
      return;
    }
    await runScheduled(flags, cycle);
  } finally {
    redis.disconnect();
    rowsRedis?.disconnect();
  }
}

interface Flags {
  readonly once: boolean;
  /** The schedule's period, as given (hours) and in ms. */
  readonly everyHours: string;
  readonly everyMs: number;
  readonly recipe: ReturnType<typeof recipeOverrides>;
  readonly workDir: string | undefined;
  readonly end: number | undefined;
  readonly progress: boolean;
  readonly dask: string | undefined;
}

/** The command line, checked (see the module comment). */
function parseFlags(daskDefault: string | undefined): Flags {
  const { values } = parseArgs({
    options: {
      once: { type: 'boolean', default: false },
      ...RECIPE_FLAGS,
      'work-dir': { type: 'string' },
      end: { type: 'string' },
      'every-hours': { type: 'string', default: process.env.TRAIN_EVERY_HOURS ?? '24' },
      'no-progress': { type: 'boolean', default: false },
      dask: { type: 'string' },
    },
  });
  const every = Number(values['every-hours']) * 3_600_000;
  if (!values.once && !(every > 0)) {
    throw new Error(`--every-hours must be a positive number (got ${values['every-hours']})`);
  }
  const recipe = recipeOverrides(values);
  let end: number | undefined;
  if (values.end !== undefined) {
    end = Date.parse(`${values.end}T00:00:00Z`);
    if (!/^\d{4}-\d{2}-\d{2}$/.test(values.end) || Number.isNaN(end)) {
      throw new Error(`--end: "${values.end}" is not a YYYY-MM-DD date`);
    }
  }
  return {
    once: values.once,
    everyHours: values['every-hours'],
    everyMs: every,
    recipe,
    workDir: values['work-dir'],
    end,
    progress: !values['no-progress'],
    dask: values.dask ?? daskDefault,
  };
}

/** One cycle with its progress on stderr (bars unless --no-progress) and its result on stdout. */
function cycleRunner(deps: CycleDeps, flags: Flags): () => Promise<void> {
  const { recipe, end } = flags;
  const bars = flags.progress;
  // On a terminal the trial bar also stands in for the trial lines.
  const quiet = bars && process.stderr.isTTY;
  return async () => {
    const steps = stepBars(bars);
    try {
      const result = await runCycle(deps, {
        recipe,
        ...(flags.workDir === undefined ? {} : { workDir: flags.workDir }),
        ...(end === undefined ? {} : { end }),
        ...(flags.dask === undefined ? {} : { dask: flags.dask }),
        onProgress: (line) => {
          if (bars && /^rows: \w+ \d+\/\d+$/.test(line)) return; // the bars count these
          if (quiet) {
            if (/^train: (train: )?trial \d+\/\d+/.test(line)) return;
            steps.end(); // a line under a live bar would garble it
          }
          console.error(`[train] ${line}`);
        },
        onStep: steps.onStep,
      });
      console.log(JSON.stringify(result));
    } finally {
      steps.end();
    }
  };
}

/**
 * A cycle now and every `--every-hours` (training/schedule.ts) until SIGINT / SIGTERM (a second
 * one exits at once); SIGUSR1 asks for one now.
 */
async function runScheduled(flags: Flags, cycle: () => Promise<void>): Promise<void> {
  const stop = new AbortController();
  const halt = () => {
    if (stop.signal.aborted) process.exit(130);
    console.error('[train] stopping after the running cycle (again to exit now)');
    stop.abort();
  };
  console.error(
    `[train] pid ${process.pid}: a cycle now and every ${flags.everyHours} h; kill -USR1 ${process.pid} for one now`,
  );
  const schedule = runSchedule({
    everyMs: flags.everyMs,
    signal: stop.signal,
    cycle: async ({ n, reason }) => {
      console.error(`[train] cycle ${n} (${reason}) at ${new Date().toISOString()}`);
      await cycle();
    },
    onError: (err, { n }) => {
      console.error(
        `[train] cycle ${n} failed: ${err instanceof Error ? err.message : String(err)}`,
      );
    },
  });
  process.on('SIGINT', halt);
  process.on('SIGTERM', halt);
  process.on('SIGUSR1', () => {
    console.error(
      `[train] SIGUSR1: a cycle ${schedule.running ? 'right after the running one' : 'now'}`,
    );
    schedule.trigger();
  });
  await schedule.done;
}

main().catch((err: unknown) => {
  console.error(`train failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
