/**
 * `npm run demo [-- --data <dir>]`: the whole story so far. Brings the local stack up (or uses the
 * services named by KAFKA_BROKERS / SCHEMA_REGISTRY_URL / REDIS_URL), creates topics, registers
 * schemas, loads an H&M-layout folder (default: ../shared/data/hm-sample beside the checkout) and
 * prints what was loaded.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { describeLoad, runLoad } from './loader/run.ts';
import { ensureStack } from './stack/stack.ts';

const DEFAULT_DATA = fileURLToPath(new URL('../../shared/data/hm-sample', import.meta.url));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { data: { type: 'string' }, 'no-progress': { type: 'boolean', default: false } },
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

  console.log('== 1/2 stack');
  const t0 = performance.now();
  const endpoints = await ensureStack(config, (line) => {
    console.log(`  ${line}`);
  });
  console.log(`  stack ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const live = Object.freeze({ ...config, ...endpoints });

  console.log(`== 2/2 load ${dataDir}`);
  const report = await runLoad({
    config: live,
    logger,
    dataDir,
    progress: !values['no-progress'],
  });
  for (const line of describeLoad(report)) console.log(line);
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
