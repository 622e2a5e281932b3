/**
 * `npm run train -- --once [--weeks N] [--trials N] [--seed N] [--validation YYYY-MM-DD]`: one
 * training cycle now (validation week from that day; default the last full week).
 * `npm run trainer [-- --every-hours H]`: a cycle now and then every H hours (TRAIN_EVERY_HOURS,
 * default 24), each on the latest full week; SIGINT / SIGTERM stop it between cycles.
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { connectStreams } from '../streams/bootstrap.ts';
import { loadConfig } from '../streams/config.ts';
import { keySpace } from '../streams/features/keys.ts';
import { createLogger } from '../streams/logger.ts';
import { runCycle } from './cycle.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      once: { type: 'boolean', default: false },
      weeks: { type: 'string', default: '4' },
      trials: { type: 'string', default: '10' },
      seed: { type: 'string', default: '42' },
      'work-dir': { type: 'string' },
      validation: { type: 'string' },
      'every-hours': { type: 'string', default: process.env.TRAIN_EVERY_HOURS ?? '24' },
    },
  });
  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'trainer');
  const { kafka, topics, codecs } = await connectStreams(config, 'rec-trainer', logger);
  const redis = new Redis(config.redisUrl);
  const keys = keySpace(process.env.REDIS_NAMESPACE ?? 'rec');
  const cycle = async () => {
    const result = await runCycle(
      { kafka, redis, codecs, topics, keys, logger },
      {
        trainWeeks: Number(values.weeks),
        trials: Number(values.trials),
        seed: Number(values.seed),
        ...(values['work-dir'] === undefined ? {} : { workDir: values['work-dir'] }),
        ...(values.validation === undefined
          ? {}
          : { validationCutoff: Date.parse(`${values.validation}T00:00:00Z`) }),
        onProgress: (line) => {
          console.error(`[train] ${line}`);
        },
      },
    );
    console.log(JSON.stringify(result));
  };
  try {
    if (values.once) {
      await cycle();
      return;
    }
    const every = Number(values['every-hours']) * 3_600_000;
    const state = { stop: false };
    let wake: () => void = () => undefined;
    const halt = () => {
      state.stop = true;
      wake();
    };
    process.on('SIGINT', halt);
    process.on('SIGTERM', halt);
    while (!state.stop) {
      await cycle().catch((err: unknown) => {
        console.error(`[train] cycle failed: ${err instanceof Error ? err.message : String(err)}`);
      });
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, every).unref();
      });
    }
  } finally {
    redis.disconnect();
  }
}

main().catch((err: unknown) => {
  console.error(`train failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
