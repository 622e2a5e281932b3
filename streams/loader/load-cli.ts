/**
 * `npm run load -- --data <dir> [--rate <events/s>] [--no-progress]`: publish an H&M-layout folder
 * (CSV or Parquet) to Kafka. Services come from the environment (see docs/configuration.md).
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../../common/config.ts';
import { createLogger } from '../../common/logger.ts';
import { describeLoad, purchasesHeld, republishWarning, runLoad } from './load.ts';

const USAGE =
  'usage: npm run load -- --data <dir> [--rate <purchase events per second>] [--no-progress]';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      data: { type: 'string' },
      rate: { type: 'string' },
      'no-progress': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.data === undefined) throw new Error(`--data is required\n${USAGE}`);
  const rate = values.rate === undefined ? undefined : Number(values.rate);
  if (rate !== undefined && !(Number.isFinite(rate) && rate > 0)) {
    throw new Error(`--rate must be a positive number of events per second (got "${values.rate}")`);
  }
  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'loader');
  // Publishing into topics that hold purchases is allowed (a later folder appends), but said.
  const held = await purchasesHeld(config, logger);
  if (held > 0) console.log(`warning: ${republishWarning(held)}; publishing anyway`);
  const report = await runLoad({
    config,
    logger,
    dataDir: values.data,
    progress: !values['no-progress'],
    ...(rate === undefined ? {} : { rate }),
  });
  for (const line of describeLoad(report)) console.log(line);
}

main().catch((err: unknown) => {
  console.error(`load failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
